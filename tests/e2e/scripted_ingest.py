"""A stand-in for `python -m jobs.ingest` in the end-to-end tests: the real ingestion (same argv,
environment and code), plus one behaviour a test picks by naming its dataset `hold-...`: after the
first report of converted rows, the execution stays alive without progressing (blocked on an event
nobody sets, not sleeping), so a test can kill it mid-way, deterministically. Every other dataset
is ingested exactly as by `python -m jobs.ingest`.
"""

from __future__ import annotations

import sys
import threading

from jobs.ingest.__main__ import main
from runtune.schemas.datasets import Dataset

HOLD_PREFIX = "hold-"


def hold_mid_way(dataset: Dataset, phase: str, done: int, total: int | None) -> None:
    if dataset.name.startswith(HOLD_PREFIX) and phase == "converting" and done > 0:
        print(f"holding {dataset.id} after {done} rows", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], observe=hold_mid_way))
