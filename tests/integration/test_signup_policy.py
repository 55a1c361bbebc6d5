"""The sign-up policy at the gateway, with accounts of the Auth emulator.

A gateway process runs with `RUNTUNE_SIGNUP_POLICY=domains` in front of the stand-in service: an
account of another domain, and an unverified one of the allowed domain, get a 403 envelope saying
why; a verified account of the allowed domain reaches the service as itself.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator

import httpx
import pytest
from firebase_admin import auth

from runtune.adapters.firebase_identity import FirebaseIdentityVerifier
from runtune.dev.platform import uvicorn_process
from runtune.dev.processes import free_port
from runtune.firebase_rest import FirebaseAuthRest
from runtune.internal_auth import token_sha256
from tests.support import sign_up

pytestmark = pytest.mark.emulators

ALLOWED = "allowed.example"
PASSWORD = "pa55word!"


@pytest.fixture(scope="module")
def gateway_url(emulators, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("signup-policy")
    token = secrets.token_urlsafe(32)
    env = {**emulators.env(), "RUNTUNE_LOCAL_DIR": str(folder)}
    upstream_port, gateway_port = free_port(), free_port()
    processes = [
        uvicorn_process(
            "stand-in-service",
            "tests.e2e.upstream_app:create_app",
            upstream_port,
            env | {"RUNTUNE_PORT": str(upstream_port), "RUNTUNE_INTERNAL_TOKEN_SHA256": token_sha256(token)},
            folder,
        ),
        uvicorn_process(
            "domains-gateway",
            "gateway.app:create_app",
            gateway_port,
            env
            | {
                "RUNTUNE_INTERNAL_TOKEN": token,
                "RUNTUNE_PREPROCESSING_URL": f"http://127.0.0.1:{upstream_port}",
                "RUNTUNE_SIGNUP_POLICY": "domains",
                "RUNTUNE_SIGNUP_ALLOWED_DOMAINS": json.dumps([ALLOWED]),
            },
            folder,
        ),
    ]
    try:
        for process in processes:
            process.start().wait_healthy(timeout_s=60)
        yield f"http://127.0.0.1:{gateway_port}"
    finally:
        for process in reversed(processes):
            process.stop()


@pytest.fixture(scope="module")
def verifier(emulators) -> FirebaseIdentityVerifier:
    return FirebaseIdentityVerifier(emulators.project_id, app_name="signup-policy-test")


def _account(emulators, verifier: FirebaseIdentityVerifier, domain: str, *, verified: bool) -> dict[str, str]:
    account = sign_up(emulators.auth_host, email=f"user-{uuid.uuid4().hex[:8]}@{domain}", password=PASSWORD)
    if verified:
        # Firebase puts `email_verified` in the tokens issued after the address is confirmed.
        auth.update_user(account["uid"], email_verified=True, app=verifier._app)
        firebase = FirebaseAuthRest("fake-api-key", emulator_host=emulators.auth_host)
        account["id_token"] = firebase.sign_in(account["email"], PASSWORD).id_token
    return account


def _echo(gateway_url: str, account: dict[str, str]) -> httpx.Response:
    headers = {"authorization": f"Bearer {account['id_token']}"}
    return httpx.get(f"{gateway_url}/v1/datasets/echo-headers", headers=headers, timeout=30)


def _refusal(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 403, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "permission_error"
    return body["error"]


def test_the_verified_claim_reaches_the_identity(emulators, verifier: FirebaseIdentityVerifier) -> None:
    unverified = _account(emulators, verifier, ALLOWED, verified=False)
    verified = _account(emulators, verifier, ALLOWED, verified=True)
    assert verifier.verify(unverified["id_token"]).email_verified is False
    assert verifier.verify(verified["id_token"]).email_verified is True


def test_an_account_of_another_domain_is_refused(emulators, verifier, gateway_url: str) -> None:
    account = _account(emulators, verifier, "elsewhere.example", verified=True)
    error = _refusal(_echo(gateway_url, account))
    assert error["code"] == "signup_domain_not_allowed"
    assert ALLOWED in error["message"] and account["email"] in error["message"]


def test_a_lookalike_domain_is_refused(emulators, verifier, gateway_url: str) -> None:
    for domain in (f"{ALLOWED}.attacker.example", f"sub.{ALLOWED}", f"x{ALLOWED}"):
        account = _account(emulators, verifier, domain, verified=True)
        assert _refusal(_echo(gateway_url, account))["code"] == "signup_domain_not_allowed", domain


def test_an_unverified_address_of_the_allowed_domain_is_refused(emulators, verifier, gateway_url: str) -> None:
    account = _account(emulators, verifier, ALLOWED, verified=False)
    error = _refusal(_echo(gateway_url, account))
    assert error["code"] == "email_not_verified"
    assert "verif" in error["message"]


def test_a_verified_address_of_the_allowed_domain_proceeds(emulators, verifier, gateway_url: str) -> None:
    account = _account(emulators, verifier, ALLOWED, verified=True)
    response = _echo(gateway_url, account)
    assert response.status_code == 200, response.text
    assert response.json()["uid"] == account["uid"]
