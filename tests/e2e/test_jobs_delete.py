"""`DELETE /v1/fine_tuning/jobs/{id}` through the gateway (and, on the way, a merged export as one
archive, `GET /v1/exports/{id}/archive`): an ended job goes with its model, model
checkpoints, exports, objects and documents; a job that has not ended is a 409 that says so; another
user's job is a 404 and stays."""

from __future__ import annotations

import io
import tarfile
from typing import Any
from urllib.parse import unquote

import httpx
import openai
import pytest
from typer.testing import CliRunner

from runtune.cli.main import app
from runtune.schemas import DatasetStatus
from tests.e2e.jobs_support import put_dataset
from tests.e2e.test_openai_sdk_models import BASE, Emulated, _tuned_model, _user
from tests.support import sign_up

pytestmark = pytest.mark.platform

PASSWORD = "delete-jobs-password"


def test_an_ended_job_is_deleted_with_everything_it_produced(platform: Any) -> None:
    emulated = Emulated(platform)
    user, sdk, http = _user(platform)
    uid = user["uid"]
    job_id, model = _tuned_model(platform, emulated, uid, sdk)
    emulated.blobs.upload_bytes(f"users/{uid}/jobs/{job_id}/checkpoints/step-3/state.pt", b"resume state")
    exports = [
        http.post("/v1/exports", json={"model": model, "format": kind}).json()["id"] for kind in ("adapter", "merged")
    ]
    assert emulated.blobs.list(f"users/{uid}/exports/{exports[0]}/")

    # The merged export as one archive (streamed, an attachment), and its loose files as attachments.
    merged = exports[1]
    with http.stream("GET", f"/v1/exports/{merged}/archive") as archive:
        assert archive.status_code == 200
        assert archive.headers["content-disposition"] == f'attachment; filename="ft-{BASE}-{job_id}-merged.tar"'
        body = b"".join(archive.iter_bytes())
    assert int(archive.headers["content-length"]) == len(body)
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.getnames() == ["merged/model.safetensors"]
        assert tar.extractfile("merged/model.safetensors").read() == b"merged weights"  # type: ignore[union-attr]
    link = http.get(f"/v1/exports/{merged}").json()["links"][0]
    assert 'attachment; filename="model.safetensors"' in unquote(link["url"])
    assert httpx.get(link["url"]).headers["content-disposition"] == 'attachment; filename="model.safetensors"'

    stranger = _user(platform)[2]
    assert stranger.get(f"/v1/exports/{merged}/archive").status_code == 404
    assert stranger.delete(f"/v1/fine_tuning/jobs/{job_id}").status_code == 404
    assert http.get(f"/v1/fine_tuning/jobs/{job_id}").status_code == 200

    deleted = http.delete(f"/v1/fine_tuning/jobs/{job_id}")
    assert deleted.status_code == 200, deleted.text
    body = deleted.json()
    assert (body["id"], body["object"], body["deleted"], body["fine_tuned_model"]) == (
        job_id,
        "fine_tuning.job",
        True,
        model,
    )
    assert body["checkpoints"] == 1 and sorted(body["exports"]) == sorted(exports)

    for path in (f"/v1/fine_tuning/jobs/{job_id}", f"/v1/fine_tuning/jobs/{job_id}/checkpoints"):
        assert http.get(path).status_code == 404
    assert http.get(f"/v1/fine_tuning/jobs/{job_id}/events").status_code == 404
    assert job_id not in [job["id"] for job in http.get("/v1/fine_tuning/jobs").json()["data"]]
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve(model)
    assert model not in [m.id for m in sdk.models.list().data]
    for export_id in exports:
        assert http.get(f"/v1/exports/{export_id}").status_code == 404
        assert http.get(f"/v1/exports/{export_id}/archive").status_code == 404
        assert emulated.blobs.list(f"users/{uid}/exports/{export_id}/") == []
    assert emulated.blobs.list(f"users/{uid}/jobs/{job_id}/") == []
    assert emulated.store.get(f"jobs/{job_id}") is None
    assert emulated.store.query(f"jobs/{job_id}/events") == []
    assert emulated.store.query(f"jobs/{job_id}/model_checkpoints") == []
    assert http.delete(f"/v1/fine_tuning/jobs/{job_id}").status_code == 404
    http.close()


def test_a_job_that_has_not_ended_is_refused_until_it_has(platform: Any, tmp_path, monkeypatch) -> None:
    user = sign_up(platform.auth_host, password=PASSWORD)
    http = httpx.Client(base_url=platform.gateway_url, headers={"authorization": f"Bearer {user['id_token']}"})
    # Its training file still processing: the job waits in `validating_files`, no trainer runs.
    dataset_id = put_dataset(platform, user["uid"], status=DatasetStatus.processing)
    job = http.post("/v1/fine_tuning/jobs", json={"model": BASE, "training_file": dataset_id})
    assert job.status_code == 200, job.text
    job_id = job.json()["id"]
    refused = http.delete(f"/v1/fine_tuning/jobs/{job_id}")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("job_not_finished", "id") and "cancel" in error["message"]
    assert http.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "validating_files"

    # Through the CLI: `runtune jobs rm` says why it refuses, then deletes once the job has ended.
    monkeypatch.setenv("RUNTUNE_CONFIG_DIR", str(tmp_path))
    cli = CliRunner()
    login = ["login", "--email", user["email"], "--password", PASSWORD, "--gateway", platform.gateway_url]
    assert cli.invoke(app, [*login, "--auth-emulator", platform.auth_host]).exit_code == 0
    refused_cli = cli.invoke(app, ["jobs", "rm", job_id])
    assert refused_cli.exit_code == 1 and "cancel" in refused_cli.output
    assert http.post(f"/v1/fine_tuning/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    deleted = cli.invoke(app, ["jobs", "rm", job_id])
    assert deleted.exit_code == 0 and f"Deleted {job_id} with its 0 checkpoint(s), 0 export(s)" in deleted.output
    assert http.get(f"/v1/fine_tuning/jobs/{job_id}").status_code == 404
    http.close()
