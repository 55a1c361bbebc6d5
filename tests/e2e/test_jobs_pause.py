"""Pause and resume with the unmodified `openai` SDK (`fine_tuning.jobs.pause` / `.resume`) against
the whole local platform and the real trainer on a tiny Gemma 3 vision model: paused mid-training
the job runs nothing and holds no slot; resumed, it continues from the pause's checkpoint and
succeeds with one metrics point per step, in order, none repeated. And `runtune jobs pause/resume`."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from runtune.cli.main import app
from runtune.schemas import DatasetStatus
from tests.e2e.jobs_support import put_dataset, put_demo_dataset, supervised_method, trainer_pids, wait_for
from tests.support import cli_login

# The real trainer runs twice (before and after the pause) on a machine that may be busy.
pytestmark = [pytest.mark.platform, pytest.mark.timeout(840)]

# 24 steps. The platform's trainers read the stop flags after every step (RUNTUNE_STOP_POLL_S), so a
# pause asked as training starts lands after the steps of the few tenths of a second the request
# takes: one or two on a busy machine, a handful on a fast one, never past the end; and the rest of
# the run stays short on a slow machine.
COUNTS = {"train": 48, "validation": 8, "test": 8}
# No periodic checkpoint: the one resume starts from is the pause's own.
METHOD = supervised_method(1, 2, checkpoint_every_steps=100_000)


def _status(sdk: OpenAI, job_id: str) -> str:
    return sdk.fine_tuning.jobs.retrieve(job_id).status


def _extra(sdk: OpenAI, job_id: str) -> dict:
    """Runtune's fields beyond OpenAI's job object (the SDK keeps them as extras)."""
    return sdk.fine_tuning.jobs.retrieve(job_id).model_extra or {}


def test_pause_mid_training_then_resume_to_success_with_step_continuity(platform, user, sdk: OpenAI) -> None:
    dataset_id = put_demo_dataset(platform, user["uid"], COUNTS)
    job = sdk.fine_tuning.jobs.create(model="tiny-gemma-3-vision", training_file=dataset_id, method=METHOD)
    wait_for(lambda: _extra(sdk, job.id).get("phase") == "training", timeout_s=400, every_s=0.2)

    asked = sdk.fine_tuning.jobs.pause(job.id)
    assert asked.id == job.id and asked.status == "running"  # until the trainer has checkpointed
    wait_for(lambda: _status(sdk, job.id) == "paused", timeout_s=120)
    assert sdk.fine_tuning.jobs.pause(job.id).status == "paused"  # idempotent
    wait_for(lambda: not trainer_pids(job.id), timeout_s=60)  # no execution runs
    step, total = _extra(sdk, job.id)["steps_completed"], _extra(sdk, job.id)["total_steps"]
    assert 0 < step < total == 24
    # The user's one slot (RUNTUNE_MAX_RUNNING_JOBS_PER_USER=1) is free: another job runs meanwhile.
    other = sdk.fine_tuning.jobs.create(
        model="tiny-gemma-3-vision", training_file=put_dataset(platform, user["uid"]), metadata={"script": "succeed"}
    )
    wait_for(lambda: _status(sdk, other.id) == "succeeded", timeout_s=120)
    assert _status(sdk, job.id) == "paused"

    resumed = sdk.fine_tuning.jobs.resume(job.id)
    assert resumed.status in ("queued", "running")
    wait_for(lambda: _status(sdk, job.id) in ("succeeded", "failed", "cancelled"), timeout_s=600, every_s=2)
    done = sdk.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model and _extra(sdk, job.id)["steps_completed"] == total

    events = list(sdk.fine_tuning.jobs.list_events(job.id, limit=100))  # the SDK pages through them all
    messages = [event.message for event in events]
    assert f"Paused at step {step}" in messages and f"Resumed from the checkpoint at step {step}" in messages
    steps = [event.data["step"] for event in reversed(events) if event.type == "metrics"]  # oldest first
    assert steps == list(range(1, total + 1))  # across the pause: strictly increasing, none repeated or lost

    with pytest.raises(openai.BadRequestError) as finished:
        sdk.fine_tuning.jobs.pause(job.id)
    assert finished.value.body["code"] == "job_finished"
    with pytest.raises(openai.BadRequestError) as not_paused:
        sdk.fine_tuning.jobs.resume(job.id)
    assert not_paused.value.body["code"] == "job_finished"


def test_pause_and_resume_from_the_command_line(platform, tmp_path, monkeypatch) -> None:
    runner, account = cli_login(platform, tmp_path, monkeypatch)
    sdk = OpenAI(base_url=f"{platform.gateway_url}/v1", api_key=account["id_token"], max_retries=0)
    # A file still processing: the job waits in `validating_files`, where a pause is immediate.
    file_id = put_dataset(platform, account["uid"], status=DatasetStatus.processing)
    job = sdk.fine_tuning.jobs.create(model="tiny-gemma-3-vision", training_file=file_id)
    assert job.status == "validating_files"

    paused = runner.invoke(app, ["jobs", "pause", job.id])
    assert paused.exit_code == 0 and f"{job.id}: paused" in paused.output, paused.output
    resumed = runner.invoke(app, ["jobs", "resume", job.id])
    assert resumed.exit_code == 0 and "validating_files (resumed)" in resumed.output, resumed.output
    again = runner.invoke(app, ["jobs", "resume", job.id])
    assert again.exit_code == 1 and "not paused" in again.output, again.output
    assert runner.invoke(app, ["jobs", "pause", job.id]).exit_code == 0
    cancelled = runner.invoke(app, ["jobs", "cancel", job.id])
    assert cancelled.exit_code == 0 and _status(sdk, job.id) == "cancelled"
