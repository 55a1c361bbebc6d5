"""Firebase Auth adapter of the identity port (`firebase-admin` `verify_id_token`).

Verified tokens are cached for `cache_ttl_s` (never past their expiry), so the signature check and
the user lookup happen once per token and bound, not once per request (a UI polling every second
would otherwise pay both each time). The bound is how long a disabled account or a revoked session
keeps working: each re-verification looks the user up again (`check_revoked`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from typing import Any

import firebase_admin
from firebase_admin import auth
from firebase_admin import credentials as firebase_credentials
from google.auth import jwt as google_jwt

from runtune.errors import Unauthenticated
from runtune.ports.identity import Identity

# Firebase ID tokens live one hour; allow the usual clock skew between Google's servers and ours.
_CLOCK_SKEW_S = 5


class FirebaseIdentityVerifier:
    def __init__(
        self,
        project_id: str,
        *,
        check_revoked: bool = True,
        cache_ttl_s: float = 60.0,
        cache_size: int = 10_000,
        app_name: str = "runtune",
        credential: firebase_credentials.Base | None = None,
    ) -> None:
        try:
            self._app = firebase_admin.get_app(app_name)
        except ValueError:
            # No credential: Application Default Credentials (the service account on Cloud Run).
            self._app = firebase_admin.initialize_app(credential, options={"projectId": project_id}, name=app_name)
        self._check_revoked = check_revoked
        self._cache_ttl_s = cache_ttl_s
        # token digest -> (identity, until when it is trusted without a new look-up)
        self._cache: OrderedDict[str, tuple[Identity, float]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def cached(self, id_token: str) -> Identity | None:
        key = hashlib.sha256(id_token.encode()).hexdigest()
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            identity, fresh_until = entry
            if fresh_until > time.time():
                self._cache.move_to_end(key)
                return identity
            del self._cache[key]
            return None

    def verify(self, id_token: str) -> Identity:
        if not id_token:
            raise Unauthenticated("Missing bearer token: send 'Authorization: Bearer <Firebase ID token>'")
        cached = self.cached(id_token)
        if cached is not None:
            return cached
        key = hashlib.sha256(id_token.encode()).hexdigest()
        now = time.time()
        identity = self._verify_uncached(id_token, now)
        if self._cache_ttl_s <= 0:
            return identity
        with self._lock:
            self._cache[key] = (identity, min(identity.expires_at, now + self._cache_ttl_s))
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return identity

    def _verify_uncached(self, id_token: str, now: float) -> Identity:
        # firebase-admin checks expiry only when it checks signatures (never against the emulator),
        # and reports an expired token of a since-changed user as revoked: check expiry first, on the
        # unverified claims, so both profiles give one answer. Nothing is trusted before the check below.
        _check_times(_unverified_claims(id_token), now)
        try:
            claims = auth.verify_id_token(
                id_token, app=self._app, check_revoked=self._check_revoked, clock_skew_seconds=_CLOCK_SKEW_S
            )
        except auth.ExpiredIdTokenError as exc:
            raise Unauthenticated("The ID token has expired; sign in again", code="token_expired") from exc
        except auth.RevokedIdTokenError as exc:
            raise Unauthenticated("The ID token was revoked; sign in again", code="token_revoked") from exc
        except auth.UserDisabledError as exc:
            raise Unauthenticated("This account is disabled", code="user_disabled") from exc
        except auth.UserNotFoundError as exc:
            raise Unauthenticated("The ID token names no existing user", code="invalid_token") from exc
        except (auth.InvalidIdTokenError, ValueError) as exc:
            raise Unauthenticated("The ID token is invalid", code="invalid_token") from exc
        _check_times(claims, now)
        return Identity(
            uid=claims["uid"],
            email=claims.get("email"),
            expires_at=float(claims["exp"]),
            email_verified=claims.get("email_verified") is True,
        )


def _unverified_claims(id_token: str) -> dict[str, Any]:
    try:
        return google_jwt.decode(id_token, verify=False)
    except (ValueError, TypeError) as exc:
        raise Unauthenticated("The ID token is invalid", code="invalid_token") from exc


def _check_times(claims: dict[str, Any], now: float) -> None:
    try:
        expires_at, issued_at = float(claims["exp"]), float(claims["iat"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Unauthenticated("The ID token has no valid 'exp'/'iat'", code="invalid_token") from exc
    if expires_at <= now - _CLOCK_SKEW_S:
        raise Unauthenticated("The ID token has expired; sign in again", code="token_expired")
    if issued_at > now + _CLOCK_SKEW_S:
        raise Unauthenticated("The ID token is issued in the future", code="invalid_token")
