"""`runtune dev up|down|status`: the local platform."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from runtune.dev.emulators import PrerequisiteMissing, check_prerequisites
from runtune.dev.platform import PlatformConfig, read_state, run_supervisor, supervisor_pid

app = typer.Typer(help="Run the local platform (emulators, services, gateway) on this machine.")
console = Console()


def _print_ready(state: dict[str, Any]) -> None:
    console.print(f"[bold green]Runtune is up[/] at [link]{state['gateway_url']}[/link]")
    console.print(f"  demo account: {state['demo_email']} / {state['demo_password']}")
    console.print(
        f"  emulators: firestore {state['firestore_emulator_host']}, storage {state['storage_emulator_host']}, "
        f"auth {state['auth_emulator_host']}"
    )
    console.print(f"  endpoints written to {PlatformConfig().state_file}; logs in {state['log_dir']}")


@app.command()
def up(
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background; stop with `dev down`"),
) -> None:
    """Start the local platform (Ctrl-C stops everything)."""
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
        return
    console.print("Starting emulators, services and gateway (the first start takes about a minute)...")
    with contextlib.suppress(KeyboardInterrupt):
        run_supervisor(config, on_ready=lambda state: (_print_ready(state), console.print("Ctrl-C to stop.")))
    console.print("Stopped; data kept in", str(config.data_dir))


def _up_detached(config: PlatformConfig) -> None:
    config.log_dir.mkdir(parents=True, exist_ok=True)
    log = (config.log_dir / "supervisor.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "runtune.dev.platform"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    with console.status("Starting emulators, services and gateway in the background..."):
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            state = read_state(config)
            if state and state.get("supervisor_pid") == process.pid:
                _print_ready(state)
                return
            if process.poll() is not None:
                console.print(f"[red]The platform failed to start; see {config.log_dir / 'supervisor.log'}[/]")
                raise typer.Exit(1)
            time.sleep(0.5)
    console.print("[red]The platform did not become ready in 5 minutes[/]")
    raise typer.Exit(1)


@app.command()
def down(timeout_s: float = typer.Option(60.0, help="How long to wait for a clean stop")) -> None:
    """Stop a platform started with `dev up --detach`."""
    import os
    import signal

    config = PlatformConfig()
    pid = supervisor_pid(config)
    if pid is None:
        console.print("The platform is not running.")
        return
    os.kill(pid, signal.SIGTERM)
    with console.status("Stopping (emulators export their data)..."):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and supervisor_pid(config):
            time.sleep(0.3)
    if supervisor_pid(config):
        console.print("[red]The platform did not stop in time[/]")
        raise typer.Exit(1)
    console.print("Stopped.")


@app.command()
def status() -> None:
    """Show each component and whether it answers."""
    config = PlatformConfig()
    state = read_state(config)
    if not state or not supervisor_pid(config):
        console.print("The platform is not running. Start it with `make dev` or `runtune dev up --detach`.")
        raise typer.Exit(1)
    table = Table("component", "address", "state")
    checks = {
        "gateway": f"{state['gateway_url']}/healthz",
        **{name: f"{url}/healthz" for name, url in state["services"].items()},
        "firestore emulator": f"http://{state['firestore_emulator_host']}/",
        "storage emulator": f"{state['storage_emulator_host']}/",
        "auth emulator": f"http://{state['auth_emulator_host']}/",
    }
    healthy = True
    for name, url in checks.items():
        try:
            ok = httpx.get(url, timeout=3).status_code < 500
        except httpx.HTTPError:
            ok = False
        healthy &= ok
        table.add_row(name, url, "[green]up[/]" if ok else "[red]down[/]")
    console.print(table)
    if not healthy:
        raise typer.Exit(1)
