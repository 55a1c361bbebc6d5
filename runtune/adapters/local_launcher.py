"""Job launcher for the local platform: one workload's executions (the trainer, ingestion or
evaluations) as child processes, behind a bounded FIFO queue.

It keeps Cloud Run's contract so an execution cannot tell the two apart: argv `command + [job_id]`,
the request's environment and deadline, the `CLOUD_RUN_*` task variables (`CLOUD_RUN_JOB` names the
job the cloud would run), and a task timeout. Each service runs its own workload's launcher, as each
Cloud Run job has its own resources: a queue of trainers never delays an ingestion. At most
`max_concurrent` trainers run (a workstation has one or two GPUs); later launches wait, pending, and
start in order as slots free. One supervisor thread reaps exits, enforces timeouts and escalates
stops; every state change happens under one lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from runtune.adapters.launch_contract import cloud_run_job_name, execution_env, validate_launch_request
from runtune.ports.launcher import ExecutionState, ExecutionStatus, LaunchRequest, Workload

log = logging.getLogger(__name__)

NAME_PREFIX = "local"
# What a container gets from its image: process basics only. Everything else the trainer needs comes
# through `base_env` or the request, so nothing of the parent's (its credentials included) leaks in.
PASSTHROUGH_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "CUDA_VISIBLE_DEVICES")
_TERMINAL = frozenset(
    {ExecutionState.succeeded, ExecutionState.failed, ExecutionState.cancelled, ExecutionState.unknown}
)


class _Stop(StrEnum):
    """Why the launcher is stopping a running trainer: decides the final state once it exits."""

    cancel = "cancel"
    timeout = "timeout"
    shutdown = "shutdown"


_STOPPING_REASON = {
    _Stop.cancel: "cancelling",
    _Stop.timeout: "stopping after timeout",
    _Stop.shutdown: "stopping: launcher shut down",
}


@dataclass
class _Execution:
    name: str
    job_id: str
    argv: list[str]
    env: dict[str, str]
    timeout_seconds: int
    log_path: Path
    state: ExecutionState = ExecutionState.pending
    reason: str | None = None
    exit_code: int | None = None
    process: subprocess.Popen[bytes] | None = None
    deadline: float = 0.0  # monotonic clock; set when the process starts
    stop: _Stop | None = None
    kill_at: float | None = None  # monotonic clock; SIGKILL if still alive by then

    def snapshot(self) -> ExecutionStatus:
        reason = _STOPPING_REASON[self.stop] if self.stop and self.state not in _TERMINAL else self.reason
        return ExecutionStatus(self.name, self.state, reason=reason, exit_code=self.exit_code)


class LocalProcessLauncher:
    """`JobLauncher` running trainers as local processes, each in its own process group."""

    def __init__(
        self,
        command: list[str],
        *,
        max_concurrent: int,
        log_dir: Path,
        base_env: dict[str, str] | None = None,
        workload: Workload = Workload.train,
        kill_grace_s: float = 10.0,
        poll_interval_s: float = 0.1,
    ) -> None:
        if not command:
            raise ValueError("command must not be empty")
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._command = [_resolve_executable(command[0]), *command[1:]]
        self._max_concurrent = max_concurrent
        self._log_dir = log_dir
        self._base_env = {**_passthrough_env(), **(base_env or {})}
        self._workload = workload
        self._kill_grace_s = kill_grace_s
        self._poll_interval_s = poll_interval_s
        self._log_dir.mkdir(parents=True, exist_ok=True)

        self._cond = threading.Condition(threading.Lock())
        self._executions: dict[str, _Execution] = {}
        self._queue: deque[_Execution] = deque()
        self._running: dict[str, _Execution] = {}
        self._closed = False
        self._supervisor = threading.Thread(target=self._supervise, name="local-launcher", daemon=True)
        self._supervisor.start()

    # -- JobLauncher ---------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> str:
        validate_launch_request(request)
        if request.workload is not self._workload:
            # A service launches its own workload only; another's command would run the wrong program.
            raise ValueError(f"this launcher runs {self._workload} executions, not {request.workload}")
        if request.task_count != 1:
            # Running index 0 alone while telling it there are N tasks would silently lose work.
            raise ValueError("the local launcher runs exactly one task per execution")
        with self._cond:
            if self._closed:
                raise RuntimeError("the local launcher is shut down")
            execution = self._new_execution(request)
            self._executions[execution.name] = execution
            self._queue.append(execution)
            log.info(
                "execution queued",
                extra={"job_id": request.job_id, "execution": execution.name, "queued": len(self._queue)},
            )
            self._start_queued()
        return execution.name

    def cancel(self, execution_name: str) -> None:
        with self._cond:
            execution = self._executions.get(execution_name)
            if execution is None or execution.state in _TERMINAL:
                log.info("cancel had nothing to stop", extra={"execution": execution_name})
                return
            if execution.state is ExecutionState.pending:
                self._queue.remove(execution)
                self._settle(execution, ExecutionState.cancelled, reason="cancelled")
            elif execution.stop is None:
                self._begin_stop(execution, _Stop.cancel)
            self._cond.notify_all()

    def status(self, execution_name: str) -> ExecutionStatus:
        with self._cond:
            execution = self._executions.get(execution_name)
            if execution is None:
                return ExecutionStatus(execution_name, ExecutionState.unknown, reason="no such execution")
            return execution.snapshot()

    # -- local platform ------------------------------------------------------------------------

    def log_path(self, execution_name: str) -> Path | None:
        """Where the execution's stdout and stderr go (what Cloud Logging holds in the cloud)."""
        with self._cond:
            execution = self._executions.get(execution_name)
            return execution.log_path if execution else None

    def shutdown(self, timeout_s: float | None = None) -> None:
        """Cancel what waits, stop what runs (SIGTERM, then SIGKILL after the grace), refuse new work."""
        with self._cond:
            self._closed = True
            while self._queue:
                self._settle(self._queue.popleft(), ExecutionState.cancelled, reason="launcher shut down")
            for execution in self._running.values():
                if execution.stop is None:
                    self._begin_stop(execution, _Stop.shutdown)
            self._cond.notify_all()
        self._supervisor.join(timeout_s if timeout_s is not None else self._kill_grace_s + 5.0)
        if self._supervisor.is_alive():
            log.error("local launcher shutdown timed out with trainers still running")

    # -- internals (callers hold self._cond) -----------------------------------------------------

    def _new_execution(self, request: LaunchRequest) -> _Execution:
        short_id = secrets.token_hex(4)
        while f"{NAME_PREFIX}/{request.job_id}/{short_id}" in self._executions:
            short_id = secrets.token_hex(4)
        name = f"{NAME_PREFIX}/{request.job_id}/{short_id}"
        env = {
            **self._base_env,
            **execution_env(request),
            # Cloud Run's task contract; request.env cannot override these (validated).
            "CLOUD_RUN_JOB": cloud_run_job_name(request.workload, request.gpu),
            "CLOUD_RUN_EXECUTION": name,
            "CLOUD_RUN_TASK_INDEX": "0",
            "CLOUD_RUN_TASK_ATTEMPT": "0",
            "CLOUD_RUN_TASK_COUNT": str(request.task_count),
        }
        return _Execution(
            name=name,
            job_id=request.job_id,
            argv=[*self._command, request.job_id],
            env=env,
            timeout_seconds=request.timeout_seconds,
            log_path=self._log_dir / f"{request.job_id}-{short_id}.log",
        )

    def _start_queued(self) -> None:
        while self._queue and len(self._running) < self._max_concurrent and not self._closed:
            self._start(self._queue.popleft())

    def _start(self, execution: _Execution) -> None:
        try:
            with execution.log_path.open("ab") as log_file:
                # Own session and process group: a stop reaches the trainer's workers too.
                execution.process = subprocess.Popen(
                    execution.argv,
                    env=execution.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            log.error(
                "process did not start",
                extra={"execution": execution.name, "error_class": type(exc).__name__},
            )
            self._settle(execution, ExecutionState.failed, reason=f"could not start: {exc.strerror}")
            return
        execution.state = ExecutionState.running
        execution.deadline = time.monotonic() + execution.timeout_seconds
        self._running[execution.name] = execution
        log.info(
            "process started",
            extra={
                "execution": execution.name,
                "pid": execution.process.pid,
                "log_path": str(execution.log_path),
            },
        )

    def _begin_stop(self, execution: _Execution, why: _Stop) -> None:
        execution.stop = why
        execution.kill_at = time.monotonic() + self._kill_grace_s
        self._signal_group(execution, signal.SIGTERM)
        log.info("process stopping", extra={"execution": execution.name, "why": str(why)})

    def _signal_group(self, execution: _Execution, sig: signal.Signals) -> None:
        # Safe while the leader is unreaped (only _supervise reaps, under the same lock): its pid,
        # which is also the group id, cannot have been reused.
        assert execution.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(execution.process.pid, sig)

    def _settle(
        self,
        execution: _Execution,
        state: ExecutionState,
        *,
        reason: str | None,
        exit_code: int | None = None,
    ) -> None:
        execution.state, execution.reason, execution.exit_code = state, reason, exit_code
        log.info(
            "execution finished",
            extra={
                "execution": execution.name,
                "state": str(state),
                "reason": reason,
                "exit_code": exit_code,
            },
        )

    def _supervise(self) -> None:
        with self._cond:
            while not (self._closed and not self._running):
                self._tick(time.monotonic())
                self._cond.wait(self._poll_interval_s)

    def _tick(self, now: float) -> None:
        for execution in list(self._running.values()):
            assert execution.process is not None
            returncode = execution.process.poll()
            if returncode is not None:
                self._finish(execution, returncode)
            elif execution.stop is None and now >= execution.deadline:
                self._begin_stop(execution, _Stop.timeout)
            elif execution.kill_at is not None and now >= execution.kill_at:
                log.warning("execution ignored SIGTERM; killing it", extra={"execution": execution.name})
                self._signal_group(execution, signal.SIGKILL)
                execution.kill_at = None
        self._start_queued()

    def _finish(self, execution: _Execution, returncode: int) -> None:
        del self._running[execution.name]
        # The leader is gone; workers it left behind would keep holding the GPU. A group with no
        # members left makes this a no-op.
        self._signal_group(execution, signal.SIGKILL)
        if execution.stop is _Stop.cancel:
            self._settle(execution, ExecutionState.cancelled, reason="cancelled")
        elif execution.stop is _Stop.shutdown:
            self._settle(execution, ExecutionState.cancelled, reason="launcher shut down")
        elif execution.stop is _Stop.timeout:
            reason = f"timeout after {execution.timeout_seconds}s"
            self._settle(execution, ExecutionState.failed, reason=reason)
        elif returncode == 0:
            self._settle(execution, ExecutionState.succeeded, reason=None, exit_code=0)
        else:
            reason, exit_code = _exit_reason(returncode)
            self._settle(execution, ExecutionState.failed, reason=reason, exit_code=exit_code)


def _exit_reason(returncode: int) -> tuple[str, int]:
    if returncode > 0:
        return f"exit code {returncode}", returncode
    # Popen reports death by signal N as -N; containers report it as 128 + N.
    signum = -returncode
    try:
        signal_name = signal.Signals(signum).name
    except ValueError:
        signal_name = f"signal {signum}"
    return f"killed by signal {signal_name}", 128 + signum


def _resolve_executable(program: str) -> str:
    # Resolved once, at startup, so a missing trainer fails there. A bare "python" means this
    # process's interpreter (the platform's virtualenv), whatever PATH would find first.
    if program in ("python", "python3"):
        return sys.executable
    if os.sep in program:
        return program
    resolved = shutil.which(program)
    if resolved is None:
        raise ValueError(f"trainer command not found on PATH: {program!r}")
    return resolved


def _passthrough_env() -> dict[str, str]:
    return {name: os.environ[name] for name in PASSTHROUGH_VARIABLES if name in os.environ}
