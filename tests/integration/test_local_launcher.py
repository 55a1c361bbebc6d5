"""LocalProcessLauncher with real (tiny) child processes: the Cloud Run contract, queue, stops, timeouts."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtune.adapters.local_launcher import LocalProcessLauncher
from runtune.ports.launcher import ExecutionState, LaunchRequest, Workload

pytestmark = pytest.mark.timeout(30)

# The fake trainer: reports what it was given, then behaves as MODE says.
TRAINER = r"""
import json, os, pathlib, signal, subprocess, sys, time

out = pathlib.Path(os.environ["TEST_DIR"])
job_id = sys.argv[-1]
cmdline = pathlib.Path("/proc/self/cmdline").read_bytes().split(b"\0")[:-1]
report = {"argv": [a.decode() for a in cmdline], "env": dict(os.environ), "pid": os.getpid()}
mode = os.environ.get("MODE", "exit0")
if mode == "ignore_term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    report["worker_pid"] = worker.pid
with open(out / "order.txt", "a") as order:
    order.write(job_id + "\n")
tmp = out / f"{job_id}.tmp"
tmp.write_text(json.dumps(report))
tmp.replace(out / f"{job_id}.json")
print(f"trainer {job_id} running", flush=True)

if mode == "wait_release":
    while not (out / f"{job_id}.release").exists():
        time.sleep(0.02)
elif mode in ("sleep", "ignore_term"):
    time.sleep(60)
elif mode == "exit3":
    sys.exit(3)
elif mode == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


def wait_until(predicate: Callable[[], bool], timeout: float = 4.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # An orphan reparented to a PID 1 that does not reap stays a zombie: dead all the same.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


L4 = "nvidia-l4"


class Harness:
    def __init__(self, tmp_path: Path, **options: Any) -> None:
        self.dir = tmp_path / "out"
        self.dir.mkdir()
        self.log_dir = tmp_path / "logs"
        self.command = [sys.executable, "-c", TRAINER]
        self.launcher = LocalProcessLauncher(
            self.command,
            max_concurrent=options.pop("max_concurrent", 2),
            log_dir=self.log_dir,
            base_env={"TEST_DIR": str(self.dir), "RUNTUNE_BUCKET": "runtune-local"},
            kill_grace_s=options.pop("kill_grace_s", 0.5),
            poll_interval_s=0.02,
            **options,
        )

    def launch(self, job_id: str, mode: str = "exit0", **request: Any) -> str:
        request.setdefault("gpu", None if "workload" in request else "nvidia-l4")
        return self.launcher.launch(LaunchRequest(job_id=job_id, env={"MODE": mode}, **request))

    def report(self, job_id: str) -> dict[str, Any]:
        path = self.dir / f"{job_id}.json"
        wait_until(path.exists)
        return json.loads(path.read_text())

    def state(self, name: str) -> ExecutionState:
        return self.launcher.status(name).state

    def wait_state(self, name: str, state: ExecutionState) -> None:
        wait_until(lambda: self.state(name) is state)

    def release(self, job_id: str) -> None:
        (self.dir / f"{job_id}.release").touch()

    def order(self) -> list[str]:
        path = self.dir / "order.txt"
        return path.read_text().split() if path.exists() else []


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(**options: Any) -> Harness:
        made.append(Harness(tmp_path, **options))
        return made[-1]

    yield factory
    for harness in made:
        harness.launcher.shutdown()


def test_argv_and_environment_follow_the_cloud_run_contract(make, monkeypatch) -> None:
    # Set before the launcher exists: a parent's credential must not reach the trainer.
    monkeypatch.setenv("RUNTUNE_INTERNAL_TOKEN", "parent-only-value")
    h = make()
    name = h.launch("ftjob-1", task_count=1)

    assert name.startswith("local/ftjob-1/")
    report = h.report("ftjob-1")
    h.wait_state(name, ExecutionState.succeeded)
    assert report["argv"] == [*h.command, "ftjob-1"]
    env = report["env"]
    assert {key: env[key] for key in env if key.startswith("CLOUD_RUN_")} == {
        "CLOUD_RUN_JOB": "runtune-trainer-l4",
        "CLOUD_RUN_EXECUTION": name,
        "CLOUD_RUN_TASK_INDEX": "0",
        "CLOUD_RUN_TASK_ATTEMPT": "0",
        "CLOUD_RUN_TASK_COUNT": "1",
    }
    assert env["MODE"] == "exit0"  # request env
    assert env["RUNTUNE_TASK_DEADLINE_S"] == "3600"  # the task's deadline, as in the cloud
    assert env["RUNTUNE_BUCKET"] == "runtune-local"  # base env
    assert "RUNTUNE_INTERNAL_TOKEN" not in env
    status = h.launcher.status(name)
    assert (status.reason, status.exit_code) == (None, 0)


def test_output_goes_to_the_execution_log(make) -> None:
    h = make()
    name = h.launch("ftjob-log")
    h.wait_state(name, ExecutionState.succeeded)
    log_path = h.launcher.log_path(name)
    assert log_path is not None
    assert log_path.parent == h.log_dir
    assert log_path.name == f"ftjob-log-{name.rsplit('/', 1)[1]}.log"
    assert "trainer ftjob-log running" in log_path.read_text()


def test_queue_is_fifo_and_bounded(make) -> None:
    h = make(max_concurrent=1)
    first = h.launch("ftjob-a", "wait_release")
    second = h.launch("ftjob-b", "wait_release")
    third = h.launch("ftjob-c", "wait_release")

    h.report("ftjob-a")
    assert [h.state(n) for n in (first, second, third)] == [
        ExecutionState.running,
        ExecutionState.pending,
        ExecutionState.pending,
    ]

    h.release("ftjob-a")
    h.report("ftjob-b")
    assert h.state(first) is ExecutionState.succeeded
    assert h.state(third) is ExecutionState.pending

    h.release("ftjob-b")
    h.release("ftjob-c")
    h.wait_state(third, ExecutionState.succeeded)
    assert h.order() == ["ftjob-a", "ftjob-b", "ftjob-c"]


def test_cancel_stops_the_process(make) -> None:
    h = make()
    name = h.launch("ftjob-1", "sleep")
    pid = h.report("ftjob-1")["pid"]

    h.launcher.cancel(name)

    h.wait_state(name, ExecutionState.cancelled)
    assert h.launcher.status(name).reason == "cancelled"
    wait_until(lambda: not alive(pid))


def test_cancel_escalates_to_sigkill_and_reaches_the_whole_group(make) -> None:
    h = make(kill_grace_s=0.3)
    name = h.launch("ftjob-1", "ignore_term")
    report = h.report("ftjob-1")

    h.launcher.cancel(name)
    assert h.launcher.status(name).reason == "cancelling"  # SIGTERM ignored: still running

    h.wait_state(name, ExecutionState.cancelled)
    wait_until(lambda: not alive(report["pid"]) and not alive(report["worker_pid"]))


def test_cancel_of_a_pending_execution_never_starts_it(make) -> None:
    h = make(max_concurrent=1)
    first = h.launch("ftjob-a", "wait_release")
    second = h.launch("ftjob-b")
    h.report("ftjob-a")

    h.launcher.cancel(second)
    h.release("ftjob-a")

    h.wait_state(first, ExecutionState.succeeded)
    time.sleep(0.1)  # give the supervisor ticks in which it could (wrongly) start it
    assert h.state(second) is ExecutionState.cancelled
    assert h.order() == ["ftjob-a"]


@pytest.mark.parametrize(
    ("script", "reason", "exit_code"),
    [("exit3", "exit code 3", 3), ("sigkill", "killed by signal SIGKILL", 137)],
    ids=["non-zero-exit", "death-by-signal"],
)
def test_a_failed_execution_says_how_it_ended(make, script: str, reason: str, exit_code: int) -> None:
    """A non-zero exit fails with the exit code; a death by signal names the signal."""
    h = make()
    name = h.launch("ftjob-1", script)
    h.wait_state(name, ExecutionState.failed)
    status = h.launcher.status(name)
    assert (status.reason, status.exit_code) == (reason, exit_code)


def test_timeout_kills_and_fails(make) -> None:
    h = make()
    name = h.launch("ftjob-1", "sleep", timeout_seconds=1)
    pid = h.report("ftjob-1")["pid"]

    h.wait_state(name, ExecutionState.failed)

    assert h.launcher.status(name).reason == "timeout after 1s"
    wait_until(lambda: not alive(pid))


def test_unknown_execution(make) -> None:
    h = make()
    status = h.launcher.status("local/ftjob-x/deadbeef")
    assert status.state is ExecutionState.unknown
    h.launcher.cancel("local/ftjob-x/deadbeef")  # nothing to stop, no error


def test_contract_violations_are_refused(make) -> None:
    h = make()
    for request in (
        LaunchRequest(job_id="ftjob-1", env={"HF_TOKEN": "hf_abcdefghijkl"}, gpu=L4),
        LaunchRequest(job_id="ftjob-1", env={"CLOUD_RUN_TASK_INDEX": "3"}, gpu=L4),
        LaunchRequest(job_id="../../etc/passwd", gpu=L4),
        LaunchRequest(job_id="ftjob-1", task_count=2, gpu=L4),
        LaunchRequest(job_id="ftjob-1"),  # training names its GPU, as the cloud's per-GPU jobs need
        LaunchRequest(job_id="file-1", workload=Workload.ingest),  # another workload's command
    ):
        with pytest.raises(ValueError):
            h.launcher.launch(request)
    assert h.order() == []


def test_a_cpu_workloads_launcher_names_its_cloud_run_job(make) -> None:
    h = make(workload=Workload.ingest)
    h.launch("file-1", workload=Workload.ingest)
    assert h.report("file-1")["env"]["CLOUD_RUN_JOB"] == "runtune-ingest"
    with pytest.raises(ValueError, match="ingest"):
        h.launch("ftjob-1", workload=Workload.train, gpu=L4)


def test_shutdown_stops_everything_and_refuses_new_work(make) -> None:
    h = make(max_concurrent=1)
    running = h.launch("ftjob-a", "sleep")
    pending = h.launch("ftjob-b")
    pid = h.report("ftjob-a")["pid"]

    h.launcher.shutdown()

    assert h.state(running) is ExecutionState.cancelled
    assert h.state(pending) is ExecutionState.cancelled
    assert not alive(pid)
    with pytest.raises(RuntimeError):
        h.launch("ftjob-c")
