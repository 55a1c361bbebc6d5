"""Naming rules shared by the secret stores, so a name valid locally is valid in Secret Manager."""

from __future__ import annotations

import hashlib
import re

from runtune.errors import InvalidRequest

# 63, not 64: Secret Manager stores the name as a label value too, and label values stop at 63.
SECRET_NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,63}$")


def validate_secret_name(name: str) -> None:
    if not SECRET_NAME_PATTERN.fullmatch(name):
        # The name is user input shown back in an error: bounded and never a secret value.
        raise InvalidRequest(
            "Secret names are 1-63 characters of lowercase letters, digits, '_' or '-'",
            param="name",
        )


def uid_digest(uid: str) -> str:
    """SHA-256 (hex) of a user id: uids may hold characters file names and secret ids do not allow."""
    if not uid:
        raise ValueError("uid must not be empty")
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()
