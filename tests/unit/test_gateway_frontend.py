"""The gateway's web UI: the single-page app's deep links, its assets, and the runtime configuration
(the Auth emulator is named in the local profile only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from runtune.settings import GatewaySettings
from tests.unit.settings_env import EMULATORS


class _NoVerifier:
    def cached(self, token: str) -> None:
        return None

    def verify(self, token: str) -> None:
        raise AssertionError("no API call is made in these tests")


class _NoMinter:
    def authorization(self, audience: str) -> str:
        return "Bearer unused"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><div id=app></div>")
    (tmp_path / "assets" / "index-abc.js").write_text("console.log('runtune')")
    return tmp_path


def _client(settings: GatewaySettings) -> TestClient:
    return TestClient(create_app(settings, verifier=_NoVerifier(), minter=_NoMinter()))  # type: ignore[arg-type]


def _local(clean_env: pytest.MonkeyPatch, dist: Path) -> GatewaySettings:
    for name, value in EMULATORS.items():
        clean_env.setenv(name, value)
    return GatewaySettings(internal_token="t0ken", frontend_dir=dist, project_id="demo-ui")


def test_deep_links_are_the_app_and_missing_assets_are_404(clean_env: pytest.MonkeyPatch, dist: Path) -> None:
    with _client(_local(clean_env, dist)) as client:
        for path in ("/", "/runs/ftjob-abc", "/datasets/file-123", "/settings"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert page.text.startswith("<!doctype html>"), path
        assert client.get("/assets/index-abc.js").text == "console.log('runtune')"
        assert client.get("/assets/index-missing.js").status_code == 404
        # The API keeps its own answers: never the app's page.
        api = client.get("/v1/nothing-here")
        assert api.status_code == 404
        assert api.json()["error"]["code"] == "unknown_path"


def test_local_profile_config_names_the_auth_emulator(clean_env: pytest.MonkeyPatch, dist: Path) -> None:
    with _client(_local(clean_env, dist)) as client:
        config = client.get("/config.json")
    assert config.status_code == 200
    assert config.headers["cache-control"] == "no-store"
    assert config.json() == {
        "profile": "local",
        "firebase": {"apiKey": "fake-api-key", "authDomain": "127.0.0.1", "projectId": "demo-ui"},
        "auth_emulator_url": "http://127.0.0.1:9099",
    }


# The gcp profile is invitation only by default, and refuses to start with nobody invited.
INVITED = ["ops@example.com"]


def test_gcp_profile_serves_no_config_and_no_emulator(clean_env: pytest.MonkeyPatch, dist: Path) -> None:
    clean_env.setenv("RUNTUNE_PROFILE", "gcp")
    settings = GatewaySettings(project_id="runtune-prod", frontend_dir=dist, signup_invited_emails=INVITED)
    with _client(settings) as client:
        config = client.get("/config.json")
        page = client.get("/runs/ftjob-abc")
    assert config.status_code == 404
    assert config.json()["error"]["code"] == "no_web_config"
    assert "emulator" not in config.text.replace("no_web_config", "")
    assert page.status_code == 200


def test_gcp_profile_serves_the_projects_firebase_config(clean_env: pytest.MonkeyPatch, dist: Path) -> None:
    clean_env.setenv("RUNTUNE_PROFILE", "gcp")
    firebase = {"apiKey": "AIza-public", "authDomain": "runtune-prod.firebaseapp.com", "projectId": "runtune-prod"}
    clean_env.setenv("RUNTUNE_FIREBASE_WEB_CONFIG", json.dumps(firebase))
    settings = GatewaySettings(project_id="runtune-prod", frontend_dir=dist, signup_invited_emails=INVITED)
    with _client(settings) as client:
        config = client.get("/config.json")
    assert config.status_code == 200
    assert config.json() == {"profile": "gcp", "firebase": firebase, "auth_emulator_url": None}
