"""A new user's first hour in the web UI, in a real Chromium against the whole local platform: sign up,
upload the demo set (the progress bar reaches 100%), see its samples and stats, launch a run on the
tiny model with an honest estimate, watch the loss chart grow until it succeeds, then vibe-check it,
evaluate it against the base model, and download an export. A screenshot of every page is saved."""

from __future__ import annotations

import tarfile
import uuid
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from runtune.demo.shapes import CLASSES, write_archive
from tests.browser.conftest import LAPTOP, PHONE

pytestmark = pytest.mark.platform

SMALL = {"train": 48, "validation": 8, "test": 16}

# Records every value the upload's progress bar shows (the page navigates away right after 100%).
WATCH_UPLOAD = """() => {
  window.__uploadProgress = [];
  const seen = () => {
    const bar = document.querySelector('[data-testid=upload-status] [role=progressbar]');
    if (bar) window.__uploadProgress.push(Number(bar.getAttribute('aria-valuenow')));
  };
  new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def _demo_zip(folder: Path) -> Path:
    path = folder / "shapes.zip"
    with path.open("wb") as out:
        write_archive(out, counts=SMALL)
    return path


def _sign_up(page, url: str, shots: Path) -> str:
    email = f"ui-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(url)
    page.get_by_role("tab", name="Create account").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("a-good-password")
    page.screenshot(path=shots / "01-sign-up.png")
    page.get_by_role("button", name="Create account").last.click()
    page.get_by_test_id("account-email").wait_for()
    assert page.get_by_test_id("account-email").inner_text() == email
    page.get_by_text("No datasets yet").wait_for()
    page.screenshot(path=shots / "02-datasets-empty.png")
    return email


def _upload_demo_set(page, archive: Path, shots: Path) -> str:
    page.get_by_role("link", name="New dataset").first.click()
    page.get_by_role("heading", name="New dataset").wait_for()
    page.evaluate(WATCH_UPLOAD)
    page.locator("input[name=file]").set_input_files(str(archive))
    page.locator("input[name=name]").fill("demo shapes")
    page.screenshot(path=shots / "03-new-dataset.png")
    page.get_by_role("button", name="Upload and process").click()
    page.wait_for_url("**/datasets/file-*", timeout=60_000)
    progress = page.evaluate("window.__uploadProgress")
    assert progress and progress[-1] == 100, progress
    assert progress == sorted(progress), f"the progress bar went backwards: {progress}"
    dataset_id = page.url.rsplit("/", 1)[-1]
    # Processing, then the stats and the samples.
    page.get_by_test_id("sample-grid").locator("img").first.wait_for(timeout=120_000)
    return dataset_id


def _check_samples_and_stats(page, shots: Path) -> None:
    stats = page.get_by_test_id("dataset-stats")
    split_chart = stats.get_by_test_id("split-chart")
    for split, count in SMALL.items():
        assert split_chart.get_by_text(split, exact=True).is_visible()
        assert split_chart.get_by_text(str(count), exact=True).count() >= 1
    labels = stats.get_by_test_id("label-chart").inner_text()
    assert all(name in labels for name in CLASSES), labels
    samples = page.get_by_test_id("sample")
    assert samples.count() == 24  # one page of the train split's 48
    shown = {samples.nth(i).locator(".label-chip").inner_text() for i in range(samples.count())}
    assert shown <= set(CLASSES) and len(shown) >= 2, shown
    thumbnail = samples.first.locator("img")
    assert thumbnail.get_attribute("src").startswith("data:image/")
    assert page.evaluate("(img) => img.naturalWidth", thumbnail.element_handle()) > 0
    page.screenshot(path=shots / "04-dataset.png", full_page=True)


def _launch_run(page, shots: Path) -> str:
    page.get_by_role("link", name="Train on it").click()
    page.get_by_role("heading", name="New run").wait_for()
    page.locator("input[name=model][value=tiny-gemma-3-vision]").check()
    page.locator("input[name=epochs]").fill("1")
    page.locator("input[name=batch_size]").fill("4")
    page.get_by_text("Advanced").click()
    page.locator("input[name=suffix]").fill("first-run")
    page.locator("input[name=checkpoint_every_steps]").fill("4")
    estimate = page.get_by_test_id("estimate")
    estimate.get_by_text("Steps").wait_for()
    # 48 training examples, batch 4, 1 epoch: 12 steps, and a duration and cost from the price table.
    page.wait_for_function(
        "() => document.querySelector('[data-testid=estimate] dd')?.textContent === '12'", timeout=15_000
    )
    assert page.get_by_test_id("estimate-duration").inner_text() not in ("", "—")
    assert page.get_by_test_id("estimate-cost").inner_text().startswith("$")
    page.screenshot(path=shots / "05-new-run.png", full_page=True)
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url("**/runs/ftjob-*")
    return page.url.rsplit("/", 1)[-1]


def _watch_run(page, shots: Path) -> str:
    chart = page.get_by_test_id("loss-chart")
    # The page opens as the run is launched, before the trainer process has even imported torch: what
    # the chart shows now is the starting point, and every later point can only come from the live
    # stream (the page is never reloaded). A fast tiny run may finish between two looks, so the test
    # compares with this first look, not with a mid-run one.
    chart.wait_for()
    first = int(chart.get_attribute("data-points"))
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=loss-chart]')?.dataset.points) >= 1", timeout=240_000
    )
    page.screenshot(path=shots / "06-run-live.png", full_page=True)
    # Any end, so a failed run reports its reason at once instead of timing out.
    ended = page.locator(".run-status").locator(".status-succeeded, .status-failed, .status-cancelled")
    ended.wait_for(timeout=300_000)
    assert ended.inner_text() == "succeeded", page.locator(".run-status").inner_text()
    # The status and the stream's last events arrive separately: wait for each, briefly.
    expect(page.get_by_test_id("events-log")).to_contain_text("The job has successfully completed", timeout=15_000)
    expect(chart).to_have_attribute("data-points", "12", timeout=15_000)
    last = int(chart.get_attribute("data-points"))
    assert last > first, f"the loss chart did not update live ({first} -> {last} points)"
    expect(page.get_by_test_id("lr-chart")).to_have_attribute("data-points", "12", timeout=15_000)
    expect(page.get_by_test_id("run-steps")).to_have_text("Step 12 of 12", timeout=15_000)
    # The numbers it trained with: those given as such, `auto` ones with what they became.
    expect(page.get_by_test_id("hp-batch_size")).to_have_text("4")
    expect(page.get_by_test_id("hp-learning_rate_multiplier")).to_have_text("auto → 1")
    page.get_by_test_id("checkpoints").wait_for()
    model = page.get_by_test_id("fine-tuned-model").inner_text()
    assert model.startswith("ft:tiny-gemma-3-vision:")
    page.screenshot(path=shots / "07-run-succeeded.png", full_page=True)
    # The final step's model checkpoint: "use this model" opens the playground with it chosen.
    page.get_by_test_id("use-checkpoint").first.click()
    expect(page.locator("select[name=model]")).to_have_value(f"{model}:ckpt-step-12")
    page.go_back()
    page.get_by_test_id("checkpoints").wait_for()
    return model


def _runs_list(page, shots: Path) -> None:
    page.get_by_role("link", name="Runs", exact=True).click()
    row = page.get_by_test_id("run-row").filter(has_text="first-run")
    row.locator(".status-succeeded").wait_for()
    page.screenshot(path=shots / "08-runs.png")


def _vibe_check(page, archive: Path, shots: Path, model: str) -> None:
    with zipfile.ZipFile(archive) as zipped:
        name = next(n for n in zipped.namelist() if "/test/circle/" in n)
        image = archive.parent / "circle.png"
        image.write_bytes(zipped.read(name))
    page.get_by_role("link", name="Playground").click()
    page.locator("select[name=model]").select_option(model)
    page.locator("textarea[name=prompt]").fill("Which shape is this?")
    page.locator("input[name=image]").set_input_files(str(image))
    page.locator("img.preview-image").wait_for()
    page.get_by_role("button", name="Run vibe check").click()
    result = page.get_by_test_id("vibe-result")
    result.wait_for(timeout=180_000)
    assert "Base · tiny-gemma-3-vision" in result.inner_text()
    assert "Tuned · first-run · tiny-gemma-3-vision on demo shapes" in result.inner_text()  # named, not by id
    page.screenshot(path=shots / "09-playground.png", full_page=True)


def _evaluate(page, shots: Path, model: str) -> None:
    page.get_by_role("link", name="Evaluations").click()
    page.locator("select[name=model]").select_option(model)
    page.locator("select[name=split]").select_option("test")
    page.locator("input[name=max_samples]").fill("8")
    page.get_by_role("button", name="Evaluate").click()
    page.wait_for_url("**/evaluations/eval-*")
    results = page.get_by_test_id("evaluation-results")
    results.wait_for(timeout=300_000)
    text = results.inner_text()
    assert "Accuracy" in text and "base: tiny-gemma-3-vision" in text and "tuned: first-run" in text
    matrix = page.get_by_test_id("confusion-matrix").last  # the tuned model's (the base's comes first)
    cells = [int(c) for c in matrix.locator("tbody td").all_inner_texts()]
    assert len(cells) == len(CLASSES) ** 2 and sum(cells) <= 8
    page.screenshot(path=shots / "10-evaluation.png", full_page=True)


def _export(page, shots: Path, model: str, folder: Path) -> None:
    page.get_by_role("link", name="Exports").click()
    page.locator("select[name=model]").select_option(model)
    page.locator("select[name=format]").select_option("adapter")
    page.get_by_role("button", name="Export", exact=True).click()
    link = page.get_by_test_id("export-download").first
    link.wait_for(timeout=120_000)
    page.screenshot(path=shots / "11-exports.png", full_page=True)
    with page.expect_download() as started:
        link.click()
    saved = folder / "adapter.tar.gz"
    started.value.save_as(saved)
    with tarfile.open(saved) as archive:
        names = archive.getnames()
    assert any(name.endswith("adapter_config.json") for name in names), names


def _settings(page, shots: Path) -> None:
    page.get_by_role("link", name="Settings").click()
    token = "hf_" + uuid.uuid4().hex
    row = page.get_by_test_id("secret-hf_token")
    row.locator("input").fill(token)
    row.get_by_role("button", name="Save").click()
    page.get_by_test_id("secret-hf_token-stored").wait_for()
    assert row.locator("input").input_value() == ""
    stored = page.evaluate("() => JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})")
    assert token not in stored
    page.screenshot(path=shots / "12-settings.png", full_page=True)


def test_new_user_uploads_trains_and_compares(ui_platform, browser, shots, tmp_path) -> None:
    archive = _demo_zip(tmp_path)
    context = browser.new_context(viewport=LAPTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        _sign_up(page, ui_platform.url, shots)
        _upload_demo_set(page, archive, shots)
        _check_samples_and_stats(page, shots)
        _launch_run(page, shots)
        model = _watch_run(page, shots)
        _runs_list(page, shots)
        page.set_viewport_size(PHONE)
        page.go_back()
        page.wait_for_function("() => document.querySelector('[data-testid=loss-chart]')?.dataset.points === '12'")
        page.screenshot(path=shots / "08b-run-phone.png", full_page=True)
        page.set_viewport_size(LAPTOP)
        _vibe_check(page, archive, shots, model)
        _evaluate(page, shots, model)
        _export(page, shots, model, tmp_path)
        _settings(page, shots)
    except Exception:
        page.screenshot(path=shots / "failure.png", full_page=True)
        raise
    finally:
        context.close()
