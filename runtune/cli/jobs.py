"""`runtune jobs ...`: estimate, create, watch, list, show, follow, pause, resume and cancel fine-tuning
jobs; list their checkpoints."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, get_args, get_type_hints

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from runtune.cli.api import ApiClient, ApiError, call, client, fail
from runtune.compute import ComputeChoice

app = typer.Typer(help="Fine-tuning jobs.", no_args_is_help=True)
console = Console()


@dataclass(frozen=True)
class Training:
    """The options `create` and `estimate` share: what is trained, how, and where (runtune/compute.py).
    Each field's default is its Typer option, which `training_command` hands Typer."""

    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset (or file) id to train on")
    model: str = typer.Option(..., "--model", "-m", help="A base model id, or your ft: model to continue")
    epochs: int | None = typer.Option(None, help="n_epochs (default: auto)")
    batch_size: int | None = typer.Option(None, help="batch_size (default: auto)")
    lr_multiplier: float | None = typer.Option(None, help="learning_rate_multiplier (default: auto)")
    method: str = typer.Option("auto", help="auto (bf16 LoRA where it fits the GPU, else QLoRA), qlora, lora or full")
    lora_rank: int = typer.Option(16, help="LoRA rank")
    compute: str = typer.Option(
        "auto",
        "--compute",
        help="Where it trains: auto (the cheapest shape that fits), cloud_run (one GPU) or vertex (Vertex AI, "
        "1-8 GPUs)",
    )
    spot: bool = typer.Option(
        False,
        "--spot/--no-spot",
        help="Let Vertex AI use Spot capacity: cheaper, but the machine may be preempted (the run then resumes "
        "from its newest checkpoint); Cloud Run has no Spot",
    )
    max_hours: float | None = typer.Option(
        None, "--max-hours", min=0, help="With --compute auto: only shapes that finish within this"
    )

    def hyperparameters(self) -> dict[str, Any]:
        """OpenAI's three, None where not given (auto)."""
        return {"n_epochs": self.epochs, "batch_size": self.batch_size, "learning_rate_multiplier": self.lr_multiplier}

    def runtune(self) -> dict[str, Any]:
        """The request's `runtune` options; a `compute` that is not a choice is an error naming the flag."""
        if self.compute not in get_args(ComputeChoice):
            raise typer.BadParameter(f"must be one of {', '.join(get_args(ComputeChoice))}", param_hint="--compute")
        if self.max_hours is not None and self.compute != "auto":
            raise typer.BadParameter("narrows only --compute auto's choice", param_hint="--max-hours")
        options: dict[str, Any] = {
            "method": self.method,
            "lora": {"rank": self.lora_rank},
            "compute": self.compute,
            "spot": self.spot,
        }
        if self.max_hours is not None:
            options["max_hours"] = self.max_hours
        return options


def training_command(command: Callable[..., None]) -> Callable[..., None]:
    """`command(training, **own)` as a Typer command taking `Training`'s options, then its own:
    Typer reads the signature built here, and the wrapper gathers the shared options into one
    `Training`."""
    hints = get_type_hints(Training)
    shared = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in fields(Training)
    ]
    own = list(inspect.signature(command, eval_str=True).parameters.values())[1:]

    @functools.wraps(command)
    def run(**given: Any) -> None:
        command(Training(**{f.name: given.pop(f.name) for f in fields(Training)}), **given)

    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [*shared, *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own)], return_annotation=None
    )
    return run


@app.command()
@training_command
def estimate(training: Training) -> None:
    """What a run would take, on every shape this deployment offers, and where it would train."""
    hyperparameters = {key: value for key, value in training.hyperparameters().items() if value is not None}
    body = {
        "model": training.model,
        "training_file": training.dataset,
        "hyperparameters": hyperparameters,
        "runtune": training.runtune(),
    }
    answer = call("POST", "/v1/fine_tuning/estimate", json=body)
    for line in estimate_lines(answer):
        console.print(line, highlight=False)
    if answer.get("offers"):
        console.print(offers_table(answer))


def where_line(estimate: dict[str, Any]) -> str:
    """Where the estimate's run trains, in words: the Vertex machine (and Spot), or Cloud Run's GPU."""
    if estimate.get("gpu") is None:
        return f"does not fit: {estimate.get('reason') or 'no shape holds it'}"
    if estimate.get("compute") == "vertex":
        capacity = "Spot capacity" if estimate.get("spot") else "on demand"
        return f"Vertex AI, {estimate.get('gpu_label')} ({capacity})"
    if estimate.get("machine") == "cpu":
        return str(estimate.get("machine_label") or "this machine's CPU")
    return f"Cloud Run, {estimate.get('gpu_label')}"


def estimate_lines(estimate: dict[str, Any]) -> list[str]:
    seconds, usd = estimate.get("seconds"), estimate.get("usd")
    lines = [
        f"trains on: {where_line(estimate)}",
        f"steps {estimate['steps']}, tokens {estimate['tokens']}, GPU memory {estimate['memory_gib']:.1f} GiB",
    ]
    if seconds is not None:
        lines.append(f"time about {_hours(seconds)}, cost {'free' if not usd else f'${usd:.2f}'}")
    lines += [f"warning: {warning}" for warning in estimate.get("warnings") or []]
    return lines


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _chosen(offer: dict[str, Any], estimate: dict[str, Any]) -> bool:
    if estimate.get("gpu") is None or offer["backend"] != estimate.get("compute"):
        return False
    return offer["shape"] == (estimate.get("machine") if offer["backend"] == "vertex" else estimate.get("gpu"))


def offers_table(estimate: dict[str, Any]) -> Table:
    """Every shape the run was priced on: time, on-demand and Spot cost, the chosen one marked."""
    table = Table("", "backend", "machine / GPUs", "time", "on demand", "Spot", "fits", title="Offers")
    for offer in estimate["offers"]:
        spot = f"${offer['spot_usd']:.2f}" if offer.get("spot_usd") is not None else "-"
        usd = f"${offer['usd']:.2f}" if offer.get("usd") is not None else "-"
        fits = "yes" if offer["fits"] else f"no: {offer.get('reason') or ''}"
        backend = {"cloud_run": "Cloud Run", "vertex": "Vertex AI"}[offer["backend"]]
        chosen = "*" if _chosen(offer, estimate) else ""
        table.add_row(chosen, backend, offer["label"], _hours(offer.get("seconds")), usd, spot, fits)
    return table


@app.command()
@training_command
def create(
    training: Training,
    suffix: str | None = typer.Option(None, help="A suffix for the fine-tuned model id"),
    validation: str | None = typer.Option(None, help="Validation dataset id"),
    dpo: bool = typer.Option(False, "--dpo", help="Preference tuning (DPO) on a preference dataset"),
    beta: float | None = typer.Option(None, help="DPO's beta (default: auto, 0.1); implies --dpo"),
    watch: bool = typer.Option(False, "--watch", "-w", help="Follow the run with a progress bar"),
) -> None:
    """Launch a fine-tuning job (`runtune jobs estimate` first shows where it would train, and for how much)."""
    body: dict[str, Any] = {
        "model": training.model,
        "training_file": training.dataset,
        "method": method_body(
            "dpo" if dpo or beta is not None else "supervised",
            training.hyperparameters() | {"beta": beta},
            training.runtune(),
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
    if job.get("estimate"):
        console.print(f"trains on: {job_where_line(job)}", highlight=False)
    if watch:
        _watch(api, job["id"])


def method_body(kind: str, hyperparameters: dict[str, Any], runtune: dict[str, Any]) -> dict[str, Any]:
    """The request's `method` of `kind` (supervised or dpo) with the hyperparameters given (None: auto;
    beta only for dpo)."""
    given = {k: v for k, v in hyperparameters.items() if v is not None and (kind == "dpo" or k != "beta")}
    return {"type": kind, kind: {"hyperparameters": given, "runtune": runtune}}


def job_where_line(job: dict[str, Any]) -> str:
    """Where a planned job trains: its Vertex machine (GPU count, Spot) or its Cloud Run GPU."""
    summary = job.get("estimate") or {}
    if summary.get("compute") == "vertex" and job.get("machine"):
        capacity = "Spot capacity" if summary.get("spot") else "on demand"
        return f"Vertex AI, {job['machine']} ({summary.get('gpu_count', 1)} x {job.get('gpu')}, {capacity})"
    if summary.get("machine") == "cpu":
        return "this machine's CPU"
    return f"Cloud Run, {job.get('gpu')}"


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
