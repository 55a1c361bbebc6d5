"""Continued fine-tuning on the local platform with the real trainer, run on the model of
`test_jobs_real_trainer.test_real_job_streams_to_success` (its first job): a job on the caller's own
`ft:` model, created through the unmodified `openai` SDK, starts from that model's adapter, so its
loss starts where the first job's ended; its model records its lineage; another user cannot name it."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.e2e.jobs_support import put_demo_dataset, sdk_job_succeeded
from tests.support import sign_up

BASE = "tiny-gemma-3-vision"
# No held-out split: the job spends no time evaluating.
METHOD = {
    "type": "supervised",
    "supervised": {
        "hyperparameters": {"n_epochs": 1, "batch_size": 4},
        "runtune": {"checkpoint_every_steps": 100, "export": {"merged": False}},
    },
}


def check_continues(platform, sdk: OpenAI, uid: str, parent: str, before: list[float]) -> None:
    """A job on `parent` (a model of `uid`'s, whose job's loss curve was `before`) continues it."""
    # The first 16 images of the demo set the parent trained on: 4 steps show where the loss starts.
    dataset_id = put_demo_dataset(platform, uid, {"train": 16})
    second = sdk.fine_tuning.jobs.create(model=parent, training_file=dataset_id, method=METHOD)  # type: ignore[arg-type]
    assert second.model == parent
    lineage = {"root": BASE, "parent": parent, "chain": [BASE, parent]}
    assert second.model_extra["lineage"] == lineage
    done = sdk_job_succeeded(sdk, second.id)
    assert done.fine_tuned_model == f"ft:{BASE}:{second.id}"

    # It continued: its loss starts near where the first job's ended, far below where that began (a
    # new adapter starts at the base model's loss, `before[0]`).
    points = sdk.get(f"/fine_tuning/jobs/{second.id}/metrics", cast_to=object)["data"]  # type: ignore[index]
    after = [point["loss"] for point in points]
    assert len(after) == 4
    start, end, resumed = sum(before[:2]) / 2, sum(before[-4:]) / 4, sum(after) / 4
    assert end < 0.85 * start, before
    assert resumed < end + 0.35 * (start - end), (before, after)

    # The model shows its lineage (Runtune's field; OpenAI's stay as they are), and its parent its own.
    model = sdk.models.retrieve(done.fine_tuned_model)
    assert (model.id, model.object, model.owned_by) == (done.fine_tuned_model, "model", uid)
    assert model.model_extra["parent"] == parent and model.model_extra["lineage"] == lineage
    assert sdk.models.retrieve(parent).model_extra["lineage"] == {"root": BASE, "parent": BASE, "chain": [BASE]}

    # Another user's attempt to continue it is the 404 of an unknown model, naming `model`.
    other = sign_up(platform.auth_host)
    stranger = OpenAI(base_url=f"{platform.gateway_url}/v1", api_key=other["id_token"], max_retries=0)
    theirs = put_demo_dataset(platform, other["uid"], {"train": 4})
    with pytest.raises(openai.NotFoundError) as refused:
        stranger.fine_tuning.jobs.create(model=parent, training_file=theirs)
    body: dict = refused.value.body  # type: ignore[assignment]
    assert body["param"] == "model"
    assert body["message"] == f"The model '{parent}' does not exist or you do not have access to it."
