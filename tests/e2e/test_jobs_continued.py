"""Continued fine-tuning on the local platform with the real trainer: a job on one of the caller's own
`ft:` models (through the unmodified `openai` SDK) starts from that model's adapter, so its loss
starts where the first job's ended; its model records its lineage; another user cannot name it."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.e2e.jobs_support import put_demo_dataset, wait_for
from tests.support import sign_up

pytestmark = pytest.mark.platform

BASE = "tiny-gemma-3-vision"
# No held-out splits: neither job spends time evaluating.
SMALL = {"train": 24}


def _method(epochs: int) -> dict:
    return {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {"n_epochs": epochs, "batch_size": 4},
            "runtune": {"checkpoint_every_steps": 100, "export": {"merged": False}},
        },
    }


def _succeeded(sdk: OpenAI, job_id: str) -> openai.types.fine_tuning.FineTuningJob:
    def ended():
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        return job if job.status in ("succeeded", "failed", "cancelled") else None

    job = wait_for(ended, timeout_s=600, every_s=1)
    assert job.status == "succeeded", job.error
    return job


def _losses(sdk: OpenAI, job_id: str) -> list[float]:
    points = sdk.get(f"/fine_tuning/jobs/{job_id}/metrics", cast_to=object)["data"]  # type: ignore[index]
    return [point["loss"] for point in sorted(points, key=lambda point: point["step"])]


def test_a_job_continues_the_callers_tuned_model(platform, sdk: OpenAI, user) -> None:
    dataset_id = put_demo_dataset(platform, user["uid"], SMALL)
    first = sdk.fine_tuning.jobs.create(model=BASE, training_file=dataset_id, method=_method(2))  # type: ignore[arg-type]
    parent = _succeeded(sdk, first.id).fine_tuned_model
    assert parent

    # On the first 16 images of the same set: 4 steps show where its loss starts.
    more = put_demo_dataset(platform, user["uid"], {"train": 16})
    second = sdk.fine_tuning.jobs.create(model=parent, training_file=more, method=_method(1))  # type: ignore[arg-type]
    assert second.model == parent
    assert second.model_extra["lineage"] == {"root": BASE, "parent": parent, "chain": [BASE, parent]}
    done = _succeeded(sdk, second.id)
    assert done.fine_tuned_model == f"ft:{BASE}:{second.id}"

    # It continued: its first steps' loss is near where the first job ended, far below where that began.
    before, after = _losses(sdk, first.id), _losses(sdk, second.id)
    assert len(before) == 12 and len(after) == 4
    print("losses", before, after)
    start, end, resumed = sum(before[:2]) / 2, sum(before[-2:]) / 2, sum(after[:2]) / 2
    assert end < 0.8 * start, (start, end)
    # A restart would begin near `start`; a continuation begins near `end`.
    assert abs(resumed - end) < 0.3 * (start - end), (start, end, resumed)

    # The model shows its lineage (Runtune's field; OpenAI's stay as they are).
    model = sdk.models.retrieve(done.fine_tuned_model)
    assert (model.id, model.object, model.owned_by) == (done.fine_tuned_model, "model", user["uid"])
    assert model.model_extra["parent"] == parent
    assert model.model_extra["lineage"] == {"root": BASE, "parent": parent, "chain": [BASE, parent]}
    assert sdk.models.retrieve(parent).model_extra["lineage"] == {"root": BASE, "parent": BASE, "chain": [BASE]}

    # Another user's attempt to continue it is the 404 of an unknown model, naming `model`.
    other = sign_up(platform.auth_host)
    stranger = OpenAI(base_url=f"{platform.gateway_url}/v1", api_key=other["id_token"], max_retries=0)
    theirs = put_demo_dataset(platform, other["uid"], {"train": 4})
    with pytest.raises(openai.NotFoundError) as refused:
        stranger.fine_tuning.jobs.create(model=parent, training_file=theirs)
    assert refused.value.body["param"] == "model"  # type: ignore[index]
    assert refused.value.body["message"] == f"The model '{parent}' does not exist or you do not have access to it."  # type: ignore[index]
