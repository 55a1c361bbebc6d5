"""Settings > Webhooks in a real Chromium: add an endpoint (secret shown once), send a test event to a
receiver on this machine, see the delivery, delete the endpoint."""

from __future__ import annotations

import pytest

from tests.browser.conftest import signed_in
from tests.e2e.webhook_receiver import running_receiver
from tests.support import sign_up

pytestmark = pytest.mark.platform


def test_add_test_see_deliveries_and_delete_a_webhook(ui_platform, browser, shots) -> None:
    user = sign_up(ui_platform.auth_host, password="right-password")
    failure = shots / "failure.png"
    with (
        running_receiver() as receiver,
        signed_in(
            browser, ui_platform.url, user["email"], "right-password", failure_shot=failure, timeout_ms=30_000
        ) as page,
    ):
        page.goto(f"{ui_platform.url}/settings")

        hooks = page.get_by_test_id("webhooks")
        hooks.locator("input[name=webhook-url]").fill("http://10.0.0.7/hook")
        hooks.get_by_role("button", name="Add endpoint").click()
        assert "private" in hooks.locator(".field-error").inner_text()

        hooks.locator("input[name=webhook-url]").fill(receiver.url)
        hooks.get_by_role("button", name="Add endpoint").click()
        secret = page.get_by_test_id("created-webhook-secret").inner_text().strip()
        assert secret.startswith("whsec_")
        row = page.get_by_test_id("webhook-table").locator("tbody tr").first
        row.wait_for()
        assert receiver.url in row.inner_text() and "enabled" in row.inner_text()
        stored = page.evaluate("() => JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})")
        assert secret not in stored

        row.get_by_role("button", name="Send test").click()
        log = page.get_by_test_id("webhook-delivery-table")
        # The log shows the attempt once the queue has delivered it (Refresh reloads it).
        for _ in range(60):
            if log.count() and "200" in log.inner_text():
                break
            page.get_by_test_id("webhooks").get_by_role("button", name="Refresh").click()
            page.wait_for_timeout(500)
        assert "webhook.test" in log.inner_text() and "200" in log.inner_text()
        assert receiver.delivered("webhook.test")
        page.screenshot(path=shots / "webhook-delivered.png", full_page=True)

        row.get_by_role("button", name="Delete").click()
        page.get_by_test_id("webhook-table").wait_for(state="detached")
