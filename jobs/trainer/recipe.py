"""The fine-tuning recipe, top to bottom: setup, data, train (with checkpoints and resume), evaluate,
export. Everything comes from the job's document (`jobs/{id}`), the dataset's shards and the
secrets port; progress goes back through the metadata port.

Environment: the `RUNTUNE_*` settings and emulator variables (runtune.settings.CommonSettings), and
Cloud Run's `CLOUD_RUN_EXECUTION` / `CLOUD_RUN_TASK_ATTEMPT`; under `torchrun` also `RANK`,
`WORLD_SIZE`, `LOCAL_RANK` and the rendezvous (`MASTER_ADDR`, `MASTER_PORT`): the recipe then runs
data-parallel (runtune/training/distributed.py), rank 0 the only writer. Exit status: 0 when the job ended
`succeeded` or `cancelled`, was `paused` on request (after its resume checkpoint), or was already
over; 1 on any failure (the job is then `failed` with a code and a message a user can act on); 2 for
a bad command line or configuration; 3 when the job does not exist; 128 + the signal's number when
the platform stopped the task (SIGTERM: a timeout, maintenance) and the job was not cancelled: the
job stays `running`, and the retried task (or, with no retries left, the jobs API's reconciler)
takes it from there.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from jobs.trainer.stop import Stopped, StopSignals
from runtune import owned, throughput
from runtune.blob_layout import job_prefix
from runtune.datasets.canonical import Example, read_split
from runtune.estimate import RunTiming, machine_name
from runtune.jobs.plan import HUB_TOKEN_SECRETS, held_out_sources
from runtune.models.loading import data_mount, load_processor, locate_weights
from runtune.models.registry import get
from runtune.ports.blobs import BlobStore
from runtune.ports.metadata import MetadataStore
from runtune.ports.secrets import SecretStore
from runtune.schemas import Job, JobPhase, JobStatus, TaskKind
from runtune.schemas.common import ApiError
from runtune.schemas.jobs import StopRequest, TrainConfig, job_path, tuned_model_id
from runtune.settings import CommonSettings
from runtune.training import checkpoints, data, evaluation, export, loop, model_checkpoints, preference, validation
from runtune.training import model as setup
from runtune.training.chat import ChatFormat
from runtune.training.checkpoints import Position
from runtune.training.config import ConfigError
from runtune.training.config import read as read_config
from runtune.training.deadline import Deadline
from runtune.training.distributed import SINGLE, PeerLost, World
from runtune.training.reporting import JobReporter, SilentReporter
from runtune.training.trackers import Trackers

log = logging.getLogger("runtune.trainer")


class TrainerError(Exception):
    """A failure with a code and a message the user can act on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Environment:
    store: MetadataStore
    blobs: BlobStore
    settings: CommonSettings
    # The users' tokens (Hugging Face, W&B): Secret Manager in the cloud, the local file store locally.
    secrets: SecretStore
    execution: str | None = field(default_factory=lambda: os.environ.get("CLOUD_RUN_EXECUTION"))
    attempt: int = field(default_factory=lambda: int(os.environ.get("CLOUD_RUN_TASK_ATTEMPT", "0") or 0))
    signals: StopSignals = field(default_factory=StopSignals)
    # The data-parallel group under torchrun; one process otherwise.
    world: World = SINGLE
    # Seconds the process ran before the run began (interpreter, imports): part of a run's measured
    # setup (runtune/throughput.py); `main` sets it, 0 where the trainer runs in-process.
    process_start_s: float = 0.0
    # What the run's phases are timed with (the `throughput` record the estimate calibrates from):
    # wall time. The estimate's accuracy test times in CPU seconds, which the neighbours' load leaves be.
    clock: Callable[[], float] = time.monotonic


def main(argv: list[str]) -> int:
    from runtune.wiring import blob_store, execution_settings, metadata_store, secret_store

    settings = execution_settings("trainer", argv, CommonSettings, argument="job_id")
    if settings is None:
        return 2
    env = Environment(
        metadata_store(settings, deployable="trainer"),
        blob_store(settings, deployable="trainer"),
        settings,
        secret_store(settings, deployable="trainer"),
        world=World.from_env(),
    )
    env.process_start_s = throughput.process_seconds() or 0.0
    env.signals.grace_s = settings.stop_grace_s
    env.signals.install()
    env.world.start()
    code = run(argv[0], env)
    if env.signals.signum is not None or (env.world.distributed and code != 0):
        # Stopped (or a data-parallel group that may have lost a peer): end now, not after the
        # interpreter's shutdown (which waits for library threads and atexit hooks, and during which
        # the watchdog, a daemon thread, no longer runs) nor in a group teardown waiting on the dead.
        logging.shutdown()
        os._exit(code)
    env.world.close()
    return code


def run(job_id: str, env: Environment) -> int:
    world = env.world
    # The document itself, validated below: one that is no valid job is recorded failed (invalid_job).
    # Rank 0's reading is every rank's, so all ranks decide alike whether there is anything to do.
    document = world.decide(env.store.get(job_path(job_id)) if world.is_main else None)
    if document is None:
        log.error("job not found", extra={"job_id": job_id})
        return 3
    # Rank 0 writes; the other ranks' reporter writes nothing and their stop records nothing.
    reporter = (JobReporter if world.is_main else SilentReporter)(
        env.store, job_id, cancel_every_s=env.settings.stop_poll_s
    )
    if world.is_main:
        env.signals.recorder = lambda stopped: _stopped(reporter, stopped)
    job: Job | None = None
    try:
        job = Job.model_validate(document)
        if job.status.is_terminal:
            log.info("job already over; nothing to do", extra={"job_id": job_id, "status": job.status.value})
            return 0
        return train(job, env, reporter)
    except Stopped as stopped:
        return env.signals.record(stopped)
    except PeerLost as lost:
        # Another rank died (torchrun tears the group down): an interruption, not a failure of the
        # job. It stays `running`; a restart (Vertex's, or the reconciler's relaunch) resumes.
        if env.signals.signum is not None:
            return env.signals.record(Stopped(env.signals.signum))
        log.warning("a data-parallel peer was lost", extra={"job_id": job_id, "error": str(lost)})
        reporter.message(
            f"A training process of this job was lost ({lost}); a restart resumes from the newest checkpoint",
            level="warn",
        )
        return 1
    except Exception as exc:  # every failure ends the job `failed`, never a silent exit
        error = describe_failure(exc, job)
        log.exception("training failed", extra={"job_id": job_id, "code": error.code})
        try:
            reporter.finish(JobStatus.failed, f"Training failed: {error.message}", error=error)
        except Exception:
            log.exception("could not record the failure", extra={"job_id": job_id})
        return 1
    finally:
        reporter.close()


def _stopped(reporter: JobReporter, stopped: Stopped) -> int:
    reporter.stop_heartbeat()
    request = reporter.stop_requested(force=True)
    if request == "cancel":
        reporter.finish(JobStatus.cancelled, "Cancelled")
        return 0
    # Asked to pause, then stopped before the checkpoint: resume takes the newest one there is.
    if request == "pause" and reporter.paused("Paused; resume continues from the newest checkpoint"):
        return 0
    # Not cancelled: a task timeout or maintenance. The job stays `running` for the retried task,
    # which resumes from the newest checkpoint; without retries the reconciler fails it with the reason.
    reporter.message(
        f"The trainer was stopped ({stopped}); a retried task resumes from the newest checkpoint", level="warn"
    )
    return 128 + stopped.signum


def describe_failure(exc: BaseException, job: Job | None) -> ApiError:
    if isinstance(exc, TrainerError):
        return ApiError(code=exc.code, message=str(exc))
    if isinstance(exc, ConfigError):
        return ApiError(code="invalid_config", message=str(exc))
    if job is None:
        return ApiError(code="invalid_job", message=f"The job document could not be read: {str(exc)[:300]}")
    text = str(exc).lower()
    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError) or "out of memory" in text:
        options = job.options
        batch_size = job.plan.batch_size if job.plan else job.hyperparameters.batch_size
        method = job.plan.method if job.plan else options.method
        return ApiError(
            code="out_of_memory",
            message=(
                f"The {'GPU' if torch.cuda.is_available() else 'machine'} ran out of memory. Lower "
                f"hyperparameters.batch_size (now {batch_size}) and raise gradient_accumulation_steps to keep "
                f"the effective batch, lower max_length (now {options.max_length}), use method 'qlora' (now "
                f"'{method}'), keep gradient_checkpointing on (now {options.gradient_checkpointing}), "
                "or pick a larger GPU."
            ),
        )
    return ApiError(code="trainer_error", message=f"{type(exc).__name__}: {str(exc)[:500]}")


def train(job: Job, env: Environment, reporter: JobReporter) -> int:
    started = env.clock()
    world = env.world
    if not world.decide(reporter.running(env.execution, env.attempt, world.size)):
        log.info("job ended or paused before its trainer started; nothing to do", extra={"job_id": job.id})
        return 0

    # -- config: the job's plan, as the training service stored it (validated there) ------------
    dataset = owned.datasets(env.store).find_owned(job.owner, job.training_file)
    if dataset is None:
        raise TrainerError(
            "invalid_dataset", f"Dataset '{job.training_file}' does not exist (deleted?); upload it again"
        )
    config = read_config(job)
    spec = get(config.model)
    prefix = job_prefix(config.owner, config.job_id)
    if world.is_main:
        env.blobs.upload_bytes(
            prefix + "config.json", config.model_dump_json(indent=2).encode(), content_type="application/json"
        )
    torch.manual_seed(config.seed)
    trackers = Trackers(
        job.integrations if world.is_main else [],
        job_id=job.id,
        config=config.model_dump(mode="json"),
        blobs=env.blobs,
        prefix=prefix,
        secret=lambda name: env.secrets.get(config.owner, name),
        warn=lambda text: reporter.message(text, level="warn"),
    )
    reporter.on_close(trackers.close)

    # -- setup: processor, base model, adapters --------------------------------------------------
    reporter.phase(JobPhase.loading_model, f"Loading {spec.id} for {config.method}")
    token = hugging_face_token(env.secrets, config.owner) if not spec.is_tiny else None
    weights_path, processor, base = load_model(spec, config, env, token)
    fmt = ChatFormat(spec, processor)
    model = prepare_model(base, config, env.blobs)
    for level, text in setup.speed_switches(model, config):
        reporter.message(text, level=level)

    # -- data: encoded once, images processed once ----------------------------------------------
    reporter.phase(JobPhase.preparing_data, "Preparing data")
    # Every rank encodes the whole set: the batches are drawn from all of it, the same on every rank.
    data_started = env.clock()
    train_split = encode_training_set(env.blobs, fmt, config, reporter)
    data_seconds = env.clock() - data_started  # encoding grows with the set's tokens and images
    eval_examples = held_out(env.blobs, config) if world.is_main else []  # evaluated by rank 0 alone
    batches = Batches([len(example) for example in train_split.examples], config)
    total_steps = batches.total_steps()
    optimizer = setup.optimizer(model, config)
    scheduler = setup.scheduler(optimizer, config, total_steps)
    # What each step minimises: the answers' cross-entropy, or (dpo) the preference pairs' DPO loss.
    objective = objective_of(config, fmt.tokenizer.pad_token_id)
    training = Training(env, reporter, trackers, config, fmt, model, optimizer, scheduler, total_steps, objective)
    training.reported_step = job.steps_completed
    # Validation during training: a capped sample of the validation data, at intervals.
    valid = validation.prepare(env.blobs, fmt, config, total_steps)

    # -- resume: the newest checkpoint of an earlier attempt ----------------------------------
    position = resume(training, job.id)
    start_together(training, resumed=position.step > 0)
    # A resumed run's phases are split across tasks: not a measurement for the next estimates.
    first_attempt = position.step == 0

    metrics: dict[str, Any] = {}
    earlier_baseline = ((job.runtune or {}).get("metrics") or {}).get("baseline")
    if config.eval_baseline and earlier_baseline and position.step > 0:
        metrics["baseline"] = earlier_baseline  # measured by the attempt that wrote the checkpoint
    elif config.eval_baseline and eval_examples and position.step == 0:
        # The root base model (a continued job's too: its parent's adapter is switched off for it);
        # a dpo job's rewards are relative to the model it starts from, which is its baseline.
        reporter.phase(JobPhase.evaluating, "Evaluating the base model (baseline)")
        with nullcontext() if config.objective == "dpo" else setup.base_only(model, config):
            metrics["baseline"] = evaluate(model, fmt, config, eval_examples)
        reporter.update(runtune={**(job.runtune or {}), "metrics": {"baseline": finite(metrics["baseline"])}})
        reporter.message(f"Baseline: {headline(metrics['baseline'])}")

    # -- train -----------------------------------------------------------------------------------
    # Paused while loading: the position is the resumed checkpoint's (or 0), so nothing to save.
    if world.decide(
        reporter.stop_requested(force=True) == "pause" and reporter.paused(f"Paused at step {position.step}")
    ):
        return 0
    reporter.phase(JobPhase.training, f"Training {total_steps} steps")
    reporter.progress(position.step, total_steps, None, force=True)
    reset_peak_memory()
    training_started = env.clock()
    # The run's setup so far, from its process's start (interpreter, imports, load, data, baseline).
    setup_seconds = env.process_start_s + training_started - started
    cadence = Cadence(config, Deadline.from_env(started))
    times = StepTimes()
    while position.step < total_steps:
        group = batches.group(position)
        stats = loop.train_step(
            model,
            [[train_split.examples[i] for i in batch] for batch in group],
            optimizer=optimizer,
            scheduler=scheduler,
            pad_id=fmt.tokenizer.pad_token_id,
            pad_to_multiple_of=config.pad_to_multiple_of,
            max_grad_norm=config.max_grad_norm,
            world=world,
            accumulation=config.gradient_accumulation_steps,
            objective=objective,
        )
        position = batches.advance(position, len(group))
        times.add(stats.seconds)
        eta = times.eta(total_steps - position.step)
        # The end of an epoch (the position rolled over); the last epochs' ends are model checkpoints.
        model_checkpoint = position.batch == 0 and model_checkpoints.wanted(config, position.epoch)
        validate = valid.due(position.step) or (model_checkpoint and bool(valid.examples))
        measured = measure_validation(training, valid) if validate else {}
        record = report_step(training, stats, position, batches.epoch_progress(position), measured, eta)
        if model_checkpoint and world.is_main:
            save_model_checkpoint(env, reporter, config, model, processor, position.step, record)
        # Asked before the checkpoint: a pause checkpoints the step it stops at.
        stop = reporter.stop_requested()
        due = cadence.due(position.step, total_steps, times.slowest()) or stop == "pause"
        # Data-parallel: rank 0's stop flag and checkpoint decision, and a signal any rank received.
        stop, due, signum = step_boundary(world, stop, due, env.signals.signum)
        if due:
            save_checkpoint(training, position, record, cadence, eta)
        # A safe point: the step is complete and (maybe) checkpointed.
        if signum:  # every rank stops at this step; rank 0 records it and says how all exit
            env.signals.signum = env.signals.signum or signum
            return world.decide(env.signals.record(Stopped(signum)))
        if not world.distributed:
            # One process: a signal since the boundary stops it now. A group never stops one rank
            # alone (the others would wait on it in the next collective and see a lost peer): a
            # signal that lands after this boundary's exchange is agreed at the next one.
            env.signals.check()
        if world.decide(stopped_at(reporter, stop, position.step)):
            return 0
    if not world.is_main:
        return 0  # rank 0 alone evaluates and exports; the others' part is done
    reporter.progress(position.step, total_steps, 0, force=True)
    reporter.flush()

    # -- evaluate --------------------------------------------------------------------------------
    evaluation_started = env.clock()
    evaluated = len(eval_examples)
    env.signals.check()
    if eval_examples:
        reporter.phase(JobPhase.evaluating, f"Evaluating on {len(eval_examples)} held-out examples")
        metrics["final"] = evaluate(model, fmt, config, eval_examples)
        reporter.message(f"Evaluation: {headline(metrics['final'])}")
    history = training.history
    metrics["train"] = {"final_loss": history[-1]["loss"] if history else None, "steps": position.step}
    trackers.summary(finite(metrics))
    if reporter.cancel_requested(force=True):
        reporter.finish(JobStatus.cancelled, "Cancelled before export")
        return 0

    # -- export ----------------------------------------------------------------------------------
    env.signals.check()
    export_started = env.clock()
    reporter.phase(
        JobPhase.exporting, "Exporting the adapter" + (" and the merged model" if config.export_merged else "")
    )
    locations = export.export_adapter(
        env.blobs, config=config, spec=spec, model=model, processor=processor, metrics=finite(metrics)
    )
    env.blobs.upload_bytes(prefix + "history.json", _json(history), content_type="application/json")
    # Cloud Run's disk is memory: the merge below stages weights in the instance's RAM, so
    # everything training held is dropped first (the encoded dataset, the batches, the held-out
    # and validation examples, the optimizer state and the training model; the merge loads the unquantized base
    # once more). gc + empty_cache return it to the host and the GPU before the base loads.
    del model, base, optimizer, scheduler, training
    del train_split, batches, eval_examples, valid
    export.release_memory()
    if config.export_merged and config.method != "full":
        locations |= export.export_merged(
            env.blobs,
            config=config,
            spec=spec,
            weights_path=weights_path,
            processor=processor,
            metrics=finite(metrics),
            token=token,
        )
    if config.push_to_hub:
        hub_token = hugging_face_token(env.secrets, config.owner)
        locations["hub"] = export.push_to_hub(env.blobs, locations, config.push_to_hub, hub_token)
    trained_tokens = int(sum(record.get("tokens", 0) for record in history))
    # A dpo run's tokens cost another (reference) pass: not a measurement of the supervised rate.
    if first_attempt and config.objective == "supervised":
        timing = RunTiming(
            tokens=trained_tokens,
            steps=position.step,
            eval_examples=evaluated,
            setup_s=setup_seconds,
            data_s=data_seconds,
            train_s=evaluation_started - training_started,
            eval_s=export_started - evaluation_started,
            export_s=env.clock() - export_started,
        )
        record_timing(env, config, timing)
    reporter.finish(
        JobStatus.succeeded,
        "The job has successfully completed",
        phase=JobPhase.done.value,
        steps_completed=position.step,
        total_steps=total_steps,
        fine_tuned_model=tuned_model_id(config.model, config.job_id),
        trained_tokens=trained_tokens,
        runtune={
            "metrics": finite(metrics),
            "export": locations,
            "samples_seen": history[-1].get("samples_seen", 0) if history else 0,
            "seconds": int(env.clock() - started),
        },
    )
    return 0


def record_timing(env: Environment, config: TrainConfig, timing: RunTiming) -> None:
    """Keep the run's measured phases for the next estimates (runtune/throughput.py); a failure to
    record them never fails the job."""
    where = "local-gpu" if torch.cuda.is_available() else "local-cpu"
    try:
        machine = machine_name(config.gpu, where)
        throughput.record(env.store, model=config.model, machine=machine, method=config.method, run=timing)
    except Exception:
        log.exception("could not record the run's throughput", extra={"job_id": config.job_id})


# -- the training loop's parts -------------------------------------------------------------------


@dataclass
class Training:
    """What the loop's helpers share: where it reports, what it trains, and the metrics history
    (one record a step, resumed from the checkpoint; checkpoints carry it)."""

    env: Environment
    reporter: JobReporter
    trackers: Trackers
    config: TrainConfig
    fmt: ChatFormat
    model: Any
    optimizer: Any
    scheduler: Any
    total_steps: int
    objective: loop.Objective
    history: list[dict[str, Any]] = field(default_factory=list)
    reported_step: int = 0  # the job's `steps_completed` when this attempt started


class Batches:
    """The batches the loop draws: an epoch's are a pure function of (seed, epoch), so a resumed run
    draws the very batches the interrupted one would have."""

    def __init__(self, lengths: list[int], config: TrainConfig) -> None:
        self._lengths, self._config = lengths, config
        self._epoch = -1
        self._batches: list[list[int]] = []

    def of_epoch(self, epoch: int) -> list[list[int]]:
        """An epoch's batches: `batch_size` examples each, or by token budget (`batch_tokens`)."""
        config = self._config
        if config.batch_tokens is None:
            return data.epoch_batches(self._lengths, config.batch_size, config.seed, epoch)
        return data.token_batches(
            self._lengths,
            config.batch_tokens,
            config.batch_size * data.TOKEN_BATCH_FACTOR,
            config.seed,
            epoch,
            config.pad_to_multiple_of,
        )

    def total_steps(self) -> int:
        """The run's optimizer steps (by token budget an epoch's batch count depends on its draw)."""
        accumulation = self._config.gradient_accumulation_steps
        if self._config.batch_tokens is None:
            per_epoch = data.steps_per_epoch(len(self._lengths), self._config.batch_size, accumulation)
            return per_epoch * self._config.epochs
        return sum(math.ceil(len(self.of_epoch(epoch)) / accumulation) for epoch in range(self._config.epochs))

    def group(self, position: Position) -> list[list[int]]:
        """The next optimizer step's batches (the accumulation steps) from `position`."""
        if self._epoch != position.epoch:
            self._epoch = position.epoch
            self._batches = self.of_epoch(self._epoch)
        return self._batches[position.batch : position.batch + self._config.gradient_accumulation_steps]

    def advance(self, position: Position, taken: int) -> Position:
        """The position after a step that took `taken` batches: the next group, or the next epoch."""
        following = position.batch + taken
        if following >= len(self._batches):
            return Position(position.step + 1, position.epoch + 1, 0)
        return Position(position.step + 1, position.epoch, following)

    def epoch_progress(self, position: Position) -> float:
        """Epochs done, fractional (what the metrics show as `epoch`)."""
        return position.epoch + position.batch / len(self._batches)


class StepTimes:
    """The recent steps' durations: the time left, and the slowest step the deadline must hold."""

    WINDOW = 20

    def __init__(self) -> None:
        self._recent: list[float] = []

    def add(self, seconds: float) -> None:
        self._recent = [*self._recent[-(self.WINDOW - 1) :], seconds]

    def eta(self, steps_left: int) -> int:
        return int(sum(self._recent) / len(self._recent) * steps_left)

    def slowest(self) -> float:
        return max(self._recent)


@dataclass
class Cadence:
    """When a resume checkpoint is due: every N steps or M minutes, or when the task's deadline is
    near (a retried task resumes from it, not from far back). The last step is exported instead."""

    config: TrainConfig
    deadline: Deadline
    last: float = field(default_factory=time.monotonic)

    def due(self, step: int, total_steps: int, slowest_step_s: float) -> bool:
        due = (
            step % self.config.checkpoint_every_steps == 0
            or time.monotonic() - self.last >= self.config.checkpoint_every_minutes * 60
            or self.deadline.checkpoint_due(slowest_step_s)
        )
        return due and step < total_steps

    def saved(self, seconds: float) -> None:
        self.deadline.checkpointed(seconds)
        self.last = time.monotonic()


def objective_of(config: TrainConfig, pad_id: int) -> loop.Objective:
    if config.objective == "dpo":
        # The reference is the model the job starts from: the base, or the parent it continues.
        reference = preference.parent_adapter if config.parent_adapter else preference.adapter_disabled
        return preference.Dpo(config.beta, pad_id, config.pad_to_multiple_of, reference=reference)
    return loop.Supervised(pad_id, config.pad_to_multiple_of)


def encode_training_set(blobs: BlobStore, fmt: ChatFormat, config: TrainConfig, reporter: JobReporter) -> Any:
    """The training split encoded (as pairs for a dpo job; what is too long or has no answer
    skipped, and said), or a `TrainerError` when nothing is left to train on."""
    rows = read_split(blobs, config.owner, config.dataset_id, "train")
    split = data.encode_all(fmt, rows, config.max_length, pairs=config.objective == "dpo")
    if not split.examples:
        raise TrainerError(
            "invalid_dataset",
            f"No training example of dataset '{config.dataset_id}' can be trained on: "
            f"{split.skipped_too_long} are longer than max_length {config.max_length} (raise max_length) and "
            f"{split.skipped_invalid} have no assistant answer (every example needs one)",
        )
    if split.skipped_too_long or split.skipped_invalid:
        reporter.message(
            f"Skipped {split.skipped_too_long} examples longer than max_length and "
            f"{split.skipped_invalid} without an assistant answer",
            level="warn",
        )
    return split


def resume(training: Training, job_id: str) -> Position:
    """The position of the newest checkpoint of an earlier attempt, its weights, optimizer, scheduler
    and history restored into `run` (the start when there is none)."""
    world = training.env.world
    # Rank 0 picks the checkpoint; every rank restores that one.
    newest = world.decide(checkpoints.latest(training.env.store, job_id) if world.is_main else None)
    if newest is None:
        return Position()
    try:  # data only (safetensors, JSON), and refused unless it is this job's own layout
        restored = checkpoints.load_into(
            training.env.blobs, newest, training.model, training.optimizer, training.scheduler, rank=world.rank
        )
    except checkpoints.CheckpointError as exc:
        raise TrainerError(
            "invalid_checkpoint",
            f"The checkpoint at step {newest.get('step_number')} ({newest.get('prefix')}) was not loaded: {exc}",
        ) from exc
    training.history = restored.history
    # The last step the earlier attempt reported: in the log, or (written every few seconds, the log
    # every ten or at a checkpoint) the job's progress as this attempt found it.
    reported = max(training.reporter.resume_reporting(), training.reported_step)
    training.reporter.message(resumed_text(restored.position.step, reported, restored.history))
    return restored.position


def resumed_text(step: int, reported: int, history: list[dict[str, Any]]) -> str:
    """What a resume says: the checkpoint's step and, after an interruption that lost steps (the
    log reported steps beyond the checkpoint), how many are trained again and about how long that takes."""
    text = f"Resumed from the checkpoint at step {step}"
    redone = reported - step
    if redone <= 0:
        return text
    timed = [r["tokens"] / r["tokens_per_s"] for r in history if r.get("tokens") and r.get("tokens_per_s")]
    seconds = redone * sum(timed) / len(timed) if timed else None
    cost = "" if seconds is None else f", about {round(seconds)} s of training" if seconds >= 1 else ", under a second"
    return (
        f"{text} after an interruption at step {reported}: {redone} step{'s' if redone > 1 else ''} "
        f"since the checkpoint {'are' if redone > 1 else 'is'} trained again{cost}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}es" if noun.endswith("h") else f"{n} {noun}s"


def start_together(training: Training, *, resumed: bool) -> None:
    """Data-parallel: one starting point on every rank (rank 0's trainable weights, the same as the
    others' after the shared seed or the shared checkpoint), then each rank's own random stream
    (LoRA dropout) unless the checkpoint restored it; and rank 0 says how the batch is shared."""
    world, config = training.env.world, training.config
    if not world.distributed:
        return
    world.align([p for p in training.model.parameters() if p.requires_grad])
    if not resumed and world.rank:
        torch.manual_seed(config.seed + 7919 * world.rank)
    accumulation, batch = config.gradient_accumulation_steps, config.batch_size
    if accumulation % world.size == 0:
        share = _count(accumulation // world.size, "micro-batch") + f" of {batch}"
    else:
        share = _count(accumulation, "micro-batch") + f" of up to {math.ceil(batch / world.size)}"
    training.reporter.message(
        f"Data-parallel over {world.size} processes ({world.backend}): each takes {share} a step, "
        f"the planned batch of {batch * accumulation} examples a step in all"
    )


def measure_validation(training: Training, valid: validation.Validation) -> dict[str, float]:
    """`valid_loss` and `valid_token_accuracy` of the validation sample, as the model stands (shared
    among the ranks and all-reduced when data-parallel)."""
    pad_id = training.fmt.tokenizer.pad_token_id
    if isinstance(training.objective, preference.Dpo):
        return validation.measure_pairs(training.model, valid.examples, training.objective, world=training.env.world)
    return validation.measure(
        training.model,
        valid.examples,
        pad_id=pad_id,
        pad_to_multiple_of=training.config.pad_to_multiple_of,
        world=training.env.world,
    )


STOP_CODES: dict[StopRequest | None, int] = {None: 0, "cancel": 1, "pause": 2}


def step_boundary(
    world: World, stop: StopRequest | None, due: bool, signum: int | None
) -> tuple[StopRequest | None, bool, int]:
    """At a step's end, what every rank does: rank 0's stop flag and checkpoint decision (read from the
    store and the clock, which only rank 0 consults), and a stop signal if any rank received one, so a
    SIGTERM to any process stops all at this step. One process: its own values (the signal is then
    raised by `StopSignals.check`, as always)."""
    if not world.distributed:
        return stop, due, 0
    mine = (STOP_CODES[stop], int(due)) if world.is_main else (0, 0)
    code, agreed_due, agreed_signum = world.agree(*mine, signum or 0)
    return next(k for k, v in STOP_CODES.items() if v == code), bool(agreed_due), agreed_signum


def report_step(
    training: Training, stats: loop.StepStats, position: Position, epoch: float, measured: dict[str, float], eta: int
) -> dict[str, Any]:
    """The step's metrics record: kept in the history, written as a metrics event, logged to the
    trackers, and the job's progress moved on."""
    samples_seen = (training.history[-1].get("samples_seen", 0) if training.history else 0) + stats.samples
    record = finite(
        {
            "loss": stats.loss,
            **stats.metrics,
            **measured,
            "lr": stats.lr,
            "grad_norm": stats.grad_norm,
            "tokens": stats.tokens,
            "samples": stats.samples,
            "samples_seen": samples_seen,
            "tokens_per_s": stats.tokens / stats.seconds,
            "samples_per_s": stats.samples / stats.seconds,
            "epoch": epoch,
            "total_steps": training.total_steps,
            "eta_s": eta,
            "peak_memory_gib": peak_memory_gib(),
        }
    )
    training.history.append({"step": position.step, **record})
    training.reporter.metrics(position.step, record)
    training.trackers.log(position.step, record)
    training.reporter.progress(position.step, training.total_steps, eta)
    return record


def save_checkpoint(training: Training, position: Position, record: dict[str, Any], cadence: Cadence, eta: int) -> None:
    """A resume checkpoint at `position` (weights, optimizer, scheduler, RNG, data position, history),
    the oldest ones pruned."""
    env, config = training.env, training.config
    # Every rank's random state (its dropout stream), so a resumed rank continues its own.
    rng_ranks = env.world.gather(checkpoints.rng_state()) if env.world.distributed else None
    if not env.world.is_main:
        return  # rank 0 writes the checkpoint
    training.reporter.checkpointed(position.step, training.total_steps, eta)
    saving = time.monotonic()
    checkpoints.save(
        env.blobs,
        env.store,
        uid=config.owner,
        job_id=config.job_id,
        model_id=config.model,
        position=position,
        weights=setup.trainable_state(training.model),
        optimizer=training.optimizer,
        scheduler=training.scheduler,
        history=training.history,
        metrics={"step": float(position.step), "train_loss": record["loss"]},
        chat_template=training.fmt.chat_template,
        rng_ranks=rng_ranks,
    )
    cadence.saved(time.monotonic() - saving)
    checkpoints.prune(env.blobs, env.store, config.job_id)
    training.reporter.message(f"Checkpoint saved at step {position.step}")
    training.trackers.sync()


def stopped_at(reporter: JobReporter, stop: StopRequest | None, step: int) -> bool:
    """Ends the job as asked at this safe point (cancelled, or paused after its checkpoint); whether
    it did, so the loop returns."""
    if stop == "cancel":
        reporter.finish(JobStatus.cancelled, f"Cancelled at step {step}")
        return True
    return stop == "pause" and reporter.paused(f"Paused at step {step}")


def save_model_checkpoint(
    env: Environment,
    reporter: JobReporter,
    config: TrainConfig,
    model: Any,
    processor: Any,
    step: int,
    record: dict[str, Any],
) -> None:
    """The adapter at this epoch's end as a model checkpoint with OpenAI's metrics, and the job's best
    checkpoint (lowest validation loss among the job's model checkpoints) updated."""
    names = {
        "train_loss": "loss",
        "train_mean_token_accuracy": "token_accuracy",
        "valid_loss": "valid_loss",
        "valid_mean_token_accuracy": "valid_token_accuracy",
    }
    metrics = {"step": float(step)} | {
        name: float(record[key]) for name, key in names.items() if isinstance(record.get(key), int | float)
    }
    saved = model_checkpoints.save(
        env.blobs,
        env.store,
        config=config,
        spec=get(config.model),
        model=model,
        processor=processor,
        step=step,
        metrics=metrics,
    )
    best = model_checkpoints.best([stored.checkpoint for stored in owned.JobCheckpoints(env.store).list(config.job_id)])
    if best is not None:
        reporter.update(best_checkpoint=best.fine_tuned_model_checkpoint)
    reporter.message(f"Model checkpoint {saved.fine_tuned_model_checkpoint} saved")


def load_model(spec: Any, config: TrainConfig, env: Environment, token: str | None) -> tuple[str, Any, Any]:
    """The weights' location, the processor and the base model (quantized for QLoRA), or a
    `TrainerError` saying what to fix."""
    try:
        mount = data_mount(env.settings.bucket)  # Cloud Run's volume, or Vertex AI's /gcs/<bucket>
        weights_path = locate_weights(spec, local_dir=env.settings.local_dir, blobs=env.blobs, mount=mount)
        processor = load_processor(spec, weights_path, token=token)
        base = setup.load_base(spec, weights_path, config.method, token=token)
    except (OSError, ValueError, KeyError) as exc:
        if "out of memory" in str(exc).lower():
            raise
        hint = (
            f"Check that '{spec.hf_id}' exists, that you accepted its license on huggingface.co, and that your "
            "Hugging Face token (the 'hf_token' secret, PUT /v1/secrets/hf_token) may read it"
            if spec.hf_id
            else f"Delete the local folder of '{spec.id}' so that it is built again"
        )
        raise TrainerError(
            "model_unavailable", f"Could not load the weights of '{spec.id}': {str(exc)[:300]}. {hint}."
        ) from exc
    return weights_path, processor, base


def prepare_model(base: Any, config: TrainConfig, blobs: BlobStore) -> Any:
    """The model to train: a new adapter on `base`, or (continued fine-tuning) the parent model's
    adapter, downloaded and loaded trainable; a parent whose files are gone (its model deleted after
    this job was planned) is a `TrainerError`."""
    if config.parent_adapter is None:
        return setup.prepare(base, config)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "parent"
        files = export.download_dir(blobs, config.parent_adapter, folder)
        if not any(file.name == "adapter_model.safetensors" for file in files):
            raise TrainerError(
                "model_not_found",
                f"The adapter of '{config.parent_model}', which this job continues, is gone (was the model deleted?)",
            )
        return setup.prepare(base, config, adapter=folder)


def held_out(blobs: BlobStore, config: TrainConfig) -> list[Example]:
    """The evaluation examples: the validation dataset if given, else the asked split (or the other)."""
    for dataset_id, split in held_out_sources(config.dataset_id, config.validation_dataset_id, config.eval_split):
        examples = list(read_split(blobs, config.owner, dataset_id, split))
        if examples:
            return examples[: config.eval_max_samples] if config.eval_max_samples else examples
    return []


def evaluate(model: Any, fmt: ChatFormat, config: TrainConfig, examples: list[Example]) -> dict[str, Any]:
    if config.objective == "dpo":
        # Held-out pairs: how often the implicit reward prefers the preferred answer, and by how much.
        pairs = data.encode_all(fmt, examples, config.max_length, pairs=True).examples
        objective = objective_of(config, fmt.tokenizer.pad_token_id)
        assert isinstance(objective, preference.Dpo)
        return {"preference": preference.evaluate_pairs(model, pairs, objective)}
    if config.task_kind is TaskKind.classification:
        # Label scoring always (cheap, and what the headline reports); free generation when asked.
        with_generation = config.eval_method in ("generation", "both")
        return evaluation.evaluate_classification(model, fmt, examples, config.labels, with_generation=with_generation)
    return evaluation.evaluate_generation(model, fmt, examples, with_generation=True)


def headline(result: dict[str, Any]) -> str:
    if "preference" in result:
        pairs = result["preference"]
        return f"reward accuracy {pairs['reward_accuracy']:.3f}, reward margin {pairs['reward_margin']:.3f}"
    if "label_scoring" in result:
        scored = result["label_scoring"]
        return f"accuracy {scored['accuracy']:.3f}, macro-F1 {scored['macro_f1']:.3f}"
    return f"loss {result['loss']:.3f}, exact match {result.get('exact_match', float('nan')):.3f}"


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib() -> float:
    """Peak accelerator memory (GPU); on the CPU, the process's peak resident memory."""
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)  # KiB -> GiB


def hugging_face_token(secrets: SecretStore, owner: str) -> str | None:
    """The user's Hugging Face token: the `hf_token` secret (as the datasets' Hub imports use it). Users'
    secrets come from the secrets port only: never logged, never in the job document, never in the
    launch's environment."""
    return next((token for name in HUB_TOKEN_SECRETS if (token := secrets.get(owner, name))), None)


def finite(value: Any) -> Any:
    """Firestore- and JSON-safe: no NaN/inf (None instead), string keys only."""
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json(value: Any) -> bytes:
    import json

    return json.dumps(finite(value)).encode()
