"""Rules shared by the secret stores, so a secret the local store accepts, Secret Manager accepts too."""

from __future__ import annotations

import hashlib
import re

from runtune.errors import InvalidRequest

# 63, not 64: Secret Manager stores the name as a label value too, and label values stop at 63.
SECRET_NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,63}$")
# Secret Manager's payload limit.
MAX_SECRET_BYTES = 64 * 1024


def validate_secret_name(name: str) -> None:
    if not SECRET_NAME_PATTERN.fullmatch(name):
        raise InvalidRequest(
            "Secret names are 1-63 characters of lowercase letters, digits, '_' or '-'",
            param="name",
        )


def encode_secret_value(value: str) -> bytes:
    """The value as stored; the error messages describe it, never quote it."""
    data = value.encode("utf-8")
    if not data:
        raise InvalidRequest("Secret values must not be empty", param="value")
    if len(data) > MAX_SECRET_BYTES:
        raise InvalidRequest(f"Secret values are at most {MAX_SECRET_BYTES} bytes", param="value")
    return data


def uid_digest(uid: str) -> str:
    """SHA-256 (hex) of a user id: uids may hold characters file names and secret ids do not allow."""
    if not uid:
        raise ValueError("uid must not be empty")
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()
