"""Evaluations as executions of their own: the service stores the evaluation, launches its execution
(`python -m jobs.evaluate <id>`: a CPU Cloud Run job, locally a child process of the launcher) and
answers; the execution does the work and writes the progress. No work is left in this instance after
its response (Cloud Run throttles its CPU then, and may remove it).

Reconciling, like the training service's jobs: an unfinished evaluation whose heartbeat is overdue has
its execution checked; an execution that ended without finishing it (killed, out of memory, timed
out, exited) fails it with that reason. Checked on every read of an unfinished evaluation and by a
periodic sweep.
"""

from __future__ import annotations

import logging

from runtune.errors import UpstreamUnavailable
from runtune.inference.evaluation import evaluation_path
from runtune.outbox import on_transition
from runtune.owned import OwnedCollection
from runtune.ports.launcher import ExecutionState, ExecutionStatus, JobLauncher, LaunchRequest, Workload
from runtune.ports.metadata import Document, MetadataStore, Where
from runtune.quotas import Quotas, check_running_evaluations
from runtune.schemas.common import ApiError, now_ts
from runtune.schemas.inference import Evaluation, EvaluationStatus

log = logging.getLogger("runtune.inference")
_ACTIVE = [EvaluationStatus.queued.value, EvaluationStatus.running.value]
# A launch is recorded right after the evaluation is stored; one still without an execution this long
# after its creation lost its launch (the instance stopped in between).
LAUNCH_GRACE_S = 60


class EvaluationExecutions:
    def __init__(
        self,
        store: MetadataStore,
        launcher: JobLauncher,
        *,
        heartbeat_s: float,
        timeout_s: int,
        quotas: Quotas | None = None,
    ) -> None:
        self._store, self._launcher = store, launcher
        self._quotas = quotas or Quotas()
        self.collection = OwnedCollection(store, "evaluations", Evaluation, "evaluation")
        self._heartbeat_s, self._timeout_s = heartbeat_s, timeout_s

    @property
    def overdue_s(self) -> float:
        """A beat older than this may have no execution behind it: worth asking the launcher."""
        return 2 * self._heartbeat_s

    @property
    def unresponsive_s(self) -> float:
        """A running execution silent this long is stuck (a hung engine connection): stopped and failed."""
        return max(600.0, 30 * self._heartbeat_s)

    # -- start ----------------------------------------------------------------------------------

    def start(self, evaluation: Evaluation) -> Evaluation:
        check_running_evaluations(self._store, evaluation.owner, self._quotas)
        self.collection.create(evaluation)
        try:
            execution = self._launcher.launch(
                LaunchRequest(job_id=evaluation.id, workload=Workload.evaluate, timeout_seconds=self._timeout_s)
            )
        except Exception as exc:  # the launchers' errors carry no secrets
            log.exception("evaluation launch failed", extra={"evaluation": evaluation.id})
            return (
                self._fail(evaluation.id, "launch_failed", f"The evaluation could not be started: {exc}") or evaluation
            )
        # Field updates only: the execution may already be writing its progress.
        self.collection.update(evaluation.id, {"execution_name": execution, "heartbeat_at": now_ts()})
        log.info("evaluation launched", extra={"evaluation": evaluation.id, "execution": execution})
        return self.collection.get(evaluation.id) or evaluation

    # -- reconcile ------------------------------------------------------------------------------

    def reconciled(self, evaluation: Evaluation, now: int | None = None, *, force: bool = False) -> Evaluation:
        """The evaluation as it stands, failed first if its execution is gone (on every read). `force`
        asks the launcher even while the heartbeat is fresh (the local launcher just stopped them all)."""
        if evaluation.is_finished:
            return evaluation
        try:
            return self._reconcile(evaluation, now_ts() if now is None else now, force) or evaluation
        except UpstreamUnavailable:  # the Admin API hiccupped: answer with what is stored, check next time
            log.warning("could not check an evaluation's execution", extra={"evaluation": evaluation.id})
            return evaluation

    def sweep(self, now: int | None = None, *, force: bool = False) -> list[str]:
        """Reconcile every unfinished evaluation; the ids of those it failed."""
        ended = []
        for _, document in self._store.query("evaluations", where=[Where("status", "in", _ACTIVE)]):
            evaluation = Evaluation.model_validate(document)
            after = self.reconciled(evaluation, now, force=force)
            if after.is_finished:
                ended.append(evaluation.id)
        return ended

    def _reconcile(self, evaluation: Evaluation, now: int, force: bool) -> Evaluation | None:
        quiet_for = now - (evaluation.heartbeat_at or evaluation.created_at)
        if quiet_for <= self.overdue_s and not force:
            return None
        if not evaluation.execution_name:
            if force or now - evaluation.created_at <= LAUNCH_GRACE_S:
                return None
            return self._fail(
                evaluation.id,
                "evaluation_interrupted",
                "The evaluation was never started: the inference service stopped before launching it; start it again",
            )
        status = self._launcher.status(evaluation.execution_name)
        if force and status.state is ExecutionState.unknown:
            return None  # not one this launcher ran: its heartbeat decides, at a later sweep
        if status.state is ExecutionState.pending:
            return None  # waiting for a slot (local queue) or a cold start
        if status.state is ExecutionState.running:
            if quiet_for < self.unresponsive_s:
                return None
            self._launcher.cancel(evaluation.execution_name)
            return self._fail(
                evaluation.id,
                "evaluation_unresponsive",
                f"The evaluation's execution stopped reporting {int(quiet_for)}s ago and was stopped",
            )
        code, reason = _why_it_ended(status)
        log.warning(
            "evaluation's execution ended without finishing it",
            extra={"evaluation": evaluation.id, "execution": status.name, "reason": reason},
        )
        return self._fail(evaluation.id, code, f"The evaluation's execution ended before finishing it: {reason}")

    def _fail(self, evaluation_id: str, code: str, message: str) -> Evaluation | None:
        """Fail it unless it finished meanwhile (the execution's last write wins over our verdict)."""
        failed: dict[str, Evaluation] = {}

        def apply(current: Document | None) -> Document | None:
            if current is None:
                return None
            evaluation = Evaluation.model_validate(current)
            if evaluation.is_finished:
                failed["current"] = evaluation
                return None
            evaluation.status, evaluation.finished_at = EvaluationStatus.failed, now_ts()
            evaluation.error = ApiError(code=code, message=message)
            failed["current"] = evaluation
            return evaluation.to_document()

        self._store.transact(evaluation_path(evaluation_id), apply, also=on_transition("evaluation"))
        return failed.get("current")


def _why_it_ended(status: ExecutionStatus) -> tuple[str, str]:
    reason = status.reason or str(status.state)
    if status.state is ExecutionState.cancelled:
        return "evaluation_cancelled", f"it was stopped ({reason})"
    if status.state is ExecutionState.unknown:
        # Locally: the service restarted, and its launcher (and the child processes) with it.
        return "evaluation_interrupted", f"the execution is gone ({reason}); start the evaluation again"
    if status.state is ExecutionState.succeeded:
        return "evaluation_lost", "it exited without recording a result"
    if reason.startswith("timeout"):
        return (
            "evaluation_timeout",
            f"{reason} (the evaluation's task timeout; evaluate fewer samples with max_samples)",
        )
    if status.exit_code == 137 and "SIGKILL" not in reason:
        # Cloud Run reports a kill as exit code 137: out of memory, nearly always.
        return "evaluation_exited", f"{reason} (killed: typically out of memory; try fewer samples, max_samples)"
    if status.exit_code is not None:
        return "evaluation_exited", reason
    return "evaluation_lost", reason
