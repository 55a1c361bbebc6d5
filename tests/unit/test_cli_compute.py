"""`runtune jobs create` and `runtune jobs estimate` with `--compute`, `--spot` and `--max-hours`: the
options reach the request as `runtune.compute/spot/max_hours`, bad ones are refused before a request,
and the estimate lists every offered shape with the chosen one marked. The gateway is a local fake
JSON API (tests/support.py) answering with a real plan's estimate, computed by runtune/jobs/plan.py
with every Vertex AI machine offered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from runtune import compute
from runtune.cli import jobs as cli_jobs
from runtune.cli.credentials import StoredLogin
from runtune.cli.main import app
from runtune.estimate import GPU_NAMES
from runtune.jobs import plan
from runtune.schemas import Dataset, DatasetStatus, Job
from runtune.schemas.jobs import Hyperparameters, RuntuneOptions
from tests.support import Recorded, fake_json_api

# bf16 LoRA of Gemma 3 27B at 4 x 4096 tokens: too big for Cloud Run's GPUs, planned on Vertex AI's H200s.
BIG = RuntuneOptions(method="lora", max_length=4096)


def _planned(options: RuntuneOptions) -> plan.Planned:
    job = Job(
        id="ftjob-cli",
        owner="u",
        model="google/gemma-3-27b-it",
        training_file="ds-1",
        options=options,
        hyperparameters=Hyperparameters(batch_size=4),
    )
    dataset = Dataset(id="ds-1", owner="u", name="set", status=DatasetStatus.ready, splits={"train": 500})
    estimator = plan.Estimator(machines=compute.VERTEX_MACHINE_NAMES)
    return plan.plan_job(job, dataset, offered=GPU_NAMES, estimator=estimator)


def _answer(method: str, path: str, query: Any, body: Any) -> tuple[int, Any]:
    asked = body.get("runtune") or body["method"]["supervised"]["runtune"]
    options = RuntuneOptions(**asked | BIG.model_dump(include={"method", "max_length"}))
    if path == "/v1/fine_tuning/estimate":
        return 200, {**_planned(options).estimate.model_dump(), "object": "fine_tuning.estimate"}
    planned = _planned(options)
    job = plan.with_plan(Job(id="ftjob-cli", owner="u", model=body["model"], training_file="ds-1"), planned)
    return 200, job.model_dump(mode="json")


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Recorded]]:
    """The fake gateway's recorded requests; the CLI logged in to it with a token valid for an hour."""
    requests: list[Recorded] = []
    with fake_json_api(_answer, requests) as url:
        monkeypatch.setenv("RUNTUNE_CONFIG_DIR", str(tmp_path))
        StoredLogin(url, "key", None, "a@example.com", "uid-1", "refresh", "id-token", time.time() + 3600).save()
        # Wide enough that the offers table keeps each machine's label on one line.
        monkeypatch.setattr(cli_jobs.console, "width", 200)
        yield requests


def _run(*args: str) -> Any:
    return CliRunner().invoke(app, ["jobs", *args, "--dataset", "ds-1", "--model", "google/gemma-3-27b-it"])


def test_create_sends_the_compute_choice_and_says_where_it_trains(gateway: list[Recorded]) -> None:
    result = _run("create", "--compute", "vertex", "--spot")
    assert result.exit_code == 0, result.output
    [request] = gateway
    runtune = request.body["method"]["supervised"]["runtune"]
    assert (runtune["compute"], runtune["spot"]) == ("vertex", True) and "max_hours" not in runtune
    assert "trains on: Vertex AI, a3-ultragpu-8g (8 x nvidia-h200-141gb, Spot capacity)" in result.output


def test_the_defaults_are_auto_on_demand_without_a_time_limit(gateway: list[Recorded]) -> None:
    assert _run("create").exit_code == 0
    runtune = gateway[0].body["method"]["supervised"]["runtune"]
    assert (runtune["compute"], runtune["spot"], runtune.get("max_hours")) == ("auto", False, None)


def test_estimate_lists_every_offer_and_marks_the_chosen_one(gateway: list[Recorded]) -> None:
    result = _run("estimate", "--max-hours", "12")
    assert result.exit_code == 0, result.output
    [request] = gateway
    assert request.path == "/v1/fine_tuning/estimate"
    assert (request.body["runtune"]["compute"], request.body["runtune"]["max_hours"]) == ("auto", 12)
    assert "trains on: Vertex AI, 8 x NVIDIA H200 (141 GB), a3-ultragpu-8g (on demand)" in result.output
    cells = [line.split("│") for line in result.output.splitlines() if line.count("│") >= 7]
    # A row per offer, keyed by its machine label (a long reason's wrapped lines have none).
    rows = {cell[3].strip(): "│".join(cell) for cell in cells if cell[3].strip()}
    assert set(rows) == {"Cloud Run", *(m.label for m in compute.VERTEX_MACHINES)}
    # The chosen shape is starred; one whose GPUs are too small says so with its reason.
    assert rows["8 x NVIDIA H200 (141 GB), a3-ultragpu-8g"].split("│")[1].strip() == "*"
    assert "no: needs about" in rows["8 x NVIDIA H100 (80 GB), a3-highgpu-8g"]
    assert [line.split("│")[1].strip() for line in rows.values()].count("*") == 1


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["--compute", "gke"], "--compute"), (["--compute", "cloud_run", "--max-hours", "2"], "--max-hours")],
)
def test_bad_compute_options_are_refused_unsent(gateway: list[Recorded], args: list[str], flag: str) -> None:
    result = _run("create", *args)
    assert result.exit_code == 2 and flag in result.output
    assert gateway == []
