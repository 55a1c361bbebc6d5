"""The platform's own measurements: each succeeded run's phases (setup, training tokens per second,
evaluation, export), kept per model, machine and method, so the next estimate is calibrated from
them (runtune.estimate.time_range) instead of the published figures.

One document per (model, machine, method) in the `throughput` collection holding its newest
`KEEP` runs: the trainer appends in a transaction when a job succeeds, the jobs API reads one
document per estimate (no query, so no index).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from runtune.estimate import RunTiming
from runtune.ports.metadata import MetadataStore

COLLECTION = "throughput"
KEEP = 20


def throughput_path(model: str, machine: str, method: str) -> str:
    # Model ids hold "/" (google/gemma-3-4b-it), which a document id may not.
    return f"{COLLECTION}/{model.replace('/', '~')}~{machine}~{method}"


def record(store: MetadataStore, *, model: str, machine: str, method: str, run: RunTiming) -> None:
    """Append a finished run's timing (the newest `KEEP` are kept)."""
    entry = {**asdict(run), "at": time.time()}

    def append(current: dict[str, Any] | None) -> dict[str, Any]:
        runs = [entry, *((current or {}).get("runs") or [])][:KEEP]
        return {"model": model, "machine": machine, "method": method, "runs": runs}

    store.transact(throughput_path(model, machine, method), append)


def measured(store: MetadataStore, *, model: str, machine: str, method: str) -> list[RunTiming]:
    """The newest finished runs of that model on that machine with that method, newest first."""
    document = store.get(throughput_path(model, machine, method)) or {}
    fields = RunTiming.__dataclass_fields__
    return [RunTiming(**{name: run[name] for name in fields if name in run}) for run in document.get("runs") or []]


def process_seconds() -> float | None:
    """Seconds since this process started (Linux: /proc), so a run's setup includes the interpreter
    and its imports; None where /proc is not there."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, `starttime`, in clock ticks
        return float(Path("/proc/uptime").read_text().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return None
