"""The gateway's internal credential: how a private service knows a request came through the gateway.

Services trust `X-User-ID` only next to this credential, sent as `Authorization: Bearer ...`
(the header Cloud Run IAM itself checks):
- local profile: a random token that only the gateway holds; services keep its SHA-256;
- gcp profile: a Google-signed ID token of the gateway's service account for the service's URL,
  verified again by the service (Cloud Run IAM checks it too; this is defence in depth).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
from google.auth import exceptions as google_auth_exceptions
from google.auth import jwt as google_jwt
from google.auth import transport as google_transport
from google.auth.transport import requests as auth_requests
from google.oauth2 import id_token as google_id_token

from runtune.errors import Unauthenticated, UpstreamUnavailable

USER_ID_HEADER = "x-user-id"
USER_EMAIL_HEADER = "x-user-email"
# "true" when the identity provider verified that email (API keys remember it for the sign-up policy).
USER_EMAIL_VERIFIED_HEADER = "x-user-email-verified"
REQUEST_ID_HEADER = "x-request-id"
# How the gateway verified the caller: `id_token` (a signed-in session) or `api_key`.
AUTH_METHOD_HEADER = "x-runtune-auth"
# Headers a client may never set itself: the gateway deletes them before setting its own.
IDENTITY_HEADERS = frozenset(
    {
        USER_ID_HEADER,
        USER_EMAIL_HEADER,
        USER_EMAIL_VERIFIED_HEADER,
        AUTH_METHOD_HEADER,
        "x-forwarded-user",
        "x-goog-authenticated-user-id",
    }
)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class InternalCredentialMinter(Protocol):
    def authorization(self, audience: str) -> str:
        """The `Authorization` header value for a call to the service at `audience`."""

    async def authorization_async(self, audience: str) -> str:
        """The same, for the event loop: any network call it needs runs in a worker thread."""


class InternalCredentialVerifier(Protocol):
    def verify(self, authorization: str | None) -> None:
        """Raises `Unauthenticated` unless the header carries the gateway's credential."""

    async def verify_async(self, authorization: str | None) -> None:
        """The same, for the event loop: any certificate fetch or signature check runs in a worker thread."""


class LocalTokenMinter:
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def authorization(self, audience: str) -> str:
        return self._header

    async def authorization_async(self, audience: str) -> str:
        return self._header


class LocalTokenVerifier:
    def __init__(self, expected_sha256: str) -> None:
        self._expected = expected_sha256.lower()

    def verify(self, authorization: str | None) -> None:
        token = _bearer(authorization)
        if not hmac.compare_digest(token_sha256(token), self._expected):
            raise Unauthenticated("This service accepts requests from the gateway only", code="not_gateway")

    async def verify_async(self, authorization: str | None) -> None:
        self.verify(authorization)  # a hash and a comparison: cheaper than a thread hop


class GoogleIdTokenMinter:
    """Fetches (from the metadata server) and caches one ID token per audience.

    A token is reused until `_REFRESH_MARGIN_S` before it expires, so a call carries one with minutes
    left. Refreshing is a network call: `authorization_async` does it in a worker thread, and one lock
    makes it happen once however many requests ask at the same moment.
    """

    _REFRESH_MARGIN_S = 300

    def __init__(self, *, fetch: Callable[[str], str] | None = None, clock: Callable[[], float] = time.time) -> None:
        self._request = auth_requests.Request()
        self._fetch = fetch or self._fetch_from_metadata
        self._clock = clock
        # audience -> (token, when to refresh it); single reads and writes of a dict are atomic.
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def cached(self, audience: str) -> str | None:
        """The header for `audience` if a fresh token is at hand (no I/O: safe on the event loop)."""
        entry = self._tokens.get(audience)
        if entry is not None and entry[1] > self._clock():
            return f"Bearer {entry[0]}"
        return None

    def authorization(self, audience: str) -> str:
        header = self.cached(audience)
        if header is not None:
            return header
        with self._lock:
            header = self.cached(audience)  # another thread may have refreshed it while this one waited
            if header is not None:
                return header
            try:
                token = self._fetch(audience)
                # The metadata server is trusted: its answer needs no signature check, only its `exp`.
                expires_at = float(google_jwt.decode(token, verify=False)["exp"])
            except (google_auth_exceptions.GoogleAuthError, ValueError, KeyError, TypeError) as exc:
                raise UpstreamUnavailable(
                    "Could not obtain the internal service credential; try again shortly"
                ) from exc
            self._tokens[audience] = (token, expires_at - self._REFRESH_MARGIN_S)
        return f"Bearer {token}"

    async def authorization_async(self, audience: str) -> str:
        return self.cached(audience) or await anyio.to_thread.run_sync(self.authorization, audience)

    def _fetch_from_metadata(self, audience: str) -> str:
        return google_id_token.fetch_id_token(self._request, audience)


GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
GOOGLE_OAUTH2_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
_CERTS_TIMEOUT_S = 10.0


class _CachedCertificates:
    """A `google.auth` transport that keeps the certificate endpoint's answer for its Cache-Control
    max-age (hours, for Google's), rather than fetching it for every token."""

    def __init__(self, url: str, clock: Callable[[], float]) -> None:
        self._url = url
        self._clock = clock
        self._request = auth_requests.Request()
        self._lock = threading.Lock()
        self._response: google_transport.Response | None = None
        self._fresh_until = 0.0

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> google_transport.Response:
        if url != self._url or method != "GET":
            return self._request(url, method=method, **kwargs)
        with self._lock:  # one fetch at a time: the others wait for its answer
            if self._response is not None and self._fresh_until > self._clock():
                return self._response
            kwargs.setdefault("timeout", _CERTS_TIMEOUT_S)
            response = self._request(url, method=method, **kwargs)
            if response.status == 200:
                self._response, self._fresh_until = response, self._clock() + _max_age(response.headers)
            return response


def _max_age(headers: Mapping[str, str]) -> float:
    """Seconds an answer stays fresh (RFC 9111: max-age less Age); 0 without max-age."""
    lowered = {name.lower(): value for name, value in headers.items()}
    match = re.search(r"(?:^|[,\s])max-age=(\d+)", lowered.get("cache-control", ""))
    if match is None or "no-store" in lowered.get("cache-control", ""):
        return 0.0
    age = lowered.get("age", "0")
    return max(0.0, float(match.group(1)) - (float(age) if age.isdigit() else 0.0))


class GoogleIdTokenVerifier:
    """Verifies the gateway's Google-signed ID token.

    Google's certificates are kept for their max-age, and a verified token (by its SHA-256) until
    `_VERIFIED_MARGIN_S` before it expires (at most `cache_size` of them), so a request normally costs
    a hash and a dictionary look-up on the event loop. `verify_async` checks an unknown token, which may
    need a certificate fetch, in a worker thread.
    """

    _VERIFIED_MARGIN_S = 30

    def __init__(
        self,
        audience: str,
        gateway_service_account: str,
        *,
        certs_url: str = GOOGLE_OAUTH2_CERTS_URL,
        cache_size: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._audience = audience
        self._account = gateway_service_account
        self._certs_url = certs_url
        self._clock = clock
        self._request = _CachedCertificates(certs_url, clock)
        self._verified: OrderedDict[str, float] = OrderedDict()  # token SHA-256 -> its `exp`
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def verify(self, authorization: str | None) -> None:
        token = _bearer(authorization)
        key = token_sha256(token)
        if self._known(key):
            return
        try:
            claims = google_id_token.verify_token(
                token, self._request, audience=self._audience, certs_url=self._certs_url
            )
        except (ValueError, google_auth_exceptions.GoogleAuthError) as exc:
            raise Unauthenticated("Invalid service credential", code="not_gateway") from exc
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise Unauthenticated("Invalid service credential", code="not_gateway")
        if claims.get("email") != self._account or not claims.get("email_verified"):
            raise Unauthenticated("This service accepts requests from the gateway only", code="not_gateway")
        expires_at = float(claims["exp"])
        # Also against the clock the cache uses, so a token never outlives its `exp` here.
        if expires_at <= self._clock():
            raise Unauthenticated("Invalid service credential", code="not_gateway")
        with self._lock:
            self._verified[key] = expires_at
            while len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)

    async def verify_async(self, authorization: str | None) -> None:
        if not self._known(token_sha256(_bearer(authorization))):
            await anyio.to_thread.run_sync(self.verify, authorization)

    def _known(self, key: str) -> bool:
        with self._lock:
            expires_at = self._verified.get(key)
            if expires_at is None:
                return False
            if expires_at - self._VERIFIED_MARGIN_S > self._clock():
                self._verified.move_to_end(key)
                return True
            del self._verified[key]
            return False


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("This service accepts requests from the gateway only", code="not_gateway")
    return token.strip()
