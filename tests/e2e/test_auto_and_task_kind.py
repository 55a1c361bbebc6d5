"""Through the unmodified `openai` SDK: a chat JSONL whose answers are three colours is detected as
classification (labels in its stats) unless the upload says otherwise, and a job left on `auto` shows
the numbers it trains with and why, as OpenAI's job does."""

from __future__ import annotations

import pytest
from openai import OpenAI

from tests.datasets.builders import colour_chat_jsonl
from tests.datasets.client import api
from tests.e2e.jobs_support import wait_for

pytestmark = pytest.mark.platform


def _processed(sdk: OpenAI, file_id: str) -> None:
    wait_for(lambda: sdk.files.retrieve(file_id).status in ("processed", "error"), timeout_s=90)
    assert sdk.files.retrieve(file_id).status == "processed"


def test_a_closed_answer_set_is_classification_and_auto_is_resolved_on_the_job(platform, user, sdk) -> None:
    data = colour_chat_jsonl()
    file = sdk.files.create(file=("colours.jsonl", data, "application/x-ndjson"), purpose="fine-tune")
    job = sdk.fine_tuning.jobs.create(
        model="tiny-gemma-3-vision", training_file=file.id, metadata={"script": "succeed"}
    )
    _processed(sdk, file.id)
    with api(platform.gateway_url, user["id_token"]) as client:
        stats = client.get(f"/v1/datasets/{file.id}/stats").json()
        dataset = client.get(f"/v1/datasets/{file.id}").json()
    assert stats["task_kind"] == "classification" and stats["labels"] == ["blue", "green", "red"]
    assert dataset["label_counts"] == {"blue": 12, "green": 12, "red": 12}
    # Stratified by label: each colour in every split (the stats count them per split).
    assert stats["label_counts"]["test"] == {"blue": 1, "green": 1, "red": 1}
    assert "one of 3 short answers" in stats["task_kind_reason"]

    wait_for(lambda: sdk.fine_tuning.jobs.retrieve(job.id).status not in ("validating_files", "queued"))
    done = sdk.fine_tuning.jobs.retrieve(job.id)
    hp = done.hyperparameters
    assert all(isinstance(value, int | float) for value in (hp.n_epochs, hp.batch_size, hp.learning_rate_multiplier))
    assert done.method is not None and done.method.supervised is not None
    assert done.method.supervised.hyperparameters.n_epochs == hp.n_epochs
    auto = (done.model_extra or {})["auto_hyperparameters"]
    assert set(auto) == {"n_epochs", "batch_size", "learning_rate_multiplier", "method"}
    train = stats["splits"]["train"]
    assert f"{train} examples" in auto["n_epochs"] and hp.n_epochs > 3  # a small set gets more passes


def test_the_upload_can_name_the_task_kind(platform, user, sdk) -> None:
    file = sdk.files.create(
        file=("colours.jsonl", colour_chat_jsonl(), "application/x-ndjson"),
        purpose="fine-tune",
        extra_body={"task_kind": "generation"},
    )
    _processed(sdk, file.id)
    with api(platform.gateway_url, user["id_token"]) as client:
        stats = client.get(f"/v1/datasets/{file.id}/stats").json()
    assert stats["task_kind"] == "generation" and stats["labels"] == []
    assert stats["task_kind_reason"] == "given in the request"
