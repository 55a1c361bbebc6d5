"""The run page's Pause, Resume and Cancel buttons follow the job's status (Cancel asks first), and
`validating_files` reads "Validating files"."""

from __future__ import annotations

import httpx
import pytest

from runtune.schemas import DatasetStatus
from tests.browser.conftest import signed_in
from tests.support import sign_up

pytestmark = pytest.mark.platform


def test_pause_resume_and_cancel_buttons_follow_the_status(ui_platform, browser, shots) -> None:
    from tests.e2e.jobs_support import put_dataset

    user = sign_up(ui_platform.auth_host, password="pause-password")
    # A file still processing: the job waits in `validating_files`, where pause and resume are immediate.
    file_id = put_dataset(ui_platform, user["uid"], status=DatasetStatus.processing)
    headers = {"authorization": f"Bearer {user['id_token']}"}
    with httpx.Client(base_url=ui_platform.url, headers=headers, timeout=30) as client:
        job = client.post("/v1/fine_tuning/jobs", json={"model": "tiny-gemma-3-vision", "training_file": file_id})
        assert job.status_code == 200, job.text
        job_id = job.json()["id"]

    with signed_in(browser, ui_platform.url, user["email"], "pause-password") as page:
        page.goto(f"{ui_platform.url}/runs/{job_id}")
        status = page.locator(".run-status .status")
        page.locator(".run-status .status-validating_files").wait_for()
        assert status.inner_text() == "Validating files"
        assert page.get_by_role("button", name="Resume").count() == 0

        page.get_by_role("button", name="Pause").click()
        page.locator(".run-status .status-paused").wait_for()
        assert status.inner_text() == "paused" and page.get_by_role("button", name="Pause").count() == 0
        page.screenshot(path=shots / "01-paused.png")

        page.get_by_role("button", name="Resume").click()
        page.locator(".run-status .status-validating_files").wait_for()
        page.get_by_role("button", name="Pause").wait_for()
        assert page.get_by_role("button", name="Resume").count() == 0

        # Cancel asks first; "Keep it" leaves the run as it is.
        page.get_by_role("button", name="Cancel run").click()
        page.get_by_test_id("cancel-run").get_by_role("button", name="Keep it").click()
        assert page.get_by_test_id("cancel-run").count() == 0
        page.get_by_role("button", name="Cancel run").click()
        page.get_by_role("button", name="Yes, cancel the run").click()
        page.locator(".run-status .status-cancelled").wait_for()
        for name in ("Pause", "Resume", "Cancel run"):
            assert page.get_by_role("button", name=name).count() == 0, name
