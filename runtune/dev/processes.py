"""Child processes of the local platform: started in their own session, health-checked, and stopped
with their whole process group, so Ctrl-C never leaves an orphan behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class ProcessFailed(RuntimeError):
    """A child that exited or never became healthy; the message carries the tail of its log."""


_issued_ports: set[int] = set()
_issued_lock = threading.Lock()


def free_port() -> int:
    """A loopback port nothing listens on now, and never one this process handed out before.

    The OS may return the same port to consecutive `bind(0)` calls; two components given one port
    collide, and the one that fails to bind can look healthy because the other answers on it (seen: the
    inference service's port handed to the engine too, so the gateway's inference calls reached the engine).
    """
    with _issued_lock:
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _issued_ports:
                _issued_ports.add(port)
                return port


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def is_healthy(url: str, timeout_s: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout_s).status_code < 500
    except httpx.HTTPError:
        return False


@dataclass
class ManagedProcess:
    """One child: its command, environment, log file and the URL that says it is ready."""

    name: str
    command: list[str]
    log_path: Path
    health_url: str | None = None
    # A server without an HTTP health URL (gRPC): ready once this loopback port accepts connections.
    health_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    # Emulators export their data on SIGINT; uvicorn stops cleanly on SIGTERM.
    stop_signal: int = signal.SIGTERM
    _popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                # Its own session and process group: a terminal's Ctrl-C reaches only the supervisor,
                # which then stops every child in order, and stopping the group stops grandchildren.
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def wait_healthy(self, timeout_s: float = 90.0) -> None:
        """Return once the health URL answers; raise `ProcessFailed` with the log's tail otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessFailed(
                    f"{self.name} exited during start (see {self.log_path}):\n{log_tail(self.log_path)}"
                )
            if self.health_port is not None:
                if port_in_use(self.health_port):
                    return
            elif self.health_url is None or is_healthy(self.health_url):
                return
            time.sleep(0.25)
        raise ProcessFailed(
            f"{self.name} not healthy after {timeout_s:.0f}s (see {self.log_path}):\n{log_tail(self.log_path)}"
        )

    def stop(self, grace_s: float = 20.0) -> None:
        """Ask the group to stop, wait up to `grace_s` for all of it, then kill what is left."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            stop_group(self._popen.pid, self.stop_signal, grace_s)
        else:
            # The leader is gone, but a grandchild may still hold the group (and a port).
            stop_group(self._popen.pid, signal.SIGKILL, 0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=5)

    def kill(self) -> None:
        """Kill the whole group at once, with no chance to save anything (what a crash looks like)."""
        if self._popen is not None:
            stop_group(self._popen.pid, signal.SIGKILL, 0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=5)


def stop_group(group: int, sig: int, grace_s: float) -> None:
    """Signal a process group, wait for every member to exit, SIGKILL the rest after `grace_s`.

    Waits for the whole group, not just its leader: the Firestore emulator's JVM writes its export
    after the gcloud wrapper that started it has already exited.
    """
    _signal_group(group, sig)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and group_alive(group):
        _reap(group)
        time.sleep(0.1)
    _signal_group(group, signal.SIGKILL)
    _reap(group)


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int) -> None:
    # A leader that is our own child stays a zombie (and its group "alive") until it is waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
