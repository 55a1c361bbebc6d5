"""Model checkpoints and validation in a real (tiny) run: the last three epochs' ends each leave a
usable adapter with OpenAI's metrics, validation is measured at intervals, the best checkpoint is
the one with the lowest validation loss; and a resume state that is not the job's own (a pickle
payload, a foreign layout) fails the job with `invalid_checkpoint` without running anything."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load

from runtune.schemas.jobs import job_path
from runtune.training import checkpoints
from tests.trainer.test_checkpoint_safety import Payload
from tests.trainer.test_train_end_to_end import UID, _demo, _events, _run, new_job

pytestmark = pytest.mark.emulators
MODEL = "tiny-gemma-3-text"


def _text_demo(store: Any, blobs: Any, counts: dict[str, int]) -> str:
    dataset_id = _demo(store, blobs, "vision", counts)
    store.update(f"datasets/{dataset_id}", {"modality": "text"})
    return dataset_id


def test_the_last_three_epochs_leave_model_checkpoints_and_the_best_is_marked(
    store: Any, blobs: Any, local_dir: Path
) -> None:
    dataset_id = _text_demo(store, blobs, {"train": 16, "validation": 8, "test": 4})
    job_id = new_job(
        store, UID, MODEL, dataset_id, epochs=4, batch_size=4, checkpoint_every_steps=1000, export={"merged": False}
    )
    code, job = _run(store, blobs, job_id)
    assert code == 0, job.get("error")
    assert job["total_steps"] == 16

    documents = [doc for _, doc in store.query(f"{job_path(job_id)}/model_checkpoints")]
    assert [doc["step_number"] for doc in documents] == [8, 12, 16]  # epochs 2, 3 and 4 (not 1)
    for doc in documents:
        assert doc["fine_tuned_model_checkpoint"] == f"ft:{MODEL}:{job_id}:ckpt-step-{doc['step_number']}"
        assert set(doc["metrics"]) == {
            "step",
            "train_loss",
            "train_mean_token_accuracy",
            "valid_loss",
            "valid_mean_token_accuracy",
        }
        assert 0 <= doc["metrics"]["valid_mean_token_accuracy"] <= 1
    best = min(documents, key=lambda doc: doc["metrics"]["valid_loss"])
    assert job["best_checkpoint"] == best["fine_tuned_model_checkpoint"]
    assert not store.query(f"{job_path(job_id)}/checkpoints"), "no resume state was due"

    # The final step's checkpoint is the exported adapter; an earlier one is another model.
    def adapter(prefix: str) -> dict[str, torch.Tensor]:
        return load(blobs.download_bytes(prefix + "adapter_model.safetensors"))

    final, last, first = (
        adapter(job["runtune"]["export"]["adapter"]),
        adapter(documents[-1]["adapter"]),
        adapter(documents[0]["adapter"]),
    )
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    assert any(not torch.equal(final[k], first[k]) for k in final)

    # Validation at intervals (every 2 of 16 steps), with token accuracy on every step.
    points = [e["data"] for e in _events(store, job_id) if e["type"] == "metrics"]
    assert [p["step"] for p in points if "valid_loss" in p] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert all(0 <= p["token_accuracy"] <= 1 for p in points)
    assert all(p["valid_token_accuracy"] is not None for p in points if "valid_loss" in p)
    by_step = {p["step"]: p for p in points}
    assert best["metrics"]["valid_loss"] == pytest.approx(by_step[best["step_number"]]["valid_loss"])


def _job_with_resume_state(store: Any, blobs: Any, dataset_id: str) -> tuple[str, dict[str, Any]]:
    """A queued job whose newest resume state (step 2) is a small valid checkpoint of another layout."""
    job_id = new_job(store, UID, MODEL, dataset_id, epochs=1, batch_size=4, export={"merged": False})
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(layer.parameters())
    checkpoints.save(
        blobs,
        store,
        uid=UID,
        job_id=job_id,
        model_id=MODEL,
        position=checkpoints.Position(2, 0, 2),
        weights={"w": layer.weight.detach().clone()},
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
        history=[],
        metrics={"step": 2.0},
    )
    document = checkpoints.latest(store, job_id)
    assert document is not None
    return job_id, document


def test_a_tampered_or_foreign_resume_state_fails_the_job_and_runs_nothing(
    store: Any, blobs: Any, local_dir: Path, tmp_path: Path
) -> None:
    dataset_id = _text_demo(store, blobs, {"train": 8, "test": 4})
    marker = tmp_path / "pwned"

    job_id, document = _job_with_resume_state(store, blobs, dataset_id)
    blobs.upload_bytes(document["prefix"] + checkpoints.OPTIMIZER, pickle.dumps({"state": Payload(marker)}))
    code, job = _run(store, blobs, job_id)
    assert code == 1 and job["status"] == "failed"
    assert job["error"]["code"] == "invalid_checkpoint"
    assert "checkpoint at step 2" in job["error"]["message"] and "was not loaded" in job["error"]["message"]
    assert not marker.exists()

    job_id, _ = _job_with_resume_state(store, blobs, dataset_id)
    code, job = _run(store, blobs, job_id)
    assert code == 1 and job["error"]["code"] == "invalid_checkpoint"
    assert "trainable tensors are not this model's" in job["error"]["message"]
