"""The launch contract both job launchers enforce, so a request the cloud refuses fails locally too.

What an execution receives: argv `[job_id]`, the request's non-secret environment plus
`RUNTUNE_TASK_DEADLINE_S` (the task timeout, which Cloud Run does not expose), and the `CLOUD_RUN_*`
variables Cloud Run sets on every task. Users' tokens never travel in launch overrides (they would be
readable by anyone allowed to describe the execution); executions fetch them from the secrets port.

Which job runs a request: one Cloud Run job per workload, and for training one per GPU type of
`runtune.estimate.GPU_TABLE` (Terraform generates them from the same table), so the GPU the estimate
chose is the GPU the run gets. A training request with a `machine` runs on Vertex AI instead: a
CustomJob on that machine of `runtune.compute.VERTEX_MACHINES`, with the same argv and environment
(runtune/adapters/vertex_launcher.py).
"""

from __future__ import annotations

import re

from runtune.compute import VERTEX_MACHINE_NAMES, Backend, machine
from runtune.estimate import GPU_NAMES
from runtune.ports.launcher import DEADLINE_ENV, LaunchRequest, Workload

# A job id becomes an argv entry, part of an execution name and (locally) part of a log file name.
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
# POSIX-portable variable names: what Cloud Run accepts and every shell can export.
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_NAME_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")
# Cloud Run sets these on every task and refuses overrides of them; the local launcher sets them too.
RESERVED_PREFIX = "CLOUD_RUN_"
# Cloud Run's task timeout ceiling (7 days).
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
# Every Cloud Run job of a deployment is named `<prefix>-<workload>[-<gpu>]`.
DEFAULT_JOB_PREFIX = "runtune"
_JOB_STEMS = {
    Workload.train: "trainer",
    Workload.ingest: "ingest",
    Workload.evaluate: "evaluate",
    Workload.convert: "convert",
}


def gpu_slug(gpu: str) -> str:
    """`nvidia-rtx-pro-6000` -> `rtx-pro-6000`: the part of a trainer job's name naming its GPU."""
    return gpu.removeprefix("nvidia-")


def cloud_run_job_name(workload: Workload, gpu: str | None = None, prefix: str = DEFAULT_JOB_PREFIX) -> str:
    """The Cloud Run job that runs a workload: `runtune-trainer-l4`, `runtune-ingest`, ..."""
    stem = f"{prefix}-{_JOB_STEMS[workload]}"
    if workload is Workload.train:
        if gpu not in GPU_NAMES:
            raise ValueError(f"gpu must be one of {', '.join(GPU_NAMES)} for training, not {gpu!r}")
        return f"{stem}-{gpu_slug(gpu)}"
    if gpu is not None:
        raise ValueError(f"a {workload} execution runs on CPUs; it takes no gpu")
    return stem


def execution_env(request: LaunchRequest) -> dict[str, str]:
    """What the execution's environment overrides hold: the request's variables and its deadline."""
    return {**request.env, DEADLINE_ENV: str(request.timeout_seconds)}


def looks_like_secret(env_name: str) -> bool:
    upper = env_name.upper()
    return any(marker in upper for marker in SECRET_NAME_MARKERS)


def validate_launch_request(request: LaunchRequest, backend: Backend = "cloud_run") -> None:
    """Raise ValueError for a request that breaks the contract, or that `backend` cannot run (a
    Vertex machine on Cloud Run, a Cloud Run job on Vertex); messages name variables, never values."""
    if not JOB_ID_PATTERN.fullmatch(request.job_id):
        raise ValueError("job_id must be 1-128 characters of letters, digits, '_' or '-'")
    if not 1 <= request.timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}")
    if request.task_count < 1:
        raise ValueError("task_count must be at least 1")
    if backend == "vertex":
        _validate_vertex(request)
    elif request.machine is not None:
        raise ValueError(f"machine {request.machine!r} is a Vertex AI machine; this launcher runs Cloud Run jobs")
    else:
        cloud_run_job_name(request.workload, request.gpu)
    if DEADLINE_ENV in request.env:
        raise ValueError(f"environment variable {DEADLINE_ENV!r} is set by the launcher from timeout_seconds")
    for env_name in request.env:
        _validate_env_name(env_name)


def _validate_vertex(request: LaunchRequest) -> None:
    if request.workload is not Workload.train:
        raise ValueError(f"a {request.workload} execution runs on Cloud Run; Vertex AI runs training only")
    if request.machine not in VERTEX_MACHINE_NAMES:
        raise ValueError(
            f"machine must be one of {', '.join(VERTEX_MACHINE_NAMES)} on Vertex AI, not {request.machine!r}"
        )
    if request.gpu is not None and request.gpu != machine(request.machine).gpu.name:
        raise ValueError(
            f"machine {request.machine!r} has {machine(request.machine).gpu.name} GPUs, not {request.gpu!r}"
        )


def _validate_env_name(env_name: str) -> None:
    if not ENV_NAME_PATTERN.fullmatch(env_name):
        raise ValueError(f"invalid environment variable name {env_name!r}")
    if env_name.upper().startswith(RESERVED_PREFIX):
        raise ValueError(f"environment variable {env_name!r} is reserved for the launcher")
    if looks_like_secret(env_name):
        raise ValueError(
            f"environment variable {env_name!r} looks like a secret; secrets never travel in launch "
            "overrides, the trainer reads them from the secret store"
        )
