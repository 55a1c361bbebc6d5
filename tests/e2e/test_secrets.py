"""Users' tokens through the gateway: stored, listed by name only, isolated, never echoed."""

from pathlib import Path

import httpx
import pytest

from tests.support import sign_up

pytestmark = pytest.mark.platform

HF_TOKEN = "hf_e2eSecretValue1234567890abcdef"


def _client(platform, account) -> httpx.Client:
    return httpx.Client(base_url=platform.gateway_url, headers={"authorization": f"Bearer {account['id_token']}"})


def test_secret_round_trip_never_returns_the_value(platform) -> None:
    with _client(platform, sign_up(platform.auth_host)) as client:
        stored = client.put("/v1/secrets/huggingface", json={"value": HF_TOKEN})
        assert stored.status_code == 200
        assert stored.json() == {"object": "secret", "name": "huggingface"}
        listed = client.get("/v1/secrets")
        huggingface = {"object": "secret", "name": "huggingface"}
        assert listed.json() == {"object": "list", "data": [huggingface], "has_more": False}
        assert HF_TOKEN not in stored.text + listed.text
        deleted = client.delete("/v1/secrets/huggingface").json()
        assert deleted == {"object": "secret.deleted", "name": "huggingface", "deleted": True}
        assert client.get("/v1/secrets").json()["data"] == []


def test_secrets_are_per_user(platform) -> None:
    with _client(platform, sign_up(platform.auth_host)) as alice, _client(platform, sign_up(platform.auth_host)) as bob:
        alice.put("/v1/secrets/wandb", json={"value": "alice-wandb-key-123"})
        assert bob.get("/v1/secrets").json()["data"] == []
        missing = bob.delete("/v1/secrets/wandb")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        assert [s["name"] for s in alice.get("/v1/secrets").json()["data"]] == ["wandb"]


@pytest.mark.parametrize(
    ("name", "body", "param"),
    [
        ("Bad Name!", {"value": "x"}, "name"),
        ("huggingface", {"value": ""}, "value"),
        ("huggingface", {}, "value"),
    ],
)
def test_bad_secrets_name_the_field(platform, name, body, param) -> None:
    with _client(platform, sign_up(platform.auth_host)) as client:
        response = client.put(f"/v1/secrets/{name}", json=body)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == param


def test_secret_values_never_reach_the_logs(platform) -> None:
    with _client(platform, sign_up(platform.auth_host)) as client:
        client.put("/v1/secrets/huggingface", json={"value": HF_TOKEN})
    for log in Path(platform.log_dir).glob("*.log"):
        assert HF_TOKEN not in log.read_text(errors="replace"), log.name
