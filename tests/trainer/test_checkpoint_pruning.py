"""Old checkpoints are pruned, blobs and documents together; the newest three stay (as OpenAI)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import torch

from runtune.blob_layout import job_prefix
from runtune.schemas.jobs import job_path
from runtune.training import checkpoints
from tests.trainer.conftest import save_checkpoint

pytestmark = pytest.mark.emulators
UID = "user-pruning-tests"


def test_only_the_newest_checkpoints_remain_blobs_and_documents(store: Any, blobs: Any) -> None:
    job_id = f"ftjob-{uuid.uuid4().hex[:12]}"
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(layer.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    for step in (1, 2, 3, 4, 5):
        save_checkpoint(store, blobs, UID, job_id, step, (layer, optimizer, scheduler))
        checkpoints.prune(blobs, store, job_id)

    documents = sorted(doc["step_number"] for _, doc in store.query(f"{job_path(job_id)}/checkpoints"))
    assert documents == [3, 4, 5]
    stored = {info.path.split("/checkpoints/")[1].split("/")[0] for info in blobs.list(job_prefix(UID, job_id))}
    assert stored == {"step-000003", "step-000004", "step-000005"}
    assert checkpoints.latest(store, job_id)["step_number"] == 5
