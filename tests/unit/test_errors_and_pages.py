from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from runtune.api.errors import install_error_handlers
from runtune.errors import not_found
from runtune.schemas import Job, ListPage
from runtune.schemas.jobs import CreateJobRequest


class Body(BaseModel):
    name: str
    n_epochs: int = Field(ge=1, le=50)


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/things")
    def create(body: Body) -> dict[str, str]:
        return {"name": body.name}

    @app.post("/jobs")
    def create_job(body: CreateJobRequest) -> dict[str, str]:
        return {"model": body.model}

    @app.get("/things/{thing_id}")
    def get(thing_id: str) -> None:
        raise not_found("thing", thing_id)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    return app


def test_validation_error_is_an_envelope_naming_the_field() -> None:
    client = TestClient(_app())
    response = client.post("/things", json={"name": "x", "n_epochs": 0})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "n_epochs"
    assert error["type"] == "invalid_request_error"
    assert "n_epochs" in error["message"]


def test_validation_error_lists_every_problem_once_per_field() -> None:
    import httpx
    import openai

    client = TestClient(_app())
    hyperparameters = {"n_epochs": 0, "batch_size": -1}
    supervised = {"hyperparameters": hyperparameters, "runtune": {"lora": {"rank": 9999}}}
    body = {"model": "m", "training_file": "file-1", "method": {"type": "supervised", "supervised": supervised}}
    response = client.post("/jobs", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    prefix = "method.supervised."
    # A union field (`int | "auto"`) fails once per member: one problem per field, the first reason.
    assert error["problems"] == [
        {"param": prefix + "hyperparameters.n_epochs", "message": "Input should be greater than or equal to 1"},
        {"param": prefix + "hyperparameters.batch_size", "message": "Input should be greater than or equal to 1"},
        {"param": prefix + "runtune.lora.rank", "message": "Input should be less than or equal to 256"},
    ]
    # The envelope the SDKs parse is unchanged: the first field, and a count of the others.
    assert error["param"] == prefix + "hyperparameters.n_epochs"
    assert error["message"].endswith("(and 2 more problems)")
    raw = httpx.Response(400, json=response.json(), request=httpx.Request("POST", "http://api/jobs"))
    sdk_error = openai.BadRequestError(error["message"], response=raw, body=error)
    assert sdk_error.param == error["param"] and sdk_error.code == "invalid_value"


def test_malformed_json_is_a_400_envelope() -> None:
    client = TestClient(_app())
    response = client.post("/things", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_not_found_and_unknown_routes_use_the_envelope() -> None:
    client = TestClient(_app())
    missing = client.get("/things/abc")
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "message": "No thing with id 'abc'",
        "type": "invalid_request_error",
        "param": "id",
        "code": "not_found",
    }
    assert client.get("/nowhere").json()["error"]["code"] == "not_found"


def test_unexpected_errors_hide_their_details() -> None:
    client = TestClient(_app(), raise_server_exceptions=False)
    response = client.get("/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert response.json()["error"]["type"] == "server_error"


def test_list_page_from_overfetch() -> None:
    items = [f"id-{i}" for i in range(4)]
    page = ListPage[str].from_overfetch(items, 3, id_of=lambda item: item)
    assert page.data == ["id-0", "id-1", "id-2"]
    assert page.has_more is True
    assert (page.first_id, page.last_id) == ("id-0", "id-2")
    last = ListPage[str].from_overfetch(items[3:], 3, id_of=lambda item: item)
    assert last.has_more is False


def test_owner_is_stored_but_never_serialised() -> None:
    job = Job(id="ftjob-1", owner="uid-a", model="tiny-gemma-3-text", training_file="ds-1")
    assert "owner" not in job.model_dump()
    assert job.to_document()["owner"] == "uid-a"
    assert Job.model_validate(job.to_document()).owner == "uid-a"


def test_union_members_do_not_leak_into_param() -> None:
    from runtune.schemas.jobs import CreateJobRequest

    app = FastAPI()
    install_error_handlers(app)

    @app.post("/jobs")
    def create(body: CreateJobRequest) -> dict[str, str]:
        return {}

    bad = {"model": "m", "training_file": "f", "method": {"supervised": {"hyperparameters": {"n_epochs": 0}}}}
    response = TestClient(app).post("/jobs", json=bad)
    assert response.json()["error"]["param"] == "method.supervised.hyperparameters.n_epochs"
