"""GPU choice end to end: the estimate picks the GPU among those the deployment offers, the job records
it, and the launcher runs that GPU's trainer job (the scripted trainer reports the `CLOUD_RUN_JOB` it
ran as, tests/e2e/scripted_trainer.py). The Cloud Run side of the same launch, against the fake Admin
API, is in tests/integration/test_cloud_run_launcher.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from runtune.internal_auth import USER_ID_HEADER, token_sha256
from runtune.settings import ServiceSettings
from tests.e2e.jobs_support import job_status, put_dataset, wait_for

pytestmark = pytest.mark.platform

SMALL = "tiny-gemma-3-vision"
# A 27B-class model: about 29 GiB in QLoRA at batch 4 (1024 tokens), more than an L4's 24 GB (at
# batch 1 it fits one, which is what `auto` would choose). The scripted trainer never loads it.
LARGE = "google/gemma-3-27b-it"
BATCH_4 = {"batch_size": 4}
L4, RTX = "nvidia-l4", "nvidia-rtx-pro-6000"


def _started_as(client: httpx.Client, job_id: str) -> str:
    """The Cloud Run job the trainer ran as, from its first event."""
    events = client.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100}).json()["data"]
    (started,) = [event["message"] for event in events if event["message"].startswith("Trainer started")]
    return started.rsplit("job ", 1)[1].rstrip(")")


@pytest.mark.parametrize(
    ("model", "gpu", "job"), [(SMALL, L4, "runtune-trainer-l4"), (LARGE, RTX, "runtune-trainer-rtx-pro-6000")]
)
def test_the_job_runs_on_the_trainer_job_of_the_gpu_the_estimate_chose(
    platform, user, user_client, model, gpu, job
) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    body = {"model": model, "training_file": dataset_id, "hyperparameters": BATCH_4}
    estimate = user_client.post("/v1/fine_tuning/estimate", json=body).json()
    assert estimate["gpu"] == gpu

    created = user_client.post("/v1/fine_tuning/jobs", json={**body, "metadata": {"script": "succeed"}})
    assert created.status_code == 200, created.text
    assert created.json()["gpu"] == gpu
    job_id = created.json()["id"]
    wait_for(lambda: job_status(user_client, job_id) == "succeeded")

    assert _started_as(user_client, job_id) == job
    assert user_client.get(f"/v1/fine_tuning/jobs/{job_id}").json()["gpu"] == gpu


# -- a deployment that offers L4s only ------------------------------------------------------------

TOKEN = "l4-only-internal-token"


@pytest.fixture
def l4_only(platform, user, tmp_path: Path) -> Iterator[TestClient]:
    """A training service like the platform's, on the same emulators, with RUNTUNE_OFFERED_GPUS=["nvidia-l4"]."""
    from services.training.app import create_app

    with pytest.MonkeyPatch.context() as patch:
        for name, value in platform.emulator_env.items():
            patch.setenv(name, value)
        patch.setenv("RUNTUNE_OFFERED_GPUS", f'["{L4}"]')
        settings = ServiceSettings(
            internal_token_sha256=token_sha256(TOKEN),
            local_dir=tmp_path,
            trainer_command=[sys.executable, "-m", "tests.e2e.scripted_trainer"],
            # Its reconciler must leave the platform's jobs to the platform's own service.
            reconcile_every_s=86_400,
        )
        assert settings.offered_gpus == [L4]
        headers = {"authorization": f"Bearer {TOKEN}", USER_ID_HEADER: user["uid"]}
        with TestClient(create_app(settings), headers=headers) as client:
            yield client


def test_a_27b_job_is_refused_where_only_l4s_are_offered(platform, user, l4_only) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    body = {"model": LARGE, "training_file": dataset_id, "hyperparameters": BATCH_4, "metadata": {"script": "succeed"}}

    refused = l4_only.post("/v1/fine_tuning/jobs", json=body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("does_not_fit", "method.supervised.runtune")
    assert "NVIDIA L4" in error["message"]

    estimate = l4_only.post(
        "/v1/fine_tuning/estimate", json={"model": LARGE, "training_file": dataset_id, "hyperparameters": BATCH_4}
    )
    assert estimate.status_code == 200 and estimate.json()["gpu"] is None
    small = l4_only.post("/v1/fine_tuning/estimate", json={"model": SMALL, "training_file": dataset_id})
    assert small.json()["gpu"] == L4
    assert l4_only.get("/v1/fine_tuning/jobs").json()["data"] == []


def test_asking_for_a_gpu_the_deployment_does_not_offer_names_it(platform, user, l4_only) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    method = {"type": "supervised", "supervised": {"runtune": {"gpu": RTX}}}

    refused = l4_only.post("/v1/fine_tuning/jobs", json={"model": SMALL, "training_file": dataset_id, "method": method})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("gpu_not_offered", "method.supervised.runtune.gpu")
    assert RTX in error["message"] and L4 in error["message"]

    estimate = l4_only.post(
        "/v1/fine_tuning/estimate", json={"model": SMALL, "training_file": dataset_id, "runtune": {"gpu": RTX}}
    )
    assert estimate.status_code == 400 and estimate.json()["error"]["param"] == "runtune.gpu"
    # A GPU that is in no table at all is refused by the request schema, naming the field too.
    unknown = {"type": "supervised", "supervised": {"runtune": {"gpu": "nvidia-h100"}}}
    schema = l4_only.post("/v1/fine_tuning/jobs", json={"model": SMALL, "training_file": dataset_id, "method": unknown})
    assert schema.status_code == 400 and schema.json()["error"]["param"] == "method.supervised.runtune.gpu"
