"""Fuzzing every service's API through the gateway, as a signed-in user (schemathesis + Hypothesis).

Each operation of the three services' OpenAPI documents that the gateway routes to its service gets
requests generated from its schema, valid ones and ones that break it (wrong types, missing fields,
odd path ids), sent through the gateway of the local platform with a real ID token. Nothing may
answer 5xx, and every 4xx must be the error envelope `{"error": {"message", "type", "param", "code"}}`.

Bounded and repeatable: a few examples per operation, derandomized (the same requests every run),
no shrinking, no example database, one account per operation (so the per-user rate limit, not the
test, decides nothing). A failure prints the request as a curl command.
"""

from __future__ import annotations

import re
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation

from scripts.openapi import is_public, service_apps
from tests.datasets.builders import chat_line
from tests.datasets.client import api, ingest
from tests.support import sign_up

pytestmark = pytest.mark.platform

EXAMPLES_PER_OPERATION = 10
REQUEST_TIMEOUT_S = 60
ENVELOPE_FIELDS = {"message", "type", "param", "code"}


def _operations() -> list[tuple[str, APIOperation]]:
    """(service, operation) for every operation the gateway routes to the service that defines it."""
    found = []
    for service, app in service_apps().items():
        schema = schemathesis.openapi.from_dict(app.openapi())
        for result in schema.get_all_operations():
            operation = result.ok()
            # `/v1/me` is served by every service, reached through the gateway only on training's.
            if is_public(operation.path, service):
                found.append((service, operation))
    return found


OPERATIONS = _operations()
# The path parameters the `owner` fixture has a real resource for.
OWNED_KINDS = {"file_id", "dataset_id", "upload_id"}


def test_every_service_is_fuzzed() -> None:
    assert {service for service, _ in OPERATIONS} == {"preprocessing", "training", "inference"}
    assert len(OPERATIONS) >= 40, [operation.label for _, operation in OPERATIONS]


@pytest.fixture(scope="module")
def owner(platform) -> dict[str, Any]:
    """An account that owns a ready dataset and an open upload, so that operations on one resource
    are fuzzed on a real one too (query, body and headers generated), not only on ids that do not
    exist."""
    account = sign_up(platform.auth_host)
    with api(platform.gateway_url, account["id_token"]) as client:
        lines = [chat_line(f"question {i}?", f"answer {i}") for i in range(12)]
        dataset = ingest(client, "fuzz.jsonl", "\n".join(lines).encode())
        assert dataset["status"] == "ready", dataset
        upload = client.post("/v1/uploads", json={"filename": "later.jsonl", "bytes": 100})
        assert upload.status_code == 200, upload.text
    ids = {"file_id": dataset["id"], "dataset_id": dataset["id"], "upload_id": upload.json()["id"]}
    return {"token": account["id_token"], "ids": ids}


def _owned_parameters(operation: APIOperation) -> list[str]:
    """The operation's path parameters that name a kind of resource the owner has; none for a
    DELETE, which would take it away from the operations fuzzed after it."""
    if operation.method.upper() == "DELETE":
        return []
    return [name for name in re.findall(r"\{(\w+)\}", operation.path) if name in OWNED_KINDS]


def _envelope_problem(response: requests.Response) -> str | None:
    try:
        body: Any = response.json()
    except ValueError:
        return f"the body is not JSON: {response.text[:300]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    # A validation error adds `problems` (every field's problem); the envelope's own fields stay.
    if set(body) != {"error"} or not isinstance(error, dict) or set(error) - {"problems"} != ENVELOPE_FIELDS:
        return f"the body is not the error envelope: {str(body)[:300]}"
    problems = error.get("problems", [])
    if not (isinstance(problems, list) and all(set(p) == {"param", "message"} for p in problems)):
        return f"the envelope's problems are not [{{param, message}}]: {problems}"
    if not (isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str)):
        return f"the envelope has no message or type: {error}"
    return None


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("service", "operation"), OPERATIONS, ids=[op.label for _, op in OPERATIONS])
def test_no_5xx_and_every_4xx_is_the_envelope(
    platform, request: pytest.FixtureRequest, service: str, operation: APIOperation
) -> None:
    strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    if owned := _owned_parameters(operation):
        # The owner's few requests (a handful of operations) stay far below the rate limit.
        owner = request.getfixturevalue("owner")
        token = owner["token"]
        ids = {name: owner["ids"][name] for name in owned}
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=ids))
    else:
        # An account per operation: the per-user rate limit never decides an outcome.
        token = sign_up(platform.auth_host)["id_token"]
    headers = {"authorization": f"Bearer {token}"}
    cases = st.one_of(*strategies)

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=cases)
    def fuzz(case: schemathesis.Case) -> None:
        with requests.Session() as session:
            response = case.call(
                base_url=platform.gateway_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT_S
            )
        statuses.append(response.status_code)
        request = case.as_curl_command(headers=headers)
        assert response.status_code < 500, f"{response.status_code} {response.text[:500]}\n{request}"
        if response.status_code >= 400:
            problem = _envelope_problem(response)
            assert problem is None, f"{response.status_code}: {problem}\n{request}"

    statuses: list[int] = []
    fuzz()
    print(operation.label, sorted(statuses))
    # The requests reached the service as the user: not all stopped at the gateway's checks.
    assert set(statuses) - {401, 403, 429}, statuses
