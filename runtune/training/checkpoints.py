"""Checkpoints in the blob store, so a run survives the 1-hour task limit and maintenance: the
trainable weights, optimizer, scheduler, RNG states and the data position, under
`runtune.blob_layout.checkpoint_prefix` (`users/{uid}/jobs/{job_id}/checkpoints/step-XXXXXX/`):

    trainable.safetensors   the trainable tensors (the LoRA matrices; every weight for full fine-tuning)
    optimizer.safetensors   the tensors of the optimizer and scheduler state and of the Python/NumPy/
    optimizer.json            torch/CUDA RNG states, and the JSON skeleton that places them
                              (runtune.training.safe_state)
    state.json              the format, the data position (step, epoch, next batch), the metrics history
    chat_template.jinja     the chat template the run trains with

Nothing is pickled: a checkpoint is read with safetensors and JSON only, and `check_layout` refuses
one whose tensors, optimizer groups or shapes are not this job's own (`CheckpointError`), so a
tampered or foreign file is an error message, never code that runs in the trainer.

The `jobs/{id}/checkpoints/{step}` document (an OpenAI checkpoint, plus `prefix`) is written after
every object is uploaded, so a document always names a complete checkpoint; resume takes the
newest document. The batches of an epoch are a pure function of (seed, epoch), so (epoch, next
batch) is the whole data position: a resumed run sees exactly the batches the uninterrupted run
would have, none repeated, none skipped."""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors.torch import load_file, save_file

from runtune.blob_layout import checkpoint_prefix
from runtune.ports.blobs import BlobStore
from runtune.ports.metadata import MetadataStore, OrderBy
from runtune.schemas.common import now_ts
from runtune.schemas.jobs import Checkpoint, checkpoint_id, checkpoint_model_id, checkpoint_path, job_path
from runtune.training import safe_state

WEIGHTS, STATE, TEMPLATE = "trainable.safetensors", "state.json", "chat_template.jinja"
OPTIMIZER, OPTIMIZER_LAYOUT = "optimizer.safetensors", "optimizer.json"
FORMAT = "runtune-checkpoint-2"  # safetensors + JSON; format 1 pickled the optimizer (never read again)
# Optimizer state tensors shaped like their parameter (AdamW's moments; bitsandbytes' 8-bit states).
_PARAM_SHAPED = ("exp_avg", "exp_avg_sq", "momentum_buffer", "state1", "state2")
# As OpenAI: the newest three checkpoints stay available (resume needs only the newest); older ones
# are pruned, their blobs and their documents together, so the API never lists a checkpoint that is gone.
KEEP_CHECKPOINTS = 3


class CheckpointError(ValueError):
    """A checkpoint this job cannot resume from: not in this code's format, or not its own layout."""


@dataclass
class Position:
    """Where training stands: `step` optimizer steps done; the next batch is `batch` of `epoch`."""

    step: int = 0
    epoch: int = 0
    batch: int = 0


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
    tensors, layout = safe_state.split(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}
    )
    blobs.upload_bytes(prefix + OPTIMIZER, safetensors.torch.save(tensors))
    blobs.upload_bytes(prefix + OPTIMIZER_LAYOUT, json.dumps(layout).encode(), content_type="application/json")
    state = {"format": FORMAT, "position": asdict(position), "history": history}
    blobs.upload_bytes(prefix + STATE, json.dumps(state).encode(), content_type="application/json")
    checkpoint = Checkpoint(
        id=checkpoint_id(job_id, position.step),
        created_at=now_ts(),
        fine_tuned_model_checkpoint=checkpoint_model_id(model_id, job_id, position.step),
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
    """The checkpoint a document names, read as data only (safetensors, JSON); a file that is not in
    this format (a pickle, a truncated upload, a hand-edited skeleton) is a `CheckpointError`."""
    prefix = document["prefix"]
    try:
        state = json.loads(blobs.download_bytes(prefix + STATE))
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CheckpointError(f"state.json is not a '{FORMAT}' checkpoint (format {_format_of(state)!r})")
        with tempfile.TemporaryDirectory() as tmp:
            blobs.download_file(prefix + WEIGHTS, Path(tmp) / WEIGHTS)
            weights = load_file(str(Path(tmp) / WEIGHTS))
        tensors = safetensors.torch.load(blobs.download_bytes(prefix + OPTIMIZER))
        rest = safe_state.join(tensors, json.loads(blobs.download_bytes(prefix + OPTIMIZER_LAYOUT)))
        position = Position(**state["position"])
        history = state["history"]
        if not isinstance(rest, dict) or not {"optimizer", "scheduler", "rng"} <= set(rest):
            raise CheckpointError("optimizer.json lacks the optimizer, scheduler or RNG state")
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors' and json's own errors, a missing object, a wrong field
        raise CheckpointError(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in asdict(position).values()):
        raise CheckpointError(f"state.json has an invalid data position {asdict(position)}")
    if not isinstance(history, list) or not all(isinstance(record, dict) for record in history):
        raise CheckpointError("state.json's history is not a list of records")
    return Restored(
        position=position,
        weights=weights,
        optimizer=rest["optimizer"],
        scheduler=rest["scheduler"],
        rng=rest["rng"],
        history=history,
    )


def load_into(
    blobs: BlobStore, document: dict[str, Any], model: Any, optimizer: torch.optim.Optimizer, scheduler: Any
) -> Restored:
    """Resume from the checkpoint `document` names: read it as data, check it is this job's own
    layout, then load weights, optimizer, scheduler and RNG states. Any mismatch is a `CheckpointError`
    raised before the model is touched, or (a value torch itself refuses) while loading."""
    from runtune.training.model import load_trainable_state

    restored = restore(blobs, document)
    check_layout(restored, model, optimizer, scheduler)
    try:
        load_trainable_state(model, restored.weights)
        optimizer.load_state_dict(restored.optimizer)
        scheduler.load_state_dict(restored.scheduler)
        set_rng_state(restored.rng)
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as exc:
        raise CheckpointError(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    return restored


def check_layout(restored: Restored, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """Refuse a checkpoint that is not this job's own: its trainable tensors must be exactly the
    model's (names and shapes), its optimizer the same parameter groups, each state tensor shaped
    like its parameter. Loading anything else would fail half way or silently train something else."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    names = set(restored.weights)
    if names != set(params):
        odd = sorted(names ^ set(params))[0]
        raise CheckpointError(
            f"its trainable tensors are not this model's ({len(names)} against {len(params)}; first differing: {odd})"
        )
    for name, tensor in restored.weights.items():
        if tensor.shape != params[name].shape:
            raise CheckpointError(f"tensor {name} is {tuple(tensor.shape)}, the model's {tuple(params[name].shape)}")
    saved, current = restored.optimizer, optimizer.state_dict()
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or [len(g.get("params", [])) for g in groups if isinstance(g, dict)] != [
        len(g["params"]) for g in current["param_groups"]
    ]:
        raise CheckpointError("its optimizer's parameter groups are not this job's")
    by_index = {
        index: p.shape
        for group, live in zip(current["param_groups"], optimizer.param_groups, strict=True)
        for index, p in zip(group["params"], live["params"], strict=True)
    }
    state = saved.get("state")
    if not isinstance(state, dict) or not set(state) <= set(by_index):
        raise CheckpointError("its optimizer state names parameters this job does not have")
    for index, entry in state.items():
        for key, value in (entry if isinstance(entry, dict) else {}).items():
            if key in _PARAM_SHAPED and isinstance(value, torch.Tensor) and value.shape != by_index[index]:
                raise CheckpointError(f"optimizer state {key} of parameter {index} has the wrong shape")
    # The scheduler's `load_state_dict` sets every key as an attribute: only its own keys, same types.
    own = scheduler.state_dict()
    if not isinstance(restored.scheduler, dict) or set(restored.scheduler) != set(own):
        raise CheckpointError("its scheduler state is not this job's scheduler")
    for key, value in restored.scheduler.items():
        if own[key] is not None and value is not None and type(value) is not type(own[key]):
            raise CheckpointError(f"scheduler field {key} is a {type(value).__name__}, not a {type(own[key]).__name__}")


def _format_of(state: Any) -> Any:
    return state.get("format", 1) if isinstance(state, dict) else None
