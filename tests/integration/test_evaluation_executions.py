"""Evaluations reconciled against their executions, on the Firestore emulator with the real local
launcher running stand-in executions: one that exited, timed out or was killed fails its evaluation
with that reason; one that finished it is left alone; an evaluation that is over is never reopened by
its execution; and `python -m jobs.evaluate` keeps its exit-status contract."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from runtune.adapters.firestore import FirestoreMetadataStore
from runtune.adapters.local_launcher import LocalProcessLauncher
from runtune.inference.evaluation import EvaluationOver, EvaluationRunner, evaluation_path
from runtune.ports.launcher import ExecutionState, Workload
from runtune.schemas.inference import Evaluation, EvaluationStatus
from runtune.settings import REPO_ROOT
from services.inference.executions import evaluation_executions

pytestmark = pytest.mark.timeout(120)

# A stand-in execution: behaves as the evaluation's dataset_id says.
EXECUTION = r"""
import os, signal, sys, time
from runtune.adapters.firestore import FirestoreMetadataStore
store = FirestoreMetadataStore.for_project(os.environ["GCLOUD_PROJECT"])
evaluation = store.get(f"evaluations/{sys.argv[-1]}")
mode = evaluation["dataset_id"]
if mode == "finish":
    store.update(f"evaluations/{sys.argv[-1]}", {"status": "succeeded", "finished_at": int(time.time())})
elif mode == "exit4":
    sys.exit(4)
elif mode == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
elif mode == "sleep":
    time.sleep(60)
"""


def _evaluation(mode: str) -> Evaluation:
    return Evaluation(
        # An owner each: these tests start more evaluations at once than one user may (runtune/quotas.py).
        id=f"eval-{uuid.uuid4().hex[:12]}",
        owner=f"user-{uuid.uuid4().hex[:8]}",
        dataset_id=mode,
        models=["tiny-gemma-3-vision"],
    )


@pytest.fixture
def setup(emulators: Any, tmp_path: Path) -> Any:
    store = FirestoreMetadataStore.for_project(emulators.project_id)
    launcher = LocalProcessLauncher(
        [sys.executable, "-c", EXECUTION],
        max_concurrent=4,
        log_dir=tmp_path,
        base_env={**emulators.env(), "GCLOUD_PROJECT": emulators.project_id, "PYTHONPATH": str(REPO_ROOT)},
        workload=Workload.evaluate,
    )
    yield store, launcher
    launcher.shutdown()


def _ended(launcher: LocalProcessLauncher, execution: str) -> None:
    deadline = time.monotonic() + 60
    while launcher.status(execution).state in (ExecutionState.pending, ExecutionState.running):
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.05)


def test_an_execution_that_ended_without_finishing_fails_its_evaluation(setup: Any) -> None:
    store, launcher = setup
    executions = evaluation_executions(store, launcher, heartbeat_s=2, timeout_s=60)
    short = evaluation_executions(store, launcher, heartbeat_s=2, timeout_s=1)
    started = {
        "finish": executions.start(_evaluation("finish")),
        "exit4": executions.start(_evaluation("exit4")),
        "sigkill": executions.start(_evaluation("sigkill")),
        "timeout": short.start(_evaluation("sleep")),
    }
    for evaluation in started.values():
        assert evaluation.execution_name and evaluation.execution_name.startswith(f"local/{evaluation.id}/")
        _ended(launcher, evaluation.execution_name)
    # Not overdue yet: nothing is asked, nothing changes.
    fresh = executions.reconciled(executions.collection.get(started["exit4"].id))  # type: ignore[arg-type]
    assert fresh.status is EvaluationStatus.queued
    later = int(time.time()) + 60
    after = {
        name: executions.reconciled(executions.collection.get(e.id), now=later)  # type: ignore[arg-type]
        for name, e in started.items()
    }
    assert after["finish"].status is EvaluationStatus.succeeded and after["finish"].error is None
    expected = {
        "exit4": ("evaluation_exited", "exit code 4"),
        "sigkill": ("evaluation_exited", "killed by signal SIGKILL"),
        "timeout": ("evaluation_timeout", "timeout after 1s"),
    }
    for name, (code, reason) in expected.items():
        failed = after[name]
        assert failed.status is EvaluationStatus.failed and failed.error is not None, name
        assert failed.error.code == code and reason in failed.error.message, (name, failed.error)
        stored = Evaluation.model_validate(store.get(evaluation_path(failed.id)))
        assert stored.status is EvaluationStatus.failed and stored.execution_name == failed.execution_name


def test_an_execution_never_reopens_an_evaluation_that_is_over(emulators: Any) -> None:
    store = FirestoreMetadataStore.for_project(emulators.project_id)
    evaluation = _evaluation("any")
    evaluation.status = EvaluationStatus.failed
    evaluation.execution_name = "local/x/1"
    store.set(evaluation_path(evaluation.id), evaluation.to_document())
    runner = EvaluationRunner(None, store, concurrency=1, heartbeat_s=1)  # type: ignore[arg-type]
    working = evaluation.model_copy(update={"status": EvaluationStatus.running, "samples_done": 5})
    with pytest.raises(EvaluationOver):
        runner.save(working)
    assert store.get(evaluation_path(evaluation.id))["status"] == "failed"
    # Progress merges into the stored document: the service's fields (the execution name) survive.
    running = _evaluation("any")
    store.set(evaluation_path(running.id), running.model_copy(update={"execution_name": "local/y/2"}).to_document())
    runner.save(running.model_copy(update={"status": EvaluationStatus.running, "samples_done": 3}))
    stored = store.get(evaluation_path(running.id))
    assert stored["execution_name"] == "local/y/2" and stored["samples_done"] == 3 and stored["heartbeat_at"]


def test_the_evaluate_command_line(emulators: Any, tmp_path: Path) -> None:
    def evaluate(*args: str) -> int:
        env = {
            **emulators.env(),
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO_ROOT),
            "RUNTUNE_PROJECT_ID": emulators.project_id,
            "RUNTUNE_LOCAL_DIR": str(tmp_path),
        }
        return subprocess.run([sys.executable, "-m", "jobs.evaluate", *args], env=env, cwd=REPO_ROOT).returncode

    store = FirestoreMetadataStore.for_project(emulators.project_id)
    over = _evaluation("any").model_copy(update={"status": EvaluationStatus.succeeded})
    store.set(evaluation_path(over.id), over.to_document())
    assert evaluate() == 2
    assert evaluate("eval-does-not-exist") == 3
    assert evaluate(over.id) == 0


def test_a_failure_inside_the_execution_fails_the_evaluation_with_its_message(emulators: Any) -> None:
    from runtune.inference.serving import Serving

    store = FirestoreMetadataStore.for_project(emulators.project_id)
    evaluation = _evaluation("file-that-does-not-exist")
    store.set(evaluation_path(evaluation.id), evaluation.to_document())

    class NoEngine:
        async def aclose(self) -> None: ...

    serving = Serving(store, None, NoEngine(), None)  # type: ignore[arg-type]
    serving.release = _nothing  # type: ignore[method-assign]
    runner = EvaluationRunner(serving, store, concurrency=1, heartbeat_s=60)
    assert asyncio.run(runner.run(evaluation)) is False
    stored = Evaluation.model_validate(store.get(evaluation_path(evaluation.id)))
    assert stored.status is EvaluationStatus.failed and stored.error is not None
    assert stored.error.code == "evaluation_failed" and "file-that-does-not-exist" in stored.error.message


async def _nothing() -> None:
    return None
