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
import threading
import time
from typing import Protocol

from google.auth import exceptions as google_auth_exceptions
from google.auth.transport import requests as auth_requests
from google.oauth2 import id_token as google_id_token

from runtune.errors import Unauthenticated

USER_ID_HEADER = "x-user-id"
USER_EMAIL_HEADER = "x-user-email"
REQUEST_ID_HEADER = "x-request-id"
# Headers a client may never set itself: the gateway deletes them before setting its own.
IDENTITY_HEADERS = frozenset({USER_ID_HEADER, USER_EMAIL_HEADER, "x-forwarded-user", "x-goog-authenticated-user-id"})


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class InternalCredentialMinter(Protocol):
    def authorization(self, audience: str) -> str:
        """The `Authorization` header value for a call to the service at `audience`."""


class InternalCredentialVerifier(Protocol):
    def verify(self, authorization: str | None) -> None:
        """Raises `Unauthenticated` unless the header carries the gateway's credential."""


class LocalTokenMinter:
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def authorization(self, audience: str) -> str:
        return self._header


class LocalTokenVerifier:
    def __init__(self, expected_sha256: str) -> None:
        self._expected = expected_sha256.lower()

    def verify(self, authorization: str | None) -> None:
        token = _bearer(authorization)
        if not hmac.compare_digest(token_sha256(token), self._expected):
            raise Unauthenticated("This service accepts requests from the gateway only", code="not_gateway")


class GoogleIdTokenMinter:
    """Fetches (from the metadata server) and caches one ID token per audience."""

    _REFRESH_MARGIN_S = 300

    def __init__(self) -> None:
        self._request = auth_requests.Request()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def authorization(self, audience: str) -> str:
        with self._lock:
            cached = self._tokens.get(audience)
            if cached and cached[1] - self._REFRESH_MARGIN_S > time.time():
                return f"Bearer {cached[0]}"
        token = google_id_token.fetch_id_token(self._request, audience)
        claims = google_id_token.verify_oauth2_token(token, self._request, audience)
        with self._lock:
            self._tokens[audience] = (token, float(claims["exp"]))
        return f"Bearer {token}"


GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
GOOGLE_OAUTH2_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"


class GoogleIdTokenVerifier:
    def __init__(
        self,
        audience: str,
        gateway_service_account: str,
        *,
        certs_url: str = GOOGLE_OAUTH2_CERTS_URL,
    ) -> None:
        self._audience = audience
        self._account = gateway_service_account
        self._certs_url = certs_url
        self._request = auth_requests.Request()

    def verify(self, authorization: str | None) -> None:
        token = _bearer(authorization)
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


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("This service accepts requests from the gateway only", code="not_gateway")
    return token.strip()
