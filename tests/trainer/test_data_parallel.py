"""The trainer data-parallel under `torchrun --nproc_per_node 2` (gloo, on the CPU), against the
emulators: the same global batch as one process and the same loss curve; one rank SIGKILLed mid-run
(torchrun then tears the group down) and a relaunch resuming from the newest checkpoint with step
continuity; rank 0 the only writer (no event, metrics point or checkpoint twice).

Tolerance: the two ranks together compute exactly the one process's gradient (the same examples,
the loss divided by the same answer-token count, the gradients summed once per step); what differs
is float rounding, from the sub-batches' padding widths (a 2-example batch pads to its own longest)
and the order of the sums. In float32 that is ~1e-6 relative per step and grows a little as the
steps compound, so the curves must agree within 1e-4 relative (1e-5 absolute), the bound the
single-process resume test holds too; a wrong share (a batch seen twice or not at all, a gradient
averaged instead of summed) moves the loss by 1e-2 or more."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobs.trainer.recipe import resumed_text, run
from runtune.schemas.jobs import job_path
from runtune.training import checkpoints
from runtune.training.distributed import SINGLE, World
from tests.support import wait_for
from tests.trainer.conftest import demo_dataset, new_job, trainer_environment

UID = "user-trainer-ddp"


def _torchrun(job_id: str, attempt: int) -> subprocess.Popen[bytes]:
    # A long stop grace: on a loaded CPU one step can outlast the default 5 s, and the watchdog would
    # then end the signalled rank on its own, which is not what these tests are about.
    environment = {
        **os.environ,
        "CLOUD_RUN_TASK_ATTEMPT": str(attempt),
        "OMP_NUM_THREADS": "1",
        "RUNTUNE_STOP_GRACE_S": "120",
    }
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.Popen(
        [*argv, "-m", "jobs.trainer", job_id], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _worker(launcher: subprocess.Popen[bytes], rank: int) -> int | None:
    """The pid of torchrun's worker process of `rank` (its environment says RANK=...)."""
    for child in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split():
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(child)
    return None


def _events(store: Any, job_id: str) -> list[dict[str, Any]]:
    return [doc for _, doc in store.query(f"{job_path(job_id)}/events")]


def _curve(store: Any, job_id: str) -> list[tuple[int, float, float, int]]:
    return [
        (e["data"]["step"], e["data"]["loss"], e["data"].get("valid_loss", -1.0), e["data"]["samples"])
        for e in _events(store, job_id)
        if e["type"] == "metrics"
    ]


def test_the_ranks_share_each_step_exactly_once() -> None:
    group = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13]]  # a step of 4 micro-batches, the last short
    ranks = [World(rank=r, size=2, local_rank=r) for r in range(2)]
    # Accumulation 4 divides by 2: whole micro-batches, round-robin.
    assert [w.share(group, 4) for w in ranks] == [[[0, 1, 2, 3], [8, 9, 10, 11]], [[4, 5, 6, 7], [12, 13]]]
    # Accumulation 2 does not divide by 3 ranks: every micro-batch split by example.
    three = [World(rank=r, size=3, local_rank=r) for r in range(3)]
    shares = [w.share([group[0], [4]], 2) for w in three]
    assert shares == [[[0, 3], [4]], [[1]], [[2]]]
    assert sorted(i for share in shares for batch in share for i in batch) == [0, 1, 2, 3, 4]
    assert SINGLE.share(group, 4) is group
    assert World.from_env({}) is SINGLE and World.from_env({"WORLD_SIZE": "1", "RANK": "0"}) is SINGLE
    assert World.from_env({"WORLD_SIZE": "8", "RANK": "9", "LOCAL_RANK": "1"}) == World(rank=9, size=8, local_rank=1)


def test_the_resume_message_says_what_an_interruption_cost() -> None:
    history = [{"step": s, "tokens": 300, "tokens_per_s": 100.0} for s in range(1, 5)]  # 3 s a step
    assert resumed_text(4, 4, history) == "Resumed from the checkpoint at step 4"
    assert resumed_text(4, 7, history) == (
        "Resumed from the checkpoint at step 4 after an interruption at step 7: 3 steps since the checkpoint "
        "are trained again, about 9 s of training"
    )


@pytest.mark.emulators
@pytest.mark.timeout(600)
def test_two_ranks_train_the_one_process_curve_and_a_killed_rank_resumes(
    store: Any, blobs: Any, local_dir: Path
) -> None:
    dataset_id = demo_dataset(store, blobs, UID, "vision", {"train": 24, "validation": 6, "test": 4})
    # Global batch 4 = 2 ranks x 2 examples (the micro-batch is split: accumulation 1); 12 steps.
    # LoRA dropout off: with it the ranks draw other masks than one process would (same statistics).
    options = {
        "epochs": 2,
        "batch_size": 4,
        "checkpoint_every_steps": 3,
        "lora": {"dropout": 0.0},
        "evaluation": {"max_samples": 4},
        "export": {"merged": False},
    }
    reference_id = new_job(store, UID, "tiny-gemma-3-vision", dataset_id, **options)
    assert run(reference_id, trainer_environment(store, blobs)) == 0

    job_id = new_job(store, UID, "tiny-gemma-3-vision", dataset_id, **options)
    first = _torchrun(job_id, attempt=0)
    try:
        wait_for(
            lambda: store.query(f"{job_path(job_id)}/checkpoints") or first.poll() is not None,
            timeout_s=300,
            every_s=0.1,
        )
        worker = _worker(first, rank=1)
        assert worker is not None and first.poll() is None, "the first attempt ended before its first checkpoint"
        os.kill(worker, signal.SIGKILL)  # no chance to clean up; torchrun stops rank 0 and exits
        output, _ = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode != 0, output[-3000:]
    killed = store.get(job_path(job_id))
    assert killed["status"] == "running", killed
    newest = checkpoints.latest(store, job_id)
    assert newest is not None and 3 <= newest["step_number"] < 12
    reported = max([step for step, *_ in _curve(store, job_id)] + [killed["steps_completed"]])
    # Every rank's random state is in the checkpoint, each its own stream.
    rng_ranks = checkpoints.restore(blobs, newest).rng_ranks
    assert rng_ranks is not None and len(rng_ranks) == 2
    assert not bool((rng_ranks[0]["torch"] == rng_ranks[1]["torch"]).all())

    second = _torchrun(job_id, attempt=1)
    try:
        output, _ = second.communicate(timeout=300)
    finally:
        second.kill()
    assert second.returncode == 0, output[-3000:]
    job, reference = store.get(job_path(job_id)), store.get(job_path(reference_id))
    assert job["status"] == "succeeded", job
    assert job["steps_completed"] == reference["steps_completed"] == 12
    assert job["runtune"]["samples_seen"] == reference["runtune"]["samples_seen"] == 2 * 24

    # Step continuity and one writer: every step's point exactly once, each message once per attempt.
    curve, expected = _curve(store, job_id), _curve(store, reference_id)
    assert [step for step, *_ in curve] == list(range(1, 13))
    assert [valid >= 0 for *_, valid, _ in curve] == [valid >= 0 for *_, valid, _ in expected]
    for (step, loss, valid, samples), (_, want, want_valid, want_samples) in zip(curve, expected, strict=True):
        assert samples == want_samples == 4, step
        assert loss == pytest.approx(want, rel=1e-4, abs=1e-5), step
        assert valid == pytest.approx(want_valid, rel=1e-4, abs=1e-5), step
    messages = [e["message"] for e in _events(store, job_id) if e["type"] != "metrics"]
    assert messages.count("Trainer started (attempt 1, 2 data-parallel processes)") == 1
    assert messages.count("Trainer started (attempt 2, 2 data-parallel processes)") == 1
    assert messages.count("Training 12 steps") == 2
    assert messages.count("The job has successfully completed") == 1
    # What the interruption cost: the steps after the checkpoint that the first attempt had reported.
    said = resumed_text(newest["step_number"], reported, checkpoints.restore(blobs, newest).history)
    assert messages.count(said) == 1, messages
    lost = [m for m in messages if m.startswith(("A training process of this job was lost", "The trainer was stopped"))]
    assert len(lost) == 1, messages
    assert sum(m.startswith("Resumed from the checkpoint") for m in messages) == 1
    steps = [doc["step_number"] for _, doc in store.query(f"{job_path(job_id)}/checkpoints")]
    assert steps == sorted(set(steps)) and newest["step_number"] in steps
    assert [doc["step_number"] for _, doc in store.query(f"{job_path(job_id)}/model_checkpoints")] == [6, 12]
    final, want_final = job["runtune"]["metrics"]["final"], reference["runtune"]["metrics"]["final"]
    assert final["label_scoring"]["accuracy"] == want_final["label_scoring"]["accuracy"]


@pytest.mark.emulators
@pytest.mark.timeout(300)
def test_a_sigterm_to_one_rank_stops_both_at_one_step_as_rank_0_records_it(
    store: Any, blobs: Any, local_dir: Path
) -> None:
    dataset_id = demo_dataset(store, blobs, UID, "text", {"train": 64, "test": 4})
    job_id = new_job(store, UID, "tiny-gemma-3-text", dataset_id, epochs=20, batch_size=2, export={"merged": False})
    launcher = _torchrun(job_id, attempt=0)
    try:
        wait_for(
            lambda: (store.get(job_path(job_id)) or {}).get("phase") == "training" or launcher.poll(),
            timeout_s=240,
            every_s=0.1,
        )
        worker = _worker(launcher, rank=1)
        assert worker is not None and launcher.poll() is None
        # What the jobs API does on cancel: the flag, then a stop signal (here to rank 1 only).
        store.update(job_path(job_id), {"cancel_requested": True})
        os.kill(worker, signal.SIGTERM)
        output, _ = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    # Both ranks exit 0: rank 1 alone would say 143; it exits with what rank 0 recorded.
    assert launcher.returncode == 0, output[-3000:]
    job = store.get(job_path(job_id))
    assert job["status"] == "cancelled" and job["steps_completed"] < job["total_steps"] == 640, job
    steps = [e["data"]["step"] for e in _events(store, job_id) if e["type"] == "metrics"]
    assert steps == list(range(1, len(steps) + 1))
    assert sum(e["message"].startswith("Cancelled") for e in _events(store, job_id)) == 1
