"""The gateway's internal credential, as the services verify it in both profiles."""

import time
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from runtune.errors import Unauthenticated
from runtune.internal_auth import GoogleIdTokenVerifier, LocalTokenMinter, LocalTokenVerifier, token_sha256
from tests.support import cert_server, key_and_cert

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
