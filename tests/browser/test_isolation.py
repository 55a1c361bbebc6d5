"""One user cannot reach another's dataset or run by URL: the page says "not found" and shows none
of it, while the owner opens the very same URLs (deep links served by the gateway as the app)."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.conftest import PHONE, signed_in
from tests.support import sign_up

pytestmark = pytest.mark.platform

SCRIPTED_RUN = {"model": "tiny-gemma-3-vision", "metadata": {"script": "succeed"}, "suffix": "owners-run"}


def _owned_dataset_and_run(ui_platform) -> tuple[dict[str, str], str, str]:
    from tests.e2e.jobs_support import put_demo_dataset, wait_for

    owner = sign_up(ui_platform.auth_host, password="owner-password")
    dataset_id = put_demo_dataset(ui_platform, owner["uid"], {"train": 8, "validation": 4, "test": 4})
    headers = {"authorization": f"Bearer {owner['id_token']}"}
    with httpx.Client(base_url=ui_platform.url, headers=headers, timeout=30) as client:
        job = client.post("/v1/fine_tuning/jobs", json={**SCRIPTED_RUN, "training_file": dataset_id})
        assert job.status_code == 200, job.text
        job_id = job.json()["id"]
        wait_for(lambda: client.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "succeeded", timeout_s=60)
    return owner, dataset_id, job_id


def test_another_users_dataset_and_run_are_not_found(ui_platform, browser, shots) -> None:
    owner, dataset_id, job_id = _owned_dataset_and_run(ui_platform)
    stranger = sign_up(ui_platform.auth_host, password="stranger-password")

    with signed_in(browser, ui_platform.url, stranger["email"], "stranger-password") as page:
        page.goto(f"{ui_platform.url}/datasets/{dataset_id}")
        page.get_by_test_id("not-found").wait_for()
        assert "Dataset not found" in page.get_by_test_id("not-found").inner_text()
        assert page.get_by_text("demo shapes").count() == 0
        page.screenshot(path=shots / "01-dataset-not-found.png")
        page.goto(f"{ui_platform.url}/runs/{job_id}")
        page.get_by_test_id("not-found").wait_for()
        assert "Run not found" in page.get_by_test_id("not-found").inner_text()
        assert page.get_by_text("owners-run").count() == 0
        page.set_viewport_size(PHONE)
        page.screenshot(path=shots / "02-run-not-found-phone.png")
        # Their own lists are empty: nothing of the owner's leaks into them either.
        page.goto(f"{ui_platform.url}/runs")
        page.get_by_text("No runs yet").wait_for()

    # The owner reaches both through the same URLs.
    with signed_in(browser, ui_platform.url, owner["email"], "owner-password") as page:
        page.goto(f"{ui_platform.url}/datasets/{dataset_id}")
        page.get_by_role("heading", name="demo shapes").wait_for()
        page.goto(f"{ui_platform.url}/runs/{job_id}")
        page.get_by_role("heading", name="owners-run").wait_for()
        page.locator(".status-succeeded").first.wait_for()
        assert page.get_by_test_id("not-found").count() == 0
        page.screenshot(path=shots / "03-owner-sees-run.png")
