"""`runtune dev up|down|status`: the local platform."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from runtune.dev.emulators import PrerequisiteMissing, check_prerequisites, export_firestore
from runtune.dev.platform import PlatformConfig, read_state, run_supervisor, supervisor_pid
from runtune.dev.processes import ProcessFailed, group_alive, is_healthy, log_tail, stop_group

app = typer.Typer(help="Run the local platform (emulators, services, gateway) on this machine.")
console = Console()
_START_TIMEOUT_S = 300.0


def _print_ready(state: dict[str, Any], config: PlatformConfig) -> None:
    console.print(f"[bold green]Runtune is up[/] at [link]{state['gateway_url']}[/link]")
    console.print(f"  demo account: {state['demo_email']} / {state['demo_password']}")
    if state.get("demo_dataset_id"):
        console.print(f"  demo dataset: {state['demo_dataset_id']} (tiny models: tiny-gemma-3-vision, ...)")
    for name, url in state["services"].items():
        console.print(f"  {name}: {url}")
    console.print(
        f"  emulators: firestore {state['firestore_emulator_host']}, storage {state['storage_emulator_host']}, "
        f"auth {state['auth_emulator_host']}"
    )
    console.print(f"  endpoints in {config.state_file}; logs in {state['log_dir']}; data in {state['data_dir']}")


@app.command()
def up(
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background; stop with `runtune dev down`"),
) -> None:
    """Start the local platform (in the foreground, Ctrl-C stops everything)."""
    config = PlatformConfig()
    if supervisor_pid(config):
        console.print("The platform is already running: `runtune dev status`")
        raise typer.Exit(1)
    try:
        check_prerequisites()
    except PrerequisiteMissing as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if detach:
        _up_detached(config)
    else:
        _up_foreground(config)


def _up_foreground(config: PlatformConfig) -> None:
    status = console.status("Starting emulators, services and gateway (the first start takes about a minute)...")

    def ready(state: dict[str, Any]) -> None:
        status.stop()
        _print_ready(state, config)
        console.print("Ctrl-C stops everything (the emulators save their data first).")

    status.start()
    try:
        code = run_supervisor(config, on_ready=ready)
    except (ProcessFailed, PrerequisiteMissing) as exc:
        status.stop()
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    status.stop()
    console.print(f"Stopped; data kept in {config.data_dir}")
    if code not in (0, 130):
        raise typer.Exit(code)


def _up_detached(config: PlatformConfig) -> None:
    config.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.log_dir / "supervisor.log"
    with log_path.open("ab") as log:
        # A new session: the supervisor outlives this shell and never gets its terminal's Ctrl-C.
        process = subprocess.Popen(
            [sys.executable, "-m", "runtune.dev.platform"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "RUNTUNE_LOCAL_DIR": str(config.local_dir)},
        )
    with console.status("Starting emulators, services and gateway in the background..."):
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            state = read_state(config)
            if state and state.get("supervisor_pid") == process.pid:
                _print_ready(state, config)
                console.print("Stop it with `runtune dev down`.")
                return
            if process.poll() is not None:
                console.print(f"[red]The platform failed to start ({log_path}):[/]\n{log_tail(log_path)}")
                raise typer.Exit(1)
            time.sleep(0.5)
    # Give up cleanly: a half-started platform must not keep running unseen.
    stop_group(process.pid, signal.SIGTERM, 60)
    console.print(f"[red]The platform did not become ready in {_START_TIMEOUT_S:.0f}s; see {config.log_dir}[/]")
    raise typer.Exit(1)


@app.command()
def down(timeout_s: float = typer.Option(90.0, help="How long to wait for a clean stop")) -> None:
    """Stop a platform started with `runtune dev up --detach` (or one running in another terminal)."""
    config = PlatformConfig()
    state = read_state(config) or {}
    pid = supervisor_pid(config)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        with console.status("Stopping (the emulators save their data)..."):
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and supervisor_pid(config):
                time.sleep(0.3)
        if supervisor_pid(config):
            console.print("[red]The platform did not stop in time; run `runtune dev down` again.[/]")
            raise typer.Exit(1)
    leftovers = _stop_leftovers(state)
    # A supervisor killed outright leaves its files behind; they would describe a platform that is gone.
    config.state_file.unlink(missing_ok=True)
    config.pid_file.unlink(missing_ok=True)
    if pid is None and not leftovers:
        console.print("The platform is not running.")
        return
    if leftovers:
        console.print(f"Stopped processes a crashed supervisor left behind: {', '.join(leftovers)}")
    console.print("Stopped.")


def _stop_leftovers(state: dict[str, Any]) -> list[str]:
    """Stop children of a supervisor that died without cleaning up (each led its own group)."""
    if _leads_group(state.get("pids", {}).get("firestore-emulator", 0)):
        # Its data lives only in memory until exported, and its export-on-exit is unreliable.
        with contextlib.suppress(httpx.HTTPError):
            export_firestore(state["firestore_emulator_host"], state["project_id"], Path(state["data_dir"]))
    stopped = []
    for name, pid in state.get("pids", {}).items():
        if isinstance(pid, int) and _leads_group(pid) and group_alive(pid):
            stop_group(pid, signal.SIGINT if name.endswith("emulator") else signal.SIGTERM, 20)
            stopped.append(name)
    return stopped


def _leads_group(pid: int) -> bool:
    # A recycled pid of some unrelated process almost never also leads its own process group.
    if pid <= 0:
        return False
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


@app.command()
def status() -> None:
    """Show each component and whether it answers."""
    config = PlatformConfig()
    state = read_state(config)
    if not state or not supervisor_pid(config):
        if state and any(isinstance(p, int) and _leads_group(p) for p in state.get("pids", {}).values()):
            console.print("[yellow]The supervisor is gone but some of its processes run: `runtune dev down`.[/]")
        else:
            console.print("The platform is not running. Start it with `make dev` or `runtune dev up --detach`.")
        raise typer.Exit(1)
    table = Table("component", "address", "pid", "state")
    healthy = True
    for name, url, pid in _components(state):
        ok = is_healthy(url, timeout_s=3)
        healthy &= ok
        table.add_row(name, url, str(pid or ""), "[green]up[/]" if ok else "[red]down[/]")
    console.print(table)
    console.print(f"demo account: {state['demo_email']} / {state['demo_password']}")
    if not healthy:
        raise typer.Exit(1)


def _components(state: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    pids = state.get("pids", {})
    return [
        ("gateway", f"{state['gateway_url']}/healthz", pids.get("gateway")),
        *((name, f"{url}/healthz", pids.get(name)) for name, url in state["services"].items()),
        ("firestore emulator", f"http://{state['firestore_emulator_host']}/", pids.get("firestore-emulator")),
        ("storage emulator", f"{state['storage_emulator_host']}/", pids.get("storage-emulator")),
        ("auth emulator", f"http://{state['auth_emulator_host']}/", pids.get("auth-emulator")),
    ]
