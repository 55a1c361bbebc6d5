"""`python -m jobs.ingest <dataset_id>`: one dataset's ingestion, identical under the local launcher
and as a task of the `runtune-ingest` Cloud Run job (runtune.datasets.ingest_execution)."""

from __future__ import annotations

import sys

from runtune.datasets.ingest_execution import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
