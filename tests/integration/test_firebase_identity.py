"""Firebase ID token verification: against the Auth emulator, and with real RS256 signatures."""

import time
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from firebase_admin import credentials as firebase_credentials
from google.auth.credentials import AnonymousCredentials

from runtune.adapters.firebase_identity import FirebaseIdentityVerifier
from runtune.errors import Unauthenticated
from tests.support import cert_server, expired, key_and_cert, retoken, sign_up

pytestmark = pytest.mark.emulators


@pytest.fixture(scope="module")
def verifier(emulators) -> FirebaseIdentityVerifier:
    return FirebaseIdentityVerifier(emulators.project_id, app_name="test-emulator")


def test_emulator_token_verifies_and_is_cached(emulators, verifier: FirebaseIdentityVerifier) -> None:
    account = sign_up(emulators.auth_host)
    identity = verifier.verify(account["id_token"])
    assert identity.uid == account["uid"]
    assert identity.email == account["email"]
    assert identity.expires_at > time.time()
    assert verifier.cached(account["id_token"]) == identity


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (lambda t: retoken(t, sub="no-such-user", user_id="no-such-user"), "invalid_token"),
        (lambda t: retoken(t, aud="demo-other-project"), "invalid_token"),
        (lambda t: retoken(t, iss="https://securetoken.google.com/demo-other-project"), "invalid_token"),
        (expired, "token_expired"),
        (lambda t: t[: len(t) // 2], "invalid_token"),
        (lambda t: "not-a-jwt", "invalid_token"),
    ],
    ids=["unknown-user", "wrong-audience", "wrong-issuer", "expired", "truncated", "garbage"],
)
def test_bad_emulator_tokens_are_refused(emulators, verifier: FirebaseIdentityVerifier, tamper, code: str) -> None:
    account = sign_up(emulators.auth_host)
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(tamper(account["id_token"]))
    assert info.value.code == code


def test_disabled_user_is_refused(emulators, verifier: FirebaseIdentityVerifier) -> None:
    from firebase_admin import auth

    account = sign_up(emulators.auth_host)
    auth.update_user(account["uid"], disabled=True, app=verifier._app)
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(account["id_token"])
    assert info.value.code == "user_disabled"


@pytest.mark.parametrize(("change", "code"), [("disable", "user_disabled"), ("revoke", "token_revoked")])
def test_a_disabled_or_revoked_user_is_refused_once_the_cache_bound_passed(emulators, change: str, code: str) -> None:
    from firebase_admin import auth

    bounded = FirebaseIdentityVerifier(emulators.project_id, app_name="test-emulator", cache_ttl_s=1.0)
    account = sign_up(emulators.auth_host)
    assert bounded.verify(account["id_token"]).uid == account["uid"]
    # Revocation is compared in whole seconds with the token's `iat`; sleeping also passes the bound.
    time.sleep(1.2)
    if change == "disable":
        auth.update_user(account["uid"], disabled=True, app=bounded._app)
    else:
        auth.revoke_refresh_tokens(account["uid"], app=bounded._app)
    assert bounded.cached(account["id_token"]) is None
    with pytest.raises(Unauthenticated) as info:
        bounded.verify(account["id_token"])
    assert info.value.code == code


def test_without_a_bound_short_of_expiry_a_disabled_user_would_keep_access(emulators) -> None:
    """What the bound is for: a cached identity is served without any look-up until it leaves the cache."""
    from firebase_admin import auth

    hour = FirebaseIdentityVerifier(emulators.project_id, app_name="test-emulator", cache_ttl_s=3600)
    account = sign_up(emulators.auth_host)
    hour.verify(account["id_token"])
    auth.update_user(account["uid"], disabled=True, app=hour._app)
    assert hour.cached(account["id_token"]) is not None
    uncached = FirebaseIdentityVerifier(emulators.project_id, app_name="test-emulator", cache_ttl_s=0)
    with pytest.raises(Unauthenticated):
        uncached.verify(account["id_token"])


# --- Signed tokens, as in the cloud (no emulator variable: signatures are checked) -----------


@pytest.fixture(scope="module")
def google_keys() -> Iterator[tuple[rsa.RSAPrivateKey, str]]:
    """A local stand-in for Google's public certificate endpoint, serving one key `k1`."""
    key, cert = key_and_cert("securetoken")
    with cert_server({"k1": cert}) as url:
        yield key, url


def _signed(key: rsa.RSAPrivateKey, project: str, **changes: object) -> str:
    now = int(time.time())
    claims = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "auth_time": now - 10,
        "iat": now - 10,
        "exp": now + 3600,
        "sub": "signed-user",
        "user_id": "signed-user",
        "email": "signed@example.com",
        "firebase": {"sign_in_provider": "password"},
    } | changes
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def cloud_verifier(monkeypatch: pytest.MonkeyPatch, google_keys) -> FirebaseIdentityVerifier:
    from firebase_admin import _token_gen

    # The only change from production: where the public certificates come from (no internet here).
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(_token_gen, "ID_TOKEN_CERT_URI", google_keys[1])
    return FirebaseIdentityVerifier(
        "acme-prod", check_revoked=False, app_name=f"cloud-{time.time_ns()}", credential=_NoCredential()
    )


class _NoCredential(firebase_credentials.Base):
    """Verifying a signature needs only Google's public certificates, no credential of ours."""

    def get_credential(self) -> AnonymousCredentials:
        return AnonymousCredentials()


def test_signed_token_verifies(cloud_verifier: FirebaseIdentityVerifier, google_keys) -> None:
    identity = cloud_verifier.verify(_signed(google_keys[0], "acme-prod"))
    assert (identity.uid, identity.email) == ("signed-user", "signed@example.com")


def test_forged_signature_is_refused(cloud_verifier: FirebaseIdentityVerifier) -> None:
    attacker_key, _ = key_and_cert("attacker")
    with pytest.raises(Unauthenticated):
        cloud_verifier.verify(_signed(attacker_key, "acme-prod"))


def test_tampered_signed_token_is_refused(cloud_verifier: FirebaseIdentityVerifier, google_keys) -> None:
    with pytest.raises(Unauthenticated):
        cloud_verifier.verify(retoken(_signed(google_keys[0], "acme-prod"), sub="someone-else"))


def test_expired_signed_token_is_refused(cloud_verifier: FirebaseIdentityVerifier, google_keys) -> None:
    now = int(time.time())
    token = _signed(google_keys[0], "acme-prod", iat=now - 7200, auth_time=now - 7200, exp=now - 3600)
    with pytest.raises(Unauthenticated) as info:
        cloud_verifier.verify(token)
    assert info.value.code == "token_expired"


def test_signed_token_of_another_project_is_refused(cloud_verifier: FirebaseIdentityVerifier, google_keys) -> None:
    with pytest.raises(Unauthenticated):
        cloud_verifier.verify(_signed(google_keys[0], "someone-elses-project"))


def test_unsigned_token_is_refused_outside_the_emulator(cloud_verifier: FirebaseIdentityVerifier, google_keys) -> None:
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    payload = _signed(google_keys[0], "acme-prod").split(".")[1]
    with pytest.raises(Unauthenticated):
        cloud_verifier.verify(f"{header}.{payload}.")
