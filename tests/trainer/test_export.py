"""The merged export streamed shard by shard: the files are those `save_pretrained` writes (same
tensor names, shards, index and config), the staging folder never holds more than one shard, and
the bucket's copy loads with `from_pretrained` and answers exactly like the merged model in memory."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from runtune.adapters.gcs import GcsBlobStore
from runtune.blob_layout import export_prefix
from runtune.demo.shapes import examples
from runtune.models import registry
from runtune.models.loading import load_processor, model_class, resolve_weights
from runtune.models.tiny import TINY_IDS
from runtune.schemas.jobs import TrainConfig
from runtune.training import export
from runtune.training import model as setup
from runtune.training.chat import ChatFormat, decode_images
from runtune.training.evaluation import prompt_and_answer

# The tiny models are ~0.6 MB in bf16: 100 kB shards give each several, and their largest tensor
# (the 131 kB embedding) a shard of its own, as save_pretrained does.
SHARD_BYTES = 100_000
UID = "user-export-tests"


def _weights(local_dir: Path, model_id: str) -> str:
    return resolve_weights(registry.get(model_id), local_dir)


def _safetensors(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".safetensors"))


@pytest.mark.parametrize("model_id", TINY_IDS)
def test_the_streamed_files_are_those_save_pretrained_writes(local_dir: Path, tmp_path: Path, model_id: str) -> None:
    spec = registry.get(model_id)
    model = model_class(spec).from_pretrained(_weights(local_dir, model_id), dtype=torch.bfloat16)
    reference, staging, uploaded = tmp_path / "reference", tmp_path / "staging", tmp_path / "uploaded"
    model.save_pretrained(reference, max_shard_size=SHARD_BYTES)
    uploaded.mkdir()
    seen: list[list[str]] = []

    def upload(shard: Path) -> None:
        seen.append(_safetensors(staging))
        (uploaded / shard.name).write_bytes(shard.read_bytes())

    names = export.save_streamed(model, staging, upload, max_shard_bytes=SHARD_BYTES)

    assert len(names) >= 3 and _safetensors(reference) == sorted(names) == _safetensors(uploaded)
    # One shard at a time in the staging folder, and none left in it afterwards.
    assert seen == [[name] for name in names] and _safetensors(staging) == []
    for name in names:
        ours, theirs = load_file(uploaded / name), load_file(reference / name)
        assert ours.keys() == theirs.keys(), name
        assert all(torch.equal(ours[key], theirs[key]) for key in ours), name
    for small in ("model.safetensors.index.json", "config.json", "generation_config.json"):
        assert json.loads((staging / small).read_text()) == json.loads((reference / small).read_text()), small


class ObservedBlobStore(GcsBlobStore):
    """The emulator's store, noting what the staging folder holds at each shard's upload."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.folders: list[list[str]] = []
        self.staged_bytes: list[int] = []

    def upload_file(self, path: str, local_path: Path, *, content_type: str | None = None) -> None:
        if local_path.name.endswith(".safetensors"):
            folder = local_path.parent
            self.folders.append(_safetensors(folder))
            self.staged_bytes.append(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()))
        super().upload_file(path, local_path, content_type=content_type)


def _adapted(spec: registry.ModelSpec, weights: str, seed: int) -> Any:
    """The base with a LoRA adapter whose weights are random (peft's default B = 0 would merge to
    the base itself and prove nothing)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base = model_class(spec).from_pretrained(weights, dtype=torch.float32)
    # The trainer's 'all-linear' targets, the vision tower's included.
    targets = setup.lora_targets(base, spec, vision_tower=True)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, task_type="CAUSAL_LM")
    return get_peft_model(base, config)


@pytest.mark.emulators
@pytest.mark.parametrize("model_id", ["tiny-gemma-3-vision", "tiny-gemma-4-vision"])
def test_the_merged_export_streams_to_the_bucket_and_answers_like_the_merged_model(
    emulators: Any, local_dir: Path, tmp_path: Path, model_id: str
) -> None:
    spec = registry.get(model_id)
    weights = _weights(local_dir, model_id)
    blobs = ObservedBlobStore.for_bucket(emulators.project_id, emulators.bucket)
    blobs.ensure_bucket()
    config = TrainConfig(job_id=f"ftjob-{uuid.uuid4().hex[:12]}", owner=UID, model=spec.id, dataset_id="d")
    prefix = export_prefix(UID, config.job_id)
    _adapted(spec, weights, seed=3).save_pretrained(tmp_path / "adapter")
    export.upload_dir(blobs, tmp_path / "adapter", prefix + "adapter/")
    # What an earlier attempt with another split may have left behind.
    blobs.upload_bytes(prefix + "merged/model-00099-of-00099.safetensors", b"stale")
    processor = load_processor(spec, weights)
    blobs.folders.clear()

    locations = export.export_merged(
        blobs,
        config=config,
        spec=spec,
        weights_path=weights,
        processor=processor,
        metrics={},
        max_shard_bytes=SHARD_BYTES,
    )

    assert locations == {"merged": prefix + "merged/"}
    names = {info.path.removeprefix(prefix + "merged/") for info in blobs.list(prefix + "merged/")}
    shards = sorted(name for name in names if name.endswith(".safetensors"))
    assert len(shards) >= 3 and shards[-1] == f"model-{len(shards):05d}-of-{len(shards):05d}.safetensors"
    assert {"model.safetensors.index.json", "config.json", "chat_template.jinja", "README.md"} <= names
    # The staging folder held exactly the shard being uploaded, each time: never the whole model.
    assert blobs.folders == [[shard] for shard in shards]
    assert max(blobs.staged_bytes) <= 2 * SHARD_BYTES
    merged_folder = tmp_path / "merged"
    for info in blobs.list(prefix + "merged/"):
        blobs.download_file(info.path, merged_folder / info.path.removeprefix(prefix + "merged/"))
    index = json.loads((merged_folder / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == shards

    loaded = model_class(spec).from_pretrained(merged_folder, dtype=torch.bfloat16)
    in_memory = export.merge(spec, weights, tmp_path / "adapter")
    base = model_class(spec).from_pretrained(weights, dtype=torch.bfloat16)
    fmt = ChatFormat(spec, processor)
    (example,) = examples("test", 1)
    inputs = fmt.encode_prompt(prompt_and_answer(example)[0], decode_images(example))
    with torch.no_grad():
        logits = [m.eval()(**inputs).logits for m in (loaded, in_memory, base)]
    assert torch.equal(logits[0], logits[1])
    assert not torch.equal(logits[1], logits[2]), "the adapter changed nothing: the test would prove nothing"
