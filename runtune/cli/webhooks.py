"""`runtune webhooks ...`: endpoints that receive your signed events (a job ended, a dataset is ready)."""

from __future__ import annotations

import datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from runtune.cli.api import call
from runtune.schemas.webhooks import EVENT_TYPES

app = typer.Typer(help="Webhooks: signed events POSTed to your endpoints.", no_args_is_help=True)
console = Console()


def _when(ts: float | None) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


@app.command()
def create(
    url: str = typer.Argument(..., help="Where events are POSTed (https in the cloud)"),
    event: list[str] = typer.Option(
        [], "--event", "-e", help=f"An event type (repeatable; default all): {', '.join(EVENT_TYPES)}"
    ),
    description: str | None = typer.Option(None, help="What the endpoint is for"),
) -> None:
    """Register an endpoint; its signing secret is printed once and cannot be shown again."""
    body: dict[str, Any] = {"url": url, "events": event}
    if description:
        body["description"] = description
    created = call("POST", "/v1/webhooks", json=body)
    console.print(f"Created {created['id']} for {', '.join(created['events']) or 'every event'}.")
    console.print("Its signing secret (verify with openai's client.webhooks.unwrap); store it now:")
    print(created["secret"])


@app.command("list")
def list_webhooks() -> None:
    """Your endpoints (never their secrets)."""
    table = Table("url", "events", "status", "created")
    table.add_column("id", no_wrap=True, min_width=len("wh-") + 24)
    for item in call("GET", "/v1/webhooks")["data"]:
        table.add_row(
            item["url"], ", ".join(item["events"]) or "all", item["status"], _when(item["created_at"]), item["id"]
        )
    console.print(table)


@app.command()
def show(endpoint_id: str = typer.Argument(..., help="The endpoint's id (wh-...)")) -> None:
    """One endpoint: its URL, events and status (why it was disabled, if it was)."""
    item = call("GET", f"/v1/webhooks/{endpoint_id}")
    for name in ("id", "url", "events", "description", "status", "disabled_reason"):
        if item.get(name) not in (None, []):
            console.print(f"{name}: {item[name]}", highlight=False)
    console.print(f"created: {_when(item['created_at'])}")


@app.command()
def delete(endpoint_id: str = typer.Argument(..., help="The endpoint's id (wh-...)")) -> None:
    """Delete an endpoint (and its secret and delivery log): it receives nothing more."""
    call("DELETE", f"/v1/webhooks/{endpoint_id}")
    console.print(f"Deleted {endpoint_id}")


@app.command()
def test(endpoint_id: str = typer.Argument(..., help="The endpoint's id (wh-...)")) -> None:
    """Send a `webhook.test` event to the endpoint (see `deliveries` for how it went)."""
    sent = call("POST", f"/v1/webhooks/{endpoint_id}/test")
    console.print(f"Sent {sent['id']} ({sent['type']})")


@app.command()
def deliveries(endpoint_id: str = typer.Argument(..., help="The endpoint's id (wh-...)")) -> None:
    """The endpoint's delivery attempts, newest first: one line per try (time, HTTP status, latency,
    attempt, event type, event id, next retry, error)."""
    for item in call("GET", f"/v1/webhooks/{endpoint_id}/deliveries")["data"]:
        latency = f"{item['latency_ms']:.0f}ms" if item.get("latency_ms") is not None else "-"
        fields = [
            _when(item["attempted_at"]),
            str(item["status_code"] or "-"),
            latency,
            f"#{item['attempt']}",
            item["event_type"],
            item["event_id"],
            f"retry {_when(item['next_retry_at'])}" if item.get("next_retry_at") else "",
            item.get("error") or "",
        ]
        console.print("  ".join(field for field in fields if field), soft_wrap=True, highlight=False)
