"""Secrets port: per-user secrets (Hugging Face, W&B tokens), never stored in documents or logs."""

from __future__ import annotations

from typing import Protocol


class SecretStore(Protocol):
    def put(self, uid: str, name: str, value: str) -> None: ...

    def get(self, uid: str, name: str) -> str | None: ...

    def delete(self, uid: str, name: str) -> None: ...

    def names(self, uid: str) -> list[str]:
        """The names of the user's secrets (never their values)."""
