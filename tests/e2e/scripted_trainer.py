"""A stand-in for `python -m jobs.trainer` in the jobs API tests: it honours the trainer's contract
(argv `[job_id]`, the `CLOUD_RUN_*` environment, status, heartbeat, events, checkpoints, the cancel
flag; its first event names the Cloud Run job it runs as) with a behaviour picked by the job's
`metadata.script`, in seconds instead of minutes:

- `succeed`: run 6 steps, write metrics events (validation at steps 3 and 6; a dpo job's rewards) and
  a model checkpoint, end `succeeded`;
- `hang`: report `running` once, then stop heartbeating while staying alive;
- `crash`: report `running`, then exit 3 without finishing the job;
- `slow`: run steps for up to a minute, checking the cancel flag, so a test can cancel it;
- `hold:<phase>` (`loading_model`, `preparing_data`, `training`, `evaluating`, `exporting`): show that
  phase and stay in it, heartbeating, the cancel flag unread, until stopped: a trainer busy where it
  has no safe point, which only the jobs API's stop of the execution (SIGTERM) ends.

A job without `metadata.script` is handed to the real trainer (`python -m jobs.trainer`).

The real trainer's end-to-end tests are in tests/trainer.
"""

from __future__ import annotations

import os
import sys
import time

from runtune.jobs.events import JobEventLog, NewEvent
from runtune.schemas.jobs import (
    Checkpoint,
    Job,
    JobPhase,
    JobStatus,
    checkpoint_id,
    checkpoint_model_id,
    job_path,
    model_checkpoint_path,
    tuned_model_id,
)
from runtune.settings import CommonSettings
from runtune.training.reporting import JobReporter
from runtune.wiring import metadata_store


def main(job_id: str) -> int:
    store = metadata_store(CommonSettings(), deployable="trainer")
    events = JobEventLog(store)
    job = Job.model_validate(store.get(job_path(job_id)))
    script = (job.metadata or {}).get("script")
    if script is None:  # not a scripted job: the real trainer takes it, same argv and environment
        os.execv(sys.executable, [sys.executable, "-m", "jobs.trainer", job_id])

    def report(**fields: object) -> Job:
        store.update(job_path(job_id), {"heartbeat_at": time.time(), **fields})
        return Job.model_validate(store.get(job_path(job_id)))

    report(status=JobStatus.running.value, phase=JobPhase.training.value, total_steps=6)
    # The Cloud Run job it runs as (runtune-trainer-<gpu>): the GPU tests read it back from this event.
    events.add(
        job_id,
        f"Trainer started (execution {os.environ.get('CLOUD_RUN_EXECUTION')}, job {os.environ.get('CLOUD_RUN_JOB')})",
    )
    if script == "crash":
        return 3
    if script.startswith("hold:"):
        report(phase=JobPhase(script.removeprefix("hold:")).value)
        events.add(job_id, f"Holding in {script.removeprefix('hold:')}")
        while True:
            time.sleep(1)
            report()
    if script == "hang":
        time.sleep(600)
        return 0
    steps = 6 if script == "succeed" else 600
    for step in range(1, steps + 1):
        time.sleep(0.1)
        current = report(steps_completed=step)
        if current.cancel_requested:
            report(status=JobStatus.cancelled.value, finished_at=int(time.time()))
            events.add(job_id, "Job cancelled")
            return 0
        data = {"step": step, "train_loss": 2.0 / step}
        if job.method_asked.type == "dpo":  # a dpo job's step reports its rewards, as the real trainer does
            data |= {"reward_accuracy": 0.5 + step / 12, "reward_margin": step / 6}
            data |= {"chosen_reward": step / 12, "rejected_reward": -step / 12}
        if step % 3 == 0:  # validation every few steps, in the step's event, as the real trainer reports it
            data |= {"valid_loss": 2.5 / step, "valid_token_accuracy": step / 10}
        events.append(job_id, [NewEvent(f"step {step}", type="metrics", data=data)])
        if step == 3:
            checkpoint = Checkpoint(
                id=checkpoint_id(job_id, 3),
                created_at=int(time.time()),
                fine_tuned_model_checkpoint=checkpoint_model_id(job.base_model, job_id, 3),
                fine_tuning_job_id=job_id,
                step_number=3,
                metrics={"step": 3, "train_loss": 0.66},
            )
            # As runtune.training.model_checkpoints writes it (the adapter's files are the test's to put).
            adapter = f"users/{job.owner}/jobs/{job_id}/export/checkpoints/step-000003/"
            store.set(model_checkpoint_path(job_id, 3), checkpoint.model_dump(mode="json") | {"adapter": adapter})
    # Named as the real trainer names it: a continued job's model is on its chain's root (`ft:<root>:<job>`).
    # Ended through the real trainer's reporter: its last event before the status (a reader that sees
    # the job ended, the SSE stream, has its last event to read), and the webhook event written in
    # the status's own transaction.
    JobReporter(store, job_id).finish(
        JobStatus.succeeded,
        "The job has successfully completed",
        fine_tuned_model=tuned_model_id(job.base_model, job_id),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
