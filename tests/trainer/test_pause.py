"""A pause as the trainer sees it (`python -m jobs.trainer` against the emulators): the jobs API sets
`pause_requested` on the running job; the trainer saves a checkpoint at the step it is at, every
metrics event up to it in the log, marks the job `paused` and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from runtune.schemas.jobs import job_path
from tests.support import wait_for
from tests.trainer.conftest import demo_dataset, new_job

pytestmark = pytest.mark.emulators
UID = "user-trainer-pause"


def test_a_pause_checkpoints_the_step_and_ends_the_attempt_paused(store: Any, blobs: Any, local_dir: Any) -> None:
    dataset_id = demo_dataset(store, blobs, UID, "text", {"train": 64, "test": 4})
    # 640 steps and no periodic checkpoint: the only checkpoint is the pause's.
    job_id = new_job(
        store, UID, "tiny-gemma-3-text", dataset_id, epochs=20, batch_size=2, checkpoint_every_steps=100_000
    )
    environment = {**os.environ, "CLOUD_RUN_TASK_ATTEMPT": "0", "RUNTUNE_STOP_POLL_S": "0.2"}
    argv = [sys.executable, "-m", "jobs.trainer", job_id]
    trainer = subprocess.Popen(argv, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (store.get(job_path(job_id)) or {}).get("phase") == "training", timeout_s=240, every_s=0.1)
        store.update(job_path(job_id), {"pause_requested": True})  # what POST .../pause does to a running job
        output, _ = trainer.communicate(timeout=120)
    finally:
        trainer.kill()
    assert trainer.returncode == 0, output[-2000:]
    job = store.get(job_path(job_id))
    assert job["status"] == "paused" and not job["pause_requested"], job
    step = job["steps_completed"]
    assert 0 < step < job["total_steps"] == 640
    assert [doc["step_number"] for _, doc in store.query(f"{job_path(job_id)}/checkpoints")] == [step]
    events = [doc for _, doc in store.query(f"{job_path(job_id)}/events")]
    assert [e["data"]["step"] for e in events if e["type"] == "metrics"] == list(range(1, step + 1))
    assert events[-1]["message"] == f"Paused at step {step}"
