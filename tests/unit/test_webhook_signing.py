"""Webhook signatures verify with the receivers' own libraries: `openai`'s unwrap and `standardwebhooks`."""

from __future__ import annotations

import json
import time

import pytest
import standardwebhooks
from openai import InvalidWebhookSignatureError, OpenAI

from runtune.webhooks.signing import new_secret, signed_headers


def _event() -> bytes:
    event = {
        "id": "evt_0123456789abcdef",
        "object": "event",
        "type": "fine_tuning.job.succeeded",
        "created_at": int(time.time()),
        "data": {"id": "ftjob-0123456789abcdef01234567"},
    }
    return json.dumps(event, separators=(",", ":")).encode()


def test_openai_sdk_unwraps_a_signed_event() -> None:
    secret, body = new_secret(), _event()
    headers = signed_headers(secret, "evt_0123456789abcdef", int(time.time()), body)
    event = OpenAI(api_key="unused").webhooks.unwrap(body, headers, secret=secret)
    assert event.type == "fine_tuning.job.succeeded" and event.data.id == "ftjob-0123456789abcdef01234567"


def test_standard_webhooks_verifies_and_refuses_a_tampered_body() -> None:
    secret, body = new_secret(), _event()
    headers = signed_headers(secret, "evt_0123456789abcdef", int(time.time()), body)
    verifier = standardwebhooks.Webhook(secret)
    assert verifier.verify(body, headers)["data"]["id"].startswith("ftjob-")
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verifier.verify(body.replace(b"succeeded", b"cancelled"), headers)


def test_another_secret_or_an_old_timestamp_is_refused() -> None:
    body = _event()
    headers = signed_headers(new_secret(), "evt_0123456789abcdef", int(time.time()), body)
    with pytest.raises(InvalidWebhookSignatureError):
        OpenAI(api_key="unused").webhooks.unwrap(body, headers, secret=new_secret())
    secret = new_secret()
    stale = signed_headers(secret, "evt_0123456789abcdef", int(time.time()) - 3600, body)
    with pytest.raises(InvalidWebhookSignatureError):
        OpenAI(api_key="unused").webhooks.unwrap(body, stale, secret=secret)
