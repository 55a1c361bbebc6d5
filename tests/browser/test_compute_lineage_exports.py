"""Where a run trains, continued fine-tuning and GGUF exports in a real Chromium, one signed-in
session for the module:

- the run form's "Where it trains" (auto, Cloud Run, Vertex AI), Spot and "finish within N hours"
  reach the estimate and the job, and the estimate panel lists the offers with the chosen one. The
  local platform offers no Vertex AI machines (its settings refuse `RUNTUNE_VERTEX_MACHINES`), so the
  offers come from the plan a Vertex deployment makes (runtune/jobs/plan.py with every machine of the
  table), served in place of the platform's estimate: the table and the choice the UI shows are that
  planner's; the launch itself goes to the platform, which refuses `vertex` at the field;
- a succeeded run's tuned model offered in the model picker by name, and the continued run's page and
  the playground showing the chain "base → parent → this";
- a GGUF q4_k_m export of a tuned model converted by llama.cpp in its own execution (the local
  platform's subprocess), followed on the Exports page through its phase to its listed file.

Runs are scripted (tests/e2e/scripted_trainer.py); what only the real trainer writes (the adapter
folder, the merged model) is written to the emulators as it leaves them: the merged model is the
tiny text model itself (runtune/models/tiny.py), a real checkpoint with its SentencePiece file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from runtune import compute
from runtune.estimate import GPU_NAMES
from runtune.jobs import plan
from runtune.models.tiny import ensure_tiny_model
from runtune.schemas import Dataset, DatasetStatus, Job
from runtune.schemas.jobs import Hyperparameters, RuntuneOptions
from tests.browser.conftest import LAPTOP, Account, sign_in, signed_up
from tests.e2e.jobs_support import put_dataset, wait_for

pytestmark = pytest.mark.platform

TEXT = "tiny-gemma-3-text"
PASSWORD = "compute-lineage-password"


@dataclass
class World(Account):
    dataset: str
    parent: str  # a succeeded scripted run of TEXT, named "parent-a", with an adapter and a merged model


def _exported(world_blobs: Any, store: Any, uid: str, job_id: str, merged: Path) -> None:
    """The job's export folder as the trainer leaves it: the adapter, and the merged model's files."""
    folder = f"users/{uid}/jobs/{job_id}/export"
    world_blobs.upload_bytes(f"{folder}/adapter/adapter_config.json", b'{"r": 16}', content_type="application/json")
    for path in sorted(p for p in merged.iterdir() if p.is_file()):
        world_blobs.upload_bytes(f"{folder}/merged/{path.name}", path.read_bytes())
    store.update(
        f"jobs/{job_id}", {"runtune": {"export": {"adapter": f"{folder}/adapter/", "merged": f"{folder}/merged/"}}}
    )


@pytest.fixture(scope="module")
def world(ui_platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with signed_up(ui_platform, PASSWORD) as account:
        api = account.api
        dataset = put_dataset(ui_platform, account.uid, modality="text")
        account.store.update(f"datasets/{dataset}", {"name": "notes"})
        body = {"model": TEXT, "training_file": dataset, "suffix": "parent-a", "metadata": {"script": "succeed"}}
        created = api.post("/v1/fine_tuning/jobs", json=body)
        assert created.status_code == 200, created.text
        parent = created.json()["id"]
        wait_for(lambda: api.get(f"/v1/fine_tuning/jobs/{parent}").json()["status"] == "succeeded", timeout_s=120)
        merged = ensure_tiny_model(TEXT, tmp_path_factory.mktemp("merged") / TEXT)
        _exported(account.blobs, account.store, account.uid, parent, merged)
        yield World(**vars(account), dataset=dataset, parent=parent)


@pytest.fixture(scope="module")
def page(ui_platform, browser, world: World) -> Iterator[Any]:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_default_timeout(30_000)
    sign_in(page, ui_platform.url, world.email, PASSWORD)
    yield page
    context.close()


def _vertex_deployment_estimate(asked: dict[str, Any]) -> dict[str, Any]:
    """The estimate a deployment offering every Vertex AI machine makes of the asked run (a set of
    50,000 examples, so that Cloud Run and Vertex are close enough to compare)."""
    job = Job(
        id="ftjob-estimate",
        owner="u",
        model=asked["model"],
        training_file=asked["training_file"],
        options=RuntuneOptions(**asked["runtune"]),
        hyperparameters=Hyperparameters(**asked["hyperparameters"]),
    )
    dataset = Dataset(
        id=asked["training_file"], owner="u", name="notes", status=DatasetStatus.ready, splits={"train": 50_000}
    )
    estimator = plan.Estimator(machines=compute.VERTEX_MACHINE_NAMES)
    return plan.plan_job(job, dataset, offered=GPU_NAMES, estimator=estimator).estimate.model_dump()


def test_where_it_trains_spot_and_the_offers(page, ui_platform, world: World, shots) -> None:
    asked: list[dict[str, Any]] = []

    def as_on_vertex(route) -> None:
        body = route.request.post_data_json
        asked.append(body)
        # The platform's own answer (its hyperparameters, its Hub check) for the run on `auto`, which it
        # can plan; the placement and the offers from the Vertex deployment's planner.
        local = {**body, "runtune": {**body["runtune"], "compute": "auto", "spot": False, "max_hours": None}}
        real = route.fetch(post_data=json.dumps(local)).json()
        route.fulfill(json={**real, **_vertex_deployment_estimate(body)})

    def in_the_cloud(route) -> None:
        route.fulfill(json={**route.fetch().json(), "where": "cloud"})

    page.route("**/v1/fine_tuning/estimate", as_on_vertex)
    page.route("**/v1/fine_tuning/gpus", in_the_cloud)
    page.goto(f"{ui_platform.url}/runs/new?dataset={world.dataset}")
    page.locator(f"input[name=model][value='{TEXT}']").check()
    offers = page.get_by_test_id("offer")
    expect(offers).to_have_count(1 + len(compute.VERTEX_MACHINES))
    # Auto: a small model on 50,000 examples is cheapest on Cloud Run's L4, said in plain words.
    chosen = page.locator("[data-testid=offer].chosen")
    expect(chosen).to_have_count(1)
    expect(chosen).to_contain_text("Cloud Run, NVIDIA L4")
    expect(page.get_by_test_id("offer-chosen")).to_contain_text("the cheapest shape that fits (at on-demand prices)")
    expect(page.get_by_test_id("estimate-where")).to_have_text("Cloud Run: NVIDIA L4 (24 GB)")
    # Cloud Run has no Spot price; every Vertex machine has one.
    assert offers.first.locator("td").nth(4).inner_text() == "no Spot"
    assert all(text.startswith("$") for text in offers.locator("td:nth-child(5)").all_inner_texts()[1:])
    page.screenshot(path=shots / "01-offers-auto.png", full_page=True)

    # Spot is Vertex's alone: greyed out for Cloud Run, explained (preemption, resume) for the others.
    compute_select = page.locator("select[name=compute]")
    compute_select.select_option("cloud_run")
    expect(page.locator("input[name=spot]")).to_be_disabled()
    expect(page.locator("input[name=max_hours]")).to_be_disabled()
    compute_select.select_option("vertex")
    expect(page.get_by_test_id("spot-hint")).to_contain_text("resumes from its newest checkpoint")
    page.locator("input[name=spot]").check()
    expect(chosen).to_contain_text("Vertex AI")
    expect(page.get_by_test_id("estimate-where")).to_contain_text(", on Spot capacity")
    expect(page.get_by_test_id("offer-chosen")).to_contain_text(
        "the cheapest shape on Vertex AI, as you asked (at Spot prices"
    )
    # (Spot on the page: the newest estimate asked was this one.)
    assert {k: asked[-1]["runtune"][k] for k in ("compute", "spot", "max_hours")} == {
        "compute": "vertex",
        "spot": True,
        "max_hours": None,
    }
    page.screenshot(path=shots / "02-offers-vertex-spot.png", full_page=True)

    # The launch goes to the local platform, which has no Vertex AI: refused at the field, in words.
    page.unroute_all()
    page.locator("input[name=suffix]").fill("where")
    page.locator("details.advanced summary").click()
    page.locator("textarea[name=metadata]").fill("script=succeed")
    page.get_by_role("button", name="Launch run").click()
    expect(page.get_by_test_id("compute")).to_contain_text("offers no Vertex AI machines")

    # Auto within 2 hours: sent with the job, and the run page says where it trains.
    compute_select.select_option("auto")
    page.locator("input[name=max_hours]").fill("2")
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url("**/runs/ftjob-*")
    job = world.api.get(f"/v1/fine_tuning/jobs/{page.url.rsplit('/', 1)[-1]}").json()
    assert (job["options"]["compute"], job["options"]["spot"], job["options"]["max_hours"]) == ("auto", True, 2)
    expect(page.get_by_test_id("run-where")).to_contain_text("this machine's CPU (the local platform)")
    page.screenshot(path=shots / "03-run-where.png", full_page=True)


def test_continuing_a_tuned_model_shows_its_lineage(page, ui_platform, world: World, shots) -> None:
    parent_model = f"ft:{TEXT}:{world.parent}"
    page.goto(f"{ui_platform.url}/runs/new?dataset={world.dataset}")
    tuned = page.get_by_test_id("tuned-models")
    card = tuned.locator("label.model-card", has_text="parent-a")
    expect(card).to_have_attribute("title", parent_model)
    card.locator("input").check()
    # A continued run keeps its parent's LoRA shape: the fields are greyed out, none is sent.
    page.locator("details.advanced summary").click()
    expect(page.locator("input[name=lora_rank]")).to_be_disabled()
    page.locator("input[name=suffix]").fill("child-b")
    page.locator("textarea[name=metadata]").fill("script=succeed")
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url("**/runs/ftjob-*")
    child = page.url.rsplit("/", 1)[-1]
    job = world.api.get(f"/v1/fine_tuning/jobs/{child}").json()
    assert job["model"] == parent_model
    assert job["lineage"] == {"root": TEXT, "parent": parent_model, "chain": [TEXT, parent_model]}
    lineage = page.get_by_test_id("lineage")
    expect(lineage).to_have_text(f"Continues {TEXT} → parent-a → this run")
    expect(lineage.get_by_role("link", name="parent-a")).to_have_attribute("href", f"/runs/{world.parent}")
    page.screenshot(path=shots / "04-continued-run.png", full_page=True)

    # The continued model, once trained, shows its chain where it is used.
    wait_for(lambda: world.api.get(f"/v1/fine_tuning/jobs/{child}").json()["status"] == "succeeded", timeout_s=120)
    page.goto(f"{ui_platform.url}/playground?model=ft:{TEXT}:{child}")
    expect(page.get_by_test_id("model-lineage")).to_have_text(f"Continued: {TEXT} → parent-a → this model")


def test_gguf_export_is_converted_and_its_file_listed(page, ui_platform, world: World, shots) -> None:
    model = f"ft:{TEXT}:{world.parent}"
    page.goto(f"{ui_platform.url}/exports")
    page.locator("select[name=model]").select_option(model)
    page.locator("select[name=format]").select_option("gguf")
    page.locator("select[name=quantization]").select_option("q4_k_m")
    with page.expect_request(lambda r: r.url.endswith("/v1/exports") and r.method == "POST") as sent:
        page.get_by_role("button", name="Export", exact=True).click()
    assert sent.value.post_data_json == {"model": model, "format": "gguf", "quantization": "q4_k_m"}
    # Converting: the card follows the execution's phase until it ends.
    card = page.get_by_test_id("exports").locator(".card", has_text="gguf").first
    expect(card.get_by_test_id("export-phase")).to_contain_text("Converting with llama.cpp")
    page.screenshot(path=shots / "05-gguf-converting.png", full_page=True)
    expect(card.get_by_test_id("export-download")).to_have_text(["model-q4_k_m.gguf"], timeout=180_000)
    expect(card).to_contain_text("succeeded")
    expect(card).to_contain_text("(q4_k_m)")
    [export] = [e for e in world.api.get("/v1/exports").json()["data"] if e["format"] == "gguf"]
    assert (export["status"], export["quantization"]) == ("succeeded", "q4_k_m")
    page.screenshot(path=shots / "06-gguf-done.png", full_page=True)
