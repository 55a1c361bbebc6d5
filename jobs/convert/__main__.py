"""`python -m jobs.convert <export_id>`: one GGUF or Ollama export, as its own execution (a CPU
Cloud Run job task with the data bucket mounted in the cloud, a child process of the inference
service's local launcher on a laptop), so no conversion runs in a request-serving instance.

Exit status: 0 when the export succeeded (or was already over); 1 when it ended `failed` (its
document says why); 2 for a bad command line or configuration; 3 when it does not exist. A kill
(timeout, out of memory) leaves it `running`: the inference service fails it with the reason.
"""

from __future__ import annotations

import logging
import sys

from runtune.inference.conversion import ConversionRunner, export_path
from runtune.inference.pending import pending_work
from runtune.schemas.inference import Export
from runtune.settings import ConvertSettings

DEPLOYABLE = "convert"

log = logging.getLogger("runtune.convert")


def main(argv: list[str]) -> int:
    from runtune.wiring import blob_store, execution_settings, metadata_store

    settings = execution_settings("convert", argv, ConvertSettings, argument="export_id")
    if settings is None:
        return 2
    store = metadata_store(settings, deployable=DEPLOYABLE)
    export = pending_work(store, export_path, argv[0], Export, log=log)
    if isinstance(export, int):
        return export
    runner = ConversionRunner(
        store,
        blob_store(settings, deployable=DEPLOYABLE),
        converter_dir=settings.gguf_converter_dir,
        split_max_size=settings.gguf_split_max_size,
        heartbeat_s=settings.convert_heartbeat_s,
        threads=settings.convert_threads,
    )
    succeeded = runner.run(export)
    log.info("conversion finished", extra={"export": export.id, "succeeded": succeeded})
    return 0 if succeeded else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
