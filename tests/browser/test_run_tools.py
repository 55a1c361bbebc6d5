"""The runs as a daily tool, in a real Chromium, one signed-in session for the module: the runs list's
filters and the compare view, the run page's settings, validation-loss curve, Clone, Retry and
delete (its confirm lists what goes), an evaluation's per-class table, and a merged export as one
archive (its loose files download without leaving the app).

Runs are scripted (tests/e2e/scripted_trainer.py: seconds each); what only a trainer or an
evaluation execution would write (an export folder, a finished evaluation) is written to the
emulators as they leave it."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from runtune.metrics.classification import classification_report
from runtune.schemas import DatasetStatus
from runtune.schemas.common import new_id, now_ts
from tests.browser.conftest import LAPTOP, Account, sign_in, signed_up
from tests.e2e.jobs_support import put_dataset, wait_for

pytestmark = pytest.mark.platform

VISION = "tiny-gemma-3-vision"
TEXT = "tiny-gemma-3-text"
PASSWORD = "run-tools-password"


@dataclass
class World(Account):
    jobs: dict[str, str]  # suffix -> job id
    datasets: list[str]


def _job(api: httpx.Client, model: str, dataset: str, suffix: str, epochs: int | str) -> str:
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": epochs}}}
    body = {"model": model, "training_file": dataset, "suffix": suffix, "metadata": {"script": "succeed"}}
    created = api.post("/v1/fine_tuning/jobs", json={**body, "method": method})
    assert created.status_code == 200, created.text
    return created.json()["id"]


@pytest.fixture(scope="module")
def world(ui_platform) -> Iterator[World]:
    with signed_up(ui_platform, PASSWORD) as account:
        api = account.api
        pets = put_dataset(ui_platform, account.uid)
        birds = put_dataset(ui_platform, account.uid)
        account.store.update(f"datasets/{birds}", {"name": "birds"})
        # Still processing: its job waits in `validating_files` until it is cancelled.
        notes = put_dataset(ui_platform, account.uid, status=DatasetStatus.processing, modality="text")
        jobs = {
            "alpha": _job(api, VISION, pets, "alpha", 2),
            "beta": _job(api, VISION, birds, "beta", 3),
            "gamma": _job(api, TEXT, notes, "gamma", "auto"),
        }
        assert api.post(f"/v1/fine_tuning/jobs/{jobs['gamma']}/cancel").json()["status"] == "cancelled"
        for suffix in ("alpha", "beta"):
            wait_for(
                lambda s=suffix: api.get(f"/v1/fine_tuning/jobs/{jobs[s]}").json()["status"] == "succeeded",
                timeout_s=120,
            )
        yield World(**vars(account), jobs=jobs, datasets=[pets, birds, notes])


@pytest.fixture(scope="module")
def page(ui_platform, browser, world: World) -> Iterator[Any]:
    context = browser.new_context(viewport=LAPTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    sign_in(page, ui_platform.url, world.email, PASSWORD)
    yield page
    context.close()


def _rows(page) -> list[str]:
    return page.get_by_test_id("run-row").locator("td:nth-child(2)").all_inner_texts()


def test_filters_and_compare(page, ui_platform, world: World, shots) -> None:
    page.goto(f"{ui_platform.url}/runs")
    expect(page.get_by_test_id("run-row")).to_have_count(3)
    page.locator("select[name=filter-status]").select_option("cancelled")
    assert _rows(page) == ["gamma"]
    page.locator("select[name=filter-status]").select_option("")
    page.locator("select[name=filter-model]").select_option(VISION)
    assert sorted(_rows(page)) == ["alpha", "beta"]
    # The dataset filter names the datasets; the filters live in the URL, so a reload keeps them.
    dataset = page.locator("select[name=filter-dataset]")
    assert "birds" in dataset.locator("option").all_inner_texts()
    dataset.select_option(label="birds")
    assert _rows(page) == ["beta"]
    page.reload()
    expect(page.get_by_test_id("runs-shown")).to_have_text("1 of 3")
    assert _rows(page) == ["beta"]
    page.screenshot(path=shots / "01-filtered.png")

    page.goto(f"{ui_platform.url}/runs?status=succeeded")
    expect(page.get_by_test_id("run-row")).to_have_count(2)
    compare = page.get_by_role("button", name="Compare")
    assert compare.is_disabled()
    page.get_by_label("Compare alpha").check()
    page.get_by_label("Compare beta").check()
    page.get_by_role("button", name="Compare (2)").click()
    page.wait_for_url("**/runs/compare?ids=*")
    chart = page.get_by_test_id("compare-loss-chart")
    expect(chart).to_have_attribute("data-points", "6")  # the first run's six steps, the second overlaid
    assert chart.locator("polyline").count() == 2
    expect(page.get_by_test_id("compare-valid-chart").locator("polyline")).to_have_count(2)
    table = page.get_by_test_id("compare-table")
    epochs = table.locator("tr", has_text="Epochs").locator("td").all_inner_texts()
    assert epochs == ["2", "3"]
    final_valid = table.locator("tr", has_text="Final validation loss").locator("td").all_inner_texts()
    assert final_valid == ["0.4167", "0.4167"]  # 2.5 / 6, the scripted trainer's last validation
    page.screenshot(path=shots / "02-compare.png", full_page=True)


def test_run_page_clone_retry_and_delete(page, ui_platform, world: World, shots) -> None:
    alpha = world.jobs["alpha"]
    page.goto(f"{ui_platform.url}/runs/{alpha}")
    expect(page.get_by_test_id("hp-n_epochs")).to_have_text("2")
    page.get_by_test_id("training-options").locator("summary").click()
    expect(page.get_by_test_id("training-options")).to_contain_text("auto: bf16 LoRA")  # the plan's choice
    chart = page.get_by_test_id("loss-chart")
    expect(chart).to_have_attribute("data-points", "6")
    expect(chart.locator(".legend")).to_contain_text("validation loss: 0.4167")
    page.screenshot(path=shots / "03-run.png", full_page=True)

    # Clone: the new-run form holds the run's settings, editable, and launches a new run.
    page.get_by_role("link", name="Clone").click()
    page.wait_for_url(f"**/runs/new?from={alpha}")
    page.get_by_test_id("cloned-from").wait_for()
    expect(page.locator("input[name=epochs]")).to_have_value("2")
    expect(page.locator("select[name=dataset]")).to_have_value(world.datasets[0])
    expect(page.locator("textarea[name=metadata]")).to_have_value("script=succeed")
    page.locator("details.advanced summary").click()
    page.locator("input[name=suffix]").fill("alpha-2")
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url("**/runs/ftjob-*")
    clone = page.url.rsplit("/", 1)[-1]
    assert clone != alpha
    cloned = world.api.get(f"/v1/fine_tuning/jobs/{clone}").json()
    assert (cloned["suffix"], cloned["model"], cloned["training_file"]) == ("alpha-2", VISION, world.datasets[0])
    assert cloned["method"]["supervised"]["hyperparameters"]["n_epochs"] == 2

    # Retry a cancelled run: a new run with the same settings, at once.
    page.goto(f"{ui_platform.url}/runs/{world.jobs['gamma']}")
    page.get_by_role("button", name="Retry").click()
    page.wait_for_url(lambda url: "/runs/ftjob-" in url and world.jobs["gamma"] not in url)
    retried = world.api.get(f"/v1/fine_tuning/jobs/{page.url.rsplit('/', 1)[-1]}").json()
    assert (retried["suffix"], retried["model"], retried["training_file"]) == ("gamma", TEXT, world.datasets[2])
    assert world.api.post(f"/v1/fine_tuning/jobs/{retried['id']}/cancel").status_code == 200

    # Delete: the confirm lists the model, its checkpoint and its export before anything goes.
    folder = f"users/{world.uid}/jobs/{alpha}/export/adapter/"
    world.blobs.upload_bytes(folder + "adapter_config.json", b'{"r": 8}', content_type="application/json")
    world.store.update(f"jobs/{alpha}", {"runtune": {"export": {"adapter": folder}}})
    model = f"ft:{VISION}:{alpha}"
    assert world.api.post("/v1/exports", json={"model": model, "format": "adapter"}).status_code == 200
    page.goto(f"{ui_platform.url}/runs/{alpha}")
    page.get_by_role("button", name="Delete run").click()
    listed = page.get_by_test_id("delete-run-list")
    expect(listed).to_contain_text(model)
    expect(listed).to_contain_text("1 model checkpoint: step 3")
    expect(listed).to_contain_text("1 export (adapter)")
    page.screenshot(path=shots / "04-delete.png")
    page.get_by_role("button", name="Delete run and all it produced").click()
    page.wait_for_url(f"{ui_platform.url}/runs")
    page.get_by_test_id("run-row").first.wait_for()
    assert "alpha" not in _rows(page) and "alpha-2" in _rows(page)
    assert world.api.get(f"/v1/fine_tuning/jobs/{alpha}").status_code == 404
    assert world.blobs.list(f"users/{world.uid}/jobs/{alpha}/") == []


def test_evaluation_per_class_table(page, ui_platform, world: World, shots) -> None:
    labels = ["cat", "dog"]
    truth = ["cat", "cat", "dog", "dog"]
    base, tuned = VISION, f"ft:{VISION}:{world.jobs['beta']}"
    evaluation_id = new_id("eval")
    world.store.set(
        f"evaluations/{evaluation_id}",
        {
            "id": evaluation_id,
            "object": "evaluation",
            "owner": world.uid,
            "created_at": now_ts(),
            "finished_at": now_ts(),
            "status": "succeeded",
            "dataset_id": world.datasets[1],
            "split": "test",
            "models": [base, tuned],
            "method": "label_scoring",
            "labels": labels,
            "samples_done": 8,
            "samples_total": 8,
            "metrics": {
                base: classification_report(truth, ["cat", "cat", "cat", "cat"], labels),
                tuned: classification_report(truth, ["cat", "cat", "dog", "cat"], labels),
            },
        },
    )
    page.goto(f"{ui_platform.url}/evaluations/{evaluation_id}")
    table = page.get_by_test_id("per-class")
    rows = table.get_by_test_id("per-class-row")
    expect(rows).to_have_count(2)
    # Label, precision (base, tuned), recall (base, tuned), F1 (base, tuned), support.
    assert rows.nth(0).locator("th, td").all_inner_texts() == ["cat", "0.5", "0.667", "1", "1", "0.667", "0.8", "2"]
    assert rows.nth(1).locator("th, td").all_inner_texts() == ["dog", "0", "1", "0", "0.5", "0", "0.667", "2"]
    matrices = page.get_by_test_id("confusion-matrix")
    expect(matrices).to_have_count(2)
    assert [int(c) for c in matrices.nth(1).locator("tbody td").all_inner_texts()] == [2, 0, 1, 1]
    page.screenshot(path=shots / "05-per-class.png", full_page=True)


def test_merged_export_downloads_as_one_archive(page, ui_platform, world: World, shots) -> None:
    beta = world.jobs["beta"]
    folder = f"users/{world.uid}/jobs/{beta}/export"
    files = {"config.json": b'{"model_type": "gemma3"}', "model.safetensors": b"merged weights", "README.md": b"# beta"}
    world.blobs.upload_bytes(f"{folder}/adapter/adapter_config.json", b'{"r": 8}', content_type="application/json")
    for name, data in files.items():
        world.blobs.upload_bytes(f"{folder}/merged/{name}", data)
    world.store.update(
        f"jobs/{beta}", {"runtune": {"export": {"adapter": f"{folder}/adapter/", "merged": f"{folder}/merged/"}}}
    )
    model = f"ft:{VISION}:{beta}"
    assert world.api.post("/v1/exports", json={"model": model, "format": "merged"}).status_code == 200

    page.goto(f"{ui_platform.url}/exports")
    with page.expect_download() as archive:
        page.get_by_test_id("export-archive").click()
    assert archive.value.suggested_filename == f"ft-{VISION}-{beta}-merged.tar"
    with tarfile.open(archive.value.path()) as tar:
        assert sorted(tar.getnames()) == sorted(f"merged/{name}" for name in files)
        assert tar.extractfile("merged/model.safetensors").read() == files["model.safetensors"]  # type: ignore[union-attr]

    # A loose Markdown file downloads as a file; the app stays where it is.
    with page.expect_download() as loose:
        page.get_by_test_id("export-download").filter(has_text="README.md").click()
    assert loose.value.suggested_filename == "README.md"
    assert Path(loose.value.path()).read_bytes() == files["README.md"]
    assert page.url == f"{ui_platform.url}/exports"
    expect(page.get_by_role("heading", name="Exports")).to_be_visible()
    page.screenshot(path=shots / "06-exports.png", full_page=True)
