"""A preference run in a real Chromium: on a preference dataset the new-run form offers DPO's beta and
launches a `dpo` job; its run page shows beta among the hyperparameters and charts the rewards and
the reward accuracy (the run is scripted: tests/e2e/scripted_trainer.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from runtune.schemas import TaskKind
from tests.browser.conftest import LAPTOP, sign_in
from tests.e2e.jobs_support import wait_for
from tests.support import pets_dataset, sign_up

pytestmark = pytest.mark.platform
PASSWORD = "dpo-run-password"


@pytest.fixture(scope="module")
def account(ui_platform) -> Iterator[dict[str, Any]]:
    from runtune.adapters.firestore import FirestoreMetadataStore

    user = sign_up(ui_platform.auth_host, password=PASSWORD)
    # A preference set as the preprocessing service leaves it (the jobs API reads the document only).
    pairs = pets_dataset(user["uid"]).model_copy(
        update={"name": "pairs", "task_kind": TaskKind.preference, "labels": [], "stats": {"pairs": 50}}
    )
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ui_platform.emulator_env.items():
            patch.setenv(name, value)
        FirestoreMetadataStore.for_project(ui_platform.project_id).set(f"datasets/{pairs.id}", pairs.to_document())
    api = httpx.Client(base_url=ui_platform.url, headers={"authorization": f"Bearer {user['id_token']}"}, timeout=30)
    yield {**user, "dataset": pairs.id, "api": api}
    api.close()


def test_a_dpo_run_from_the_form_to_its_reward_charts(ui_platform, browser, account, shots) -> None:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        sign_in(page, ui_platform.url, account["email"], PASSWORD)
        page.goto(f"{ui_platform.url}/runs/new?dataset={account['dataset']}")
        beta = page.locator("input[name=beta]")
        expect(beta).to_have_value("auto")
        beta.fill("0.2")
        page.locator("label.model-card", has_text="tiny-gemma-3-vision").first.click()
        page.locator("details.advanced summary").click()
        page.locator("textarea[name=metadata]").fill("script=succeed")
        page.screenshot(path=shots / "01-new-dpo-run.png", full_page=True)
        page.get_by_role("button", name="Launch run").click()
        page.wait_for_url("**/runs/ftjob-*")
        job_id = page.url.rsplit("/", 1)[-1]
        job = account["api"].get(f"/v1/fine_tuning/jobs/{job_id}").json()
        assert job["method"]["type"] == "dpo" and job["method"]["dpo"]["hyperparameters"]["beta"] == 0.2
        wait_for(lambda: account["api"].get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "succeeded")

        page.reload()
        expect(page.get_by_test_id("hp-beta")).to_have_text("0.2")
        expect(page.get_by_test_id("reward-chart")).to_have_attribute("data-points", "6")
        expect(page.get_by_test_id("reward-chart").locator(".legend")).to_contain_text("margin: 1")
        expect(page.get_by_test_id("reward-accuracy-chart")).to_have_attribute("data-points", "6")
        page.screenshot(path=shots / "02-dpo-run.png", full_page=True)
    finally:
        context.close()
