"""The web UI's API types are generated from the services' OpenAPI (`make openapi`) and checked in:
both generated files must be what the code makes now."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from scripts.openapi import public_openapi, render
from tests.infra.terraform import REPO_ROOT

FRONTEND = REPO_ROOT / "frontend"
DOCUMENT = FRONTEND / "openapi.json"
TYPES = FRONTEND / "src" / "client" / "schema.ts"
STALE = "is stale: run `make openapi` and commit the result"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The public document as the code makes it now (the three apps built once for the module)."""
    return public_openapi()


def test_the_checked_in_openapi_document_is_current(document: dict[str, Any]) -> None:
    assert DOCUMENT.read_text() == render(document), f"{DOCUMENT.relative_to(REPO_ROOT)} {STALE}"


def test_the_checked_in_typescript_types_are_current(document: dict[str, Any], tmp_path: Path) -> None:
    # The npm script's own command (frontend/package.json, which `make openapi` runs), on a fresh
    # document and into a temporary folder.
    script = json.loads((FRONTEND / "package.json").read_text())["scripts"]["generate-client"]
    tool, source, flag, target = shlex.split(script)
    assert (source, flag, target) == ("openapi.json", "-o", str(TYPES.relative_to(FRONTEND)))
    executable = FRONTEND / "node_modules" / ".bin" / tool
    assert executable.exists(), f"{executable} is missing: `make setup` installs the web UI's packages"
    (tmp_path / source).write_text(render(document))
    subprocess.run([str(executable), source, flag, target], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    assert TYPES.read_text() == (tmp_path / target).read_text(), f"{TYPES.relative_to(REPO_ROOT)} {STALE}"


def _app(name: str, *paths: str, shape: type[BaseModel] | None = None) -> FastAPI:
    """An app whose every route is summarised with its name: which app a path was taken from."""
    app = FastAPI()
    for path in paths:
        app.add_api_route(path, lambda: {}, methods=["GET"], response_model=shape, summary=name)
    return app


def test_only_the_paths_the_gateway_forwards_to_a_service_are_taken_from_it() -> None:
    # `/v1/models` (the list) is the training service's, one model the inference service's; the
    # webhooks' dispatcher is called by the queue, never through the gateway.
    training = _app("training", "/v1/fine_tuning/jobs", "/v1/models", "/v1/models/{model_id}", "/internal/deliver")
    inference = _app("inference", "/v1/models", "/v1/models/{model_id}", "/v1/datasets")
    paths = public_openapi({"training": training, "inference": inference})["paths"]
    taken = {path: item["get"]["summary"] for path, item in paths.items()}
    assert taken == {"/v1/fine_tuning/jobs": "training", "/v1/models": "training", "/v1/models/{model_id}": "inference"}


def test_two_services_may_not_give_one_schema_name_two_shapes() -> None:
    class Thing(BaseModel):
        a: int

    first = _app("training", "/v1/fine_tuning/jobs", shape=Thing)

    class Thing(BaseModel):  # type: ignore[no-redef]  # the same name, another shape
        b: str

    second = _app("preprocessing", "/v1/datasets", shape=Thing)
    with pytest.raises(ValueError, match="schema 'Thing' of the preprocessing service"):
        public_openapi({"training": first, "preprocessing": second})


def test_the_ui_reads_typed_answers(document: dict[str, Any]) -> None:
    # The answers the web UI reads have a schema, not an untyped object.
    paths = document["paths"]
    answers = {
        ("/v1/fine_tuning/gpus", "get", "200"): "GpuList",
        ("/v1/fine_tuning/estimate", "post", "200"): "RunEstimate",
        ("/v1/models", "get", "200"): "ModelList",
        ("/v1/models/{model_id}", "get", "200"): "ModelObject",
        ("/v1/fine_tuning/jobs/{job_id}", "delete", "200"): "JobDeleted",
        ("/v1/fine_tuning/jobs/{job_id}/events", "get", "200"): "ListPage_JobEvent_",
        ("/v1/datasets/{dataset_id}/stats", "get", "200"): "DatasetStats",
        ("/v1/datasets/{dataset_id}/samples", "get", "200"): "ListPage_Sample_",
    }
    for (path, method, status), schema in answers.items():
        content = _answer(document, paths[path][method]["responses"][status])["content"]["application/json"]
        assert content["schema"] == {"$ref": f"#/components/schemas/{schema}"}, (path, method)


def _answer(document: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """A response object, the shared one a `$ref` names followed."""
    ref = response.get("$ref")
    return document["components"]["responses"][ref.removeprefix("#/components/responses/")] if ref else response


def test_an_answer_several_routes_give_is_written_once(document: dict[str, Any]) -> None:
    operations = [operation for item in document["paths"].values() for operation in item.values()]
    # The validation error of every route that takes input: one object, each route pointing at it.
    assert {operation["responses"]["422"]["$ref"] for operation in operations if "422" in operation["responses"]} == {
        "#/components/responses/HTTPValidationError"
    }
    # What stays inline is each operation's own answer: no two models' answers alike.
    inline = [
        json.dumps(response, sort_keys=True)
        for operation in operations
        for response in operation["responses"].values()
        if "$ref" in response.get("content", {}).get("application/json", {}).get("schema", {})
    ]
    assert inline and len(inline) == len(set(inline))


def test_an_answer_one_route_gives_stays_inline_and_the_apps_keep_their_documents() -> None:
    class Thing(BaseModel):
        a: int

    class Other(BaseModel):
        b: str

    app = _app("training", "/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs/{job_id}", shape=Thing)
    app.add_api_route("/v1/fine_tuning/gpus", lambda: {}, methods=["GET"], response_model=Other)
    before = json.dumps(app.openapi(), sort_keys=True)
    document = public_openapi({"training": app})
    responses = {path: item["get"]["responses"]["200"] for path, item in document["paths"].items()}
    assert (
        responses["/v1/fine_tuning/jobs"]
        == responses["/v1/fine_tuning/jobs/{job_id}"]
        == {"$ref": "#/components/responses/Thing"}
    )
    assert _answer(document, responses["/v1/fine_tuning/jobs"])["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Thing"
    }
    assert responses["/v1/fine_tuning/gpus"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Other"
    }
    assert set(document["components"]["responses"]) == {"Thing"}
    # The document is built from copies: the app's own, which it caches, is as FastAPI wrote it.
    assert json.dumps(app.openapi(), sort_keys=True) == before


def test_a_field_with_a_default_is_required_in_answers(document: dict[str, Any]) -> None:
    # FastAPI sends whole models, so the UI may rely on `status` being there (ApiModel's config).
    schemas = document["components"]["schemas"]
    assert {"status", "hyperparameters", "created_at", "error"} <= set(schemas["Job"]["required"])
    # The same model in a request keeps its defaults optional.
    assert "required" not in schemas["Hyperparameters-Input"]
