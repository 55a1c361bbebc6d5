"""The gateway's internal credential, as the services verify it in both profiles."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import exceptions as google_auth_exceptions
from starlette.responses import JSONResponse

from runtune.api.service_app import GatewayOnlyMiddleware
from runtune.errors import Unauthenticated, UpstreamUnavailable
from runtune.internal_auth import (
    GoogleIdTokenMinter,
    GoogleIdTokenVerifier,
    LocalTokenMinter,
    LocalTokenVerifier,
    token_sha256,
)
from tests.support import cert_server, decode_claims, key_and_cert

GATEWAY_SA = "runtune-gateway@acme-prod.iam.gserviceaccount.com"
AUDIENCE = "https://runtune-training-abc-uc.a.run.app"


def test_local_token_round_trip_and_refusals() -> None:
    minter = LocalTokenMinter("s3cret-token")
    verifier = LocalTokenVerifier(token_sha256("s3cret-token"))
    verifier.verify(minter.authorization("http://127.0.0.1:8082"))
    for header in (None, "", "Bearer", "Bearer wrong", "Basic s3cret-token", "s3cret-token"):
        with pytest.raises(Unauthenticated):
            verifier.verify(header)


@pytest.fixture(scope="module")
def google() -> Iterator[tuple[rsa.RSAPrivateKey, str]]:
    key, cert = key_and_cert("google-oauth2")
    with cert_server({"g1": cert}) as url:
        yield key, url


def _id_token(key: rsa.RSAPrivateKey, **changes: object) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "sub": "1234567890",
        "email": GATEWAY_SA,
        "email_verified": True,
        "iat": now - 5,
        "exp": now + 3600,
    } | changes
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "g1"})


def test_google_id_token_of_the_gateway_is_accepted(google) -> None:
    key, url = google
    GoogleIdTokenVerifier(AUDIENCE, GATEWAY_SA, certs_url=url).verify(f"Bearer {_id_token(key)}")


@pytest.mark.parametrize(
    "changes",
    [
        {"email": "someone-else@acme-prod.iam.gserviceaccount.com"},
        {"email_verified": False},
        {"aud": "https://runtune-inference-abc-uc.a.run.app"},
        {"iss": "https://evil.example"},
        {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
    ],
    ids=["other-account", "unverified-email", "other-audience", "other-issuer", "expired"],
)
def test_other_google_id_tokens_are_refused(google, changes) -> None:
    key, url = google
    with pytest.raises(Unauthenticated):
        GoogleIdTokenVerifier(AUDIENCE, GATEWAY_SA, certs_url=url).verify(f"Bearer {_id_token(key, **changes)}")


def test_google_id_token_signed_by_another_key_is_refused(google) -> None:
    _, url = google
    attacker, _ = key_and_cert("attacker")
    with pytest.raises(Unauthenticated):
        GoogleIdTokenVerifier(AUDIENCE, GATEWAY_SA, certs_url=url).verify(f"Bearer {_id_token(attacker)}")


# --- Caching and the event loop --------------------------------------------------------------


class _CountingCertServer:
    """Google's certificate endpoint, counting its requests; with `gated`, each answer waits for
    `release` (a slow endpoint), and `requested` tells that a request has arrived."""

    def __init__(self, cert: str, *, gated: bool = False) -> None:
        self.hits = 0
        self.requested = threading.Event()
        self.release = threading.Event()
        if not gated:
            self.release.set()
        self._serving = cert_server(
            {"g1": cert}, cache_control="public, max-age=3600, must-revalidate", before_answer=self._arrived
        )

    def _arrived(self) -> None:
        self.hits += 1
        self.requested.set()
        # Bounded, so that a verifier blocking the event loop fails the test rather than hangs it.
        self.release.wait(30)

    def __enter__(self) -> _CountingCertServer:
        self.url = self._serving.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._serving.__exit__(None, None, None)


@pytest.fixture(scope="module")
def signing() -> tuple[rsa.RSAPrivateKey, str]:
    return key_and_cert("google-oauth2")


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_certificates_are_fetched_once_for_their_max_age(signing) -> None:
    key, cert = signing
    clock = _Clock()
    with _CountingCertServer(cert) as server:
        verifier = GoogleIdTokenVerifier(AUDIENCE, GATEWAY_SA, certs_url=server.url, clock=clock)
        for n in range(20):  # distinct tokens: each is a full verification, none a cache hit
            verifier.verify(f"Bearer {_id_token(key, sub=str(n))}")
        with pytest.raises(Unauthenticated):
            verifier.verify(f"Bearer {_id_token(key, aud='https://runtune-inference-abc-uc.a.run.app')}")
        assert server.hits == 1
        clock.now += 3601  # past the endpoint's max-age: fetched again
        verifier.verify(f"Bearer {_id_token(key, exp=int(clock.now) + 3600)}")
        assert server.hits == 2


def test_a_verified_token_is_kept_until_shortly_before_it_expires(signing) -> None:
    key, cert = signing
    clock = _Clock()
    token = _id_token(key)
    expires_at = decode_claims(token)["exp"]
    with _CountingCertServer(cert) as server:
        verifier = GoogleIdTokenVerifier(AUDIENCE, GATEWAY_SA, certs_url=server.url, clock=clock, cache_size=2)
        verifier.verify(f"Bearer {token}")
        verifier.verify(f"Bearer {token}")
        clock.now = expires_at + 1
        with pytest.raises(Unauthenticated):
            verifier.verify(f"Bearer {token}")  # known, but expired: refused
        # A wrong audience is refused however often it is shown: refusals are never cached.
        other = f"Bearer {_id_token(key, aud='https://runtune-inference-abc-uc.a.run.app')}"
        for _ in range(2):
            with pytest.raises(Unauthenticated):
                verifier.verify(other)


def test_verification_runs_off_the_event_loop(signing) -> None:
    """The certificate endpoint answers only after another coroutine has run: a verifier that blocked
    the event loop would get its answer only at the server's 30 s bound, after that coroutine."""
    key, cert = signing

    async def ok(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await JSONResponse({"ok": True})(scope, receive, send)

    with _CountingCertServer(cert, gated=True) as server:
        verifier = GoogleIdTokenVerifier(AUDIENCE, GATEWAY_SA, certs_url=server.url)
        app = GatewayOnlyMiddleware(ok, verifier)
        order: list[str] = []

        async def call(client: httpx.AsyncClient) -> None:
            response = await client.get("/v1/me", headers={"authorization": f"Bearer {_id_token(key)}"})
            order.append(f"response {response.status_code}")

        async def meanwhile() -> None:
            await anyio.to_thread.run_sync(server.requested.wait, 30)
            order.append("loop ran")
            server.release.set()

        async def main() -> None:
            transport = httpx.ASGITransport(app=app)
            async with (
                httpx.AsyncClient(transport=transport, base_url="http://svc") as client,
                anyio.create_task_group() as group,
            ):
                group.start_soon(call, client)
                group.start_soon(meanwhile)

        asyncio.run(main())
        assert order == ["loop ran", "response 200"]


class _FakeMetadata:
    """The metadata server's identity endpoint: a fresh token (an hour's `exp`) per call."""

    def __init__(self, clock: _Clock, *, gated: bool = False) -> None:
        self.clock = clock
        self.calls: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not gated:
            self.release.set()

    def __call__(self, audience: str) -> str:
        self.calls.append(audience)
        self.started.set()
        self.release.wait(30)
        claims = {"aud": audience, "exp": int(self.clock.now) + 3600, "n": len(self.calls)}
        return jwt.encode(claims, "unused-by-the-minter-" * 4, algorithm="HS256")


def test_minted_tokens_are_reused_until_five_minutes_before_they_expire() -> None:
    clock = _Clock()
    metadata = _FakeMetadata(clock)
    minter = GoogleIdTokenMinter(fetch=metadata, clock=clock)
    first = {minter.authorization(AUDIENCE) for _ in range(50)}
    assert len(first) == 1 and metadata.calls == [AUDIENCE]
    minter.authorization("https://runtune-inference-abc-uc.a.run.app")
    assert len(metadata.calls) == 2  # one token per audience
    clock.now += 3600 - 310
    assert minter.authorization(AUDIENCE) in first
    clock.now += 20  # within five minutes of `exp`: a new one
    assert minter.authorization(AUDIENCE) not in first
    assert metadata.calls == [AUDIENCE, "https://runtune-inference-abc-uc.a.run.app", AUDIENCE]


def test_minting_runs_off_the_event_loop_once_for_concurrent_callers() -> None:
    metadata = _FakeMetadata(_Clock(), gated=True)
    minter = GoogleIdTokenMinter(fetch=metadata)
    order: list[str] = []

    async def caller() -> None:
        await minter.authorization_async(AUDIENCE)
        order.append("minted")

    async def meanwhile() -> None:
        await anyio.to_thread.run_sync(metadata.started.wait, 30)
        order.append("loop ran")
        metadata.release.set()

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(caller)
            group.start_soon(meanwhile)

    asyncio.run(main())
    assert order == ["loop ran"] + ["minted"] * 10
    assert metadata.calls == [AUDIENCE]


def test_a_failed_mint_is_a_503_not_a_500() -> None:
    def broken(audience: str) -> str:
        raise google_auth_exceptions.TransportError("metadata server unreachable")

    with pytest.raises(UpstreamUnavailable):
        GoogleIdTokenMinter(fetch=broken).authorization(AUDIENCE)
