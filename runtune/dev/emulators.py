"""The emulators the local platform and the tests run on.

- Firestore: `gcloud emulators firestore start`; exported on exit and on demand (`snapshot()`), the
  newest export imported on start.
- Cloud Storage: `gcp-storage-emulator`, objects kept on disk under the data folder as they arrive.
- Firebase Auth: `firebase emulators:start --only auth` (firebase-tools from npm); exported on exit
  and on demand through the emulator hub, imported on start.
- Cloud Tasks: `gcloud-tasks-emulator` (PyPI), the webhooks' delivery queue, in memory (a restart
  loses queued tasks; the outbox sweep enqueues again what was not delivered). It lives in its own
  virtual environment, `.venv/tasks-emulator-<version>` (`make setup`): it pins protobuf<5, which the
  Google clients here are past.

`start_emulators(data_dir)` keeps the data in `data_dir` across restarts; `start_emulators()` (no
folder) runs on a temporary one that `stop()` deletes, which is what tests want.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from runtune.dev.processes import ManagedProcess, ProcessFailed, free_port, is_healthy, port_in_use
from runtune.settings import REPO_ROOT

__all__ = [
    "EmulatorEndpoints",
    "EmulatorPorts",
    "ManagedProcess",
    "PortsBusy",
    "PrerequisiteMissing",
    "ProcessFailed",
    "RunningEmulators",
    "check_prerequisites",
    "export_firestore",
    "start_emulators",
]

FIREBASE_BIN = REPO_ROOT / "node_modules" / ".bin" / "firebase"
# The security rules Terraform deploys (deny every client): the emulator enforces the same file, so
# a server-side path that only worked because rules were absent would fail here too. The Cloud client
# libraries the platform uses reach the emulator as its admin ("Bearer owner") and bypass rules, as
# service accounts do in the cloud.
FIRESTORE_RULES = REPO_ROOT / "infra" / "firestore.rules"
MIN_JAVA = 17
# Two Firestore exports are kept: if the newest was cut short by a crash, the one before it is whole.
_KEEP_SNAPSHOTS = 2
_AUTH_METADATA = "firebase-export-metadata.json"
TASKS_EMULATOR_VERSION = "0.6.2"
TASKS_EMULATOR_PYTHON = REPO_ROOT / ".venv" / f"tasks-emulator-{TASKS_EMULATOR_VERSION}" / "bin" / "python"
WEBHOOK_QUEUE = "runtune-webhooks"
log = logging.getLogger("runtune.dev")


class PrerequisiteMissing(RuntimeError):
    """A tool the emulators need is not installed; the message says how to get it."""


class PortsBusy(PrerequisiteMissing):
    """A port the emulators want is taken, most often by a platform that is already running."""


@dataclass(frozen=True)
class EmulatorPorts:
    firestore: int = 8090
    storage: int = 9023
    auth: int = 9099
    tasks: int = 9124

    @classmethod
    def free(cls) -> EmulatorPorts:
        return cls(firestore=free_port(), storage=free_port(), auth=free_port(), tasks=free_port())


@dataclass(frozen=True)
class EmulatorEndpoints:
    project_id: str
    bucket: str
    firestore_host: str  # host:port, as FIRESTORE_EMULATOR_HOST wants it
    storage_host: str  # a URL, as STORAGE_EMULATOR_HOST wants it
    auth_host: str  # host:port, as FIREBASE_AUTH_EMULATOR_HOST wants it
    tasks_host: str  # host:port of the Cloud Tasks emulator (gRPC)

    def env(self) -> dict[str, str]:
        """The variables that point the Google clients and Runtune's settings at these emulators."""
        return {
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
            "STORAGE_EMULATOR_HOST": self.storage_host,
            "FIREBASE_AUTH_EMULATOR_HOST": self.auth_host,
            "CLOUD_TASKS_EMULATOR_HOST": self.tasks_host,
            "GCLOUD_PROJECT": self.project_id,
            "RUNTUNE_PROFILE": "local",
            "RUNTUNE_PROJECT_ID": self.project_id,
            "RUNTUNE_BUCKET": self.bucket,
        }


# -- prerequisites ---------------------------------------------------------------------------------


def check_prerequisites(path: str | None = None) -> None:
    """Fail early, naming everything that is missing and how to get it.

    `path` replaces `$PATH` for the look-ups (tests use it to simulate a bare machine).
    """
    missing = [*_java_problems(path), *_gcloud_problems(path), *_node_problems(path), *_tasks_problems()]
    if missing:
        raise PrerequisiteMissing("Missing prerequisites of the local emulators:\n  - " + "\n  - ".join(missing))


def _java_problems(path: str | None) -> list[str]:
    java = shutil.which("java", path=path)
    install = "apt-get install openjdk-17-jre-headless (or any JDK/JRE 17+ on PATH)"
    if java is None:
        return [f"Java {MIN_JAVA}+ (the Firestore emulator runs on it): {install}"]
    version = _java_major_version(java)
    if version is not None and version < MIN_JAVA:
        return [f"Java {MIN_JAVA}+ (found Java {version} at {java}): {install}"]
    return []


def _java_major_version(java: str) -> int | None:
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    # `java -version` writes to stderr: 'openjdk version "17.0.15"' or, before Java 9, '"1.8.0_292"'.
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _gcloud_problems(path: str | None) -> list[str]:
    gcloud = shutil.which("gcloud", path=path)
    if gcloud is None:
        return [
            "the Google Cloud CLI with the Firestore emulator: https://cloud.google.com/sdk/docs/install, "
            "then `gcloud components install cloud-firestore-emulator` "
            "(or apt-get install google-cloud-cli google-cloud-cli-firestore-emulator)"
        ]
    # Both the installer layout and the Debian packages put components next to `bin/`.
    sdk_root = Path(gcloud).resolve().parent.parent
    if not (sdk_root / "platform" / "cloud-firestore-emulator").is_dir():
        return [
            "the Firestore emulator: gcloud components install cloud-firestore-emulator "
            "(or apt-get install google-cloud-cli-firestore-emulator)"
        ]
    return []


def _node_problems(path: str | None) -> list[str]:
    problems = []
    if shutil.which("node", path=path) is None:
        problems.append(
            "Node.js 20+ and npm (the Auth emulator runs on Node): https://nodejs.org or apt-get install nodejs npm"
        )
    if not FIREBASE_BIN.exists():
        problems.append(f"firebase-tools in {FIREBASE_BIN.parent.parent}: run `make setup` (it runs npm install)")
    return problems


def _tasks_problems() -> list[str]:
    if TASKS_EMULATOR_PYTHON.exists():
        return []
    return [
        f"the Cloud Tasks emulator in {TASKS_EMULATOR_PYTHON.parent.parent}: run `make setup` (python -m venv, "
        f"then pip install gcloud-tasks-emulator=={TASKS_EMULATOR_VERSION})"
    ]


# -- running emulators -----------------------------------------------------------------------------


class RunningEmulators:
    """The started emulators: their endpoints, snapshots on demand, and a clean stop."""

    def __init__(
        self,
        endpoints: EmulatorEndpoints,
        data_dir: Path,
        *,
        auth_hub_port: int,
        ephemeral: bool = False,
    ) -> None:
        self.endpoints = endpoints
        self.data_dir = data_dir
        self.processes: list[ManagedProcess] = []
        self._auth_hub_port = auth_hub_port
        self._ephemeral = ephemeral

    @property
    def pids(self) -> dict[str, int]:
        return {process.name: process.pid for process in self.processes if process.pid is not None}

    def dead(self) -> list[str]:
        """Names of emulators that are no longer running."""
        return [process.name for process in self.processes if not process.alive()]

    def snapshot_firestore(self) -> None:
        """Export Firestore now, so a crash loses at most what came since the last snapshot."""
        export_firestore(self.endpoints.firestore_host, self.endpoints.project_id, self.data_dir)

    def snapshot_auth(self) -> None:
        """Export the Auth emulator's accounts now, through the emulator hub (what `firebase
        emulators:export` calls); the hub writes a temporary folder and swaps it in."""
        response = httpx.post(
            f"http://127.0.0.1:{self._auth_hub_port}/_admin/export",
            json={"path": str(self.data_dir / "auth"), "initiatedBy": "runtune", "targets": ["auth"]},
            timeout=120,
        )
        response.raise_for_status()

    def snapshot(self) -> bool:
        """Snapshot Firestore and Auth; a failure is logged, not raised (the next one may succeed)."""
        ok = True
        for name, export in (("firestore", self.snapshot_firestore), ("auth", self.snapshot_auth)):
            try:
                export()
            except httpx.HTTPError as exc:
                ok = False
                log.warning("%s snapshot failed: %s", name, exc)
        return ok

    def stop(self) -> None:
        """Stop every emulator (each exports its data on the way out) and wait until all are gone."""
        # Export explicitly while Firestore still answers: on SIGINT the gcloud wrapper ends the JVM
        # before its --export-on-exit has written anything.
        firestore = self.processes[0] if self.processes else None
        if not self._ephemeral and firestore and firestore.health_url and is_healthy(firestore.health_url):
            try:
                self.snapshot_firestore()
            except httpx.HTTPError as exc:
                log.warning("firestore snapshot failed: %s", exc)
        for process in reversed(self.processes):
            process.stop()
        if self._ephemeral:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> RunningEmulators:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def export_firestore(firestore_host: str, project_id: str, data_dir: Path) -> None:
    """Export a running Firestore emulator's data into `data_dir/firestore`, where the next start
    imports it from; raises `httpx.HTTPError` when the emulator does not answer."""
    target = data_dir / "firestore"
    target.mkdir(parents=True, exist_ok=True)
    # The emulator writes each export into a new `firestore_export_<time>` folder under `target`.
    response = httpx.post(
        f"http://{firestore_host}/emulator/v1/projects/{project_id}:export",
        json={"database": f"projects/{project_id}/databases/(default)", "export_directory": str(target)},
        timeout=120,
    )
    response.raise_for_status()
    _prune_snapshots(target)


def start_emulators(
    data_dir: Path | None = None,
    *,
    ports: EmulatorPorts | None = None,
    project_id: str = "demo-runtune",
    bucket: str = "runtune-local",
    log_dir: Path | None = None,
    timeout_s: float = 120.0,
) -> RunningEmulators:
    """Start the three emulators and wait until all answer.

    data_dir: where their data lives across restarts; None runs on a temporary folder deleted by
    `stop()`. ports: None picks free ones (tests); `EmulatorPorts()` is the platform's defaults.
    A demo- project id keeps firebase-tools from reaching any real Google service.
    """
    check_prerequisites()
    ports = ports or EmulatorPorts.free()
    _check_ports(ports)
    ephemeral = data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="runtune-emulators-")) if data_dir is None else data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir = log_dir or data_dir / "logs"
    endpoints = EmulatorEndpoints(
        project_id=project_id,
        bucket=bucket,
        firestore_host=f"127.0.0.1:{ports.firestore}",
        storage_host=f"http://127.0.0.1:{ports.storage}",
        auth_host=f"127.0.0.1:{ports.auth}",
        tasks_host=f"127.0.0.1:{ports.tasks}",
    )
    hub_port = free_port()
    processes = [
        _firestore(data_dir / "firestore", ports.firestore, log_dir),
        _storage(data_dir / "storage", ports.storage, bucket, log_dir),
        _auth(data_dir, ports.auth, hub_port, project_id, log_dir),
        _tasks(ports.tasks, f"projects/{project_id}/locations/us-central1/queues/{WEBHOOK_QUEUE}", log_dir),
    ]
    running = RunningEmulators(endpoints, data_dir, auth_hub_port=hub_port, ephemeral=ephemeral)
    try:
        # All three start at once (the JVM is the slow one), then each is waited for.
        for process in processes:
            # Listed before it starts: an interrupt between the two must not leave it running unseen.
            running.processes.append(process)
            process.start()
        for process in processes:
            process.wait_healthy(timeout_s=timeout_s)
    except BaseException:
        running.stop()
        raise
    return running


def _check_ports(ports: EmulatorPorts) -> None:
    busy = [f"{name} ({port})" for name, port in vars(ports).items() if port_in_use(port)]
    if busy:
        raise PortsBusy(
            f"Ports already in use: {', '.join(busy)}. Is the platform already running? (`runtune dev status`)"
        )


def _firestore(data: Path, port: int, log_dir: Path) -> ManagedProcess:
    data.mkdir(parents=True, exist_ok=True)
    command = [
        "gcloud",
        "emulators",
        "firestore",
        "start",
        f"--host-port=127.0.0.1:{port}",
        f"--export-on-exit={data}",
        f"--rules={FIRESTORE_RULES}",
    ]
    newest = _newest_snapshot(data)
    if newest is not None:
        command.append(f"--import-data={newest}")
    return ManagedProcess(
        "firestore-emulator",
        command,
        log_dir / "firestore.log",
        health_url=f"http://127.0.0.1:{port}/",
        # SIGINT lets the JVM's shutdown hook run --export-on-exit.
        stop_signal=signal.SIGINT,
        # gcloud must not prompt or phone home: it runs unattended.
        env={"CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1"},
    )


def _storage(data: Path, port: int, bucket: str, log_dir: Path) -> ManagedProcess:
    data.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        "storage-emulator",
        [
            sys.executable,
            "-m",
            "runtune.dev.storage_emulator",  # the emulator, with CORS for the web UI's uploads
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--default-bucket",
            bucket,
        ],
        log_dir / "storage.log",
        health_url=f"http://127.0.0.1:{port}/",  # the emulator's own health check answers "OK" here
        env={"STORAGE_BASE": str(data)},  # on disk: objects survive restarts and crashes
    )


def _auth(data_dir: Path, port: int, hub_port: int, project_id: str, log_dir: Path) -> ManagedProcess:
    data = data_dir / "auth"
    _recover_auth_export(data_dir, data)
    config = data_dir / "firebase.json"
    # Every port pinned to loopback: firebase-tools would otherwise pick the hub's and the logging
    # emulator's own, and two platforms (or a platform and the tests) would collide on them.
    emulators = {
        "auth": {"host": "127.0.0.1", "port": port},
        "hub": {"host": "127.0.0.1", "port": hub_port},
        "logging": {"host": "127.0.0.1", "port": free_port()},
        "ui": {"enabled": False},
    }
    config.write_text(json.dumps({"emulators": emulators}, indent=2))
    command = [
        str(FIREBASE_BIN),
        "emulators:start",
        "--only",
        "auth",
        "--project",
        project_id,
        "--config",
        str(config),
        f"--export-on-exit={data}",
    ]
    if (data / _AUTH_METADATA).exists():
        command.append(f"--import={data}")
    # firebase-tools finds "the" hub of a project through a locator file in the temporary folder;
    # a private one keeps two emulators of the same project id (parallel test runs) apart.
    private_tmp = data_dir / ".firebase-tmp"
    private_tmp.mkdir(exist_ok=True)
    return ManagedProcess(
        "auth-emulator",
        command,
        log_dir / "auth.log",
        health_url=f"http://127.0.0.1:{port}/",
        # Offline and unattended: no update check (update-notifier honours NO_UPDATE_NOTIFIER), no
        # prompts (CI). Usage tracking is off unless a user opted in with `firebase login`.
        env={"NO_UPDATE_NOTIFIER": "1", "CI": "true", "TMPDIR": str(private_tmp)},
        # The hub exports into a temporary folder created in the working directory, then swaps it in.
        cwd=data_dir,
        stop_signal=signal.SIGINT,
    )


def _tasks(port: int, queue: str, log_dir: Path) -> ManagedProcess:
    return ManagedProcess(
        "tasks-emulator",
        # -I: the script's folder (runtune/dev, whose platform.py would shadow the stdlib's) stays off sys.path.
        [str(TASKS_EMULATOR_PYTHON), "-I", str(Path(__file__).with_name("tasks_emulator.py")), str(port), queue],
        log_dir / "tasks.log",
        health_port=port,  # gRPC only: ready once it listens
    )


def _recover_auth_export(data_dir: Path, data: Path) -> None:
    """Finish an Auth export that a crash cut off between "remove the old" and "move the new in"."""
    if (data / _AUTH_METADATA).exists():
        return
    leftovers = sorted(
        (path for path in data_dir.glob("firebase-export-*") if (path / _AUTH_METADATA).exists()),
        key=lambda path: path.stat().st_mtime,
    )
    if leftovers:
        shutil.rmtree(data, ignore_errors=True)
        leftovers[-1].rename(data)
        log.warning("recovered an interrupted auth export from %s", leftovers[-1].name)


def _snapshots(folder: Path) -> list[Path]:
    # An export is importable only through its overall metadata file; folders without one are ignored.
    return sorted(folder.glob("*/*.overall_export_metadata"), key=lambda path: path.stat().st_mtime)


def _newest_snapshot(folder: Path) -> Path | None:
    snapshots = _snapshots(folder)
    return snapshots[-1] if snapshots else None


def _prune_snapshots(folder: Path) -> None:
    for metadata in _snapshots(folder)[:-_KEEP_SNAPSHOTS]:
        shutil.rmtree(metadata.parent, ignore_errors=True)
