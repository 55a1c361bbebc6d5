"""Job launcher port: start, cancel and inspect one trainer execution per job."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class ExecutionState(StrEnum):
    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    unknown = "unknown"


@dataclass(frozen=True)
class LaunchRequest:
    job_id: str
    # Non-secret environment only: the trainer fetches users' tokens from the secrets port itself.
    env: dict[str, str] = field(default_factory=dict)
    timeout_seconds: int = 3600
    task_count: int = 1


@dataclass(frozen=True)
class ExecutionStatus:
    name: str
    state: ExecutionState
    reason: str | None = None
    exit_code: int | None = None


class JobLauncher(Protocol):
    def launch(self, request: LaunchRequest) -> str:
        """Start an execution; returns its name (stored on the job)."""

    def cancel(self, execution_name: str) -> None: ...

    def status(self, execution_name: str) -> ExecutionStatus: ...
