"""Checks of the running local platform (`runtune dev up`), from the state file it writes.

The platform restarts as a whole (its supervisor stops everything when one component dies), so the
fix of a component that is down is a restart, and its log says why it stopped.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtune.doctor import Check
from runtune.doctor.probes import DEFAULT_TIMEOUT_S, engine_serves, healthy, refuses_anonymous
from runtune.indexes import COMPOSITE_INDEXES
from runtune.settings import REPO_ROOT, EngineServerSettings, ServiceSettings

RESTART = "runtune dev down && runtune dev up --detach"
COMMAND_VARIABLES = {
    "train": "RUNTUNE_TRAINER_COMMAND",
    "ingest": "RUNTUNE_INGEST_COMMAND",
    "evaluate": "RUNTUNE_EVALUATE_COMMAND",
    "convert": "RUNTUNE_CONVERT_COMMAND",
}


class WorkloadCommands(BaseSettings):
    """The local launcher's command per workload, read as the services read them (`RUNTUNE_*_COMMAND`).

    Not `ServiceSettings` itself: that one refuses to load without the services' internal credential."""

    model_config = SettingsConfigDict(env_prefix="RUNTUNE_", extra="ignore", frozen=True)

    trainer_command: list[str] = ServiceSettings.model_fields["trainer_command"].default
    ingest_command: list[str] = ServiceSettings.model_fields["ingest_command"].default
    evaluate_command: list[str] = ServiceSettings.model_fields["evaluate_command"].default
    convert_command: list[str] = ServiceSettings.model_fields["convert_command"].default

    def by_workload(self) -> dict[str, list[str]]:
        return {
            "train": self.trainer_command,
            "ingest": self.ingest_command,
            "evaluate": self.evaluate_command,
            "convert": self.convert_command,
        }


def _restart_fix(component: str, state: Mapping[str, Any]) -> str:
    log_dir = state.get("log_dir")
    where = f" (why it stopped: {Path(log_dir) / f'{component}.log'})" if log_dir else ""
    return f"{RESTART}{where}"


def _pid_note(component: str, state: Mapping[str, Any]) -> str:
    pid = state.get("pids", {}).get(component)
    if not isinstance(pid, int):
        return ""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"; its process {pid} is gone"
    except PermissionError:
        pass
    return ""


def _with_pid(check: Check, component: str, state: Mapping[str, Any]) -> Check:
    if check.ok:
        return check
    return Check.failed(check.name, check.detail + _pid_note(component, state), check.fix)


def gateway_checks(state: Mapping[str, Any], timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Check]:
    fix = _restart_fix("gateway", state)
    url = state["gateway_url"]
    return [
        _with_pid(healthy("gateway: reachable", url, fix, timeout_s=timeout_s), "gateway", state),
        # Public, but every /v1 path needs a Firebase ID token.
        refuses_anonymous("gateway: authenticates", url, fix, timeout_s=timeout_s),
    ]


def service_checks(state: Mapping[str, Any], timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Check]:
    checks = []
    for name, url in state["services"].items():
        fix = _restart_fix(name, state)
        checks.append(_with_pid(healthy(f"{name}: reachable", url, fix, timeout_s=timeout_s), name, state))
        checks.append(
            refuses_anonymous(
                f"{name}: private",
                url,
                f"{fix}; the platform starts each service with the gateway's credential check "
                "(RUNTUNE_INTERNAL_TOKEN_SHA256)",
                timeout_s=timeout_s,
            )
        )
    return checks


def emulator_checks(state: Mapping[str, Any], timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Check]:
    firestore, storage, auth = (
        state["firestore_emulator_host"],
        state["storage_emulator_host"],
        state["auth_emulator_host"],
    )
    checks = [
        _with_pid(
            healthy(
                "firestore emulator",
                f"http://{firestore}",
                _restart_fix("firestore-emulator", state),
                path="/",
                timeout_s=timeout_s,
            ),
            "firestore-emulator",
            state,
        ),
        _with_pid(
            healthy(
                "auth emulator", f"http://{auth}", _restart_fix("auth-emulator", state), path="/", timeout_s=timeout_s
            ),
            "auth-emulator",
            state,
        ),
    ]
    checks.append(bucket_check(storage, state["bucket"], state, timeout_s))
    return checks


def bucket_check(
    storage_url: str, bucket: str, state: Mapping[str, Any], timeout_s: float = DEFAULT_TIMEOUT_S
) -> Check:
    name = f"storage emulator: bucket {bucket}"
    fix = _restart_fix("storage-emulator", state) + "; the platform creates the bucket when it starts"
    url = f"{storage_url.rstrip('/')}/storage/v1/b/{bucket}"
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return _with_pid(
            Check.failed(name, f"{storage_url} is not reachable ({type(exc).__name__})", fix), "storage-emulator", state
        )
    if response.status_code == 404:
        return Check.failed(name, f"the bucket {bucket} does not exist", fix)
    if not response.is_success:
        return Check.failed(name, f"{url} answered {response.status_code}", fix)
    return Check.passed(name, "exists")


def engine_checks(
    state: Mapping[str, Any], expected_bases: Iterable[str] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[Check]:
    url = state.get("engine_url")
    if not url:
        return [Check.failed("engine: reachable", "the state file names no engine", _restart_fix("engine", state))]
    fix = _restart_fix("engine", state)
    health = _with_pid(healthy("engine: reachable", url, fix, timeout_s=timeout_s), "engine", state)
    bases = list(EngineServerSettings().models if expected_bases is None else expected_bases)
    key = state.get("engine_api_key")
    if not health.ok:
        serving = Check.failed("engine: serves the bases", "the engine is down", fix)
    elif not key:
        # A platform started before the state file carried the engine's key: its model list needs it.
        serving = Check.not_checked(
            "engine: serves the bases", "the state file carries no engine key (restart the platform)"
        )
    else:
        serving = engine_serves(
            "engine: serves the bases", url, bases, fix, authorization=f"Bearer {key}", timeout_s=timeout_s
        )
    return [health, serving]


def workload_check(workload: str, command: list[str], cwd: Path = REPO_ROOT) -> Check:
    """The local launcher can start the workload's executions: its program exists, its `-m` module imports."""
    name = f"workload {workload}: command"
    variable = COMMAND_VARIABLES.get(workload, "its command variable")
    fix = f"set {variable} to a command that exists, or install the project (`make setup`)"
    if not command:
        return Check.failed(name, "the command is empty", fix)
    program = command[0]
    if program not in ("python", "python3") and os.sep not in program and shutil.which(program) is None:
        return Check.failed(name, f"{program!r} is not on PATH", fix)
    if os.sep in program and not Path(program).exists():
        return Check.failed(name, f"{program} does not exist", fix)
    if "-m" in command[:-1]:
        module = command[command.index("-m") + 1]
        # Executions run in the repository (the services' working directory), as `python -m` sees it.
        sys.path.insert(0, str(cwd))
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        finally:
            sys.path.remove(str(cwd))
        if not found:
            return Check.failed(name, f"module {module} is not importable", fix)
    return Check.passed(name, " ".join(command))


def workload_checks(commands: WorkloadCommands | None = None) -> list[Check]:
    commands = commands or WorkloadCommands()
    return [workload_check(workload, command) for workload, command in commands.by_workload().items()]


def index_check() -> Check:
    # The emulator serves every query; the local metadata adapter refuses one no declared index
    # serves, as Firestore would (runtune/indexes.py), so there is nothing to create locally.
    return Check.passed(
        "firestore indexes",
        f"{len(COMPOSITE_INDEXES)} composite indexes declared; the local adapter refuses queries they do not serve",
    )


def local_checks(
    state: Mapping[str, Any],
    *,
    expected_bases: Iterable[str] | None = None,
    commands: WorkloadCommands | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[Check]:
    return [
        *gateway_checks(state, timeout_s),
        *service_checks(state, timeout_s),
        *emulator_checks(state, timeout_s),
        *engine_checks(state, expected_bases, timeout_s),
        *workload_checks(commands),
        index_check(),
    ]
