"""The public REST API's OpenAPI document, as the gateway exposes it: `python -m scripts.openapi [OUT]`.

Each private service describes its own routes (FastAPI's `app.openapi()`); the gateway forwards a path
to the service its route table names (`gateway/routes.py`). The document is their merge, keeping of
each service only the paths the gateway sends it, so a route no prefix reaches (the webhooks'
dispatcher, a second `/v1/me`) is not public. No server starts: the apps are built, never run.

`make openapi` writes `frontend/openapi.json` with it, and the web UI's types are generated from that
(`frontend/src/client/`). Outside the deployables on purpose: it imports all of them, and none of
them may import another (tests/infra/test_import_graph.py).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from gateway.routes import upstream_for
from runtune.settings import InferenceSettings, ServiceSettings
from services.inference.app import create_app as inference_app
from services.preprocessing.app import create_app as preprocessing_app
from services.training.app import create_app as training_app

OUT = Path(__file__).resolve().parent.parent / "frontend" / "openapi.json"
TITLE = "Runtune"
VERSION = "1"


def service_apps() -> dict[str, FastAPI]:
    """Each private service's app, under the name the route table gives it.

    The schema is a function of the code alone: the settings are built without reading the
    environment (`model_construct`), and the apps' lifespans, which would connect, never run.
    Building an app configures the process's logging for that service; the caller keeps its own."""
    token = {"internal_token_sha256": "0" * 64}
    root, access = logging.getLogger(), logging.getLogger("uvicorn.access")
    handlers, level, disabled = root.handlers[:], root.level, access.disabled
    try:
        return {
            "preprocessing": preprocessing_app(ServiceSettings.model_construct(**token)),
            "training": training_app(ServiceSettings.model_construct(**token)),
            "inference": inference_app(InferenceSettings.model_construct(**token)),
        }
    finally:
        root.handlers[:], access.disabled = handlers, disabled
        root.setLevel(level)


def is_public(path: str, service: str) -> bool:
    """Whether the gateway forwards `path` (an OpenAPI path, `{name}` for a parameter) to `service`."""
    return upstream_for(re.sub(r"\{[^}]+\}", "x", path)) == service


def _merge_schemas(into: dict[str, Any], schemas: dict[str, Any], service: str) -> None:
    for name, schema in schemas.items():
        # One definition per name: two services giving one name two shapes would make the client lie.
        if name in into and into[name] != schema:
            raise ValueError(f"schema {name!r} of the {service} service differs from another service's")
        into[name] = schema


def _schema_name(response: dict[str, Any]) -> str | None:
    """The components schema a response's JSON body is, when it is one (`{"$ref": ...}`)."""
    ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
    return ref.removeprefix("#/components/schemas/") if ref.startswith("#/components/schemas/") else None


def _share_responses(paths: dict[str, Any]) -> dict[str, Any]:
    """Moves each answer that several operations give alike (the validation error of nearly every
    route, one model's answer) into `components.responses`, named after its schema, the operations
    keeping a `$ref`: the document, and the TypeScript generated from it, write each answer once.

    An answer one operation alone gives stays inline; so does a schema whose answers differ (another
    description), which one name could not stand for."""
    places: dict[str, list[tuple[dict[str, Any], str]]] = defaultdict(list)
    for item in paths.values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if name := _schema_name(response):
                    places[name].append((operation["responses"], status))
    shared: dict[str, Any] = {}
    for name, uses in places.items():
        answers = [responses[status] for responses, status in uses]
        if len(uses) < 2 or any(answer != answers[0] for answer in answers):
            continue
        shared[name] = answers[0]
        for responses, status in uses:
            responses[status] = {"$ref": f"#/components/responses/{name}"}
    return shared


def public_openapi(apps: dict[str, FastAPI] | None = None) -> dict[str, Any]:
    """The merged document: every public path, from the service the gateway forwards it to."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for service, app in (apps or service_apps()).items():
        document = app.openapi()
        # A copy: the app caches its document, which stays as FastAPI wrote it.
        public = {path: copy.deepcopy(item) for path, item in document["paths"].items() if is_public(path, service)}
        paths.update(public)
        if public:
            _merge_schemas(schemas, document.get("components", {}).get("schemas", {}), service)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": paths,
        "components": {"responses": _share_responses(paths), "schemas": schemas},
    }


def render(document: dict[str, Any]) -> str:
    # Sorted keys and a final newline: the same routes always give the same bytes (a clean diff).
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else OUT
    out.write_text(render(public_openapi()))


if __name__ == "__main__":
    main(sys.argv[1:])
