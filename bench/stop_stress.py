"""The trainer's stop under load: SIGTERM to a real `python -m jobs.trainer` (tiny Gemma 3 text model,
CPU, the emulators) while `nproc` x 2 busy processes load the machine, `--runs` times in a row.

Each run is one of five stops, in turn: a task stop (timeout, maintenance: exit 143, the job left
`running` for the retry) or a cancel (the flag, then SIGTERM, as the jobs API does: exit 0, the job
`cancelled`), sent as soon as the job shows it has started (`running`), it is loading the model, or
it has trained a step. Only the last lands where the training loop has safe points; the others are
ended by the watchdog, whatever the main thread is doing then. A run passes when the trainer exits by itself
with the right status and leaves the job as it should; the exit latency is from the signal to the
process's end. Cloud Run kills a task 10 s after SIGTERM: the target is every run passing with the
maximum latency under 10 s.

With `--tests N`, the stop path's own tests (tests/trainer/test_stop_signals.py: a main thread blocked
for good, a record that hangs, a stop at a safe point) run N times in a row first, under the same load.

    .venv/bin/python -m bench.stop_stress [--runs 20] [--tests 20] [--burners N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtune.demo.shapes import CLASSES, write_demo_dataset
from runtune.dev.emulators import start_emulators
from runtune.models.tiny import ensure_tiny_model, tiny_dir
from runtune.schemas import TaskKind
from runtune.schemas.jobs import job_path

MODEL = "tiny-gemma-3-text"
UID = "user-stop-stress"
SCENARIOS = (
    "stop while training",
    "cancel while loading",
    "stop at start",
    "cancel while training",
    "stop while loading",
)
# Long enough that no run finishes before it is stopped.
JOB = {"epochs": 20, "batch_size": 2, "export": {"merged": False}}


@dataclass
class Outcome:
    scenario: str
    passed: bool
    latency_s: float
    detail: str


def _burn() -> None:
    while True:
        pass


def _wait_for(condition: Callable[[], Any], process: subprocess.Popen[bytes], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the trainer ended (or was too slow) before it could be stopped: {process.poll()}")
        time.sleep(0.05)


def one_run(store: Any, blobs: Any, scenario: str) -> Outcome:
    from tests.trainer.conftest import new_dataset, new_job

    dataset_id = new_dataset(store, UID, modality="text", task=TaskKind.classification, labels=list(CLASSES))
    write_demo_dataset(blobs, UID, dataset_id, counts={"train": 64, "test": 4})
    job_id = new_job(store, UID, MODEL, dataset_id, **JOB)
    env = {**os.environ, "CLOUD_RUN_TASK_ATTEMPT": "0", "CLOUD_RUN_EXECUTION": "bench/exec"}
    trainer = subprocess.Popen(
        [sys.executable, "-m", "jobs.trainer", job_id], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    job = lambda: store.get(job_path(job_id)) or {}  # noqa: E731
    try:
        if scenario.endswith("at start"):
            _wait_for(lambda: job().get("status") == "running", trainer)
        elif scenario.endswith("while loading"):
            _wait_for(lambda: job().get("phase") == "loading_model", trainer)
        else:
            _wait_for(lambda: job().get("steps_completed", 0) > 0, trainer)
        if scenario.startswith("cancel"):
            store.update(job_path(job_id), {"cancel_requested": True})
        signalled = time.monotonic()
        trainer.send_signal(signal.SIGTERM)
        # 60 s is far past Cloud Run's grace: a trainer still alive then has failed the run.
        try:
            trainer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            return Outcome(scenario, False, 60.0, "still alive 60 s after SIGTERM")
        latency = time.monotonic() - signalled
        output = trainer.stdout.read().decode(errors="replace") if trainer.stdout else ""
    finally:
        trainer.kill()
        trainer.wait()
    status = job().get("status")
    expected = (0, "cancelled") if scenario.startswith("cancel") else (128 + signal.SIGTERM, "running")
    passed = (trainer.returncode, status) == expected
    detail = f"exit {trainer.returncode}, job {status}" + ("" if passed else f"\n{output[-3000:]}")
    return Outcome(scenario, passed, latency, detail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--tests", type=int, default=0, help="runs of the stop path's tests, before the trainer runs")
    parser.add_argument("--burners", type=int, default=2 * (os.cpu_count() or 1), help="busy processes alongside")
    args = parser.parse_args()
    # Stopped itself (a `timeout`): end through the `finally` below, which stops the burners and emulators.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    with tempfile.TemporaryDirectory(prefix="runtune-stop-stress-") as tmp:
        os.environ["RUNTUNE_LOCAL_DIR"] = tmp
        emulators, project, bucket = None, "demo-runtune-stop-stress", "runtune-stop-stress"
        if args.runs:
            ensure_tiny_model(MODEL, tiny_dir(Path(tmp), MODEL))
            print("starting the emulators...", flush=True)
            emulators = start_emulators(project_id=project, bucket=bucket)
        burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.burners)]
        try:
            if emulators is not None:
                os.environ.update(emulators.endpoints.env())
            from runtune.adapters.firestore import FirestoreMetadataStore
            from runtune.adapters.gcs import GcsBlobStore

            store = FirestoreMetadataStore.for_project(project) if emulators else None
            blobs = GcsBlobStore.for_bucket(project, bucket) if emulators else None
            if blobs is not None:
                blobs.ensure_bucket()
            for burner in burners:
                burner.start()
            print(f"{args.burners} busy processes on {os.cpu_count()} CPUs; {args.runs} runs", flush=True)
            tests_passed = run_tests(args.tests) if args.tests else True
            outcomes = []
            for run in range(args.runs):
                outcome = one_run(store, blobs, SCENARIOS[run % len(SCENARIOS)])
                outcomes.append(outcome)
                mark = "pass" if outcome.passed else "FAIL"
                print(
                    f"{run + 1:3d} {mark} {outcome.scenario:22s} {outcome.latency_s:5.2f}s {outcome.detail}", flush=True
                )
        finally:
            for burner in burners:
                burner.terminate()
            if emulators is not None:
                emulators.stop()
    passed = sum(outcome.passed for outcome in outcomes)
    latencies = sorted(outcome.latency_s for outcome in outcomes) or [0.0]
    print(
        f"passed {passed}/{len(outcomes)}; exit latency after SIGTERM: max {latencies[-1]:.2f}s, "
        f"median {latencies[len(latencies) // 2]:.2f}s"
    )
    for scenario in SCENARIOS:
        mine = [o.latency_s for o in outcomes if o.scenario == scenario]
        if mine:
            print(f"  {scenario}: max {max(mine):.2f}s over {len(mine)} runs")
    sys.exit(0 if passed == len(outcomes) and tests_passed else 1)


def run_tests(times: int) -> bool:
    """The stop path's tests, `times` times in one pytest run (`--keep-duplicates`)."""
    started = time.monotonic()
    tests = [str(Path(__file__).parents[1] / "tests" / "trainer" / "test_stop_signals.py")] * times
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--keep-duplicates", *tests],
        capture_output=True,
        text=True,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    print(f"stop path tests x{times}: {summary} ({time.monotonic() - started:.0f}s)", flush=True)
    if result.returncode != 0:
        print(result.stdout[-5000:], flush=True)
    return result.returncode == 0


if __name__ == "__main__":
    main()
