"""The CLI's stored login: a refresh token in the user's config dir, exchanged for fresh ID tokens."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import typer

from runtune.errors import Unauthenticated, UpstreamUnavailable
from runtune.firebase_rest import FirebaseAuthRest, Session

# Refresh a minute early: a token must not expire between here and the gateway.
_EARLY_S = 60


def credentials_path() -> Path:
    return Path(os.environ.get("RUNTUNE_CONFIG_DIR") or typer.get_app_dir("runtune")) / "credentials.json"


@dataclass
class StoredLogin:
    gateway_url: str
    api_key: str
    auth_emulator_host: str | None
    email: str | None
    uid: str
    refresh_token: str
    id_token: str
    expires_at: float

    def auth(self) -> FirebaseAuthRest:
        return FirebaseAuthRest(self.api_key, emulator_host=self.auth_emulator_host)

    @classmethod
    def from_session(
        cls, session: Session, *, gateway_url: str, api_key: str, auth_emulator_host: str | None
    ) -> StoredLogin:
        return cls(
            gateway_url=gateway_url.rstrip("/"),
            api_key=api_key,
            auth_emulator_host=auth_emulator_host,
            email=session.email,
            uid=session.uid,
            refresh_token=session.refresh_token,
            id_token=session.id_token,
            expires_at=session.expires_at,
        )

    def save(self, path: Path | None = None) -> None:
        path = path or credentials_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path | None = None) -> StoredLogin:
        path = path or credentials_path()
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError as exc:
            raise Unauthenticated("Not logged in: run `runtune login` first") from exc
        except (ValueError, TypeError) as exc:
            raise Unauthenticated(f"Stored login at {path} is unreadable: run `runtune login` again") from exc

    def fresh_id_token(self, *, force: bool = False) -> str:
        """The stored ID token while it has a minute left, else a new one from the refresh token."""
        if not force and self.expires_at - _EARLY_S > time.time():
            return self.id_token
        try:
            session = self.auth().refresh(self.refresh_token)
        except httpx.TransportError as exc:
            where = self.auth_emulator_host or "securetoken.googleapis.com"
            raise UpstreamUnavailable(f"Cannot reach the sign-in service at {where} to refresh the session") from exc
        self.id_token, self.refresh_token, self.expires_at = session.id_token, session.refresh_token, session.expires_at
        self.save()
        return self.id_token
