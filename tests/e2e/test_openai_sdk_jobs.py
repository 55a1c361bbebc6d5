"""The unmodified `openai` SDK against the gateway, an Auth-emulator ID token as its API key."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.e2e.jobs_support import put_dataset, wait_for
from tests.support import sign_up

pytestmark = pytest.mark.platform


@pytest.fixture
def user(platform) -> dict[str, str]:
    return sign_up(platform.auth_host)


@pytest.fixture
def sdk(platform, user) -> OpenAI:
    return OpenAI(base_url=f"{platform.gateway_url}/v1", api_key=user["id_token"], max_retries=0)


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
