import json
import logging

from runtune.logging import JsonFormatter, scrub

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl"


def test_scrub_removes_bearer_tokens_jwts_and_hf_tokens() -> None:
    text = f"Authorization: Bearer abc.def.ghi token={JWT} hf=hf_abcdefghijklmnop"
    cleaned = scrub(text)
    assert "abc.def.ghi" not in cleaned
    assert JWT not in cleaned
    assert "hf_abcdefghijklmnop" not in cleaned
    assert "Bearer [redacted]" in cleaned


def test_formatter_redacts_secret_fields_and_keeps_others() -> None:
    record = logging.makeLogRecord(
        {
            "msg": "called with %s",
            "args": (JWT,),
            "levelname": "INFO",
            "hf_token": "hf_secretvalue123",
            "uid": "u1",
        }
    )
    entry = json.loads(JsonFormatter("test").format(record))
    assert entry["hf_token"] == "[redacted]"
    assert entry["uid"] == "u1"
    assert JWT not in entry["message"]
    assert entry["service"] == "test"
