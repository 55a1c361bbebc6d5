"""Job launcher port: start, cancel and inspect one execution per unit of long work.

Four workloads run as executions of their own, never in a request-serving instance: training (a GPU
job per GPU type), dataset ingestion, evaluations and GGUF conversions (CPU jobs). Each is a Cloud Run job in the cloud
and a child process of the local launcher on a workstation; a training run too big or too long for one
Cloud Run GPU is a Vertex AI CustomJob instead (`LaunchRequest.machine`). Every launcher reports the
same `ExecutionState`s, so the reconciler treats the backends alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

# Every execution's task timeout in seconds, set by the launcher (Cloud Run exposes none), read by the
# execution (runtune.training.deadline).
DEADLINE_ENV = "RUNTUNE_TASK_DEADLINE_S"


class Workload(StrEnum):
    """What an execution does; decides which Cloud Run job (or local command) runs it."""

    train = "train"
    ingest = "ingest"
    evaluate = "evaluate"
    # A GGUF / Ollama export made from a merged model (jobs/convert).
    convert = "convert"


class ExecutionState(StrEnum):
    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    unknown = "unknown"


@dataclass(frozen=True)
class LaunchRequest:
    # The id of the work item the execution serves (a fine-tuning job, a dataset, an evaluation):
    # the execution's only argument.
    job_id: str
    # Non-secret environment only: executions fetch users' tokens from the secrets port themselves.
    env: dict[str, str] = field(default_factory=dict)
    timeout_seconds: int = 3600
    task_count: int = 1
    workload: Workload = Workload.train
    # Cloud Run's accelerator name (runtune.estimate.GPU_TABLE): required for training on Cloud Run,
    # absent otherwise; on Vertex the machine's GPU (or absent: the machine names it).
    gpu: str | None = None
    # Training on Vertex AI: the machine type of the Vertex machine table (runtune/compute.py), its
    # GPUs run under torchrun when more than one, and whether Spot capacity may run it. None: Cloud Run.
    machine: str | None = None
    spot: bool = False


@dataclass(frozen=True)
class ExecutionStatus:
    name: str
    state: ExecutionState
    reason: str | None = None
    exit_code: int | None = None
    # Pending because the backend is still finding capacity (a Vertex AI job queued for its machine, or
    # for Spot VMs): it bounds that wait itself (`scheduling.max_wait_duration`, then the job expires),
    # so the reconciler waits instead of taking the silence for a lost trainer.
    waiting_for_capacity: bool = False


class JobLauncher(Protocol):
    def launch(self, request: LaunchRequest) -> str:
        """Start an execution; returns its name (stored on the work item)."""

    def cancel(self, execution_name: str) -> None: ...

    def status(self, execution_name: str) -> ExecutionStatus: ...
