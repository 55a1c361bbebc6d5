"""The `runtune` command line."""

from __future__ import annotations

import httpx
import typer
from rich.console import Console

from runtune.cli import datasets, dev, inference, jobs, keys, webhooks
from runtune.cli.api import ApiClient, ApiError
from runtune.cli.credentials import StoredLogin
from runtune.cli.doctor import doctor
from runtune.dev.platform import read_state
from runtune.errors import RuntuneError
from runtune.firebase_rest import FirebaseAuthRest

app = typer.Typer(help="Runtune: fine-tune Gemma models on Cloud Run GPUs.", no_args_is_help=True)
app.add_typer(dev.app, name="dev")
app.add_typer(jobs.app, name="jobs")
app.add_typer(datasets.app, name="datasets")
app.add_typer(keys.app, name="keys")
app.add_typer(webhooks.app, name="webhooks")
app.command("chat")(inference.chat)
app.command("eval")(inference.evaluate)
app.command("vibe")(inference.vibe)
app.command("export")(inference.export)
app.command("doctor")(doctor)
console = Console()
# The Auth emulator accepts any key; Google's endpoints need the project's real Web API key.
EMULATOR_API_KEY = "fake-api-key"


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]{message}[/]")
    return typer.Exit(code)


def _sign_in_target(gateway: str | None, api_key: str | None, auth_emulator: str | None) -> tuple[str, str, str | None]:
    """(gateway URL, API key, Auth emulator host or None) for a sign-in."""
    state = read_state()
    if gateway is None:
        if state is None:
            raise _fail("No --gateway given and the local platform is not running (`runtune dev up`).", 2)
        gateway = state["gateway_url"]
    gateway = gateway.rstrip("/")
    if auth_emulator is None and state is not None and state["gateway_url"] == gateway:
        auth_emulator = state["auth_emulator_host"]
    if auth_emulator is not None:
        return gateway, api_key or EMULATOR_API_KEY, auth_emulator
    if not api_key:
        raise _fail(
            "Signing in to a cloud gateway needs the Firebase Web API key: --api-key or RUNTUNE_FIREBASE_API_KEY.", 2
        )
    return gateway, api_key, None


@app.command()
def login(
    email: str = typer.Option(..., prompt=True, help="Account email"),
    password: str = typer.Option(..., prompt=True, hide_input=True, help="Account password (prompted if omitted)"),
    gateway: str | None = typer.Option(None, help="Gateway URL (default: the running local platform's)"),
    api_key: str | None = typer.Option(
        None, envvar="RUNTUNE_FIREBASE_API_KEY", help="Firebase Web API key of the project (cloud gateways)"
    ),
    auth_emulator: str | None = typer.Option(
        None, envvar="FIREBASE_AUTH_EMULATOR_HOST", help="Auth emulator host:port, with --gateway of a local platform"
    ),
) -> None:
    """Sign in with email and password; the refreshing session is stored in your config dir (mode 0600)."""
    gateway, api_key, emulator_host = _sign_in_target(gateway, api_key, auth_emulator)
    try:
        session = FirebaseAuthRest(api_key, emulator_host=emulator_host).sign_in(email, password)
    except RuntuneError as exc:
        raise _fail(exc.message) from exc
    except httpx.TransportError as exc:
        raise _fail(f"Cannot reach the sign-in service ({emulator_host or 'identitytoolkit.googleapis.com'})") from exc
    StoredLogin.from_session(session, gateway_url=gateway, api_key=api_key, auth_emulator_host=emulator_host).save()
    console.print(f"Logged in as {session.email} ({session.uid}) at {gateway}")


@app.command()
def whoami() -> None:
    """Show who the gateway thinks you are."""
    try:
        me = ApiClient(StoredLogin.load()).get("/v1/me")
    except ApiError as exc:
        raise _fail(str(exc)) from exc
    except RuntuneError as exc:
        raise _fail(exc.message) from exc
    console.print(f"{me.get('email') or '(no email)'} (uid {me['id']})")


@app.command()
def token() -> None:
    """Print a fresh ID token of your login (valid for up to an hour), for curl or the openai SDK."""
    try:
        login = StoredLogin.load()
        id_token = login.fresh_id_token()
    except RuntuneError as exc:
        raise _fail(exc.message) from exc
    except httpx.TransportError as exc:
        raise _fail("Cannot reach the sign-in service to refresh the token") from exc
    # Plain stdout, nothing else: `$(runtune token)` in a shell.
    print(id_token)
