"""`runtune datasets ...`: upload (resumable, with a progress bar), list, show, rm."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from runtune.cli.api import ApiClient, ApiError, call, client, fail

app = typer.Typer(help="Datasets: upload, list, show, remove.", no_args_is_help=True)
console = Console()
# Resumable chunks must be multiples of 256 KiB; 8 MiB keeps memory small and requests few.
CHUNK = 32 * 256 * 1024
MAPPING_KEYS = ("system", "user", "image", "answer", "label", "split")


def parse_mapping(values: list[str]) -> dict[str, str] | None:
    """`--mapping '{"image": "file"}'` or repeated `--mapping image=file --mapping label=breed`."""
    if not values:
        return None
    if len(values) == 1 and values[0].lstrip().startswith("{"):
        mapping = json.loads(values[0])
    else:
        mapping = {}
        for value in values:
            key, sep, column = value.partition("=")
            if not sep:
                raise typer.BadParameter(f"'{value}' is not key=value", param_hint="--mapping")
            mapping[key.strip()] = column
    unknown = set(mapping) - set(MAPPING_KEYS)
    if unknown:
        raise typer.BadParameter(
            f"unknown keys {sorted(unknown)}; use {', '.join(MAPPING_KEYS)}", param_hint="--mapping"
        )
    return mapping


def send_resumable(url: str, path: Path, on_progress: Any) -> None:
    """PUT the file to a resumable session chunk by chunk; each chunk states its byte range."""
    size = path.stat().st_size
    with path.open("rb") as handle, httpx.Client(timeout=120) as http:
        offset = 0
        while offset < size:
            chunk = handle.read(CHUNK)
            end = offset + len(chunk) - 1
            response = http.put(url, content=chunk, headers={"content-range": f"bytes {offset}-{end}/{size}"})
            if response.status_code not in (200, 201, 308):
                raise ApiError(response.status_code, f"upload refused by storage: {response.text[:200]}")
            offset = end + 1
            on_progress(len(chunk))


@app.command()
def upload(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="File or archive to upload"),
    name: str | None = typer.Option(None, help="Dataset name (default: the file name)"),
    mapping: list[str] = typer.Option([], help="Column mapping: JSON, or key=column (repeatable)"),
    task_kind: str | None = typer.Option(None, help="classification, generation or preference (default: detected)"),
    max_image_side: int = typer.Option(896, help="Longest image side after resizing"),
    skip_bad_rows: bool = typer.Option(False, help="Skip (and count) bad rows instead of failing"),
    wait: bool = typer.Option(True, help="Wait until the dataset is ready or failed"),
) -> None:
    """Upload a dataset file straight to storage and process it."""
    api = client()
    size = path.stat().st_size
    try:
        session = api.post("/v1/uploads", json={"filename": path.name, "bytes": size})
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task(f"Uploading {path.name}", total=size)
            send_resumable(session["upload_url"], path, lambda n: bar.advance(task, n))
        api.post(f"/v1/uploads/{session['id']}/complete")
        body: dict[str, Any] = {
            "upload_id": session["id"],
            "name": name,
            "mapping": parse_mapping(mapping),
            "task_kind": task_kind,
            "max_image_side": max_image_side,
            "skip_bad_rows": skip_bad_rows,
        }
        dataset = api.post("/v1/datasets", json={k: v for k, v in body.items() if v is not None})
    except ApiError as exc:
        raise fail(exc) from exc
    console.print(f"Created [bold]{dataset['id']}[/] ({dataset['status']})")
    if wait:
        dataset = _wait(api, dataset["id"])
        _show(dataset)
        if dataset["status"] == "failed":
            raise typer.Exit(1)


def _wait(api: ApiClient, dataset_id: str) -> dict[str, Any]:
    with console.status("Processing...") as status:
        while True:
            dataset = api.get(f"/v1/datasets/{dataset_id}")
            if dataset["status"] != "processing":
                return dataset
            progress = dataset.get("progress") or {}
            total = f"/{progress['total']}" if progress.get("total") else ""
            status.update(f"Processing: {progress.get('phase', '...')} {progress.get('done', 0)}{total}")
            time.sleep(0.5)


@app.command("list")
def list_datasets(limit: int = typer.Option(20, min=1, max=100)) -> None:
    """Your datasets, newest first."""
    page = call("GET", "/v1/datasets", params={"limit": limit})
    table = Table("name", "status", "kind", "rows", "labels")
    # Ids are what the other commands take: never wrapped or cut, whatever the terminal width.
    table.add_column("id", no_wrap=True, min_width=len("file-") + 24)
    for d in page["data"]:
        rows = sum(d.get("splits", {}).values())
        table.add_row(d["name"], d["status"], d.get("task_kind") or "", str(rows), str(len(d["labels"])), d["id"])
    console.print(table)


@app.command()
def show(dataset_id: str) -> None:
    """A dataset's status, splits, labels and warnings."""
    _show(call("GET", f"/v1/datasets/{dataset_id}"))


def _show(dataset: dict[str, Any]) -> None:
    console.print(f"[bold]{dataset['id']}[/] {dataset['name']}: {dataset['status']}")
    if dataset.get("error"):
        console.print(f"[red]{dataset['error']['message']}[/]")
    if dataset.get("splits"):
        console.print("splits: " + ", ".join(f"{k} {v}" for k, v in dataset["splits"].items()))
    if dataset.get("task_kind"):
        console.print(f"task: {dataset['task_kind']} ({dataset.get('modality')})")
    if dataset.get("label_counts"):
        console.print("labels: " + ", ".join(f"{k} {v}" for k, v in dataset["label_counts"].items()))
    for warning in dataset.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")


@app.command()
def rm(dataset_id: str) -> None:
    """Delete a dataset: its documents and every stored object."""
    call("DELETE", f"/v1/datasets/{dataset_id}")
    console.print(f"Deleted {dataset_id}")
