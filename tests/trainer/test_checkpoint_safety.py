"""Resume states are data, not code: saved as safetensors + JSON, read back exactly (weights,
optimizer, scheduler, RNG), and a tampered or foreign checkpoint is refused with a clear error
before anything in it runs or reaches the model."""

from __future__ import annotations

import json
import pickle
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

from runtune.training import checkpoints, safe_state
from runtune.training.checkpoints import CheckpointError
from tests.trainer.conftest import save_checkpoint

pytestmark = pytest.mark.emulators
UID = "user-checkpoint-safety"


class Payload:
    """What an attacker would put in a pickle: code that runs when it is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.write_text, (self.marker, "executed"))


def _trained(shape: tuple[int, int] = (3, 4), seed: int = 0) -> tuple[torch.nn.Module, Any, Any]:
    torch.manual_seed(seed)
    layer = torch.nn.Linear(*reversed(shape))
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    for _ in range(2):
        layer(torch.randn(2, shape[1])).sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return layer, optimizer, scheduler


def _save(store: Any, blobs: Any, layer: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    job_id = f"ftjob-{uuid.uuid4().hex[:12]}"
    history = [{"step": 1, "loss": 1.5}, {"step": 2, "loss": 1.2}]
    save_checkpoint(store, blobs, UID, job_id, 2, (layer, optimizer, scheduler), history)
    document = checkpoints.latest(store, job_id)
    assert document is not None
    return document


def test_a_checkpoint_round_trips_as_safetensors_and_json(store: Any, blobs: Any) -> None:
    layer, optimizer, scheduler = _trained()
    document = _save(store, blobs, layer, optimizer, scheduler)
    names = {info.path.rsplit("/", 1)[-1] for info in blobs.list(document["prefix"])}
    assert names == {"trainable.safetensors", "optimizer.safetensors", "optimizer.json", "state.json"}
    random.seed(5)  # moved on since the save

    fresh, fresh_optimizer, fresh_scheduler = _trained(seed=1)
    restored = checkpoints.load_into(blobs, document, fresh, fresh_optimizer, fresh_scheduler)
    assert restored.position == checkpoints.Position(2, 0, 2) and restored.history[-1]["loss"] == 1.2
    assert torch.equal(fresh.weight, layer.weight)
    mine, theirs = fresh_optimizer.state_dict(), optimizer.state_dict()
    for index, state in theirs["state"].items():
        for key, value in state.items():
            assert torch.equal(mine["state"][index][key], value), key
    assert fresh_scheduler.state_dict()["last_epoch"] == scheduler.state_dict()["last_epoch"] == 2
    # The RNGs are back where the saved run had them (tuples and arrays rebuilt as they were).
    assert random.getstate() == restored.rng["python"] and restored.rng["python"] != _seeded(5)
    assert torch.equal(torch.get_rng_state(), restored.rng["torch"])


def _seeded(seed: int) -> Any:
    generator = random.Random(seed)
    return generator.getstate()


def test_a_pickle_where_the_optimizer_state_goes_is_refused_and_never_runs(
    store: Any, blobs: Any, tmp_path: Path
) -> None:
    layer, optimizer, scheduler = _trained()
    document = _save(store, blobs, layer, optimizer, scheduler)
    marker = tmp_path / "pwned"
    blobs.upload_bytes(document["prefix"] + checkpoints.OPTIMIZER, pickle.dumps({"state": Payload(marker)}))
    with pytest.raises(CheckpointError, match=r"SafetensorError|header"):
        checkpoints.load_into(blobs, document, *_trained(seed=1))
    # The same pickle as the skeleton, and under the old format's name next to a format-1 state.
    document = _save(store, blobs, layer, optimizer, scheduler)
    blobs.upload_bytes(document["prefix"] + checkpoints.OPTIMIZER_LAYOUT, pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError, match=r"JSONDecodeError|UnicodeDecodeError"):
        checkpoints.load_into(blobs, document, *_trained(seed=1))
    document = _save(store, blobs, layer, optimizer, scheduler)
    blobs.upload_bytes(document["prefix"] + "optimizer.pt", pickle.dumps(Payload(marker)))
    blobs.upload_bytes(document["prefix"] + checkpoints.STATE, json.dumps({"position": {}, "history": []}).encode())
    with pytest.raises(CheckpointError, match="not a 'runtune-checkpoint-2' checkpoint"):
        checkpoints.load_into(blobs, document, *_trained(seed=1))
    assert not marker.exists()


def test_a_checkpoint_of_another_layout_is_refused_before_the_model_changes(store: Any, blobs: Any) -> None:
    document = _save(store, blobs, *_trained(shape=(3, 4)))
    other, other_optimizer, other_scheduler = _trained(shape=(5, 4), seed=1)
    before = other.weight.detach().clone()
    with pytest.raises(CheckpointError, match=r"tensor (weight is \(3, 4\)|bias is \(3,\)), the model"):
        checkpoints.load_into(blobs, document, other, other_optimizer, other_scheduler)
    assert torch.equal(other.weight, before)

    # The right tensors but an optimizer state with a foreign parameter and a smuggled marker.
    layer, optimizer, scheduler = _trained()
    document = _save(store, blobs, layer, optimizer, scheduler)
    layout = json.loads(blobs.download_bytes(document["prefix"] + checkpoints.OPTIMIZER_LAYOUT))
    layout["optimizer"]["state"]["$dict"].append([7, {}])
    blobs.upload_bytes(document["prefix"] + checkpoints.OPTIMIZER_LAYOUT, json.dumps(layout).encode())
    with pytest.raises(CheckpointError, match="names parameters this job does not have"):
        checkpoints.load_into(blobs, document, *_trained(seed=1))
    layout["optimizer"]["state"] = {"$call": "os.system"}
    blobs.upload_bytes(document["prefix"] + checkpoints.OPTIMIZER_LAYOUT, json.dumps(layout).encode())
    with pytest.raises(CheckpointError, match="unknown marker"):
        checkpoints.load_into(blobs, document, *_trained(seed=1))


def test_the_codec_keeps_tuples_int_keys_and_numpy_rng_state() -> None:
    import numpy as np

    state = {"rng": np.random.get_state(), "groups": [{"betas": (0.9, 0.99)}], "state": {0: torch.ones(2)}}
    tensors, skeleton = safe_state.split(state)
    back = safe_state.join(tensors, json.loads(json.dumps(skeleton)))
    assert back["groups"][0]["betas"] == (0.9, 0.99) and torch.equal(back["state"][0], torch.ones(2))
    assert back["rng"][0] == "MT19937" and np.array_equal(back["rng"][1], state["rng"][1])
    with pytest.raises(safe_state.StateError, match="cannot store a Payload"):
        safe_state.split({"x": Payload(Path("/nonexistent"))})
