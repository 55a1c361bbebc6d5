"""The estimate against the real trainer on this machine: runs of a tiny model at three lengths, each
timed from the trainer's start to its end. In-process (the recipe's `run`, with the trainer's rights):
the interpreter's start and imports, which `main` adds to a run's measured setup in a process of its
own, are then 0 on both sides, and the test pays for no three interpreters.

Not load-sensitive by construction: CI is a busy 2-core machine, where an absolute figure measured
elsewhere could be off by any factor, and where the neighbours' load changes within seconds (seen:
a run between two others took half their time per step once a neighbour ended). So each run's
estimate is calibrated from the other two runs of the same test (what the platform does with its own
finished runs, runtune/throughput.py), and every run is timed in CPU seconds of this process
(`Environment.clock`, the trainer's phases included) with torch on one thread: what its wall time
is on an idle machine, and what a neighbour's load leaves be. The published (uncalibrated) CPU
figures are not asserted against a clock here; their scaling is checked (they grow with the length,
by the training term only) and the formula is unit-tested in tests/unit/test_estimate.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch

from jobs.trainer.recipe import run
from runtune import throughput
from runtune.datasets.canonical import read_split
from runtune.estimate import CPU_NAME, GPU_NAMES, Estimate, RunTiming
from runtune.jobs import plan
from runtune.schemas import Dataset
from runtune.schemas.jobs import Job, job_path
from tests.trainer.conftest import demo_dataset, new_job, trainer_environment

pytestmark = pytest.mark.emulators
UID = "user-estimate-accuracy"
MODEL = "tiny-gemma-3-vision"
# Optimizer steps of the three runs (batch 2, one epoch): 4, 12 and 36, so that training, not the
# setup, is most of the longest run.
BATCH = 2
EXAMPLES = (8, 24, 72)
HELD_OUT = 2
FACTOR = 1.5
# The estimate is in whole seconds, and these runs take a few: its rounding is allowed on top.
ROUNDING_S = 0.5


def _stats(blobs: Any, dataset_id: str) -> dict[str, Any]:
    """The dataset's length statistics, as ingestion writes them (runtune/datasets/stats.py)."""
    chars = [
        sum(len(part.get("text") or "") for message in example.messages for part in message["content"])
        for example in read_split(blobs, UID, dataset_id, "train")
    ]
    images = len(chars)  # one image per demo example
    return {
        "rows": len(chars),
        "example_chars": {"mean": sum(chars) / len(chars), "max": max(chars), "count": len(chars)},
        "images": images,
        "max_images_per_example": 1,
    }


def _timed_run(store: Any, blobs: Any, examples: int) -> tuple[str, float]:
    dataset_id = demo_dataset(store, blobs, UID, "vision", {"train": examples, "test": HELD_OUT})
    store.update(
        f"datasets/{dataset_id}", {"splits": {"train": examples, "test": HELD_OUT}, "stats": _stats(blobs, dataset_id)}
    )
    # QLoRA pinned: `auto` would take bf16 LoRA for a tiny model, and calibration is kept per method.
    job_id = new_job(store, UID, MODEL, dataset_id, epochs=1, batch_size=BATCH, method="qlora", export={"merged": True})
    env = trainer_environment(store, blobs)
    env.clock = time.process_time
    started = time.process_time()
    code = run(job_id, env)
    seconds = time.process_time() - started
    done = store.get(job_path(job_id))
    assert code == 0 and done["status"] == "succeeded", done.get("error")
    return job_id, seconds


def _estimate(store: Any, job_id: str, calibration: list[RunTiming]) -> Estimate:
    """The job plan's estimate of the job (runtune/jobs/plan.py, as the jobs API makes it on the local
    platform without a GPU), calibrated from the `throughput` document holding `calibration` alone."""
    path = throughput.throughput_path(MODEL, CPU_NAME, "qlora")
    store.set(path, {"model": MODEL, "machine": CPU_NAME, "method": "qlora", "runs": [asdict(r) for r in calibration]})
    job = Job.model_validate(store.get(job_path(job_id)))
    dataset = Dataset.model_validate(store.get(f"datasets/{job.training_file}"))
    planned = plan.plan_job(job, dataset, offered=GPU_NAMES, estimator=plan.Estimator("local-cpu", store))
    return planned.estimate


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for the four runs: two intra-op threads spin waiting on each other while
    the other core is taken, CPU seconds that grow with the neighbours' load; one thread's CPU
    seconds are its wall seconds on an idle core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_estimate_is_within_a_factor_of_the_measured_duration_at_three_lengths(
    store: Any, blobs: Any, local_dir: Path, one_thread: None
) -> None:
    # A first in-process run pays the lazy imports (model classes, peft, kernels) that a trainer's
    # process pays at its start, outside the phases it measures: one short run warms them up.
    _timed_run(store, blobs, BATCH)
    runs = [_timed_run(store, blobs, examples) for examples in EXAMPLES]
    kept = store.get(throughput.throughput_path(MODEL, CPU_NAME, "qlora"))
    # Each succeeded run recorded its phases; the newest three are this test's (newest first).
    recorded = throughput.measured(store, model=MODEL, machine=CPU_NAME, method="qlora")[: len(runs)][::-1]
    assert [timing.steps for timing in recorded] == [examples // BATCH for examples in EXAMPLES]

    report = []
    for index, (job_id, measured) in enumerate(runs):
        others = [timing for other, timing in enumerate(recorded) if other != index]
        calibrated = _estimate(store, job_id, others)
        report.append((EXAMPLES[index], round(measured, 1), calibrated.seconds, recorded))
        assert calibrated.basis == "calibrated from 2 finished runs"
        assert measured / FACTOR - ROUNDING_S <= calibrated.seconds <= measured * FACTOR + ROUNDING_S, report
        assert calibrated.seconds_low <= calibrated.seconds <= calibrated.seconds_high

    # The published figures (no calibration) grow with the run's length, by its training term only.
    published = [_estimate(store, job_id, []) for job_id, _ in runs]
    assert all(result.basis == "from published throughput" for result in published)
    assert published[0].seconds < published[1].seconds < published[2].seconds
    fixed = {name: value for name, value in published[0].breakdown.items() if name != "train"}
    assert all({n: v for n, v in r.breakdown.items() if n != "train"} == fixed for r in published)
    store.set(throughput.throughput_path(MODEL, CPU_NAME, "qlora"), kept)
