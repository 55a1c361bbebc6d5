"""The `runtune` command line."""

from __future__ import annotations

import typer
from rich.console import Console

from runtune.cli import dev, jobs
from runtune.cli.api import ApiClient, ApiError
from runtune.cli.credentials import StoredLogin
from runtune.dev.platform import read_state
from runtune.errors import RuntuneError

app = typer.Typer(help="Runtune: fine-tune Gemma models on Cloud Run GPUs.", no_args_is_help=True)
app.add_typer(dev.app, name="dev")
app.add_typer(jobs.app, name="jobs")
console = Console()


@app.command()
def login(
    email: str = typer.Option(..., prompt=True),
    password: str = typer.Option(..., prompt=True, hide_input=True),
    gateway: str | None = typer.Option(None, help="Gateway URL (default: the local platform's)"),
    api_key: str = typer.Option("local", envvar="RUNTUNE_FIREBASE_API_KEY", help="Firebase Web API key (cloud)"),
    auth_emulator: str | None = typer.Option(
        None, envvar="FIREBASE_AUTH_EMULATOR_HOST", help="Auth emulator host:port, with --gateway of a local platform"
    ),
) -> None:
    """Sign in with email and password; the refreshing session is stored in your config dir."""
    emulator_host = auth_emulator
    if gateway is None:
        state = read_state()
        if state is None:
            console.print("[red]No --gateway given and the local platform is not running.[/]")
            raise typer.Exit(2)
        gateway, emulator_host = state["gateway_url"], state["auth_emulator_host"]
    from runtune.firebase_rest import FirebaseAuthRest

    try:
        session = FirebaseAuthRest(api_key, emulator_host=emulator_host).sign_in(email, password)
    except RuntuneError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from exc
    StoredLogin.from_session(session, gateway_url=gateway, api_key=api_key, auth_emulator_host=emulator_host).save()
    console.print(f"Logged in as {session.email} ({session.uid}) at {gateway}")


@app.command()
def whoami() -> None:
    """Show who the gateway thinks you are."""
    try:
        me = ApiClient(StoredLogin.load()).get("/v1/me")
    except (ApiError, RuntuneError) as exc:
        console.print(f"[red]{getattr(exc, 'message', exc)}[/]")
        raise typer.Exit(1) from exc
    console.print(f"{me['email']} (uid {me['id']})")
