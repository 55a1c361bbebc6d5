"""What happens to a fine-tuning job between the API and the trainer: validate, queue, launch,
cancel, and reconcile jobs whose trainer went quiet.

Status flow: `validating_files` (until every file is ready) -> `queued` -> (launched; the trainer
sets) `running` -> `succeeded` | `failed` | `cancelled`. `paused` branches off any of the first
three (a running job's trainer checkpoints first and marks it) and goes back through
`validating_files` on resume; it is left only by resume or cancel. No job stays anywhere forever:
the reconciler moves on jobs whose files became ready (or failed), ends cancelled ones whose
execution is gone (and pauses paused ones likewise), releases launch claims never stored, and fails
jobs whose heartbeat is stale with the execution's own reason.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from runtune import owned, quotas, serving
from runtune.errors import Conflict, InvalidRequest, NotFound, RuntuneError
from runtune.estimate import GPU_NAMES, Where, local_where
from runtune.inference.resolver import ModelResolver
from runtune.jobs import plan
from runtune.jobs.events import JobEventLog, Level
from runtune.jobs.plan import Parent, Planned
from runtune.models import registry
from runtune.owned import datasets
from runtune.ports.launcher import ExecutionState, JobLauncher, LaunchRequest
from runtune.ports.metadata import MetadataStore
from runtune.ports.secrets import SecretStore
from runtune.quotas import Quotas
from runtune.schemas import Dataset, DatasetStatus
from runtune.schemas.common import ApiError, now_ts
from runtune.schemas.jobs import (
    CreateJobRequest,
    Job,
    JobPhase,
    JobStatus,
    TrainConfig,
    job_path,
    parse_tuned_model_id,
)

log = logging.getLogger("runtune.training")

IDEMPOTENCY_TTL = timedelta(hours=24)
_ACTIVE = (JobStatus.queued, JobStatus.running)
# The execution name a launch claim holds until the launcher answers with the real one.
LAUNCHING = "launching"
# A launch claimed but never completed is retried this many times in all, then the job fails.
MAX_LAUNCH_ATTEMPTS = 3


@dataclass(frozen=True)
class SchedulingPolicy:
    max_running_per_user: int
    # A running job whose trainer has not written a heartbeat for this long is checked.
    heartbeat_stale_s: float
    # A launched job whose trainer never started is checked after this long.
    start_timeout_s: float
    task_timeout_s: int
    # A Vertex AI CustomJob's timeout (runs of days; ServiceSettings.vertex_task_timeout_s).
    vertex_task_timeout_s: int = 3 * 24 * 3600


class JobService:
    def __init__(
        self,
        store: MetadataStore,
        launcher: JobLauncher,
        policy: SchedulingPolicy,
        *,
        profile: str,
        launch_env: dict[str, str] | None = None,
        offered_gpus: Sequence[str] | None = None,
        quotas: Quotas | None = None,
        secrets: SecretStore | None = None,
        where: Where | None = None,
        vertex_machines: Sequence[str] = (),
    ) -> None:
        self._store = store
        self._models = ModelResolver(store)
        self.jobs = owned.jobs(store)
        self.events = JobEventLog(store)
        self._launcher = launcher
        self._policy = policy
        self._launch_env = launch_env or {}
        # Whose engine serves the results (the serving contract's bases differ per profile).
        self.profile = profile
        # The GPUs this deployment has a trainer job for (ServiceSettings.offered_gpus).
        self.offered_gpus: tuple[str, ...] = tuple(offered_gpus) if offered_gpus is not None else GPU_NAMES
        # Per-user limits (runtune/quotas.py): the monthly GPU budget; running jobs are `_policy`'s slots.
        self._quotas = quotas or Quotas()
        # Whether the user has a Hub token (a run of real Gemma weights needs one), never its value.
        self._secrets = secrets
        # Where trainers run (Cloud Run GPUs, or the local platform's machine, with or without a
        # GPU), and the platform's finished runs that calibrate the estimates.
        self.where: Where = where or ("cloud" if profile == "gcp" else local_where())
        # The Vertex AI machines offered besides (ServiceSettings.vertex_machines): a run too big or
        # too long for a Cloud Run trainer task (its timeout) is planned on one of them.
        self.estimator = plan.Estimator(
            self.where,
            store,
            machines=tuple(vertex_machines),
            cloud_run_timeout_s=policy.task_timeout_s if vertex_machines else None,
        )

    # -- create ---------------------------------------------------------------------------------

    def create(self, uid: str, request: CreateJobRequest, idempotency_key: str | None) -> Job:
        if idempotency_key:
            existing = self._idempotent_job(uid, idempotency_key)
            if existing is not None:
                return existing
        # A base model, or one of the caller's own `ft:` models to continue (404 if it is not theirs).
        parent = self.parent_for(uid, request.model)
        model = plan.check_model(plan.lineage_of(request.model, parent).root)
        # A file still processing is accepted (OpenAI's quickstart uploads and creates at once): the
        # job waits in `validating_files` and the checks that need the dataset run when it is ready.
        training = self.dataset_for(uid, request.training_file, "training_file", allow_processing=True)
        validation = (
            self.dataset_for(uid, request.validation_file, "validation_file", allow_processing=True)
            if request.validation_file
            else None
        )
        options, param = request.method.runtune, request.method.options_param
        if parent is not None:
            options = plan.continued_options(options, parent, asked=plan.lora_asked(options), param=param)
        plan.check_options(
            model,
            options,
            self.offered_gpus,
            machines=self.estimator.machines,
            param=param,
            objective=request.method.type,
        )
        job = request.new_job(uid, options=options, lineage=plan.lineage_of(request.model, parent))
        # Before any GPU starts: a job whose adapter the engine could not serve is refused, or runs
        # for download only (its merged export) and its events say so.
        verdict = serving.assess(job, profile=self.profile)
        if verdict.problems:
            raise verdict.problems[0].error()
        ready = training.status is DatasetStatus.ready and (
            validation is None or validation.status is DatasetStatus.ready
        )
        if ready:
            # Every file is ready: the checks that need it answer this request with a 400.
            job = plan.with_plan(job, self._plan(job, training, validation))
        stored = self._store_new(uid, job, idempotency_key)
        if stored is not job:
            return stored  # a concurrent request with the same Idempotency-Key made the job
        self._event(job.id, "Validating training file")
        if verdict.export_only:
            self._event(job.id, verdict.export_only, level="warn")
        if ready:
            self._warn(job)
            self._queue(job)
        return self.jobs.get(job.id) or job

    def _plan(self, job: Job, training: Dataset, validation: Dataset | None) -> Planned:
        """The job's plan on its ready training set (runtune/jobs/plan.py: checks, `auto`, learning
        rate, GPU; RuntuneError if it cannot run), within its owner's monthly GPU budget."""
        planned = plan.plan_job(
            job,
            training,
            offered=self.offered_gpus,
            parent=self._parent_of(job),
            validation=validation,
            estimator=self.estimator,
            has_hub_token=self.has_hub_token(job.owner),
        )
        self._check_budget(job, planned.estimate.gpu_seconds)
        return planned

    def has_hub_token(self, uid: str) -> bool:
        """Whether the user stored a Hugging Face token (its name only; a service without the secrets
        port assumes so)."""
        return self._secrets is None or bool(set(plan.HUB_TOKEN_SECRETS) & set(self._secrets.names(uid)))

    def _warn(self, job: Job) -> None:
        """The plan's warnings (hours on a CPU, a missing Hub token, host memory) as the job's events."""
        for warning in job.estimate.warnings if job.estimate else []:
            self._event(job.id, warning, level="warn")

    def parent_for(self, uid: str, model_id: str, param: str = "model") -> Parent | None:
        """None for a base model of the registry; else the caller's own `ft:` model that the job
        continues. Another user's, an unknown or a deleted one is a 404 (as anywhere a model is
        named), one whose job has not succeeded a 400; an id that is neither is the unknown base's 400."""
        if registry.lookup(model_id) is not None:
            return None
        if parse_tuned_model_id(model_id) is None:
            plan.check_model(model_id)  # raises: not a model of the registry
        job, adapter = self._models.continued_from(uid, model_id, param)
        return Parent.of(job, adapter)

    def _parent_of(self, job: Job) -> Parent | None:
        """A continued job's parent as it is now (deleted since the job was created: a 404)."""
        lineage = job.lineage_or_base
        return self.parent_for(job.owner, lineage.parent) if lineage.is_continued else None

    def _check_budget(self, job: Job, seconds: int | None) -> None:
        """The owner's monthly GPU budget, against this run's estimate (a 429/400 naming both)."""
        quotas.check_gpu_budget(self._store, job.owner, self._quotas, seconds or 0, job_id=job.id)

    def _queue(self, job: Job) -> None:
        """`validating_files` -> `queued` (unless cancelled meanwhile), then launch what the owner may."""
        if self._set_status(job.id, JobStatus.queued, expected=JobStatus.validating_files) is not None:
            self._event(job.id, "Job queued")
        self.dispatch(job.owner)

    # -- validating files -----------------------------------------------------------------------

    def get(self, uid: str, job_id: str) -> Job:
        """The caller's job, moved on first if it was waiting for its files."""
        job = self.jobs.get_owned(uid, job_id)
        if job.status is JobStatus.validating_files:
            self.advance_validating(job)
            job = self.jobs.get_owned(uid, job_id)
        return job

    def advance_validating(self, job: Job) -> None:
        """A job waiting for its files: queued once they are ready (after the checks that need
        them), failed when one failed or was deleted, left waiting while they process."""
        files = [("training_file", job.training_file)]
        if job.validation_file:
            files.append(("validation_file", job.validation_file))
        # A failed or deleted file fails the job at once, even while the other one still processes.
        found: dict[str, Dataset] = {}
        for param, file_id in files:
            dataset = datasets(self._store).find_owned(job.owner, file_id)
            kind = "Training" if param == "training_file" else "Validation"
            code = f"invalid_{param}"
            if dataset is None:
                self._fail(job.id, code, f"{kind} file '{file_id}' was deleted before it could be validated", param)
                return
            if dataset.status is DatasetStatus.failed:
                problem = dataset.error.message if dataset.error else "it could not be processed"
                self._fail(job.id, code, f"{kind} file '{file_id}' is invalid: {problem}", param)
                return
            found[param] = dataset
        if any(dataset.status is not DatasetStatus.ready for dataset in found.values()):
            return  # still processing: the next pass (or GET) looks again
        # A resumed job keeps the plan it was made with (its checkpoints are of that batch size and
        # step count); only its budget is checked again. A new one is planned now.
        try:
            if job.plan is not None:
                self._check_budget(job, job.estimated_gpu_seconds)
                planned = None
            else:
                planned = self._plan(job, found["training_file"], found.get("validation_file"))
        except RuntuneError as exc:
            where = f" ({exc.param})" if exc.param else ""
            self._fail(job.id, exc.code or "invalid_request", f"{exc.message}{where}", exc.param)
            return
        updated = self.jobs.update_if(
            job.id,
            lambda current: (
                (plan.with_plan(current, planned) if planned is not None else current)
                if current.status is JobStatus.validating_files
                else None
            ),
        )
        if updated is not None:
            if planned is not None:
                self._warn(updated)
            self._queue(updated)

    def check_offered(self, gpu: str, param: str) -> None:
        """Refuse a GPU this deployment has no trainer job for (a 400 naming it and what is offered)."""
        plan.check_offered(gpu, self.offered_gpus, param)

    def _launch_request(self, job: Job, config: TrainConfig) -> LaunchRequest:
        """What the launcher starts for a planned job: its Cloud Run GPU's trainer job, or its Vertex
        AI machine (on Spot when the job allows it), with the backend's task timeout."""
        if config.compute == "vertex":
            return LaunchRequest(
                job_id=job.id,
                env=self._launch_env,
                timeout_seconds=self._policy.vertex_task_timeout_s,
                gpu=config.gpu,
                machine=config.machine,
                spot=config.spot,
            )
        return LaunchRequest(
            job_id=job.id, env=self._launch_env, timeout_seconds=self._policy.task_timeout_s, gpu=config.gpu
        )

    def _placement_of(self, job: Job) -> TrainConfig:
        """Where a queued job launches (its GPU, and on Vertex its machine): its plan's. A job stored
        before plans existed is planned now by the same function, from what it stored (its numbers,
        and the GPU it shows when it has one), and fails like a new job if it cannot run; a GPU (or a
        Vertex machine) the deployment stopped offering since the job was planned is refused rather
        than launched on a trainer job that no longer exists."""
        config = job.plan
        if config is None:
            training = self.dataset_for(job.owner, job.training_file, "training_file")
            offered = (job.gpu,) if job.gpu else self.offered_gpus
            planned = plan.plan_job(
                job, training, offered=offered, parent=self._parent_of(job), estimator=self.estimator
            )
            self.jobs.update_if(job.id, lambda current: plan.with_plan(current, planned))
            config = planned.plan
        assert config.gpu is not None  # plan_job refuses a run that fits no GPU
        if config.compute == "vertex":
            if config.machine not in self.estimator.machines:
                raise InvalidRequest(
                    f"Vertex AI machine '{config.machine}' is no longer offered by this deployment",
                    param="machine",
                    code="compute_not_offered",
                )
            return config
        self.check_offered(config.gpu, "gpu")
        return config

    def dataset_for(self, uid: str, dataset_id: str, param: str, *, allow_processing: bool = False) -> Dataset:
        """The caller's dataset, ready to train on (or, with `allow_processing`, on its way there);
        a missing one is a 404 and a failed one a 400 naming the file and its problem."""
        dataset = datasets(self._store).find_owned(uid, dataset_id)
        if dataset is None:
            raise NotFound(f"No file or dataset with id '{dataset_id}'", param=param)
        if dataset.status is DatasetStatus.ready:
            return dataset
        if allow_processing and dataset.status is not DatasetStatus.failed:
            return dataset
        detail = f": {dataset.error.message}" if dataset.error else ""
        raise InvalidRequest(
            f"Dataset '{dataset_id}' is {dataset.status.value}{detail}; it must be ready to train on",
            param=param,
            code=f"invalid_{param}" if dataset.status is DatasetStatus.failed else "file_not_ready",
        )

    def _idempotency_path(self, uid: str, key: str) -> str:
        return f"idempotency_keys/{hashlib.sha256(f'{uid}:{key}'.encode()).hexdigest()}"

    def _idempotent_job(self, uid: str, key: str) -> Job | None:
        document = self._store.get(self._idempotency_path(uid, key))
        if document is None or document["expires_at"] < datetime.now(UTC):
            return None
        return self.jobs.get(document["job_id"])

    def _store_new(self, uid: str, job: Job, key: str | None) -> Job:
        """Store a new job; with an `Idempotency-Key`, the key and the job are created in one atomic
        batch, so concurrent requests with one key make one job and every loser finds it stored.
        Returns the stored job: `job`, or the one a concurrent request made."""
        if not key:
            self.jobs.create(job)
            return job
        path = self._idempotency_path(uid, key)
        # A Timestamp: Firestore's TTL policy deletes the document after it.
        claim = {"owner": uid, "job_id": job.id, "expires_at": datetime.now(UTC) + IDEMPOTENCY_TTL}
        for _ in range(2):
            try:
                self._store.create_many([(path, claim), (job_path(job.id), job.to_document())])
                return job
            except Conflict:
                document = self._store.get(path)
                if document is not None and document["expires_at"] >= datetime.now(UTC):
                    # Created in the same batch as its job: the job is there (unless it was deleted).
                    existing = self.jobs.get(document["job_id"])
                    if existing is None:
                        break
                    return existing
                if document is not None:
                    # The key expired (Firestore's TTL deletes it up to a day later): it may be reused.
                    self._store.delete(path)
        raise Conflict(
            "This Idempotency-Key was used for a job that no longer exists; use a new key", param="Idempotency-Key"
        )

    # -- launch ---------------------------------------------------------------------------------

    def dispatch(self, uid: str) -> None:
        """Launch the user's oldest queued jobs while they have free slots; the rest wait in order."""
        active = self.jobs.where_in("status", [status.value for status in _ACTIVE], owner=uid)
        launched = [job for job in active if job.status is JobStatus.running or job.execution_name]
        waiting = [job for job in active if job.status is JobStatus.queued and not job.execution_name]
        for job in waiting[: max(0, self._policy.max_running_per_user - len(launched))]:
            self._launch(job)

    def _launch(self, job: Job) -> None:
        # Claim the launch in a transaction so two service instances never start the same job twice.
        def claim(current: Job) -> Job | None:
            if current.status is not JobStatus.queued or current.execution_name or current.cancel_requested:
                return None
            # `heartbeat_at` dates the claim: one never completed (the service stopped between the
            # claim and storing the execution) is released by the reconciler.
            return current.model_copy(
                update={"execution_name": LAUNCHING, "phase": JobPhase.launching, "heartbeat_at": time.time()}
            )

        if self.jobs.update_if(job.id, claim) is None:
            return
        try:
            config = self._placement_of(job)
        except RuntuneError as exc:  # the run no longer fits what this deployment offers
            self._fail(job.id, exc.code or "launch_failed", f"The trainer could not be started: {exc.message}")
            return
        gpu = config.gpu
        try:
            execution = self._launcher.launch(self._launch_request(job, config))
        except Exception as exc:  # the launcher's own errors carry no secrets
            log.exception("launch failed", extra={"job_id": job.id})
            self._fail(job.id, "launch_failed", f"The trainer could not be started: {exc}")
            return
        stored = self.jobs.update_if(
            job.id,
            lambda current: current.model_copy(
                update={"execution_name": execution, "heartbeat_at": time.time(), "gpu": gpu, "machine": config.machine}
            ),
        )
        where = f" on Vertex AI, {config.machine}{' (Spot)' if config.spot else ''}" if config.machine else ""
        self._event(job.id, f"Trainer launched{where} ({execution.rsplit('/', 1)[-1]})")
        if stored is not None and (
            stored.cancel_requested or stored.status.is_terminal or stored.status is JobStatus.paused
        ):
            # Cancelled (or paused) while it was launching: stop what was just started.
            self._launcher.cancel(execution)

    # -- cancel ---------------------------------------------------------------------------------

    def cancel(self, uid: str, job_id: str) -> Job:
        job = self.jobs.get_owned(uid, job_id)
        _refuse_ended(job)

        def request_cancel(current: Job) -> Job:
            update: dict[str, object] = {"cancel_requested": True}
            if _runs_nothing(current):
                # Never started (or paused): nothing to stop, so it is cancelled right away.
                update |= {"status": JobStatus.cancelled, "finished_at": now_ts(), "seconds_remaining": None}
            return current.model_copy(update=update)

        job = self.jobs.update_if(job_id, request_cancel) or job
        if job.execution_name and job.execution_name != LAUNCHING and not job.status.is_terminal:
            # The trainer notices the flag at its next safe point and ends the job `cancelled`;
            # stopping the execution covers a trainer that is stuck.
            self._launcher.cancel(job.execution_name)
        self._event(job_id, "Cancellation requested")
        self.dispatch(uid)
        return self.jobs.get(job_id) or job

    # -- pause and resume -----------------------------------------------------------------------

    def pause(self, uid: str, job_id: str) -> Job:
        """A job that runs nothing yet is paused at once (a launched one's execution is stopped); a
        running one is asked to pause: its trainer checkpoints at its next safe point, marks the job
        `paused` and exits. Pausing a paused job changes nothing."""
        job = self.jobs.get_owned(uid, job_id)
        self._check_pausable(job)

        def request_pause(current: Job) -> Job | None:
            if current.status is JobStatus.paused or current.status.is_terminal or current.cancel_requested:
                return None
            if current.status is JobStatus.running:
                return None if current.pause_requested else current.model_copy(update={"pause_requested": True})
            # Nothing trains yet (waiting for its files, queued, claimed or launched but not started).
            return current.model_copy(update={"status": JobStatus.paused, "seconds_remaining": None})

        changed = self.jobs.update_if(job_id, request_pause)
        if changed is None:
            return self._check_pausable(self.jobs.get_owned(uid, job_id))
        if changed.status is JobStatus.paused:
            if changed.execution_name and changed.execution_name != LAUNCHING:
                self._launcher.cancel(changed.execution_name)  # launched, its trainer not started
            self._event(job_id, "Job paused")
            self.dispatch(uid)
        else:
            self._event(job_id, "Pause requested; the trainer pauses after its next checkpoint")
        return changed

    def resume(self, uid: str, job_id: str) -> Job:
        """A paused job goes back through `validating_files` (its files are checked again, at once when
        they are ready) to `queued`, and launches when its owner has a free slot; its trainer
        continues from the newest checkpoint."""
        self.jobs.get_owned(uid, job_id)  # another user's job is a 404, before anything is written

        def unpause(current: Job) -> Job | None:
            if current.status is not JobStatus.paused:
                return None
            runtune = {key: value for key, value in current.runtune.items() if key != "launch_attempts"}
            return current.model_copy(
                update={
                    "status": JobStatus.validating_files,
                    "execution_name": None,
                    "heartbeat_at": None,
                    "phase": None,
                    "runtune": runtune,
                }
            )

        resumed = self.jobs.update_if(job_id, unpause)
        if resumed is None:
            current = self.jobs.get_owned(uid, job_id)
            _refuse_ended(current)
            pausing = " (a pause is under way: resume it once it is paused)" if current.pause_requested else ""
            raise InvalidRequest(
                f"Job '{job_id}' is {current.status.value}, not paused{pausing}", param="id", code="job_not_paused"
            )
        self._event(job_id, "Job resumed")
        self.advance_validating(resumed)
        return self.jobs.get(job_id) or resumed

    def _check_pausable(self, job: Job) -> Job:
        """`job` if it may be paused; a 400 naming why not (ended, or being cancelled)."""
        _refuse_ended(job)
        if job.cancel_requested:
            raise InvalidRequest(
                f"Job '{job.id}' is being cancelled; it cannot be paused", param="id", code="job_cancelling"
            )
        return job

    # -- reconcile ------------------------------------------------------------------------------

    def reconcile(self, now: float | None = None) -> list[str]:
        """Move on jobs waiting for their files, release launch claims never completed, fail jobs
        whose trainer is gone, end cancelled ones; launch what waits. Returns the ids of jobs it ended.
        One job's failure (a status call that raises) is logged and does not stop the others."""
        now = time.time() if now is None else now
        ended = []
        owners = set()
        for job in self.jobs.where_in("status", [status.value for status in (JobStatus.validating_files, *_ACTIVE)]):
            owners.add(job.owner)
            try:
                if self._reconcile_one(job, now):
                    ended.append(job.id)
            except Exception:
                log.exception("reconciling a job failed", extra={"job_id": job.id})
        for owner in owners:
            try:
                self.dispatch(owner)
            except Exception:
                log.exception("dispatching failed", extra={"owner": owner})
        return ended

    def _reconcile_one(self, job: Job, now: float) -> bool:
        if job.status is JobStatus.validating_files:
            self.advance_validating(job)
            current = self.jobs.get(job.id)
            return current is not None and current.status.is_terminal
        quiet_for = now - (job.heartbeat_at or 0)
        if not job.execution_name:
            if job.cancel_requested:  # cancelled before its launch claim: nothing runs
                self._finish(job.id, JobStatus.cancelled, None, "Job cancelled")
                return True
            return False
        if job.execution_name == LAUNCHING:
            if quiet_for < self._policy.start_timeout_s:
                return False  # the launch may still be under way
            if job.cancel_requested:
                self._finish(job.id, JobStatus.cancelled, None, "Job cancelled")
                return True
            return self._release_claim(job)
        if job.stop_requested:
            status = self._launcher.status(job.execution_name)
            if status.state not in (ExecutionState.running, ExecutionState.pending):
                # Stopped before (or without) writing its end: the user asked for this ending.
                return self._stopped_as_asked(job)
        limit = self._policy.heartbeat_stale_s if job.status is JobStatus.running else self._policy.start_timeout_s
        if quiet_for < limit:
            return False
        return self._end_if_gone(job, quiet_for)

    def _release_claim(self, job: Job) -> bool:
        """A launch claimed but never stored (the service stopped in between): the claim is released
        so the job launches again, up to MAX_LAUNCH_ATTEMPTS times; then it fails. Returns whether
        it ended the job."""
        attempts = int(job.runtune.get("launch_attempts", 1))
        if attempts >= MAX_LAUNCH_ATTEMPTS:
            self._fail(
                job.id,
                "launch_failed",
                f"The trainer could not be started: {attempts} launches were claimed and never completed",
            )
            return True

        def release(current: Job) -> Job | None:
            if current.execution_name != LAUNCHING or current.status is not JobStatus.queued:
                return None
            return current.model_copy(
                update={
                    "execution_name": None,
                    "phase": None,
                    "runtune": {**current.runtune, "launch_attempts": attempts + 1},
                }
            )

        if self.jobs.update_if(job.id, release) is not None:
            self._event(job.id, "The launch was interrupted; launching again", level="warn")
        return False

    def _end_if_gone(self, job: Job, quiet_for: float) -> bool:
        assert job.execution_name
        status = self._launcher.status(job.execution_name)
        if status.waiting_for_capacity and not job.stop_requested:
            return False  # queued for its machine: the backend expires it when the wait runs out
        if (
            status.state in (ExecutionState.running, ExecutionState.pending)
            and quiet_for < 4 * self._policy.heartbeat_stale_s
        ):
            return False  # alive but slow (a long evaluation, a large download): give it time
        if job.stop_requested:
            # Asked to stop, alive, and silent for too long: stopped again, and the job ends as asked.
            self._launcher.cancel(job.execution_name)
            return self._stopped_as_asked(job)
        if status.state in (ExecutionState.running, ExecutionState.pending):
            # Alive but silent far too long (a hung collective, a deadlock): stop it, so it neither
            # bills GPU time nor holds a slot that queued jobs wait for.
            self._launcher.cancel(job.execution_name)
            reason = f"the trainer stopped reporting {int(quiet_for)}s ago and was stopped"
            code = "trainer_unresponsive"
        else:
            reason = status.reason or f"the trainer stopped reporting {int(quiet_for)}s ago"
            code = "timeout" if (status.reason or "").startswith("timeout") else "trainer_lost"
            if status.exit_code is not None:
                code = "trainer_exited"
        self._fail(job.id, code, f"The trainer stopped without finishing the job: {reason}")
        return True

    def _stopped_as_asked(self, job: Job) -> bool:
        """A job whose trainer was asked to stop and no longer runs: `cancelled`, or `paused` (resume
        continues from the newest checkpoint there is). Returns whether it ended the job."""
        if job.cancel_requested:
            self._finish(job.id, JobStatus.cancelled, None, "Job cancelled")
            return True

        def mark(current: Job) -> Job | None:
            if current.status is not job.status or not current.pause_requested or current.cancel_requested:
                return None
            return current.model_copy(
                update={"status": JobStatus.paused, "pause_requested": False, "seconds_remaining": None}
            )

        if self.jobs.update_if(job.id, mark) is not None:
            self._event(job.id, "Job paused (the trainer stopped before it recorded the pause)")
        return False

    # -- writes ---------------------------------------------------------------------------------

    def _set_status(self, job_id: str, status: JobStatus, *, expected: JobStatus | None = None) -> Job | None:
        def apply(current: Job) -> Job | None:
            if current.status.is_terminal or (expected is not None and current.status is not expected):
                return None
            return current.model_copy(update={"status": status})

        return self.jobs.update_if(job_id, apply)

    def _fail(self, job_id: str, code: str, message: str, param: str | None = None) -> None:
        self._finish(job_id, JobStatus.failed, ApiError(code=code, message=message, param=param), message)

    def _finish(self, job_id: str, status: JobStatus, error: ApiError | None, message: str) -> None:
        def apply(current: Job) -> Job | None:
            # Terminal states are never left; a paused job is left only by resume or cancel (so a
            # decision taken on the job as it was before the pause does not end it).
            if current.status.is_terminal or (current.status is JobStatus.paused and status is not JobStatus.cancelled):
                return None
            return current.model_copy(
                update={"status": status, "error": error, "finished_at": now_ts(), "seconds_remaining": None}
            )

        if self.jobs.update_if(job_id, apply) is not None:
            self._event(job_id, message, level="error" if status is JobStatus.failed else "info")

    def _event(self, job_id: str, message: str, *, level: Level = "info") -> None:
        self.events.add(job_id, message, level=level)


def _refuse_ended(job: Job) -> None:
    """Terminal states are never left: a 400 for any request that would move an ended job."""
    if job.status.is_terminal:
        raise InvalidRequest(f"Job '{job.id}' has already {job.status.value}", param="id", code="job_finished")


def _runs_nothing(job: Job) -> bool:
    """No trainer runs for this job: never launched, mid-claim, or paused."""
    return not job.execution_name or job.execution_name == LAUNCHING or job.status is JobStatus.paused
