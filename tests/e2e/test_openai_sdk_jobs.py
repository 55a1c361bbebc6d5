"""The unmodified `openai` SDK against the gateway, an Auth-emulator ID token as its API key."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.datasets.builders import chat_line, preference_line
from tests.datasets.client import api, create, upload
from tests.e2e.jobs_support import put_dataset, wait_for
from tests.support import cli_login

pytestmark = pytest.mark.platform


def test_fine_tuning_jobs_through_the_sdk(platform, user, sdk: OpenAI) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    job = sdk.fine_tuning.jobs.create(
        model="tiny-gemma-3-vision",
        training_file=dataset_id,
        suffix="pets",
        seed=7,
        metadata={"script": "succeed"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    )
    assert job.id.startswith("ftjob-") and job.seed == 7
    assert job.hyperparameters.n_epochs == 2
    assert job.method is not None and job.method.type == "supervised"

    wait_for(lambda: sdk.fine_tuning.jobs.retrieve(job.id).status == "succeeded")
    done = sdk.fine_tuning.jobs.retrieve(job.id)
    assert done.fine_tuned_model and done.fine_tuned_model.startswith("ft:tiny-gemma-3-vision:")

    listed = sdk.fine_tuning.jobs.list(limit=10)
    assert job.id in [item.id for item in listed.data]

    events = sdk.fine_tuning.jobs.list_events(job.id, limit=50)
    assert events.data[0].message == "The job has successfully completed"
    assert {event.object for event in events.data} == {"fine_tuning.job.event"}
    assert any(event.type == "metrics" for event in events.data)

    checkpoints = sdk.fine_tuning.jobs.checkpoints.list(job.id)
    assert [c.step_number for c in checkpoints.data] == [3]
    assert checkpoints.data[0].metrics.train_loss == pytest.approx(0.66)
    assert checkpoints.data[0].fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-3"

    models = [model.id for model in sdk.models.list().data]
    assert "tiny-gemma-3-vision" in models and done.fine_tuned_model in models


def test_cancel_and_errors_through_the_sdk(platform, user, sdk: OpenAI) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    job = sdk.fine_tuning.jobs.create(
        model="tiny-gemma-3-vision", training_file=dataset_id, metadata={"script": "slow"}
    )
    wait_for(lambda: sdk.fine_tuning.jobs.retrieve(job.id).status == "running")
    assert sdk.fine_tuning.jobs.cancel(job.id).id == job.id
    wait_for(lambda: sdk.fine_tuning.jobs.retrieve(job.id).status == "cancelled")

    with pytest.raises(openai.BadRequestError) as bad:
        sdk.fine_tuning.jobs.create(model="no-such-model", training_file=dataset_id)
    assert bad.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        sdk.fine_tuning.jobs.retrieve("ftjob-does-not-exist")
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{platform.gateway_url}/v1", api_key="forged", max_retries=0).fine_tuning.jobs.list()


def _chat_jsonl(rows: int) -> bytes:
    return ("\n".join(chat_line(f"Which colour is number {i}?", "red") for i in range(rows)) + "\n").encode()


def test_a_dpo_job_through_the_sdk_on_a_preference_file(sdk: OpenAI) -> None:
    """OpenAI's DPO call, unmodified: a preference JSONL uploaded, a `dpo` job created on it at once
    (beta given, the rest auto), its events and checkpoints listed; a preference file is refused for
    a supervised job and a chat file for a dpo job, each naming the training file."""
    lines = [preference_line(f"Greet visitor {i}", f"Good morning, visitor {i}!", "what") for i in range(12)]
    body = ("\n".join(lines) + "\n").encode()
    file = sdk.files.create(file=("prefs.jsonl", body, "application/x-ndjson"), purpose="fine-tune")
    job = sdk.fine_tuning.jobs.create(
        model="tiny-gemma-3-vision",
        training_file=file.id,
        metadata={"script": "succeed"},
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}},
    )
    assert job.method is not None and job.method.type == "dpo" and job.method.supervised is None
    wait_for(lambda: sdk.fine_tuning.jobs.retrieve(job.id).status == "succeeded")
    done = sdk.fine_tuning.jobs.retrieve(job.id)
    assert done.method is not None and done.method.dpo is not None
    shown = done.method.dpo.hyperparameters
    assert shown is not None and shown.beta == 0.2 and isinstance(shown.n_epochs, int)
    events = sdk.fine_tuning.jobs.list_events(job.id, limit=50)
    assert events.data[0].message == "The job has successfully completed"
    assert [c.step_number for c in sdk.fine_tuning.jobs.checkpoints.list(job.id).data] == [3]

    with pytest.raises(openai.BadRequestError) as refused:
        sdk.fine_tuning.jobs.create(model="tiny-gemma-3-vision", training_file=file.id)
    assert refused.value.body["param"] == "training_file" and "dpo" in refused.value.body["message"]
    chat = sdk.files.create(file=("chat.jsonl", _chat_jsonl(12), "application/x-ndjson"), purpose="fine-tune")
    wait_for(lambda: sdk.files.retrieve(chat.id).status == "processed")
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.fine_tuning.jobs.create(model="tiny-gemma-3-vision", training_file=chat.id, method={"type": "dpo"})
    assert refused.value.body["param"] == "training_file" and "preference" in refused.value.body["message"]


def test_files_create_then_jobs_create_at_once_as_openai_quickstart(sdk: OpenAI) -> None:
    """OpenAI's quickstart: upload, then create the job without waiting; the job waits for the file."""
    file = sdk.files.create(file=("train.jsonl", _chat_jsonl(12), "application/x-ndjson"), purpose="fine-tune")
    job = sdk.fine_tuning.jobs.create(
        model="tiny-gemma-3-vision", training_file=file.id, metadata={"script": "succeed"}
    )
    assert job.status in ("validating_files", "queued", "running")
    wait_for(lambda: sdk.fine_tuning.jobs.retrieve(job.id).status in ("succeeded", "failed", "cancelled"))
    done = sdk.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    # `auto` was resolved once the file was ready, from its examples.
    assert isinstance(done.hyperparameters.n_epochs, int)
    messages = [event.message for event in sdk.fine_tuning.jobs.list_events(job.id, limit=100).data]
    assert "Validating training file" in messages and "Job queued" in messages


def test_a_bad_file_fails_the_job_naming_the_file_and_its_problem(sdk: OpenAI) -> None:
    bad = b'{"messages": "not a list"}\n'
    file = sdk.files.create(file=("bad.jsonl", bad, "application/x-ndjson"), purpose="fine-tune")
    try:
        job = sdk.fine_tuning.jobs.create(
            model="tiny-gemma-3-vision", training_file=file.id, metadata={"script": "succeed"}
        )
    except openai.BadRequestError as refused:
        # Ingestion finished first: a file known bad is refused at once, with the same code.
        assert refused.body["code"] == "invalid_training_file" and file.id in refused.body["message"]
        return
    wait_for(lambda: sdk.fine_tuning.jobs.retrieve(job.id).status == "failed")
    failed = sdk.fine_tuning.jobs.retrieve(job.id)
    assert failed.error is not None and failed.error.code == "invalid_training_file"
    assert file.id in failed.error.message and failed.error.param == "training_file"
    problem = sdk.files.retrieve(file.id).status_details
    assert problem and problem in failed.error.message
    with pytest.raises(openai.BadRequestError) as known_bad:
        sdk.fine_tuning.jobs.create(model="tiny-gemma-3-vision", training_file=file.id)
    assert known_bad.value.body["code"] == "invalid_training_file"


def test_a_job_waits_for_its_file_and_fails_when_the_file_is_deleted(platform, user, sdk: OpenAI) -> None:
    with api(platform.gateway_url, user["id_token"]) as client:
        made = upload(client, "big.jsonl", _chat_jsonl(200))
        # `hold-`: the scripted ingestion stops mid-way (tests/e2e/scripted_ingest.py), so the file
        # stays processing for as long as this test needs.
        dataset = create(client, made["id"], name="hold-quickstart")
        job = sdk.fine_tuning.jobs.create(
            model="tiny-gemma-3-vision", training_file=dataset["id"], metadata={"script": "succeed"}
        )
        assert job.status == "validating_files"
        assert sdk.fine_tuning.jobs.retrieve(job.id).status == "validating_files"
        waiting = sdk.fine_tuning.jobs.create(
            model="tiny-gemma-3-vision", training_file=dataset["id"], metadata={"script": "succeed"}
        )
        # Cancelled while it waits for its file: it never launches.
        assert sdk.fine_tuning.jobs.cancel(waiting.id).status == "cancelled"
        assert client.delete(f"/v1/datasets/{dataset['id']}").status_code == 200
    wait_for(lambda: sdk.fine_tuning.jobs.retrieve(job.id).status == "failed")
    failed = sdk.fine_tuning.jobs.retrieve(job.id)
    assert failed.error is not None and failed.error.code == "invalid_training_file"
    assert dataset["id"] in failed.error.message and "deleted" in failed.error.message
    assert sdk.fine_tuning.jobs.retrieve(waiting.id).status == "cancelled"


def test_the_cli_lists_a_jobs_checkpoints(platform, tmp_path, monkeypatch) -> None:

    from runtune.cli.main import app

    runner, account = cli_login(platform, tmp_path, monkeypatch)
    mine = OpenAI(base_url=f"{platform.gateway_url}/v1", api_key=account["id_token"], max_retries=0)
    job = mine.fine_tuning.jobs.create(
        model="tiny-gemma-3-vision", training_file=put_dataset(platform, account["uid"]), metadata={"script": "succeed"}
    )
    wait_for(lambda: mine.fine_tuning.jobs.retrieve(job.id).status == "succeeded")
    result = runner.invoke(app, ["jobs", "checkpoints", job.id], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert f"ft:tiny-gemma-3-vision:{job.id}:ckpt-step-3" in result.output and "0.6600" in result.output
    result = runner.invoke(app, ["jobs", "checkpoints", "ftjob-nope"])
    assert result.exit_code == 1
