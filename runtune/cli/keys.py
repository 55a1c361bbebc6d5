"""`runtune keys ...`: API keys for scripts, CI pipelines and other services (made with your login)."""

from __future__ import annotations

import datetime

import typer
from rich.console import Console
from rich.table import Table

from runtune.cli.api import ApiClient, ApiError, call, fail
from runtune.cli.credentials import StoredLogin
from runtune.errors import RuntuneError

app = typer.Typer(help="API keys: long-lived credentials for scripts and services.", no_args_is_help=True)
console = Console()


def _client() -> tuple[ApiClient, str]:
    login = StoredLogin.load()
    return ApiClient(login), login.gateway_url


def _when(ts: int | None) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M") if ts else "-"


@app.command()
def create(
    name: str = typer.Argument(..., help="What the key is for, e.g. 'ci-pipeline'"),
    read_only: bool = typer.Option(False, "--read-only", help="GET requests only"),
    expires_in_days: int | None = typer.Option(None, help="Days until it expires (default: never)"),
) -> None:
    """Create a key; it is printed once and cannot be shown again."""
    body: dict[str, object] = {"name": name, "scopes": ["read_only" if read_only else "full"]}
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    try:
        client, gateway = _client()
        created = client.post("/v1/api_keys", json=body)
    except (ApiError, RuntuneError) as exc:
        raise fail(exc) from exc
    console.print(f"Created {created['id']} ({', '.join(created['scopes'])}). Store it now; it is not shown again:")
    print(created["key"])
    console.print(
        f"\n  curl -H 'Authorization: Bearer {created['key']}' {gateway}/v1/fine_tuning/jobs\n"
        f"  OpenAI(base_url='{gateway}/v1', api_key='{created['key']}')",
        highlight=False,
    )


@app.command("list")
def list_keys() -> None:
    """Your keys (never their secrets)."""
    keys = call("GET", "/v1/api_keys")["data"]
    table = Table("name", "prefix", "scopes", "created", "last used", "expires")
    # Ids are what `revoke` takes: never wrapped or cut, whatever the terminal width.
    table.add_column("id", no_wrap=True, min_width=len("key-") + 24)
    for key in keys:
        table.add_row(
            key["name"],
            key["prefix"] + "...",
            ", ".join(key["scopes"]),
            _when(key["created_at"]),
            _when(key.get("last_used_at")),
            _when(key.get("expires_at")),
            key["id"],
        )
    console.print(table)


@app.command()
def revoke(key_id: str = typer.Argument(..., help="The key's id (key-...)")) -> None:
    """Revoke a key: calls with it are refused from now on."""
    call("DELETE", f"/v1/api_keys/{key_id}")
    console.print(f"Revoked {key_id}")
