"""`runtune login`, `whoami` and `token` against the running local platform."""

import json
import stat

import httpx
import pytest
from typer.testing import CliRunner

from runtune.cli.main import app
from tests.e2e.jobs_support import wait_for
from tests.support import cli_login, sign_up

pytestmark = pytest.mark.platform


def test_login_stores_a_private_session_and_whoami_uses_it(platform, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RUNTUNE_CONFIG_DIR", str(tmp_path))
    account = sign_up(platform.auth_host, password="correct-horse")
    runner = CliRunner()
    args = [
        "login",
        "--email",
        account["email"],
        "--password",
        "correct-horse",
        "--gateway",
        platform.gateway_url,
        "--auth-emulator",
        platform.auth_host,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    stored = tmp_path / "credentials.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert json.loads(stored.read_text())["uid"] == account["uid"]

    result = runner.invoke(app, ["whoami"])
    assert result.exit_code == 0, result.output
    assert account["uid"] in result.output and account["email"] in result.output

    # `runtune token` prints only the ID token, which the gateway accepts as a bearer token.
    result = runner.invoke(app, ["token"])
    assert result.exit_code == 0, result.output
    id_token = result.output.strip()
    assert "\n" not in id_token
    me = httpx.get(f"{platform.gateway_url}/v1/me", headers={"authorization": f"Bearer {id_token}"})
    assert me.status_code == 200 and me.json()["id"] == account["uid"]


def test_wrong_password_is_a_clear_message(platform, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RUNTUNE_CONFIG_DIR", str(tmp_path))
    account = sign_up(platform.auth_host)
    result = CliRunner().invoke(
        app,
        [
            "login",
            "--email",
            account["email"],
            "--password",
            "nope",
            "--gateway",
            platform.gateway_url,
            "--auth-emulator",
            platform.auth_host,
        ],
    )
    assert result.exit_code == 1
    assert "Wrong email or password" in result.output
    assert not (tmp_path / "credentials.json").exists()


def test_whoami_without_login_says_what_to_do(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RUNTUNE_CONFIG_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["whoami"])
    assert result.exit_code == 1
    assert "runtune login" in result.output


def test_keys_create_list_revoke(platform, tmp_path, monkeypatch) -> None:
    runner, account = cli_login(platform, tmp_path, monkeypatch)

    made = runner.invoke(app, ["keys", "create", "nightly eval", "--read-only"])
    assert made.exit_code == 0, made.output
    key = next(line for line in made.output.splitlines() if line.startswith("rt-"))
    me = httpx.get(f"{platform.gateway_url}/v1/me", headers={"authorization": f"Bearer {key}"})
    assert me.status_code == 200 and me.json()["id"] == account["uid"]

    listed = runner.invoke(app, ["keys", "list"])
    [stored] = httpx.get(f"{platform.gateway_url}/v1/api_keys", headers={"authorization": f"Bearer {key}"}).json()[
        "data"
    ]
    key_id = stored["id"]
    assert listed.exit_code == 0 and key_id in listed.output and "nigh" in listed.output
    assert key not in listed.output
    revoked = runner.invoke(app, ["keys", "revoke", key_id])
    assert revoked.exit_code == 0, revoked.output
    after = httpx.get(f"{platform.gateway_url}/v1/me", headers={"authorization": f"Bearer {key}"})
    assert after.status_code == 401
    assert runner.invoke(app, ["keys", "revoke", key_id]).exit_code == 1


def test_webhooks_create_test_deliveries_delete(platform, tmp_path, monkeypatch, receiver) -> None:
    runner, _ = cli_login(platform, tmp_path, monkeypatch)

    made = runner.invoke(app, ["webhooks", "create", receiver.url, "-e", "dataset.ready", "--description", "ci"])
    assert made.exit_code == 0, made.output
    secret = next(line for line in made.output.splitlines() if line.startswith("whsec_"))
    endpoint_id = next(word for word in made.output.split() if word.startswith("wh-"))
    listed = runner.invoke(app, ["webhooks", "list"])
    assert listed.exit_code == 0 and endpoint_id in listed.output and secret not in listed.output
    shown = runner.invoke(app, ["webhooks", "show", endpoint_id])
    assert shown.exit_code == 0 and receiver.url in shown.output and "enabled" in shown.output
    assert "dataset.ready" in shown.output

    sent = runner.invoke(app, ["webhooks", "test", endpoint_id])
    assert sent.exit_code == 0 and "webhook.test" in sent.output, sent.output
    wait_for(lambda: receiver.delivered("webhook.test"), timeout_s=60)

    def logged() -> str | None:
        shown = runner.invoke(app, ["webhooks", "deliveries", endpoint_id]).output
        return shown if " 200 " in shown else None

    assert "webhook.test" in wait_for(logged)

    assert runner.invoke(app, ["webhooks", "delete", endpoint_id]).exit_code == 0
    missing = runner.invoke(app, ["webhooks", "show", endpoint_id])
    assert missing.exit_code == 1 and "No webhook endpoint" in missing.output
