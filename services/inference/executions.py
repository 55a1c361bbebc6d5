"""Work items run by executions of their own: evaluations (`python -m jobs.evaluate <id>`) and GGUF
conversions (`python -m jobs.convert <id>`), CPU Cloud Run jobs in the cloud and child processes of
the service's local launchers on a laptop. The service stores the item, launches its execution and
answers; the execution does the work and writes the progress. No work is left in this instance after
its response (Cloud Run throttles its CPU then, and may remove it).

Reconciling, like the training service's jobs: an unfinished item whose heartbeat is overdue has its
execution checked; an execution that ended without finishing it (killed, out of memory, timed out,
exited) fails it with that reason. Checked on every read of an unfinished item and by a periodic sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from runtune.errors import UpstreamUnavailable
from runtune.outbox import on_transition
from runtune.owned import OwnedCollection
from runtune.ports.launcher import ExecutionState, ExecutionStatus, JobLauncher, LaunchRequest, Workload
from runtune.ports.metadata import Document, MetadataStore, Where
from runtune.quotas import Quotas, check_running_evaluations
from runtune.schemas.common import ApiError, now_ts
from runtune.schemas.inference import Evaluation, EvaluationStatus, Export, ExportStatus
from runtune.schemas.webhooks import Kind

log = logging.getLogger("runtune.inference")
# A launch is recorded right after the item is stored; one still without an execution this long
# after its creation lost its launch (the instance stopped in between).
LAUNCH_GRACE_S = 60

Item = TypeVar("Item", Evaluation, Export)


@dataclass(frozen=True)
class ItemKind(Generic[Item]):
    """What differs between the kinds of items: their collection, workload and words."""

    noun: str  # "evaluation": error codes are `<noun>_timeout`, ...
    collection: str
    model: type[Item]
    workload: Workload
    events: Kind
    active: tuple[str, ...]
    failed: Any
    # What to do about a timeout, and about an out-of-memory kill.
    timeout_hint: str
    memory_hint: str


EVALUATIONS = ItemKind(
    "evaluation",
    "evaluations",
    Evaluation,
    Workload.evaluate,
    "evaluation",
    (EvaluationStatus.queued.value, EvaluationStatus.running.value),
    EvaluationStatus.failed,
    "the evaluation's task timeout; evaluate fewer samples with max_samples",
    "try fewer samples, max_samples",
)
EXPORTS = ItemKind(
    "export",
    "exports",
    Export,
    Workload.convert,
    "export",
    (ExportStatus.queued.value, ExportStatus.running.value),
    ExportStatus.failed,
    "the conversion's task timeout (RUNTUNE_CONVERT_TIMEOUT_S)",
    "give the convert job more memory, or export a smaller quantization",
)


class Executions(Generic[Item]):
    def __init__(
        self,
        kind: ItemKind[Item],
        store: MetadataStore,
        launcher: JobLauncher,
        *,
        heartbeat_s: float,
        timeout_s: int,
        before_start: Callable[[Item], None] = lambda item: None,
    ) -> None:
        self.kind = kind
        self._store, self._launcher = store, launcher
        self._before_start = before_start
        self.collection: OwnedCollection[Item] = OwnedCollection(store, kind.collection, kind.model, kind.noun)
        self._heartbeat_s, self._timeout_s = heartbeat_s, timeout_s

    @property
    def overdue_s(self) -> float:
        """A beat older than this may have no execution behind it: worth asking the launcher."""
        return 2 * self._heartbeat_s

    @property
    def unresponsive_s(self) -> float:
        """A running execution silent this long is stuck (a hung connection): stopped and failed."""
        return max(600.0, 30 * self._heartbeat_s)

    # -- start ----------------------------------------------------------------------------------

    def start(self, item: Item, *, also: list[tuple[str, Document]] | None = None) -> Item:
        """Store the item (with `also`, in one batch) and launch its execution."""
        self._before_start(item)
        self._store.create_many([(self.collection.path(item.id), item.to_document()), *(also or [])])
        noun = self.kind.noun
        try:
            execution = self._launcher.launch(
                LaunchRequest(job_id=item.id, workload=self.kind.workload, timeout_seconds=self._timeout_s)
            )
        except Exception as exc:  # the launchers' errors carry no secrets
            log.exception(f"{noun} launch failed", extra={noun: item.id})
            return self._fail(item.id, "launch_failed", f"The {noun} could not be started: {exc}") or item
        # Field updates only: the execution may already be writing its progress.
        self.collection.update(item.id, {"execution_name": execution, "heartbeat_at": now_ts()})
        log.info(f"{noun} launched", extra={noun: item.id, "execution": execution})
        return self.collection.get(item.id) or item

    # -- reconcile ------------------------------------------------------------------------------

    def reconciled(self, item: Item, now: int | None = None, *, force: bool = False) -> Item:
        """The item as it stands, failed first if its execution is gone (on every read). `force`
        asks the launcher even while the heartbeat is fresh (the local launcher just stopped them all)."""
        if item.is_finished:
            return item
        try:
            return self._reconcile(item, now_ts() if now is None else now, force) or item
        except UpstreamUnavailable:  # the Admin API hiccupped: answer with what is stored, check next time
            log.warning(f"could not check an {self.kind.noun}'s execution", extra={self.kind.noun: item.id})
            return item

    def sweep(self, now: int | None = None, *, force: bool = False) -> list[str]:
        """Reconcile every unfinished item; the ids of those it failed."""
        ended = []
        where = [Where("status", "in", list(self.kind.active))]
        for _, document in self._store.query(self.kind.collection, where=where):
            item = self.kind.model.model_validate(document)
            after = self.reconciled(item, now, force=force)
            if after.is_finished:
                ended.append(item.id)
        return ended

    def _reconcile(self, item: Item, now: int, force: bool) -> Item | None:
        noun = self.kind.noun
        quiet_for = now - (item.heartbeat_at or item.created_at)
        if quiet_for <= self.overdue_s and not force:
            return None
        if not item.execution_name:
            if force or now - item.created_at <= LAUNCH_GRACE_S:
                return None
            return self._fail(
                item.id,
                f"{noun}_interrupted",
                f"The {noun} was never started: the inference service stopped before launching it; start it again",
            )
        status = self._launcher.status(item.execution_name)
        if force and status.state is ExecutionState.unknown:
            return None  # not one this launcher ran: its heartbeat decides, at a later sweep
        if status.state is ExecutionState.pending:
            return None  # waiting for a slot (local queue) or a cold start
        if status.state is ExecutionState.running:
            if quiet_for < self.unresponsive_s:
                return None
            self._launcher.cancel(item.execution_name)
            return self._fail(
                item.id,
                f"{noun}_unresponsive",
                f"The {noun}'s execution stopped reporting {int(quiet_for)}s ago and was stopped",
            )
        code, reason = self._why_it_ended(status)
        log.warning(
            f"{noun}'s execution ended without finishing it",
            extra={noun: item.id, "execution": status.name, "reason": reason},
        )
        return self._fail(item.id, code, f"The {noun}'s execution ended before finishing it: {reason}")

    def _fail(self, item_id: str, code: str, message: str) -> Item | None:
        """Fail it unless it finished meanwhile (the execution's last write wins over our verdict)."""
        failed: dict[str, Item] = {}

        def apply(current: Document | None) -> Document | None:
            if current is None:
                return None
            item = self.kind.model.model_validate(current)
            failed["current"] = item
            if item.is_finished:
                return None
            item.status, item.finished_at = self.kind.failed, now_ts()
            item.error = ApiError(code=code, message=message)
            return item.to_document()

        self._store.transact(self.collection.path(item_id), apply, also=on_transition(self.kind.events))
        return failed.get("current")

    def _why_it_ended(self, status: ExecutionStatus) -> tuple[str, str]:
        noun = self.kind.noun
        reason = status.reason or str(status.state)
        if status.state is ExecutionState.cancelled:
            return f"{noun}_cancelled", f"it was stopped ({reason})"
        if status.state is ExecutionState.unknown:
            # Locally: the service restarted, and its launcher (and the child processes) with it.
            return f"{noun}_interrupted", f"the execution is gone ({reason}); start the {noun} again"
        if status.state is ExecutionState.succeeded:
            return f"{noun}_lost", "it exited without recording a result"
        if reason.startswith("timeout"):
            return f"{noun}_timeout", f"{reason} ({self.kind.timeout_hint})"
        if status.exit_code == 137 and "SIGKILL" not in reason:
            # Cloud Run reports a kill as exit code 137: out of memory, nearly always.
            return f"{noun}_exited", f"{reason} (killed: typically out of memory; {self.kind.memory_hint})"
        if status.exit_code is not None:
            return f"{noun}_exited", reason
        return f"{noun}_lost", reason


def evaluation_executions(
    store: MetadataStore, launcher: JobLauncher, *, heartbeat_s: float, timeout_s: int, quotas: Quotas | None = None
) -> Executions[Evaluation]:
    limits = quotas or Quotas()
    return Executions(
        EVALUATIONS,
        store,
        launcher,
        heartbeat_s=heartbeat_s,
        timeout_s=timeout_s,
        before_start=lambda evaluation: check_running_evaluations(store, evaluation.owner, limits),
    )


def export_executions(
    store: MetadataStore, launcher: JobLauncher, *, heartbeat_s: float, timeout_s: int
) -> Executions[Export]:
    return Executions(EXPORTS, store, launcher, heartbeat_s=heartbeat_s, timeout_s=timeout_s)
