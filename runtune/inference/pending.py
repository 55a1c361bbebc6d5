"""The start the inference service's executions share (jobs/evaluate, jobs/convert): the document
named on the command line, read, unless there is nothing to do."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from runtune.ports.metadata import MetadataStore
from runtune.schemas.inference import Evaluation, Export

# The exit statuses of an execution with nothing to do (the jobs' docstrings list them all).
NOT_FOUND = 3
ALREADY_OVER = 0

W = TypeVar("W", Evaluation, Export)


def pending_work(
    store: MetadataStore, path: Callable[[str], str], work_id: str, model: type[W], *, log: logging.Logger
) -> W | int:
    """The document `path(work_id)` as `model`, or the exit status when there is nothing to do (said
    in the log): NOT_FOUND when it does not exist (or the id is not one), ALREADY_OVER when it has
    finished."""
    kind = model.model_fields["object"].default  # "evaluation", "export": the logs' key
    document = store.get(path(work_id)) if "/" not in work_id else None
    if document is None:
        log.error(f"{kind} not found", extra={kind: work_id})
        return NOT_FOUND
    work = model.model_validate(document)
    if work.is_finished:
        log.info(f"{kind} already over", extra={kind: work.id, "status": work.status.value})
        return ALREADY_OVER
    return work
