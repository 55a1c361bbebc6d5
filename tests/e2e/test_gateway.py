"""The gateway end to end: real processes, tokens minted by the Auth emulator."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.support import expired, retoken, sign_up

pytestmark = pytest.mark.platform


def _envelope(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) - {"problems"} == {"message", "type", "param", "code"}  # problems: a 400 of validation
    return body["error"]


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_healthz_needs_no_token(platform) -> None:
    assert httpx.get(f"{platform.gateway_url}/healthz").json()["status"] == "ok"


def test_me_returns_the_token_identity(platform, account) -> None:
    response = httpx.get(f"{platform.gateway_url}/v1/me", headers=_auth(account["id_token"]))
    assert response.status_code == 200
    assert response.json() == {"object": "user", "id": account["uid"], "email": account["email"]}
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_token"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "missing_token"),
        ({"authorization": "Bearer not-a-token"}, "invalid_token"),
    ],
    ids=["missing", "wrong-scheme", "malformed"],
)
def test_requests_without_a_valid_token_get_401(platform, headers, code) -> None:
    response = httpx.get(f"{platform.gateway_url}/v1/me", headers=headers)
    assert response.status_code == 401
    error = _envelope(response)
    assert (error["type"], error["code"]) == ("authentication_error", code)


def test_forged_and_expired_tokens_get_401(platform, account) -> None:
    forged = retoken(account["id_token"], sub="attacker-made-up", user_id="attacker-made-up")
    for token, code in ((forged, "invalid_token"), (expired(account["id_token"]), "token_expired")):
        response = httpx.get(f"{platform.gateway_url}/v1/me", headers=_auth(token))
        assert response.status_code == 401
        assert _envelope(response)["code"] == code


def test_client_sent_identity_headers_are_ignored(platform, account) -> None:
    response = httpx.get(
        f"{platform.gateway_url}/v1/me",
        headers=_auth(account["id_token"]) | {"x-user-id": "someone-else", "x-user-email": "evil@example.com"},
    )
    assert response.json()["id"] == account["uid"]
    assert response.json()["email"] == account["email"]


def test_stand_in_service_sees_only_gateway_identity(platform, account) -> None:
    response = httpx.get(
        f"{platform.test_gateway_url}/v1/datasets/echo-headers",
        headers=_auth(account["id_token"]) | {"x-user-id": "someone-else", "X-User-Id": "again"},
    )
    assert response.status_code == 200
    headers = response.json()["headers"]
    assert headers["x-user-id"] == account["uid"]
    # The user's Firebase token never reaches a service: only the gateway's own credential does.
    assert account["id_token"] not in headers["authorization"]


def test_forwarding_and_serverless_headers_never_reach_a_service(platform, account) -> None:
    spoofed = {
        "forwarded": "for=10.0.0.1;host=runtune-training.internal",
        "x-forwarded-for": "10.0.0.1",
        "x-forwarded-host": "runtune-training.internal",
        "x-forwarded-proto": "http",
        "x-real-ip": "127.0.0.1",
        "x-serverless-authorization": "Bearer stolen",
        "x-user-role": "admin",
        "x-goog-authenticated-user-email": "accounts.google.com:evil@example.com",
    }
    response = httpx.get(
        f"{platform.test_gateway_url}/v1/datasets/echo-headers", headers=_auth(account["id_token"]) | spoofed
    )
    assert response.status_code == 200, response.text
    seen = response.json()["headers"]
    assert not set(spoofed) & set(seen), seen
    assert not [name for name in seen if name.startswith(("x-forwarded-", "x-goog-"))], seen


@pytest.mark.parametrize(("change", "code"), [("disable", "user_disabled"), ("revoke", "token_revoked")])
def test_a_disabled_or_revoked_user_is_refused_after_the_token_cache_bound(
    platform, monkeypatch, change: str, code: str
) -> None:
    import firebase_admin
    from firebase_admin import auth

    for name, value in platform.emulator_env.items():
        monkeypatch.setenv(name, value)
    try:
        admin = firebase_admin.get_app("e2e-admin")
    except ValueError:
        admin = firebase_admin.initialize_app(options={"projectId": platform.project_id}, name="e2e-admin")
    user = sign_up(platform.auth_host)
    url = f"{platform.test_gateway_url}/v1/datasets/echo-headers"  # the stand-in gateway caches for 1 s
    assert httpx.get(url, headers=_auth(user["id_token"])).status_code == 200
    # Past the bound; and revocation is compared in whole seconds with the token's `iat`.
    time.sleep(1.2)
    if change == "disable":
        auth.update_user(user["uid"], disabled=True, app=admin)
    else:
        auth.revoke_refresh_tokens(user["uid"], app=admin)
    response = httpx.get(url, headers=_auth(user["id_token"]))
    assert response.status_code == 401
    error = _envelope(response)
    assert (error["type"], error["code"]) == ("authentication_error", code)


@pytest.mark.parametrize("service", ["preprocessing", "training", "inference"])
def test_services_refuse_calls_that_bypass_the_gateway(platform, account, service) -> None:
    url = platform.services[service]
    assert httpx.get(f"{url}/healthz").status_code == 200
    for headers in (
        {"x-user-id": account["uid"]},
        _auth(account["id_token"]) | {"x-user-id": account["uid"]},
        {"authorization": "Bearer guessed", "x-user-id": account["uid"]},
    ):
        response = httpx.get(f"{url}/v1/me", headers=headers)
        assert response.status_code == 401
        assert _envelope(response)["code"] == "not_gateway"


def test_unknown_path_is_a_404_envelope(platform, account) -> None:
    response = httpx.get(f"{platform.gateway_url}/v1/nothing-here", headers=_auth(account["id_token"]))
    assert response.status_code == 404
    assert _envelope(response)["code"] == "unknown_path"


def test_rate_limit_answers_429_with_retry_after(platform) -> None:
    # The stand-in gateway runs with a burst of 20 requests and 60 a minute.
    account = sign_up(platform.auth_host)
    statuses = []
    with httpx.Client(headers=_auth(account["id_token"])) as client:
        for _ in range(30):
            response = client.get(f"{platform.test_gateway_url}/v1/datasets/echo-headers")
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                assert _envelope(response)["type"] == "rate_limit_error"
                break
    assert statuses[:20] == [200] * 20
    assert statuses[-1] == 429
    # Other users are not affected.
    other = sign_up(platform.auth_host)
    assert (
        httpx.get(f"{platform.test_gateway_url}/v1/datasets/echo-headers", headers=_auth(other["id_token"])).status_code
        == 200
    )


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not found")


def test_200_mb_upload_streams_through_with_flat_memory(platform, account) -> None:
    size = 200 * 1024 * 1024
    chunk = b"\xab" * (1024 * 1024)

    def body():
        for _ in range(size // len(chunk)):
            yield chunk

    pid = platform.test_gateway_pid
    before = _rss_kib(pid)
    response = httpx.post(
        f"{platform.test_gateway_url}/v1/datasets/upload-sink",
        content=body(),
        headers=_auth(account["id_token"]) | {"content-length": str(size), "content-type": "application/octet-stream"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == size
    assert response.json()["chunks"] > 10  # it arrived in pieces, not as one buffered body
    grew_mib = (_rss_kib(pid, "VmHWM") - before) / 1024
    assert grew_mib < 64, f"gateway memory grew {grew_mib:.0f} MiB for a 200 MiB upload"


def test_sse_is_relayed_event_by_event(platform, account) -> None:
    arrivals: list[tuple[float, dict]] = []
    with httpx.stream(
        "GET",
        f"{platform.test_gateway_url}/v1/datasets/sse?n=5&gap=0.3",
        headers=_auth(account["id_token"]),
        timeout=30,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.time(), json.loads(line[6:])))
    assert [event["i"] for _, event in arrivals] == [0, 1, 2, 3, 4]
    # Each event arrives when it is sent, not when the stream ends: the first one is in the
    # client's hands before the service has even produced the last.
    first_received = arrivals[0][0]
    last_produced = arrivals[-1][1]["t"]
    assert first_received < last_produced - 0.5
    assert arrivals[-1][0] - arrivals[0][0] > 1.0


def test_cors_preflight_allows_only_the_ui_origin(platform) -> None:
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "authorization"}
    allowed = httpx.options(
        f"{platform.gateway_url}/v1/datasets", headers={"origin": "http://localhost:5173", **preflight}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:5173"
    refused = httpx.options(
        f"{platform.gateway_url}/v1/datasets", headers={"origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in refused.headers


def test_non_api_paths_answer_with_the_envelope(platform) -> None:
    # Page paths belong to the web UI (its deep links); a missing file is a 404 with the envelope.
    response = httpx.get(f"{platform.gateway_url}/no-such-file.js")
    assert response.status_code == 404
    assert _envelope(response)["code"] == "not_found"
    response = httpx.delete(f"{platform.gateway_url}/healthz")
    assert response.status_code == 405
    assert _envelope(response)["code"] == "method_not_allowed"


def test_paths_and_queries_are_forwarded_as_encoded(platform, account) -> None:
    response = httpx.get(
        f"{platform.test_gateway_url}/v1/datasets/echo-headers?q=a%20b&x=%2F",
        headers=_auth(account["id_token"]),
    )
    assert response.status_code == 200
    assert len(response.headers.get_list("date")) == 1
    odd = httpx.put(
        f"{platform.gateway_url}/v1/secrets/Bad Name!", json={"value": "x"}, headers=_auth(account["id_token"])
    )
    assert odd.status_code == 400
    assert _envelope(odd)["param"] == "name"
