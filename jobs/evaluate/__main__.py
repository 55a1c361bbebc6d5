"""`python -m jobs.evaluate <evaluation_id>`: one evaluation, as its own execution (a CPU Cloud Run
job task in the cloud, a child process of the inference service's local launcher on a laptop), so no
evaluation runs in a request-serving instance after its 202.

Exit status: 0 when the evaluation succeeded (or was already over); 1 when it ended `failed` (its
document says why); 2 for a bad command line or configuration; 3 when it does not exist. A kill
(timeout, out of memory, SIGKILL) leaves it `running`: the inference service sees the execution ended
and fails it with the execution's reason.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from runtune.inference.evaluation import EvaluationRunner, evaluation_path
from runtune.inference.pending import pending_work
from runtune.inference.serving import build_serving
from runtune.schemas.inference import Evaluation
from runtune.settings import EvaluateSettings

DEPLOYABLE = "evaluate"

log = logging.getLogger("runtune.evaluate")


def main(argv: list[str]) -> int:
    from runtune.wiring import execution_settings

    settings = execution_settings("evaluate", argv, EvaluateSettings, argument="evaluation_id")
    return 2 if settings is None else asyncio.run(evaluate(argv[0], settings))


async def evaluate(evaluation_id: str, settings: EvaluateSettings) -> int:
    from runtune.wiring import blob_store, metadata_store

    store = metadata_store(settings, deployable=DEPLOYABLE)
    evaluation = pending_work(store, evaluation_path, evaluation_id, Evaluation, log=log)
    if isinstance(evaluation, int):
        return evaluation
    serving = build_serving(settings, store, blob_store(settings, deployable=DEPLOYABLE))
    runner = EvaluationRunner(
        serving, store, concurrency=settings.evaluation_concurrency, heartbeat_s=settings.evaluation_heartbeat_s
    )
    try:
        succeeded = await runner.run(evaluation)
    finally:
        await serving.aclose()
    log.info("evaluation finished", extra={"evaluation": evaluation_id, "succeeded": succeeded})
    return 0 if succeeded else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
