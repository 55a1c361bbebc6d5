"""API errors are shown where they happened: next to the field the envelope's `param` names."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LAPTOP
from tests.support import sign_up

pytestmark = pytest.mark.platform


def test_errors_appear_next_to_their_field(ui_platform, browser, shots) -> None:
    from tests.e2e.jobs_support import put_demo_dataset

    user = sign_up(ui_platform.auth_host, password="right-password")
    put_demo_dataset(ui_platform, user["uid"], {"train": 8, "validation": 4, "test": 4})
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(ui_platform.url)
        page.locator("input[name=email]").fill(user["email"])  # the error text is part of a label now
        page.get_by_label("Password").fill("wrong-password")
        page.get_by_role("button", name="Sign in").last.click()
        password = page.locator(".field", has=page.get_by_label("Password"))
        password.locator(".field-error").wait_for()
        wrong_password = password.locator(".field-error").inner_text()
        assert wrong_password == "Wrong email or password"
        page.screenshot(path=shots / "01-wrong-password.png")
        # An address with no account gets the very same answer: the form tells no one who has one.
        page.reload()
        page.get_by_label("Email").fill("nobody-" + user["email"])
        page.get_by_label("Password").fill("wrong-password")
        page.get_by_role("button", name="Sign in").last.click()
        expect(password.locator(".field-error")).to_have_text(wrong_password)
        assert page.locator(".field-error").count() == 1
        page.locator("input[name=email]").fill(user["email"])  # the error text is part of a label now
        page.get_by_label("Password").fill("right-password")
        page.get_by_role("button", name="Sign in").last.click()
        page.get_by_test_id("account-email").wait_for()

        page.goto(f"{ui_platform.url}/runs/new")
        page.locator("input[name=model][value=tiny-gemma-3-vision]").check()
        page.get_by_text("Advanced").click()
        page.locator("input[name=lora_rank]").fill("9999")
        page.get_by_role("button", name="Launch run").click()
        rank = page.locator(".field", has=page.locator("input[name=lora_rank]"))
        rank.locator(".field-error").wait_for()
        assert "256" in rank.locator(".field-error").inner_text()  # the bound the API names
        # Only that field carries it: no other field and no page-level box repeats it.
        assert page.locator(".field .field-error").filter(has_text="256").count() == 1
        assert page.locator("form .error-box").count() == 0
        page.screenshot(path=shots / "02-run-field-error.png", full_page=True)
    finally:
        context.close()
    jobs = httpx.get(
        f"{ui_platform.url}/v1/fine_tuning/jobs", headers={"authorization": f"Bearer {user['id_token']}"}, timeout=30
    )
    assert jobs.json()["data"] == []  # nothing was launched
