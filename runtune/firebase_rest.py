"""Firebase Auth's public REST API (what the JS SDK calls): sign up, sign in, refresh.

Used by the CLI (`runtune login`) and the local platform (the demo account). Against the Auth
emulator the same paths sit under `http://<host>/`, and any API key is accepted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from runtune.errors import InvalidRequest, Unauthenticated


@dataclass(frozen=True)
class Session:
    uid: str
    email: str | None
    id_token: str
    refresh_token: str
    expires_at: float


class FirebaseAuthRest:
    def __init__(self, api_key: str, *, emulator_host: str | None = None, timeout_s: float = 15.0) -> None:
        self._key = api_key
        if emulator_host:
            self._identity = f"http://{emulator_host}/identitytoolkit.googleapis.com/v1"
            self._securetoken = f"http://{emulator_host}/securetoken.googleapis.com/v1"
        else:
            self._identity = "https://identitytoolkit.googleapis.com/v1"
            self._securetoken = "https://securetoken.googleapis.com/v1"
        self._timeout = timeout_s

    def sign_up(self, email: str, password: str) -> Session:
        return self._password_call("accounts:signUp", email, password)

    def sign_in(self, email: str, password: str) -> Session:
        return self._password_call("accounts:signInWithPassword", email, password)

    def refresh(self, refresh_token: str) -> Session:
        response = httpx.post(
            f"{self._securetoken}/token",
            params={"key": self._key},
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            timeout=self._timeout,
        )
        body = _checked(response)
        return Session(
            uid=body["user_id"],
            email=None,
            id_token=body["id_token"],
            refresh_token=body["refresh_token"],
            expires_at=time.time() + int(body.get("expires_in", 3600)),
        )

    def _password_call(self, method: str, email: str, password: str) -> Session:
        response = httpx.post(
            f"{self._identity}/{method}",
            params={"key": self._key},
            json={"email": email, "password": password, "returnSecureToken": True},
            timeout=self._timeout,
        )
        body = _checked(response)
        return Session(
            uid=body["localId"],
            email=body.get("email", email),
            id_token=body["idToken"],
            refresh_token=body["refreshToken"],
            expires_at=time.time() + int(body.get("expiresIn", 3600)),
        )


# Firebase's error codes, said in words a user can act on.
_MESSAGES = {
    "EMAIL_EXISTS": ("An account with this email already exists", InvalidRequest),
    "EMAIL_NOT_FOUND": ("Wrong email or password", Unauthenticated),
    "INVALID_PASSWORD": ("Wrong email or password", Unauthenticated),
    "INVALID_LOGIN_CREDENTIALS": ("Wrong email or password", Unauthenticated),
    "USER_DISABLED": ("This account is disabled", Unauthenticated),
    "TOKEN_EXPIRED": ("The session expired; sign in again", Unauthenticated),
    "INVALID_REFRESH_TOKEN": ("The session is no longer valid; sign in again", Unauthenticated),
}


def _checked(response: httpx.Response) -> dict:
    if response.status_code < 400:
        return response.json()
    try:
        code = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        code = f"HTTP {response.status_code}"
    base = str(code).split(" ")[0].split(":")[0]
    message, error_class = _MESSAGES.get(base, (f"Firebase Auth refused the request: {code}", InvalidRequest))
    raise error_class(message, code=base.lower())
