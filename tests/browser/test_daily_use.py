"""The web UI as a daily tool (issue 16): names instead of ids, every problem at once next to its field,
warnings before deleting what others use, a retry for a failed dataset, the playground's sampling
settings, and no request to any host but the deployment's own, on a laptop and on a phone.

One user, one dataset and one finished (scripted) run for the module; one signed-in page for the
tests that need no fresh browser."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from runtune.schemas.common import new_id
from tests.browser.conftest import LAPTOP, PHONE, sign_in
from tests.support import sign_up

pytestmark = pytest.mark.platform

PASSWORD = "daily-use-password"
RUN_NAME = "shapes-r16"
# A phone's user agent: the one Firebase's redirect helper loads a Google script for.
MOBILE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.0 Mobile/15E148 Safari/604.1"
)


@dataclass
class World:
    user: dict[str, str]
    dataset_id: str
    job_id: str
    model: str
    evaluation_id: str


def _store(ui_platform):
    from runtune.adapters.firestore import FirestoreMetadataStore

    with pytest.MonkeyPatch.context() as patch:
        for name, value in ui_platform.emulator_env.items():
            patch.setenv(name, value)
        return FirestoreMetadataStore.for_project(ui_platform.project_id)


def _client(ui_platform, user: dict[str, str]) -> httpx.Client:
    headers = {"authorization": f"Bearer {user['id_token']}"}
    return httpx.Client(base_url=ui_platform.url, headers=headers, timeout=30)


def _finished_run(ui_platform, user: dict[str, str], dataset_id: str, suffix: str) -> dict[str, Any]:
    from tests.e2e.jobs_support import wait_for

    body = {"model": "tiny-gemma-3-vision", "training_file": dataset_id, "suffix": suffix}
    body["metadata"] = {"script": "succeed"}
    with _client(ui_platform, user) as client:
        job = client.post("/v1/fine_tuning/jobs", json=body)
        assert job.status_code == 200, job.text
        job_id = job.json()["id"]
        return wait_for(
            lambda: (found := client.get(f"/v1/fine_tuning/jobs/{job_id}").json())["status"] == "succeeded" and found,
            timeout_s=90,
        )


def _evaluation(ui_platform, user: dict[str, str], dataset_id: str, model: str) -> str:
    """A finished evaluation on the dataset, as the inference service leaves one."""
    from runtune.schemas.inference import Evaluation, EvaluationStatus

    evaluation = Evaluation(
        id=new_id("eval"),
        owner=user["uid"],
        dataset_id=dataset_id,
        models=["tiny-gemma-3-vision", model],
        status=EvaluationStatus.succeeded,
    )
    _store(ui_platform).set(f"evaluations/{evaluation.id}", evaluation.to_document())
    return evaluation.id


@pytest.fixture(scope="module")
def world(ui_platform) -> World:
    from tests.e2e.jobs_support import put_demo_dataset

    user = sign_up(ui_platform.auth_host, password=PASSWORD)
    dataset_id = put_demo_dataset(ui_platform, user["uid"], {"train": 8, "validation": 4, "test": 4})
    job = _finished_run(ui_platform, user, dataset_id, RUN_NAME)
    evaluation_id = _evaluation(ui_platform, user, dataset_id, job["fine_tuned_model"])
    return World(user, dataset_id, job["id"], job["fine_tuned_model"], evaluation_id)


@pytest.fixture(scope="module")
def page(ui_platform, browser, world: World) -> Iterator[Any]:
    context = browser.new_context(viewport=LAPTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ui_platform.url)
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    sign_in(opened, ui_platform.url, world.user["email"], PASSWORD)
    try:
        yield opened
    finally:
        context.close()


def test_pickers_and_pages_name_runs_and_datasets(ui_platform, world: World, page, shots) -> None:
    for path in ("/playground", "/evaluations", "/exports"):
        page.goto(ui_platform.url + path)
        option = page.locator(f"select[name=model] option[value='{world.model}']")
        expect(option).to_contain_text(RUN_NAME)
        expect(option).to_contain_text("on demo shapes")  # the dataset it was trained on, by name
        assert "ftjob-" not in option.inner_text() and option.get_attribute("title") == world.model
        page.screenshot(path=shots / f"picker-{path.strip('/')}.png")
    # The playground's id is one click away.
    page.goto(f"{ui_platform.url}/playground")
    page.get_by_test_id("copy-id").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == world.model
    # The run's page: its name, its dataset by name, its id on hover.
    page.goto(f"{ui_platform.url}/runs/{world.job_id}")
    page.get_by_role("heading", name=RUN_NAME).wait_for()
    expect(page.get_by_test_id("dataset-link")).to_have_text("demo shapes")
    assert page.locator(f"code[title='{world.job_id}']").count() == 1


def test_every_problem_shows_at_once_next_to_its_field(ui_platform, world: World, page, shots, tmp_path) -> None:
    page.goto(f"{ui_platform.url}/runs/new")
    page.locator("input[name=model][value=tiny-gemma-3-vision]").check()
    page.locator("input[name=epochs]").fill("0")
    page.locator("input[name=batch_size]").fill("-1")
    page.get_by_text("Advanced").click()
    page.locator("input[name=lora_rank]").fill("9999")
    page.get_by_text("Advanced").click()  # folded again: a problem inside unfolds it
    page.get_by_role("button", name="Launch run").click()

    def error_at(selector: str):
        return page.locator(".field", has=page.locator(selector)).locator(".field-error")

    expect(error_at("input[name=epochs]")).to_have_text("Must be at least 1")
    expect(error_at("input[name=batch_size]")).to_have_text("Must be at least 1")
    expect(error_at("input[name=lora_rank]")).to_have_text("Must be at most 256")
    assert error_at("input[name=lora_rank]").is_visible()
    assert page.locator("form .error-box").count() == 0  # nothing left over for a box
    page.screenshot(path=shots / "01-run-problems.png", full_page=True)

    # The upload form: a table whose mapping names no answer and an unknown column, a name too long,
    # all told before anything is uploaded.
    table = tmp_path / "qa.csv"
    table.write_text("question,reply\nwhat?,this\n")
    uploads: list[str] = []
    page.on("request", lambda request: uploads.append(request.url) if "/v1/uploads" in request.url else None)
    page.goto(f"{ui_platform.url}/datasets/new")
    page.locator("input[name=file]").set_input_files(str(table))
    page.locator("input[name=mapping-user]").fill("{question} {nope}")
    page.locator("input[name=name]").fill("n" * 201)
    page.get_by_role("button", name="Upload and process").click()
    expect(error_at("input[name=name]")).to_contain_text("At most 200 characters")
    expect(error_at("select[name=mapping-answer]")).to_contain_text("Choose an answer column")
    expect(error_at("input[name=mapping-user]")).to_contain_text("No column named nope")
    assert uploads == []
    page.screenshot(path=shots / "02-upload-problems.png", full_page=True)

    # A JSONL whose second line is broken: the preview shows it, marked, instead of dropping it.
    chat = tmp_path / "chat.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    chat.write_text(good + '\n{"messages": [\n' + good + "\n")
    page.locator("input[name=file]").set_input_files(str(chat))
    bad = page.get_by_test_id("bad-line")
    expect(bad).to_have_count(1)
    expect(bad).to_contain_text("line 2: not valid JSON")
    expect(page.locator("input[name=skip_bad_rows]")).to_be_visible()


def test_playground_sends_sampling_settings_and_shows_an_empty_answer(ui_platform, world: World, page, shots) -> None:
    from runtune.schemas.inference import VibeAnswer, VibeCheck

    blank = VibeCheck(
        id=new_id("vibe"),
        owner=world.user["uid"],
        model=world.model,
        base_model="tiny-gemma-3-vision",
        results=[VibeAnswer(prompt="say nothing", base="a circle", tuned="  \n\t ")],
    )
    _store(ui_platform).set(f"vibe_checks/{blank.id}", blank.to_document())
    page.goto(f"{ui_platform.url}/playground")
    page.locator("input[name=temperature]").fill("0.7")
    page.locator("input[name=top_p]").fill("0.9")
    page.locator("input[name=max_tokens]").fill("16")
    with page.expect_request(lambda r: r.url.endswith("/v1/vibe_checks") and r.method == "POST") as sent:
        page.get_by_role("button", name="Run vibe check").click()
    body = sent.value.post_data_json
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.9, 16)
    # An earlier answer of only blank space: said so, not a blank card.
    page.get_by_role("button", name="say nothing").click()
    expect(page.get_by_test_id("vibe-tuned")).to_have_text("(empty answer)")
    expect(page.get_by_test_id("vibe-base")).to_have_text("a circle")
    page.screenshot(path=shots / "01-empty-answer.png", full_page=True)


def test_deleting_a_used_dataset_warns_and_leaves_deleted_references(ui_platform, world: World, page, shots) -> None:
    from tests.e2e.jobs_support import put_demo_dataset

    dataset_id = put_demo_dataset(ui_platform, world.user["uid"], {"train": 8, "validation": 4, "test": 4})
    job = _finished_run(ui_platform, world.user, dataset_id, "old-run")
    evaluation_id = _evaluation(ui_platform, world.user, dataset_id, job["fine_tuned_model"])
    page.goto(f"{ui_platform.url}/datasets/{dataset_id}")
    page.get_by_role("heading", name="demo shapes").wait_for()
    # The question comes once the page has looked up what uses the dataset.
    with page.expect_event("dialog") as shown:
        page.get_by_role("button", name="Delete").click()
    question = shown.value.message
    shown.value.dismiss()
    assert 'run "old-run" (succeeded)' in question and f"evaluation {evaluation_id}" in question, question
    assert RUN_NAME not in question  # the other dataset's run does not use this one
    expect(page.get_by_role("heading", name="demo shapes")).to_be_visible()  # dismissed: still there
    with page.expect_event("dialog") as shown:
        page.get_by_role("button", name="Delete").click()
    shown.value.accept()
    page.wait_for_url("**/datasets")

    page.goto(f"{ui_platform.url}/runs/{job['id']}")
    expect(page.get_by_test_id("dataset-deleted")).to_have_text("deleted dataset")
    assert page.get_by_text("another account").count() == 0
    page.goto(f"{ui_platform.url}/evaluations/{evaluation_id}")
    expect(page.get_by_test_id("dataset-deleted")).to_be_visible()
    # The run page's "Evaluate" link names the deleted dataset: the form says why it is not offered.
    page.goto(f"{ui_platform.url}/evaluations?model={job['fine_tuned_model']}&dataset={dataset_id}")
    expect(page.get_by_test_id("asked-dataset-missing")).to_have_text("The run's dataset was deleted: pick another.")
    expect(page.locator("select[name=dataset]")).to_have_value(world.dataset_id)
    page.screenshot(path=shots / "01-evaluate-deleted-dataset.png", full_page=True)
    page.goto(f"{ui_platform.url}/no/such/page")
    expect(page.get_by_test_id("not-found")).to_contain_text("Page not found")
    expect(page.get_by_test_id("not-found")).to_contain_text("There is no page at /no/such/page")


def test_a_failed_dataset_can_be_retried(ui_platform, world: World, page, shots) -> None:
    from runtune.adapters.gcs import GcsBlobStore
    from runtune.blob_layout import source_path
    from runtune.demo.shapes import write_archive
    from runtune.schemas.common import ApiError
    from runtune.schemas.datasets import Dataset, DatasetStatus, IngestSpec

    # As a killed ingestion leaves its dataset: failed with the reason, its source still stored.
    dataset_id = new_id("file")
    archive = io.BytesIO()
    write_archive(archive, counts={"train": 6, "validation": 3, "test": 3})
    path = source_path(world.user["uid"], dataset_id, "small.zip")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ui_platform.emulator_env.items():
            patch.setenv(name, value)
        blobs = GcsBlobStore.for_bucket(ui_platform.project_id, ui_platform.emulator_env["RUNTUNE_BUCKET"])
        blobs.upload_stream(path, io.BytesIO(archive.getvalue()))
    failed = Dataset(
        id=dataset_id,
        owner=world.user["uid"],
        name="retry me",
        filename="small.zip",
        bytes=len(archive.getvalue()),
        source={"kind": "file"},
        status=DatasetStatus.failed,
        error=ApiError(code="ingestion_failed", message="its execution was stopped: out of memory"),
        ingest=IngestSpec(object_path=path, filename="small.zip"),
    )
    _store(ui_platform).set(f"datasets/{dataset_id}", failed.to_document())

    page.goto(f"{ui_platform.url}/datasets/{dataset_id}")
    expect(page.get_by_test_id("dataset-error")).to_contain_text("out of memory")
    expect(page.get_by_role("button", name="Delete")).to_be_visible()
    page.screenshot(path=shots / "01-failed.png", full_page=True)
    page.get_by_role("button", name="Retry").click()
    page.get_by_test_id("sample-grid").locator("img").first.wait_for(timeout=120_000)
    assert page.get_by_role("button", name="Retry").count() == 0
    page.screenshot(path=shots / "02-retried.png", full_page=True)
    with _client(ui_platform, world.user) as client:
        again = client.post(f"/v1/datasets/{dataset_id}/retry")
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_failed", again.text


@pytest.mark.parametrize(
    ("device", "options"),
    [("laptop", {"viewport": LAPTOP}), ("phone", {"viewport": PHONE, "user_agent": MOBILE_UA, "is_mobile": True})],
)
def test_no_page_requests_a_third_party_host(ui_platform, browser, world: World, device: str, options) -> None:
    """Every request of every page, sub-frames and scripts included, goes to the gateway or the
    deployment's own Auth (here its emulator): none to Google's script hosts or anywhere else."""
    context = browser.new_context(**options)
    hosts: set[str] = set()
    context.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(ui_platform.url, wait_until="networkidle")  # the sign-in page, signed out
        sign_in(page, ui_platform.url, world.user["email"], PASSWORD)
        for path in (
            "/datasets",
            f"/datasets/{world.dataset_id}",
            "/datasets/new",
            "/runs",
            f"/runs/{world.job_id}",
            "/runs/new",
            "/playground",
            f"/evaluations/{world.evaluation_id}",
            "/evaluations",
            "/exports",
            "/settings",
            "/nowhere",
        ):
            page.goto(ui_platform.url + path, wait_until="networkidle")
        page.get_by_test_id("account-email").wait_for()
    finally:
        context.close()
    own = {urlsplit(ui_platform.url).netloc, ui_platform.auth_host}
    assert hosts and hosts <= own, f"{device}: requests to {sorted(hosts - own)}"
