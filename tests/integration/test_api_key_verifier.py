"""The gateway's API key lookup against the real Firestore emulator, with a controlled clock."""

from __future__ import annotations

import uuid

import pytest

from runtune.adapters.firestore import FirestoreMetadataStore
from runtune.api_keys import ApiKeyVerifier, api_keys, key_hash, new_secret
from runtune.errors import Unauthenticated
from runtune.schemas.api_keys import ApiKey

pytestmark = pytest.mark.emulators


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(emulators) -> FirestoreMetadataStore:
    return FirestoreMetadataStore.for_project(emulators.project_id)


def _issue(store: FirestoreMetadataStore, *, scopes: list[str], expires_at: int | None = None) -> tuple[str, ApiKey]:
    secret = new_secret()
    key = ApiKey(
        id=f"key-{uuid.uuid4().hex[:12]}",
        owner=f"user-{uuid.uuid4().hex[:8]}",
        name="ci",
        prefix=secret[:9],
        scopes=scopes,  # type: ignore[arg-type]
        created_at=1_800_000_000,
        expires_at=expires_at,
        key_hash=key_hash(secret),
        owner_email="ada@example.com",
        owner_email_verified=True,
    )
    api_keys(store).create(key)
    return secret, key


def test_a_revoked_key_stops_working_within_the_cache_bound(store: FirestoreMetadataStore) -> None:
    clock = Clock()
    verifier = ApiKeyVerifier(lambda: store, cache_s=10, touch_every_s=300, clock=clock)
    secret, key = _issue(store, scopes=["full"])

    identity = verifier.verify(secret)
    assert (identity.uid, identity.method, identity.read_only) == (key.owner, "api_key", False)
    # The sign-up policy judges a key call by its creator's verified email, like the creating session.
    assert (identity.email, identity.email_verified) == ("ada@example.com", True)
    assert verifier.cached(secret) == identity

    api_keys(store).delete(key.id)  # revoked through another gateway instance
    clock.now += 5
    assert verifier.verify(secret).uid == key.owner  # still inside the bound: no read per request
    clock.now += 5
    assert verifier.cached(secret) is None
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(secret)
    assert refused.value.code == "invalid_api_key"


def test_revoked_through_this_instance_is_forgotten_at_once(store: FirestoreMetadataStore) -> None:
    verifier = ApiKeyVerifier(lambda: store, cache_s=60, clock=Clock())
    secret, key = _issue(store, scopes=["full"])
    verifier.verify(secret)
    api_keys(store).delete(key.id)
    verifier.forget(key.id)
    with pytest.raises(Unauthenticated):
        verifier.verify(secret)


def test_an_expired_key_is_refused_and_read_only_is_carried(store: FirestoreMetadataStore) -> None:
    clock = Clock()
    verifier = ApiKeyVerifier(lambda: store, cache_s=10, clock=clock)
    secret, key = _issue(store, scopes=["read_only"], expires_at=int(clock.now) + 3)
    identity = verifier.verify(secret)
    assert identity.read_only and identity.expires_at == clock.now + 3
    clock.now += 3
    assert verifier.cached(secret) is None
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(secret)
    assert refused.value.code == "expired_api_key" and key.prefix in refused.value.message


def test_last_used_is_written_at_most_once_per_interval(store: FirestoreMetadataStore) -> None:
    clock = Clock()
    verifier = ApiKeyVerifier(lambda: store, cache_s=0, touch_every_s=300, clock=clock)
    secret, key = _issue(store, scopes=["full"])
    verifier.verify(secret)
    first = api_keys(store).get(key.id)
    assert first is not None and first.last_used_at == int(clock.now)
    clock.now += 100
    verifier.verify(secret)  # a lookup (cache_s=0) but no write: inside the touch interval
    assert api_keys(store).get(key.id).last_used_at == first.last_used_at  # type: ignore[union-attr]
    clock.now += 200
    verifier.verify(secret)
    assert api_keys(store).get(key.id).last_used_at == int(clock.now)  # type: ignore[union-attr]
