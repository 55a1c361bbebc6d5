"""Settings > API keys in a real Chromium: create one (shown once, usable at once), see it listed, revoke it."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.conftest import signed_in
from tests.support import sign_up

pytestmark = pytest.mark.platform


def test_create_use_and_revoke_an_api_key(ui_platform, browser, shots) -> None:
    user = sign_up(ui_platform.auth_host, password="right-password")
    failure = shots / "failure.png"
    with signed_in(browser, ui_platform.url, user["email"], "right-password", failure_shot=failure) as page:
        page.goto(f"{ui_platform.url}/settings")

        keys = page.get_by_test_id("api-keys")
        keys.locator("input[name=key-name]").fill("nightly job")
        keys.get_by_role("button", name="Create key").click()
        secret = page.get_by_test_id("created-key-secret").inner_text().strip()
        assert secret.startswith("rt-")
        row = page.get_by_test_id("api-key-table").locator("tbody tr")
        row.first.wait_for()
        assert "nightly job" in row.first.inner_text() and secret not in row.first.inner_text()
        stored = page.evaluate("() => JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})")
        assert secret not in stored
        page.screenshot(path=shots / "api-key-created.png", full_page=True)

        me = httpx.get(f"{ui_platform.url}/v1/me", headers={"authorization": f"Bearer {secret}"})
        assert me.status_code == 200 and me.json()["id"] == user["uid"]

        row.first.get_by_role("button", name="Revoke").click()
        page.get_by_test_id("created-key").wait_for(state="detached")
        # The list reloads after the revoke: the table goes once the key is gone from the server.
        page.get_by_test_id("api-key-table").wait_for(state="detached")
        after = httpx.get(f"{ui_platform.url}/v1/me", headers={"authorization": f"Bearer {secret}"})
        assert after.status_code == 401
