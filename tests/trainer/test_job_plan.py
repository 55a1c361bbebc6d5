"""The trainer runs the job's stored plan verbatim (runtune/training/config.py): a plan that differs
from what the job's own fields would give is trained as stored, and a job without a plan fails
`invalid_config` before any model loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtune.schemas import Job
from runtune.schemas.jobs import job_path
from tests.trainer.test_train_end_to_end import UID, _demo, _events, _run, new_job

pytestmark = pytest.mark.emulators
MODEL = "tiny-gemma-3-text"


def test_the_trainer_trains_with_the_stored_plan_not_the_job_fields(store: Any, blobs: Any, local_dir: Path) -> None:
    dataset_id = _demo(store, blobs, "vision", {"train": 4})
    store.update(f"datasets/{dataset_id}", {"modality": "text"})
    job_id = new_job(store, UID, MODEL, dataset_id, epochs=1, batch_size=4, export={"merged": False})
    job = Job.model_validate(store.get(job_path(job_id)))
    assert job.plan is not None and (job.plan.epochs, job.plan.batch_size) == (1, 4)  # one step, as planned
    # Another plan than the job's fields (and any rule) give: 2 epochs of batch 2, an odd learning rate,
    # and a speed switch for the GPU, which this CPU trainer says it trains without.
    changes = {"epochs": 2, "batch_size": 2, "learning_rate": 1.234e-3, "warmup_ratio": 0, "liger_kernels": True}
    stored = job.plan.model_copy(update=changes)
    store.update(job_path(job_id), {"plan": stored.model_dump(mode="json")})

    code, done = _run(store, blobs, job_id)

    assert code == 0 and done["status"] == "succeeded", done.get("error")
    assert done["total_steps"] == done["steps_completed"] == 4  # 4 examples at batch 2, twice
    events = _events(store, job_id)
    assert any(e["level"] == "warn" and e["message"].startswith("Liger kernels off: this machine has no GPU")
               for e in events)  # fmt: skip
    steps = [e["data"] for e in events if e["type"] == "metrics"]
    assert steps[0]["lr"] == pytest.approx(1.234e-3)  # no warmup: the first step runs at the peak rate
    saved = json.loads(blobs.download_bytes(f"users/{UID}/jobs/{job_id}/config.json"))
    assert saved == stored.model_dump(mode="json")


def test_a_job_without_a_plan_fails_before_any_model_loads(store: Any, blobs: Any) -> None:
    dataset_id = _demo(store, blobs, "vision", {"train": 4})
    store.update(f"datasets/{dataset_id}", {"modality": "text"})
    job_id = new_job(store, UID, MODEL, dataset_id)
    store.update(job_path(job_id), {"plan": None})  # written by hand, never planned by the jobs API

    code, done = _run(store, blobs, job_id)

    assert code == 1 and done["status"] == "failed"
    assert done["error"]["code"] == "invalid_config" and "no training plan" in done["error"]["message"]
    assert not any(e["message"].startswith("Loading") for e in _events(store, job_id))
