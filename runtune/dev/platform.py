"""The local platform: emulators, the three services and the gateway, on loopback, in one command.

`LocalPlatform.start()` brings everything up in dependency order and waits for each piece to be
healthy; `stop()` takes it down in reverse, letting the emulators export their data. The endpoints
go to `.runtune/dev.json` for scripts, tests and `runtune doctor` (mode 0600: it holds the demo
password and the local engine's key, which any process of this user could read from the inference
service's environment anyway; the gateway's internal token is never written anywhere).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runtune.dev.emulators import (
    EmulatorPorts,
    PortsBusy,
    PrerequisiteMissing,
    RunningEmulators,
    start_emulators,
)
from runtune.dev.processes import ManagedProcess, ProcessFailed, free_port, port_in_use
from runtune.errors import InvalidRequest
from runtune.firebase_rest import FirebaseAuthRest, Session
from runtune.internal_auth import token_sha256
from runtune.settings import DEFAULT_LOCAL_DIR, ENGINE_TOKEN_FILE, REPO_ROOT

SERVICES = ("preprocessing", "training", "inference")
DEMO_EMAIL = "demo@runtune.dev"
DEMO_PASSWORD = "runtune-demo"
SNAPSHOT_EVERY_S = 60.0


@dataclass(frozen=True)
class PlatformPorts:
    gateway: int = 8080
    preprocessing: int = 8081
    training: int = 8082
    inference: int = 8083
    emulators: EmulatorPorts = field(default_factory=EmulatorPorts)
    engine: int = 8084  # the local inference engine (`python -m engine`, engine/)

    @classmethod
    def free(cls) -> PlatformPorts:
        return cls(free_port(), free_port(), free_port(), free_port(), EmulatorPorts.free(), free_port())


def default_local_dir() -> Path:
    """`RUNTUNE_LOCAL_DIR` when set (as the services read it), else `.runtune/` in the repository."""
    configured = os.environ.get("RUNTUNE_LOCAL_DIR")
    return Path(configured).expanduser().resolve() if configured else DEFAULT_LOCAL_DIR


@dataclass(frozen=True)
class PlatformConfig:
    local_dir: Path = field(default_factory=default_local_dir)
    ports: PlatformPorts = field(default_factory=PlatformPorts)
    project_id: str = "demo-runtune"
    bucket: str = "runtune-local"
    gateway_env: dict[str, str] = field(default_factory=dict)
    # Extra settings for the three services (tests shorten the jobs' timers with it).
    service_env: dict[str, str] = field(default_factory=dict)
    # Build the tiny local models and offer the demo dataset in the demo account (first start only:
    # both survive restarts). Tests that bring their own data turn it off.
    demo_content: bool = True

    @property
    def data_dir(self) -> Path:
        return self.local_dir / "data"

    @property
    def state_file(self) -> Path:
        return self.local_dir / "dev.json"

    @property
    def pid_file(self) -> Path:
        return self.local_dir / "platform.pid"

    @property
    def log_dir(self) -> Path:
        return self.local_dir / "logs"


def uvicorn_process(name: str, app: str, port: int, env: dict[str, str], log_dir: Path) -> ManagedProcess:
    """A deployable's app factory served by uvicorn on loopback, its log in `log_dir/{name}.log`."""
    return ManagedProcess(
        name,
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        log_dir / f"{name}.log",
        health_url=f"http://127.0.0.1:{port}/healthz",
        env=env,
        cwd=REPO_ROOT,
    )


class LocalPlatform:
    def __init__(self, config: PlatformConfig | None = None) -> None:
        self.config = config or PlatformConfig()
        self.emulators: RunningEmulators | None = None
        self.processes: list[ManagedProcess] = []
        # Fresh at every start and held in memory only: the gateway gets it, services its hash.
        self.internal_token = secrets.token_urlsafe(32)
        # The inference service's credential for the local engine (the engine keeps its hash).
        self.engine_token = secrets.token_urlsafe(32)
        # The webhooks queue's credential for the training service's dispatcher (which both enqueues
        # and checks it); kept across a restart of that service, so queued tasks still get through.
        self.webhook_dispatch_token = secrets.token_urlsafe(32)
        self.demo_dataset_id: str | None = None

    # -- start and stop -------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Start everything, in dependency order; on any failure stop what started and re-raise."""
        config = self.config
        busy = [
            port
            for port in (config.ports.gateway, config.ports.engine, *self._service_ports().values())
            if port_in_use(port)
        ]
        if busy:
            raise PortsBusy(f"Ports {busy} are in use: is the platform already running? (`runtune dev status`)")
        config.local_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.emulators = start_emulators(
                config.data_dir,
                ports=config.ports.emulators,
                project_id=config.project_id,
                bucket=config.bucket,
                log_dir=config.log_dir,
            )
            self._ensure_bucket()
            _write_private_text(config.local_dir / ENGINE_TOKEN_FILE, self.engine_token)
            # The models build while the services start: both take seconds, neither needs the other.
            models = _in_background(self._ensure_tiny_models) if config.demo_content else None
            services = [self._engine()] + [self._service(name, port) for name, port in self._service_ports().items()]
            for process in services:
                self._launch(process)
            for process in services:
                process.wait_healthy(timeout_s=60)
            gateway = self._gateway()
            self._launch(gateway)
            gateway.wait_healthy(timeout_s=60)
            session = self._ensure_demo_account()
            if models is not None:
                models.result()
                self._ensure_demo_dataset(session.id_token)
        except BaseException:
            self.stop()
            raise
        state = self.state()
        _write_private_json(config.state_file, state)
        return state

    def _launch(self, process: ManagedProcess) -> None:
        # Listed before it starts: an interrupt between the two must not leave it running unseen.
        self.processes.append(process)
        process.start()

    def stop(self) -> None:
        """Stop the gateway, then the services, then the emulators (which export their data)."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        if self.emulators is not None:
            self.emulators.stop()
            self.emulators = None

    def serve_forever(self, stop_event: threading.Event) -> None:
        """Keep running until asked to stop or a component dies; snapshot Firestore and Auth meanwhile."""
        assert self.emulators is not None
        last_snapshot = time.monotonic()
        while not stop_event.wait(1.0):
            dead = [process.name for process in self.processes if not process.alive()] + self.emulators.dead()
            if dead:
                raise ProcessFailed(f"{', '.join(dead)} stopped unexpectedly; see the logs in {self.config.log_dir}")
            if time.monotonic() - last_snapshot > SNAPSHOT_EVERY_S:
                # A failed snapshot is logged and retried next time: it must not stop the platform.
                self.emulators.snapshot()
                last_snapshot = time.monotonic()

    # -- what runs ------------------------------------------------------------------------------

    def _service_ports(self) -> dict[str, int]:
        ports = self.config.ports
        return {"preprocessing": ports.preprocessing, "training": ports.training, "inference": ports.inference}

    def _common_env(self) -> dict[str, str]:
        assert self.emulators is not None
        return {
            **self.emulators.endpoints.env(),
            "RUNTUNE_LOCAL_DIR": str(self.config.local_dir),
            "PYTHONUNBUFFERED": "1",
        }

    def _uvicorn(self, name: str, app: str, port: int, env: dict[str, str]) -> ManagedProcess:
        return uvicorn_process(
            name, app, port, {**self._common_env(), "RUNTUNE_PORT": str(port), **env}, self.config.log_dir
        )

    def _service(self, name: str, port: int) -> ManagedProcess:
        return self._uvicorn(
            name,
            f"services.{name}.app:create_app",
            port,
            {
                "RUNTUNE_INTERNAL_TOKEN_SHA256": token_sha256(self.internal_token),
                # The engine's token is read from the local folder (ENGINE_TOKEN_FILE), by the service
                # and by its evaluation executions alike.
                **(
                    {"RUNTUNE_ENGINE_URL": f"http://127.0.0.1:{self.config.ports.engine}"}
                    if name == "inference"
                    else {}
                ),
                **(
                    {
                        "RUNTUNE_WEBHOOK_DISPATCH_TOKEN": self.webhook_dispatch_token,
                        # Receivers on this machine (a developer's); private addresses stay refused.
                        "RUNTUNE_WEBHOOK_ALLOW_LOOPBACK": "true",
                    }
                    if name == "training"
                    else {}
                ),
                **self.config.service_env,
            },
        )

    def _engine(self) -> ManagedProcess:
        port = self.config.ports.engine
        return ManagedProcess(
            "engine",
            [sys.executable, "-m", "engine"],
            self.config.log_dir / "engine.log",
            health_url=f"http://127.0.0.1:{port}/healthz",
            env={
                **self._common_env(),
                "RUNTUNE_ENGINE_PORT": str(port),
                "RUNTUNE_ENGINE_API_KEY_SHA256": token_sha256(self.engine_token),
            },
            cwd=REPO_ROOT,
        )

    def _gateway(self) -> ManagedProcess:
        urls = {f"RUNTUNE_{name.upper()}_URL": url for name, url in self.service_urls().items()}
        return self._uvicorn(
            "gateway",
            "gateway.app:create_app",
            self.config.ports.gateway,
            {"RUNTUNE_INTERNAL_TOKEN": self.internal_token, **urls, **self.config.gateway_env},
        )

    def service_urls(self) -> dict[str, str]:
        return {name: f"http://127.0.0.1:{port}" for name, port in self._service_ports().items()}

    def _ensure_bucket(self) -> None:
        from runtune.adapters.gcs import GcsBlobStore

        assert self.emulators is not None
        with _env(self.emulators.endpoints.env()):
            GcsBlobStore.for_bucket(self.config.project_id, self.config.bucket).ensure_bucket()

    def _ensure_demo_account(self) -> Session:
        assert self.emulators is not None
        auth = FirebaseAuthRest("local", emulator_host=self.emulators.endpoints.auth_host)
        try:
            return auth.sign_up(DEMO_EMAIL, DEMO_PASSWORD)
        except InvalidRequest:  # it exists already: data survives restarts
            return auth.sign_in(DEMO_EMAIL, DEMO_PASSWORD)

    def _ensure_tiny_models(self) -> None:
        # Imported here: building needs torch and transformers, which only this step (and the trainer) use.
        from runtune.models.registry import TINY_MODELS
        from runtune.models.tiny import ensure_tiny_model, tiny_dir

        for spec in TINY_MODELS:
            ensure_tiny_model(spec.id, tiny_dir(self.config.local_dir, spec.id))

    def _ensure_demo_dataset(self, id_token: str) -> None:
        from runtune.demo.seed import ensure_demo_dataset

        self.demo_dataset_id = ensure_demo_dataset(f"http://127.0.0.1:{self.config.ports.gateway}", id_token)

    def state(self) -> dict[str, Any]:
        assert self.emulators is not None
        endpoints = self.emulators.endpoints
        return {
            "gateway_url": f"http://127.0.0.1:{self.config.ports.gateway}",
            "services": self.service_urls(),
            "engine_url": f"http://127.0.0.1:{self.config.ports.engine}",
            # `runtune doctor` lists the engine's models with it.
            "engine_api_key": self.engine_token,
            "firestore_emulator_host": endpoints.firestore_host,
            "storage_emulator_host": endpoints.storage_host,
            "auth_emulator_host": endpoints.auth_host,
            "project_id": endpoints.project_id,
            "bucket": endpoints.bucket,
            "demo_email": DEMO_EMAIL,
            "demo_password": DEMO_PASSWORD,
            "demo_dataset_id": self.demo_dataset_id,
            "data_dir": str(self.config.data_dir),
            "log_dir": str(self.config.log_dir),
            "supervisor_pid": os.getpid(),
            "pids": {
                **self.emulators.pids,
                **{process.name: process.pid for process in self.processes if process.pid is not None},
            },
            "started_at": int(time.time()),
        }


def _in_background(call: Callable[[], None]) -> Future[None]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtune-setup")
    future = pool.submit(call)
    pool.shutdown(wait=False)  # the thread ends with the call; `future.result()` re-raises its error
    return future


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _write_private_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _write_private_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


# -- the supervisor: foreground (`dev up`) or daemon (`dev up --detach`) --------------------------


class _StopSignals:
    """SIGINT and SIGTERM: abort a start in progress, end a running platform, and change nothing
    while the platform is stopping (a second Ctrl-C must not cut the emulators' export short)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.phase: Literal["starting", "running", "stopping"] = "starting"
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        self.event.set()
        if self.phase == "starting":
            self.phase = "stopping"
            raise KeyboardInterrupt  # unwinds `LocalPlatform.start()`, which stops what it started

    def __enter__(self) -> _StopSignals:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *_: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_supervisor(config: PlatformConfig, on_ready: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Start the platform, run until SIGINT/SIGTERM, stop cleanly. Returns an exit code.

    Raises what made the start fail (`ProcessFailed`, `PrerequisiteMissing`) or a component die.
    """
    platform = LocalPlatform(config)
    config.local_dir.mkdir(parents=True, exist_ok=True)
    _write_private_json(config.pid_file, {"pid": os.getpid()})
    with _StopSignals() as signals:
        try:
            state = platform.start()
            signals.phase = "running"
            if on_ready is not None:
                on_ready(state)
            platform.serve_forever(signals.event)
            return 0
        except KeyboardInterrupt:
            return 130
        finally:
            signals.phase = "stopping"
            platform.stop()
            config.state_file.unlink(missing_ok=True)
            config.pid_file.unlink(missing_ok=True)


def read_state(config: PlatformConfig | None = None) -> dict[str, Any] | None:
    config = config or PlatformConfig()
    try:
        return json.loads(config.state_file.read_text())
    except (OSError, ValueError):
        return None


def supervisor_pid(config: PlatformConfig | None = None) -> int | None:
    config = config or PlatformConfig()
    try:
        pid = int(json.loads(config.pid_file.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid if _is_runtune_process(pid) else None


def _is_runtune_process(pid: int) -> bool:
    # The pid file of a supervisor killed outright outlives it, and its pid may be reused since.
    try:
        return b"runtune" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (macOS): trust the pid
    except OSError:
        return True


def supervisor_main() -> int:
    """The detached supervisor (`python -m runtune.dev.platform`): its output goes to supervisor.log."""
    try:
        return run_supervisor(
            PlatformConfig(), on_ready=lambda state: print(f"ready: {state['gateway_url']}", flush=True)
        )
    except (ProcessFailed, PrerequisiteMissing) as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(supervisor_main())
