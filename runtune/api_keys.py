"""API keys: long-lived, revocable bearer credentials for scripts, CI pipelines and other services.

A key is `rt-` and 43 url-safe characters (256 random bits). Only its SHA-256 is stored: for a
high-entropy secret a fast hash is as good as a slow one (nothing to brute-force), and it lets the
gateway find the key with one indexed equality query. The secret is shown once, in the create answer.

Written by the training service (`/v1/api_keys`), read by the gateway (`ApiKeyVerifier`), both in the
`api_keys` collection, one document per key, so revoking is deleting that one document.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from runtune.errors import Unauthenticated
from runtune.owned import OwnedCollection
from runtune.ports.identity import Identity
from runtune.ports.metadata import MetadataStore, Where
from runtune.schemas.api_keys import ApiKey, Scope

log = logging.getLogger("runtune.api_keys")

KEY_PREFIX = "rt-"
COLLECTION = "api_keys"
# What a listing shows of a key: enough to tell keys apart, far too little to guess one.
SHOWN_PREFIX_CHARS = len(KEY_PREFIX) + 6
MAX_KEYS_PER_USER = 50

# What a read-only key may do: read, never change. Everything else needs a full key.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX) and 16 <= len(token) <= 128


def api_keys(store: MetadataStore) -> OwnedCollection[ApiKey]:
    return OwnedCollection(store, COLLECTION, ApiKey, "api key")


def read_only(scopes: list[Scope] | tuple[str, ...]) -> bool:
    return "full" not in scopes


@dataclass(frozen=True)
class _Seen:
    key: ApiKey | None  # None: no such key (negative answers are cached too, briefly)
    checked_at: float


class ApiKeyVerifier:
    """The gateway's side: a bearer `rt-...` key to the owner's identity.

    Each answer is cached for `cache_s` seconds, so a revoked or expired key stops working within
    that bound on every gateway instance without a read per request; `last_used_at` is written at most
    once per `touch_every_s` per key and instance (never one write per request).
    """

    def __init__(
        self,
        open_store: Callable[[], MetadataStore],
        *,
        cache_s: float = 10.0,
        touch_every_s: float = 300.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Opened at the first key seen: a gateway whose callers use ID tokens only never needs it.
        self._open_store = open_store
        self._cache_s, self._touch_every_s, self._cache_size = cache_s, touch_every_s, cache_size
        self._clock = clock
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> Identity | None:
        """A fresh, positive cached answer, without I/O (the event loop may call this)."""
        with self._lock:
            seen = self._seen.get(key_hash(token))
        now = self._clock()
        if seen is None or seen.key is None or now - seen.checked_at >= self._cache_s or seen.key.expired(now):
            return None
        return self._identity(seen.key, now)

    def verify(self, token: str) -> Identity:
        """Raises `Unauthenticated` for an unknown, revoked or expired key. Blocking: run off the loop."""
        digest, now = key_hash(token), self._clock()
        with self._lock:
            seen = self._seen.get(digest)
        if seen is None or now - seen.checked_at >= self._cache_s:
            rows = self._store.query(COLLECTION, where=[Where("key_hash", "==", digest)], limit=1)
            seen = _Seen(ApiKey.model_validate(rows[0][1]) if rows else None, now)
            with self._lock:
                self._seen[digest] = seen
                self._seen.move_to_end(digest)
                while len(self._seen) > self._cache_size:
                    self._seen.popitem(last=False)
        if seen.key is None:
            raise Unauthenticated("The API key is unknown or was revoked", code="invalid_api_key")
        if seen.key.expired(now):
            raise Unauthenticated(f"The API key '{seen.key.prefix}...' has expired", code="expired_api_key")
        self._touch(seen.key, now)
        return self._identity(seen.key, now)

    @functools.cached_property
    def _store(self) -> MetadataStore:
        return self._open_store()

    def forget(self, key_id: str) -> None:
        """Drop a key revoked through this instance at once (other instances within `cache_s`)."""
        with self._lock:
            for digest in [d for d, seen in self._seen.items() if seen.key is not None and seen.key.id == key_id]:
                del self._seen[digest]

    def _identity(self, key: ApiKey, now: float) -> Identity:
        # The identity lives no longer than the cache bound: the gateway asks again after it.
        expires = now + self._cache_s if key.expires_at is None else min(key.expires_at, now + self._cache_s)
        return Identity(
            uid=key.owner,
            email=key.owner_email,
            expires_at=expires,
            email_verified=key.owner_email_verified,
            method="api_key",
            read_only=read_only(key.scopes),
        )

    def _touch(self, key: ApiKey, now: float) -> None:
        with self._lock:
            if now - self._touched.get(key.id, float("-inf")) < self._touch_every_s:
                return
            self._touched[key.id] = now
        try:
            api_keys(self._store).update(key.id, {"last_used_at": int(now)})
        except Exception as exc:
            log.warning("api key usage not recorded", extra={"key_id": key.id, "error": type(exc).__name__})
