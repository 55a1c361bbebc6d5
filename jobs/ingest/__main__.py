"""`python -m jobs.ingest <dataset_id>`: one dataset's ingestion, identical under the local launcher
and as a task of the `runtune-ingest` Cloud Run job. The work is `runtune.datasets.ingest_execution`'s
(its docstring gives the exit statuses); this composes the stores and handles the stop signal."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from runtune.datasets.ingest_execution import DatasetIngestion, Outcome, ProgressObserver, Terminated
from runtune.datasets.limits import DatasetLimits
from runtune.owned import datasets as dataset_collection
from runtune.schemas.datasets import DatasetStatus
from runtune.settings import CommonSettings

DEPLOYABLE = "ingest"

log = logging.getLogger("runtune.ingest")


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def main(argv: list[str], *, observe: ProgressObserver | None = None) -> int:
    from runtune import wiring

    settings = wiring.execution_settings("ingest", argv, CommonSettings, argument="dataset_id")
    if settings is None:
        return 2
    dataset_id = argv[0]
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        datasets = dataset_collection(wiring.metadata_store(settings, deployable=DEPLOYABLE))
        dataset = datasets.get(dataset_id)
        if dataset is None or dataset.status is not DatasetStatus.processing:
            # Deleted before it started, or finished by an earlier attempt: nothing to do.
            state = dataset.status.value if dataset else "deleted"
            log.info("nothing to ingest", extra={"dataset_id": dataset_id, "status": state})
            return 0
        secrets = wiring.secret_store(settings, deployable=DEPLOYABLE)
        ingestion = DatasetIngestion(
            datasets, wiring.blob_store(settings, deployable=DEPLOYABLE), secrets.get, DatasetLimits(), observe
        )
        return 1 if ingestion.run(dataset) is Outcome.crashed else 0
    except Terminated as stopped:
        log.warning("ingestion stopped", extra={"dataset_id": dataset_id, "reason": str(stopped)})
        return 128 + stopped.signum
    except Exception:
        log.exception("ingestion could not run", extra={"dataset_id": dataset_id})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
