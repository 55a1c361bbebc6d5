"""The launch contract both job launchers enforce, so a request the cloud refuses fails locally too.

What a trainer execution receives: argv `[job_id]`, the request's non-secret environment, and the
`CLOUD_RUN_*` variables Cloud Run sets on every task. Users' tokens never travel in launch overrides
(they would be readable by anyone allowed to describe the execution); the trainer fetches them from
the secrets port itself.
"""

from __future__ import annotations

import re

from runtune.ports.launcher import LaunchRequest

# A job id becomes an argv entry, part of an execution name and (locally) part of a log file name.
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
# POSIX-portable variable names: what Cloud Run accepts and every shell can export.
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_NAME_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")
# Cloud Run sets these on every task and refuses overrides of them; the local launcher sets them too.
RESERVED_PREFIX = "CLOUD_RUN_"
# Cloud Run's task timeout ceiling (7 days).
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600


def looks_like_secret(env_name: str) -> bool:
    upper = env_name.upper()
    return any(marker in upper for marker in SECRET_NAME_MARKERS)


def validate_launch_request(request: LaunchRequest) -> None:
    """Raise ValueError for a request that breaks the contract; messages name variables, never values."""
    if not JOB_ID_PATTERN.fullmatch(request.job_id):
        raise ValueError("job_id must be 1-128 characters of letters, digits, '_' or '-'")
    if not 1 <= request.timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}")
    if request.task_count < 1:
        raise ValueError("task_count must be at least 1")
    for env_name in request.env:
        _validate_env_name(env_name)


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
