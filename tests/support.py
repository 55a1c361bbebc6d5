"""Test helpers: accounts on the Auth emulator and hand-made tokens."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from runtune.firebase_rest import FirebaseAuthRest


def sign_up(auth_host: str, email: str | None = None, password: str = "pa55word!") -> dict[str, str]:
    """Create an account on the Auth emulator; returns uid, email, id_token, refresh_token."""
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    session = FirebaseAuthRest("fake-api-key", emulator_host=auth_host).sign_up(email, password)
    return {"uid": session.uid, "email": email, "id_token": session.id_token, "refresh_token": session.refresh_token}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def retoken(token: str, **changes: Any) -> str:
    """The same (unsigned, emulator-style) token with some claims changed: a tampered token."""
    header, _, signature = token.split(".")
    claims = decode_claims(token) | changes
    return ".".join([header, _b64(json.dumps(claims).encode()), signature])


def expired(token: str) -> str:
    now = int(time.time())
    return retoken(token, iat=now - 7200, exp=now - 3600, auth_time=now - 7200)
