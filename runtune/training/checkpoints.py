"""Checkpoints in the blob store, so a run survives the 1-hour task limit and maintenance: the
trainable weights, optimizer, scheduler, RNG states and the data position, under
`users/{uid}/jobs/{job_id}/checkpoints/step-XXXXXX/`:

    trainable.safetensors   the trainable tensors (the LoRA matrices; every weight for full fine-tuning)
    optimizer.pt            optimizer and scheduler state, and the Python/NumPy/torch/CUDA RNG states
    state.json              the data position (step, epoch, next batch) and the metrics history
    chat_template.jinja     the chat template the run trains with

The `jobs/{id}/checkpoints/{step}` document (an OpenAI checkpoint, plus `prefix`) is written after
every object is uploaded, so a document always names a complete checkpoint; resume takes the
newest document. The batches of an epoch are a pure function of (seed, epoch), so (epoch, next
batch) is the whole data position: a resumed run sees exactly the batches the uninterrupted run
would have, none repeated, none skipped."""

from __future__ import annotations

import io
import json
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from runtune.ports.blobs import BlobStore
from runtune.ports.metadata import MetadataStore, OrderBy
from runtune.schemas.common import now_ts
from runtune.schemas.jobs import Checkpoint, checkpoint_path, job_path

WEIGHTS, OPTIMIZER, STATE, TEMPLATE = "trainable.safetensors", "optimizer.pt", "state.json", "chat_template.jinja"
# As OpenAI: the newest three checkpoints stay available (resume needs only the newest); older ones
# are pruned, their blobs and their documents together, so the API never lists a checkpoint that is gone.
KEEP_CHECKPOINTS = 3


@dataclass
class Position:
    """Where training stands: `step` optimizer steps done; the next batch is `batch` of `epoch`."""

    step: int = 0
    epoch: int = 0
    batch: int = 0


def job_prefix(uid: str, job_id: str) -> str:
    return f"users/{uid}/jobs/{job_id}/"


def checkpoint_prefix(uid: str, job_id: str, step: int) -> str:
    return f"{job_prefix(uid, job_id)}checkpoints/step-{step:06d}/"


def rng_state() -> dict[str, Any]:
    import numpy as np

    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(
    blobs: BlobStore,
    store: MetadataStore,
    *,
    uid: str,
    job_id: str,
    model_id: str,
    position: Position,
    weights: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    history: list[dict[str, float]],
    metrics: dict[str, float],
    chat_template: str | None = None,
) -> Checkpoint:
    prefix = checkpoint_prefix(uid, job_id, position.step)
    if chat_template is not None:
        blobs.upload_bytes(prefix + TEMPLATE, chat_template.encode(), content_type="text/plain")
    with tempfile.TemporaryDirectory() as tmp:
        save_file(weights, str(Path(tmp) / WEIGHTS))
        blobs.upload_file(prefix + WEIGHTS, Path(tmp) / WEIGHTS)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}, buffer)
    blobs.upload_bytes(prefix + OPTIMIZER, buffer.getvalue())
    state = {"position": asdict(position), "history": history}
    blobs.upload_bytes(prefix + STATE, json.dumps(state).encode(), content_type="application/json")
    checkpoint = Checkpoint(
        id=f"ftckpt-{job_id.removeprefix('ftjob-')}-{position.step:06d}",
        created_at=now_ts(),
        fine_tuned_model_checkpoint=f"ft:{model_id}:{job_id}:ckpt-step-{position.step}",
        fine_tuning_job_id=job_id,
        step_number=position.step,
        metrics=metrics,
    )
    store.set(checkpoint_path(job_id, position.step), checkpoint.model_dump(mode="json") | {"prefix": prefix})
    return checkpoint


@dataclass
class Restored:
    position: Position
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    history: list[dict[str, float]]


def prune(blobs: BlobStore, store: MetadataStore, job_id: str, keep: int = KEEP_CHECKPOINTS) -> list[int]:
    """Delete every checkpoint but the newest `keep`; returns the pruned steps. The document goes
    first, so no document ever names a checkpoint whose objects are half deleted."""
    rows = store.query(f"{job_path(job_id)}/checkpoints", order_by=[OrderBy("step_number", descending=True)])
    pruned = []
    for _, document in rows[keep:]:
        store.delete(checkpoint_path(job_id, document["step_number"]))
        blobs.delete_prefix(document["prefix"])
        pruned.append(document["step_number"])
    return pruned


def latest(store: MetadataStore, job_id: str) -> dict[str, Any] | None:
    rows = store.query(f"{job_path(job_id)}/checkpoints", order_by=[OrderBy("step_number", descending=True)], limit=1)
    return rows[0][1] if rows else None


def restore(blobs: BlobStore, document: dict[str, Any]) -> Restored:
    prefix = document["prefix"]
    with tempfile.TemporaryDirectory() as tmp:
        blobs.download_file(prefix + WEIGHTS, Path(tmp) / WEIGHTS)
        weights = load_file(str(Path(tmp) / WEIGHTS))
    # Our own file, written by this trainer: full unpickling is needed for the RNG and optimizer state.
    rest = torch.load(io.BytesIO(blobs.download_bytes(prefix + OPTIMIZER)), weights_only=False)
    state = json.loads(blobs.download_bytes(prefix + STATE))
    return Restored(
        position=Position(**state["position"]),
        weights=weights,
        optimizer=rest["optimizer"],
        scheduler=rest["scheduler"],
        rng=rest["rng"],
        history=state["history"],
    )
