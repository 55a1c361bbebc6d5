"""Standard Webhooks signatures (https://www.standardwebhooks.com), the scheme OpenAI's webhooks use.

A delivery carries `webhook-id` (the event id: receivers de-duplicate on it), `webhook-timestamp` (Unix
seconds: receivers refuse old ones, so a captured delivery cannot be replayed later) and
`webhook-signature` (`v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the endpoint's
secret). The secret is `whsec_` + base64 of 32 random bytes, so `openai`'s `client.webhooks.unwrap`
and the `standardwebhooks` package verify a delivery unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    return base64.b64decode(secret[len(SECRET_PREFIX) :])


def signature(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{event_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt (a retry signs again, with its own timestamp)."""
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, event_id, timestamp, body),
    }
