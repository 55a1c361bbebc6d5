"""`auto` hyperparameters on a small OpenAI chat JSONL, from the upload to the held-out answer: 36
examples of three solid colours (one-word answers) are detected as classification, the jobs API's
`auto` rules turn the set's size and lengths into enough steps, and the tiny Gemma 3 vision model
names the held-out colours."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from jobs.trainer.recipe import run
from runtune.estimate import GPU_NAMES
from runtune.jobs import hyperparameters, plan
from runtune.schemas import Dataset, Job, JobStatus, TaskKind
from runtune.schemas.jobs import Hyperparameters, RuntuneOptions, job_path
from tests.datasets.builders import colour_chat_jsonl
from tests.trainer.conftest import ingested, trainer_environment

pytestmark = pytest.mark.emulators
UID = "user-auto-hyperparameters"
MODEL = "tiny-gemma-3-vision"


def _ingest(store: Any, blobs: Any, tmp_path: Path) -> Dataset:
    """The set through the real ingestion (task kind not given: detected), stored as the service does."""
    source = tmp_path / "colours.jsonl"
    source.write_bytes(colour_chat_jsonl())
    return ingested(store, blobs, UID, source, name="colours")


# 120 steps at batch 1: about two minutes of CPU, bounded by the steps, not a hang to catch early.
@pytest.mark.timeout(900)
def test_auto_learns_three_colours_from_36_chat_examples(store: Any, blobs: Any, local_dir: Path, tmp_path) -> None:
    dataset = _ingest(store, blobs, tmp_path)
    assert dataset.task_kind is TaskKind.classification
    assert dataset.labels == ["blue", "green", "red"] and dataset.label_counts == {"blue": 12, "green": 12, "red": 12}
    assert dataset.splits["test"] == 3

    # What the jobs API does once the file is ready (services/training/jobs_service.py `_plan`).
    options = RuntuneOptions(method="lora", checkpoint_every_steps=1000, export={"merged": False})
    asked = Job(
        id=f"ftjob-{uuid.uuid4().hex[:12]}",
        owner=UID,
        model=MODEL,
        training_file=dataset.id,
        status=JobStatus.queued,
        hyperparameters=Hyperparameters(),
        options=options,
        seed=42,
    )
    planned = plan.plan_job(asked, dataset, offered=GPU_NAMES)
    steps = -(-dataset.splits["train"] // planned.plan.batch_size) * planned.plan.epochs
    assert steps >= hyperparameters.MIN_STEPS and set(planned.auto) == {
        "n_epochs",
        "batch_size",
        "learning_rate_multiplier",
    }
    job = plan.with_plan(asked, planned)
    store.set(job_path(job.id), job.to_document())

    env = trainer_environment(store, blobs)
    assert run(job.id, env) == 0
    done = store.get(job_path(job.id))
    assert done["status"] == "succeeded", done.get("error")
    assert done["total_steps"] == steps
    final = done["runtune"]["metrics"]["final"]["label_scoring"]
    assert final["samples"] == 3
    assert final["accuracy"] >= 2 / 3, final
