"""Malformed ids and cursors, through the gateway with a real user: a 404 or a 400 naming the cursor,
never a 500, and ids Firestore reserves never reach the store (runtune/schemas/common.is_resource_id)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.jobs_support import put_dataset
from tests.support import sign_up

pytestmark = pytest.mark.platform

MODEL = "tiny-gemma-3-vision"
# As a client sends them: the service decodes `%2e%2e` to `..`, `%C2%B2` to '²' (a Unicode digit).
BAD_IDS = ["%2e%2e", "%2E", "__x__", "__name__", "a" * 1501, "%C2%B2", "1%C2%B2", "a%2Fb", "a%00b"]
BAD_CURSORS = ["__x__", "%2e%2e", "%2E", "a" * 1501, "%C2%B2", "a%2Fb"]


def _envelope(response: httpx.Response) -> dict:
    error = response.json()["error"]
    assert set(error) - {"problems"} == {"message", "type", "param", "code"}, error  # problems: a 400 of validation
    return error


@pytest.fixture(scope="module")
def user(platform) -> dict[str, str]:
    return sign_up(platform.auth_host)


@pytest.fixture(scope="module")
def client(platform, user) -> httpx.Client:
    with httpx.Client(
        base_url=platform.gateway_url, headers={"authorization": f"Bearer {user['id_token']}"}, timeout=60
    ) as client:
        yield client


@pytest.fixture
def newcomer(platform) -> httpx.Client:
    """A user of their own per test: the id tests send many requests, more than one user's burst."""
    token = sign_up(platform.auth_host)["id_token"]
    with httpx.Client(base_url=platform.gateway_url, headers={"authorization": f"Bearer {token}"}, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def dataset_id(platform, user) -> str:
    return put_dataset(platform, user["uid"])


@pytest.fixture(scope="module")
def job_id(client, dataset_id) -> str:
    created = client.post(
        "/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": dataset_id, "metadata": {"script": "succeed"}}
    )
    assert created.status_code == 200, created.text
    return created.json()["id"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda bad: bad[:12])
def test_a_malformed_id_in_a_path_is_a_404_in_every_service(newcomer, bad) -> None:
    for method, path in [
        ("GET", f"/v1/datasets/{bad}"),
        ("GET", f"/v1/datasets/{bad}/samples"),
        ("GET", f"/v1/datasets/{bad}/stats"),
        ("DELETE", f"/v1/datasets/{bad}"),
        ("GET", f"/v1/files/{bad}"),
        ("GET", f"/v1/files/{bad}/content"),
        ("DELETE", f"/v1/files/{bad}"),
        ("GET", f"/v1/uploads/{bad}"),
        ("POST", f"/v1/uploads/{bad}/complete"),
        ("GET", f"/v1/fine_tuning/jobs/{bad}"),
        ("POST", f"/v1/fine_tuning/jobs/{bad}/cancel"),
        ("GET", f"/v1/fine_tuning/jobs/{bad}/events"),
        ("GET", f"/v1/fine_tuning/jobs/{bad}/checkpoints"),
        ("GET", f"/v1/evaluations/{bad}"),
        ("GET", f"/v1/evaluations/{bad}/predictions"),
        ("GET", f"/v1/exports/{bad}"),
        ("GET", f"/v1/vibe_checks/{bad}"),
        ("GET", f"/v1/models/ft:{MODEL}:{bad}"),
        ("DELETE", f"/v1/models/ft:{MODEL}:{bad}"),
    ]:
        response = newcomer.request(method, path)
        assert response.status_code == 404, (method, path[:80], response.status_code, response.text[:300])
        _envelope(response)


@pytest.mark.parametrize("bad", ["..", ".", "__x__", "__name__", "²", "a/b"])
def test_a_malformed_id_in_a_body_is_a_404(newcomer, bad) -> None:
    for path, body in [
        ("/v1/datasets", {"upload_id": bad}),
        ("/v1/fine_tuning/jobs", {"model": MODEL, "training_file": bad}),
        ("/v1/evaluations", {"dataset_id": bad, "models": [MODEL]}),
        ("/v1/exports", {"model": f"ft:{MODEL}:{bad}"}),
        ("/v1/chat/completions", {"model": f"ft:{MODEL}:{bad}", "messages": [{"role": "user", "content": "hi"}]}),
    ]:
        response = newcomer.post(path, json=body)
        assert response.status_code == 404, (path, bad, response.status_code, response.text[:300])
        _envelope(response)


@pytest.mark.parametrize("bad", BAD_CURSORS, ids=lambda bad: bad[:12])
def test_a_malformed_list_cursor_is_a_400_naming_it(client, job_id, bad) -> None:
    for path in [
        "/v1/datasets",
        "/v1/files",
        "/v1/uploads",
        "/v1/fine_tuning/jobs",
        f"/v1/fine_tuning/jobs/{job_id}/events",
        f"/v1/fine_tuning/jobs/{job_id}/checkpoints",
        "/v1/evaluations",
        "/v1/exports",
        "/v1/vibe_checks",
    ]:
        response = client.get(f"{path}?after={bad}")
        assert response.status_code == 400, (path, bad[:12], response.status_code, response.text[:300])
        assert _envelope(response)["param"] == "after"


def test_sample_and_event_cursors_with_unicode_digits_are_400s(client, dataset_id, job_id) -> None:
    # str.isdigit() accepts '²' and int() refuses it: these were 500s.
    for path in [
        f"/v1/datasets/{dataset_id}/samples?split=train&after=train-%C2%B2",
        f"/v1/datasets/{dataset_id}/samples?split=train&after=train-1%D9%A3",  # an Arabic-Indic three
        f"/v1/fine_tuning/jobs/{job_id}/events?after=ftevent-x-%C2%B2",
        f"/v1/fine_tuning/jobs/{job_id}/events?after=ftevent-x-1%D9%A3",
    ]:
        response = client.get(path)
        assert response.status_code == 400, (path, response.status_code, response.text[:300])
        assert _envelope(response)["param"] == "after"
    # The SSE resume header goes through the same parsing.
    response = client.get(
        f"/v1/fine_tuning/jobs/{job_id}/events",
        headers={"accept": "text/event-stream", "last-event-id": b"ftevent-x-\xb2"},
    )
    assert response.status_code == 400, response.text[:300]
    assert _envelope(response)["param"] == "Last-Event-ID"
