"""`runtune jobs ...`: create, watch, list, show, follow, pause, resume and cancel fine-tuning jobs; list
their checkpoints."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from runtune.cli.api import ApiClient, ApiError, call, client, fail

app = typer.Typer(help="Fine-tuning jobs.", no_args_is_help=True)
console = Console()


@app.command()
def create(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset (or file) id to train on"),
    model: str = typer.Option(..., "--model", "-m", help="A base model id, or your ft: model to continue"),
    epochs: int | None = typer.Option(None, help="n_epochs (default: auto)"),
    batch_size: int | None = typer.Option(None, help="batch_size (default: auto)"),
    lr_multiplier: float | None = typer.Option(None, help="learning_rate_multiplier (default: auto)"),
    method: str = typer.Option("qlora", help="qlora, lora or full"),
    lora_rank: int = typer.Option(16, help="LoRA rank"),
    suffix: str | None = typer.Option(None, help="A suffix for the fine-tuned model id"),
    validation: str | None = typer.Option(None, help="Validation dataset id"),
    dpo: bool = typer.Option(False, "--dpo", help="Preference tuning (DPO) on a preference dataset"),
    beta: float | None = typer.Option(None, help="DPO's beta (default: auto, 0.1); implies --dpo"),
    watch: bool = typer.Option(False, "--watch", "-w", help="Follow the run with a progress bar"),
) -> None:
    """Launch a fine-tuning job."""
    hyperparameters = {"n_epochs": epochs, "batch_size": batch_size, "learning_rate_multiplier": lr_multiplier}
    runtune = {"method": method, "lora": {"rank": lora_rank}}
    body: dict[str, Any] = {
        "model": model,
        "training_file": dataset,
        "method": method_body(
            "dpo" if dpo or beta is not None else "supervised", hyperparameters | {"beta": beta}, runtune
        ),
    }
    if suffix:
        body["suffix"] = suffix
    if validation:
        body["validation_file"] = validation
    api = client()
    try:
        job = api.post("/v1/fine_tuning/jobs", json=body)
    except ApiError as exc:
        raise fail(exc) from exc
    console.print(f"Created [bold]{job['id']}[/] ({job['status']})")
    console.print(f"hyperparameters: {hyperparameters_line(job)}")
    if watch:
        _watch(api, job["id"])


def method_body(kind: str, hyperparameters: dict[str, Any], runtune: dict[str, Any]) -> dict[str, Any]:
    """The request's `method` of `kind` (supervised or dpo) with the hyperparameters given (None: auto;
    beta only for dpo)."""
    given = {k: v for k, v in hyperparameters.items() if v is not None and (kind == "dpo" or k != "beta")}
    return {"type": kind, kind: {"hyperparameters": given, "runtune": runtune}}


def hyperparameters_line(job: dict[str, Any]) -> str:
    """`n_epochs auto → 4, batch_size 8, ...`: what the job trains with, and which came from `auto`
    (still `auto` while its training file is validated); a dpo job's beta too."""
    auto = job.get("auto_hyperparameters") or {}
    values = dict(job.get("hyperparameters") or {})
    names = ["n_epochs", "batch_size", "learning_rate_multiplier"]
    method = job.get("method") or {}
    if method.get("type") == "dpo":
        values["beta"] = ((method.get("dpo") or {}).get("hyperparameters") or {}).get("beta", "auto")
        names.append("beta")
    return ", ".join(f"{name} {'auto → ' if name in auto else ''}{values.get(name, 'auto')}" for name in names)


@app.command("list")
def list_jobs(limit: int = typer.Option(20, min=1, max=100)) -> None:
    """Your jobs, newest first."""
    page = call("GET", "/v1/fine_tuning/jobs", params={"limit": limit})
    table = Table("id", "model", "status", "progress", "fine-tuned model")
    for job in page["data"]:
        progress = f"{job.get('steps_completed', 0)}/{job.get('total_steps') or '?'}"
        table.add_row(job["id"], job["model"], job["status"], progress, job.get("fine_tuned_model") or "")
    console.print(table)


@app.command()
def show(job_id: str) -> None:
    """One job, as JSON."""
    console.print_json(json.dumps(call("GET", f"/v1/fine_tuning/jobs/{job_id}")))


@app.command()
def cancel(job_id: str) -> None:
    """Cancel a queued or running job."""
    job = call("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel")
    console.print(f"{job['id']}: {job['status']} (cancellation requested)")


@app.command()
def rm(job_id: str) -> None:
    """Delete an ended job with everything it produced: its model, checkpoints and exports."""
    deleted = call("DELETE", f"/v1/fine_tuning/jobs/{job_id}")
    gone = [f"model {deleted['fine_tuned_model']}"] if deleted.get("fine_tuned_model") else []
    gone += [f"{deleted['checkpoints']} checkpoint(s)", f"{len(deleted['exports'])} export(s)"]
    console.print(f"Deleted {job_id} with its " + ", ".join(gone))


@app.command()
def pause(job_id: str) -> None:
    """Pause a job: it checkpoints and stops, holding no GPU, until resumed."""
    job = call("POST", f"/v1/fine_tuning/jobs/{job_id}/pause")
    note = "" if job["status"] == "paused" else " (pausing after its next checkpoint)"
    console.print(f"{job['id']}: {job['status']}{note}")


@app.command()
def resume(job_id: str) -> None:
    """Resume a paused job from its checkpoint."""
    job = call("POST", f"/v1/fine_tuning/jobs/{job_id}/resume")
    console.print(f"{job['id']}: {job['status']} (resumed)")


@app.command()
def checkpoints(job_id: str) -> None:
    """A job's model checkpoints, newest first: each id works wherever a model id does (chat, eval, vibe, export)."""
    page = call("GET", f"/v1/fine_tuning/jobs/{job_id}/checkpoints", params={"limit": 100})
    table = Table("step", "train loss", "valid loss", "valid accuracy", "best", "model id")
    for checkpoint in page["data"]:
        metrics = checkpoint.get("metrics") or {}
        table.add_row(
            str(checkpoint["step_number"]),
            _metric(metrics.get("train_loss")),
            _metric(metrics.get("valid_loss")),
            _metric(metrics.get("valid_mean_token_accuracy")),
            "*" if checkpoint.get("best") else "",
            checkpoint["fine_tuned_model_checkpoint"],
        )
    console.print(table)


def _metric(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


@app.command()
def events(job_id: str, follow: bool = typer.Option(False, "--follow", "-f", help="Stream new events")) -> None:
    """A job's events (oldest first); with --follow, until the job ends."""
    api = client()
    try:
        if not follow:
            page = api.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100})
            for event in reversed(page["data"]):
                _print_event(event)
            return
        for kind, event in api.events(f"/v1/fine_tuning/jobs/{job_id}/events"):
            if kind == "done":
                console.print(f"[bold]job {event['status']}[/]")
                return
            _print_event(event)
    except ApiError as exc:
        raise fail(exc) from exc


def _print_event(event: dict[str, Any]) -> None:
    color = {"error": "red", "warn": "yellow"}.get(event.get("level", "info"), "white")
    console.print(f"[dim]{event['created_at']}[/] [{color}]{event['message']}[/]")


def _watch(api: ApiClient, job_id: str) -> None:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("queued", total=None, loss="-")
        for kind, event in api.events(f"/v1/fine_tuning/jobs/{job_id}/events"):
            if kind == "done":
                progress.update(task, description=event["status"])
                break
            data = event.get("data") or {}
            if event.get("type") == "metrics":
                progress.update(
                    task,
                    description="training",
                    completed=data.get("step", 0),
                    total=data.get("total_steps"),
                    loss=f"{data['train_loss']:.4f}" if "train_loss" in data else "-",
                )
            else:
                progress.console.print(f"  {event['message']}")
    job = api.get(f"/v1/fine_tuning/jobs/{job_id}")
    console.print(f"{job['id']}: [bold]{job['status']}[/] {job.get('fine_tuned_model') or ''}")
    console.print(f"hyperparameters: {hyperparameters_line(job)}")
    if job["status"] == "failed":
        console.print(f"[red]{(job.get('error') or {}).get('message', '')}[/]")
        raise typer.Exit(1)
