"""The three official emulators the local platform and the tests run on.

- Firestore: `gcloud emulators firestore start`; data exported on exit and on demand, the newest
  export imported on start.
- Cloud Storage: `gcp-storage-emulator`, objects kept on disk under the data folder.
- Firebase Auth: `firebase emulators:start --only auth` (firebase-tools from npm), exported on exit.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from runtune.dev.processes import ManagedProcess, free_port, port_in_use
from runtune.settings import REPO_ROOT

FIREBASE_BIN = REPO_ROOT / "node_modules" / ".bin" / "firebase"
_KEEP_SNAPSHOTS = 2
log = logging.getLogger("runtune.dev")


class PrerequisiteMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class EmulatorPorts:
    firestore: int = 8090
    storage: int = 9023
    auth: int = 9099

    @classmethod
    def free(cls) -> EmulatorPorts:
        return cls(firestore=free_port(), storage=free_port(), auth=free_port())


@dataclass(frozen=True)
class EmulatorEndpoints:
    project_id: str
    bucket: str
    firestore_host: str  # host:port, as FIRESTORE_EMULATOR_HOST wants it
    storage_host: str  # a URL, as STORAGE_EMULATOR_HOST wants it
    auth_host: str  # host:port, as FIREBASE_AUTH_EMULATOR_HOST wants it

    def env(self) -> dict[str, str]:
        return {
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
            "STORAGE_EMULATOR_HOST": self.storage_host,
            "FIREBASE_AUTH_EMULATOR_HOST": self.auth_host,
            "GCLOUD_PROJECT": self.project_id,
            "RUNTUNE_PROFILE": "local",
            "RUNTUNE_PROJECT_ID": self.project_id,
            "RUNTUNE_BUCKET": self.bucket,
        }


def check_prerequisites(path: str | None = None) -> None:
    """Fail early, naming what is missing and how to get it."""
    missing = []
    if shutil.which("java", path=path) is None:
        missing.append("Java 17+ (the Firestore emulator runs on it): apt-get install openjdk-17-jre-headless")
    gcloud = shutil.which("gcloud", path=path)
    if gcloud is None:
        missing.append("the Google Cloud CLI: https://cloud.google.com/sdk/docs/install")
    elif not _firestore_emulator_installed(Path(gcloud)):
        missing.append(
            "the Firestore emulator: gcloud components install cloud-firestore-emulator "
            "(or apt-get install google-cloud-cli-firestore-emulator)"
        )
    if shutil.which("node", path=path) is None:
        missing.append("Node.js 20+ (the Auth emulator runs on it): https://nodejs.org or apt-get install nodejs")
    if not FIREBASE_BIN.exists():
        missing.append("firebase-tools in node_modules: run `make setup`")
    if missing:
        raise PrerequisiteMissing("Missing prerequisites:\n  - " + "\n  - ".join(missing))


def _firestore_emulator_installed(gcloud: Path) -> bool:
    sdk_root = gcloud.resolve().parent.parent
    return (sdk_root / "platform" / "cloud-firestore-emulator").is_dir()


class RunningEmulators:
    def __init__(self, endpoints: EmulatorEndpoints, processes: list[ManagedProcess], data_dir: Path) -> None:
        self.endpoints = endpoints
        self.processes = processes
        self.data_dir = data_dir

    def snapshot_firestore(self) -> None:
        """Export Firestore now, so a crash loses at most what came since the last snapshot."""
        target = self.data_dir / "firestore"
        target.mkdir(parents=True, exist_ok=True)
        database = f"projects/{self.endpoints.project_id}/databases/(default)"
        response = httpx.post(
            f"http://{self.endpoints.firestore_host}/emulator/v1/projects/{self.endpoints.project_id}:export",
            json={"database": database, "export_directory": str(target)},
            timeout=60,
        )
        response.raise_for_status()
        _prune_snapshots(target)

    def stop(self) -> None:
        # The emulator's own export-on-exit does not always run when it is signalled, so export
        # explicitly while it still answers.
        if self.processes and self.processes[0].alive():
            try:
                self.snapshot_firestore()
            except httpx.HTTPError as exc:
                log.warning("firestore snapshot failed", extra={"error": str(exc)})
        for process in reversed(self.processes):
            process.stop()

    def __enter__(self) -> RunningEmulators:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_emulators(
    data_dir: Path,
    *,
    ports: EmulatorPorts | None = None,
    project_id: str = "demo-runtune",
    bucket: str = "runtune-local",
    log_dir: Path | None = None,
) -> RunningEmulators:
    """Start the three emulators with their data under `data_dir` and wait until all answer."""
    check_prerequisites()
    ports = ports or EmulatorPorts()
    busy = [f"{name} ({port})" for name, port in vars(ports).items() if port_in_use(port)]
    if busy:
        raise PrerequisiteMissing(
            f"Ports already in use: {', '.join(busy)}. Is the platform already running? (`runtune dev status`)"
        )
    log_dir = log_dir or data_dir / "logs"
    endpoints = EmulatorEndpoints(
        project_id=project_id,
        bucket=bucket,
        firestore_host=f"127.0.0.1:{ports.firestore}",
        storage_host=f"http://127.0.0.1:{ports.storage}",
        auth_host=f"127.0.0.1:{ports.auth}",
    )
    processes = [
        _firestore(data_dir / "firestore", ports.firestore, log_dir),
        _storage(data_dir / "storage", ports.storage, bucket, log_dir),
        _auth(data_dir / "auth", ports.auth, project_id, log_dir),
    ]
    running = RunningEmulators(endpoints, [], data_dir)
    try:
        for process in processes:
            running.processes.append(process.start())
        for process in processes:
            process.wait_healthy(timeout_s=120)
    except BaseException:
        running.stop()
        raise
    return running


def _firestore(data: Path, port: int, log_dir: Path) -> ManagedProcess:
    data.mkdir(parents=True, exist_ok=True)
    command = [
        "gcloud",
        "emulators",
        "firestore",
        "start",
        f"--host-port=127.0.0.1:{port}",
        f"--export-on-exit={data}",
    ]
    newest = _newest_snapshot(data)
    if newest is not None:
        command.append(f"--import-data={newest}")
    return ManagedProcess(
        "firestore-emulator",
        command,
        log_dir / "firestore.log",
        health_url=f"http://127.0.0.1:{port}/",
        stop_signal=signal.SIGINT,
    )


def _storage(data: Path, port: int, bucket: str, log_dir: Path) -> ManagedProcess:
    data.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        "storage-emulator",
        [
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--default-bucket",
            bucket,
        ],
        log_dir / "storage.log",
        health_url=f"http://127.0.0.1:{port}/",
        env={"STORAGE_BASE": str(data)},
    )


def _auth(data: Path, port: int, project_id: str, log_dir: Path) -> ManagedProcess:
    data.mkdir(parents=True, exist_ok=True)
    config = data.parent / "firebase.json"
    config.write_text(
        json.dumps(
            {
                "emulators": {
                    "auth": {"host": "127.0.0.1", "port": port},
                    "ui": {"enabled": False},
                    "hub": {"host": "127.0.0.1", "port": free_port()},
                    "logging": {"host": "127.0.0.1", "port": free_port()},
                }
            }
        )
    )
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
    if (data / "firebase-export-metadata.json").exists():
        command.append(f"--import={data}")
    return ManagedProcess(
        "auth-emulator",
        command,
        log_dir / "auth.log",
        health_url=f"http://127.0.0.1:{port}/",
        # Offline by design: no update checks, no telemetry prompts.
        env={"NO_UPDATE_NOTIFIER": "1", "FIREBASE_CLI_DISABLE_TELEMETRY": "1", "CI": "true"},
        cwd=data.parent,
        stop_signal=signal.SIGINT,
    )


def _snapshots(folder: Path) -> list[Path]:
    return sorted(folder.glob("**/*.overall_export_metadata"), key=lambda p: p.stat().st_mtime)


def _newest_snapshot(folder: Path) -> Path | None:
    snapshots = _snapshots(folder)
    return snapshots[-1] if snapshots else None


def _prune_snapshots(folder: Path) -> None:
    for metadata in _snapshots(folder)[:-_KEEP_SNAPSHOTS]:
        if metadata.parent != folder:
            shutil.rmtree(metadata.parent, ignore_errors=True)
