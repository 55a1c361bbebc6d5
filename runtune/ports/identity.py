"""Identity port: turns a bearer token into the caller's verified identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class Identity:
    uid: str
    email: str | None
    expires_at: float
    # Whether the identity provider confirmed the caller owns `email` (sign-up policies need it:
    # anyone can create an unverified account under any address).
    email_verified: bool = False
    # How the caller proved it: a Firebase ID token (a signed-in session) or an API key (`rt-...`).
    method: Literal["id_token", "api_key"] = "id_token"
    # A read-only API key: the gateway lets only reads through.
    read_only: bool = False


class IdentityVerifier(Protocol):
    def cached(self, id_token: str) -> Identity | None:
        """A previously verified, unexpired identity for this token, without any I/O."""

    def verify(self, id_token: str) -> Identity:
        """Raises `runtune.errors.Unauthenticated` for a missing, malformed, forged or expired token."""
