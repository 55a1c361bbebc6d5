"""The model setup (what is quantized, what is adapted), label scoring against full forwards, and
where weights come from."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from runtune.datasets.canonical import Example
from runtune.demo.shapes import CLASSES, example, examples
from runtune.models import registry
from runtune.models.loading import (
    download_prefix,
    fetch_weights,
    load_processor,
    locate_weights,
    resolve_weights,
    staged_prefix,
)
from runtune.models.tiny import TINY_IDS
from runtune.schemas.jobs import TrainConfig
from runtune.training import evaluation
from runtune.training import model as setup
from runtune.training.chat import ChatFormat, decode_images
from tests.datasets.builders import MemoryBlobStore


@pytest.fixture(scope="module")
def adapted(local_dir: Path) -> dict[str, tuple[ChatFormat, Any]]:
    """Each tiny model through the QLoRA setup, adapters moved off zero so they change the answers."""
    models = {}
    torch.manual_seed(0)
    for model_id in TINY_IDS:
        spec = registry.get(model_id)
        weights = resolve_weights(spec, local_dir)
        config = TrainConfig(job_id="t", owner="u", model=model_id, dataset_id="d", gradient_checkpointing=False)
        model = setup.prepare(setup.load_base(spec, weights, "qlora"), config)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(std=0.1)
        model.eval()
        models[model_id] = (ChatFormat(spec, load_processor(spec, weights)), model)
    return models


@pytest.mark.parametrize("model_id", TINY_IDS)
def test_qlora_quantizes_and_adapts_the_language_model_only(
    adapted: dict[str, tuple[ChatFormat, Any]], model_id: str
) -> None:
    import bitsandbytes as bnb

    _, model = adapted[model_id]
    spec = registry.get(model_id)
    side = (*spec.family.vision_modules, *spec.family.unused_modules)
    quantized = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    adapted_layers = {n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert quantized and adapted_layers
    assert not [n for n in quantized if any(part in n.split(".") for part in side)]
    assert not [n for n in adapted_layers if any(part in n.split(".") for part in side) or "lm_head" in n]
    assert all(p.requires_grad == ("lora_" in n) for n, p in model.named_parameters())
    if spec.modality == "vision":
        assert any(isinstance(m, torch.nn.Linear) and "vision_tower" in n for n, m in model.named_modules())


def _full_forward_scores(model: Any, fmt: ChatFormat, item: Example, labels: list[str]) -> list[float]:
    """The reference: one whole forward per (prompt + label), no cache, no padding."""
    messages, _ = evaluation.prompt_and_answer(item)
    prompt = fmt.encode_prompt(messages, decode_images(item) if fmt.spec.modality == "vision" else [])
    scores = []
    for tokens in evaluation.label_continuations(fmt, fmt.prompt_text(messages), labels):
        ids = torch.cat([prompt["input_ids"][0], torch.tensor(tokens)])[None]
        inputs = {**prompt, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
        for key in prompt:
            if key.endswith("token_type_ids"):
                inputs[key] = torch.cat([prompt[key][0], torch.zeros(len(tokens), dtype=torch.long)])[None]
        with torch.no_grad():
            logprobs = model(**inputs).logits.float().log_softmax(-1)[0]
        start = prompt["input_ids"].shape[1]
        scores.append(sum(float(logprobs[start - 1 + i, token]) for i, token in enumerate(tokens)))
    return scores


@pytest.mark.parametrize("model_id", TINY_IDS)
def test_batched_cached_label_scoring_equals_full_forwards(
    adapted: dict[str, tuple[ChatFormat, Any]], model_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fmt, model = adapted[model_id]
    items = examples("test", 4)
    # A longer prompt in the batch: the others are left-padded.
    system = {"role": "system", "content": [{"type": "text", "text": "Label the shapes of small pictures."}]}
    items[1] = Example(
        messages=[system, *items[1].messages],
        images=items[1].images,
        label=items[1].label,
    )
    labels = [*CLASSES, "a red circle"]
    monkeypatch.setattr(evaluation, "SCORING_CACHE_TOKENS", 7 * 120)  # several continuation chunks
    scored = evaluation.score_examples(model, fmt, items, labels)
    for item, row in zip(items, scored, strict=True):
        assert row == pytest.approx(_full_forward_scores(model, fmt, item, labels), abs=1e-4)


def test_greedy_generation_of_a_batch_matches_one_at_a_time(adapted: dict[str, tuple[ChatFormat, Any]]) -> None:
    fmt, model = adapted["tiny-gemma-3-vision"]
    items = [example(label, random.Random(index)) for index, label in enumerate(CLASSES)]
    together = evaluation.generate(model, fmt, items, max_new_tokens=4)
    alone = [evaluation.generate(model, fmt, [item], max_new_tokens=4)[0] for item in items]
    assert together == alone


def test_staged_weights_come_from_the_mount_else_the_bucket_else_the_hub(tmp_path: Path) -> None:
    spec = registry.get("google/gemma-3-4b-it")
    assert locate_weights(spec, local_dir=tmp_path, mount=tmp_path / "no-mount") == "google/gemma-3-4b-it"
    blobs = MemoryBlobStore()
    prefix = staged_prefix(spec)
    assert prefix == "models/google/gemma-3-4b-it/"
    files = {"config.json": b"{}", "model-00001-of-00002.safetensors": b"a" * 10, "sub/extra.json": b"[]"}
    for name, content in files.items():
        blobs.upload_bytes(prefix + name, content)
    cache = tmp_path / "cache"
    found = Path(locate_weights(spec, local_dir=tmp_path, blobs=blobs, mount=tmp_path / "no-mount", cache_dir=cache))
    assert {p.relative_to(found).as_posix(): p.read_bytes() for p in found.rglob("*") if p.is_file()} == files
    # A retried task keeps what it downloaded.
    blobs.objects.clear()
    assert download_prefix(MemoryBlobStoreWith(files, prefix), prefix, found) == found
    mounted = tmp_path / "mnt" / prefix
    mounted.mkdir(parents=True)
    (mounted / "config.json").write_text("{}")
    assert locate_weights(spec, local_dir=tmp_path, blobs=blobs, mount=tmp_path / "mnt") == str(mounted)
    assert fetch_weights(str(mounted)) == str(mounted)
    assert fetch_weights("google/gemma-3-1b-it") == "google/gemma-3-1b-it"
    bucket = MemoryBlobStore()
    bucket.upload_bytes("base/config.json", b"{}")
    local = fetch_weights("gs://other/base", blobs_for_bucket=lambda name: bucket, cache_dir=cache)
    assert (Path(local) / "config.json").read_bytes() == b"{}"


class MemoryBlobStoreWith(MemoryBlobStore):
    """Lists the files but refuses downloads: what is already there must not be fetched again."""

    def __init__(self, files: dict[str, bytes], prefix: str) -> None:
        super().__init__()
        for name, content in files.items():
            self.upload_bytes(prefix + name, content)

    def download_file(self, path: str, local_path: Path) -> None:
        raise AssertionError(f"downloaded {path} again")


def test_lora_on_the_vision_tower_when_asked(local_dir: Path) -> None:
    spec = registry.get("tiny-gemma-4-vision")
    config = TrainConfig(
        job_id="t", owner="u", model=spec.id, dataset_id="d", gradient_checkpointing=False, lora_vision_tower=True
    )
    model = setup.prepare(setup.load_base(spec, resolve_weights(spec, local_dir), "qlora"), config)
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert any(".vision_tower." in n for n in adapted) and any(".language_model." in n for n in adapted)


@pytest.mark.parametrize("expansions", [1, 4])
@pytest.mark.parametrize("model_id", TINY_IDS)
def test_best_first_search_finds_the_full_forwards_winner(
    adapted: dict[str, tuple[ChatFormat, Any]], model_id: str, expansions: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The winner of 41 multi-token labels sharing first words (the 37 breeds and the shapes), found
    best first, is the label the full forwards score highest: for each prompt of a left-padded batch,
    on models whose random adapters spread their probability (so the search goes deep and wide)."""
    from bench.trainer import PET_BREEDS
    from runtune.training import best_first

    fmt, model = adapted[model_id]
    items = examples("test", 3)
    system = {"role": "system", "content": [{"type": "text", "text": "Label the shapes of small pictures."}]}
    items[1] = Example(messages=[system, *items[1].messages], images=items[1].images, label=items[1].label)
    labels = [*PET_BREEDS, *CLASSES]
    monkeypatch.setattr(best_first, "EXPANSIONS_PER_STEP", expansions)
    conversations = [evaluation.prompt_and_answer(item)[0] for item in items]
    prompts = [
        fmt.encode_prompt(messages, decode_images(item) if fmt.spec.modality == "vision" else [])
        for messages, item in zip(conversations, items, strict=True)
    ]
    candidates = [evaluation.label_continuations(fmt, fmt.prompt_text(messages), labels) for messages in conversations]
    batch = evaluation.left_pad(prompts, fmt.tokenizer.pad_token_id)
    steps: list[int] = []
    step_masks = best_first._step_masks
    monkeypatch.setattr(best_first, "_step_masks", lambda *args: steps.append(1) or step_masks(*args))
    winners = best_first.best_continuations(model, batch, candidates, fmt.tokenizer.pad_token_id)
    assert len(steps) > 1  # the search itself ran (not the exhaustive pass it falls back to)
    for item, (winner, score) in zip(items, winners, strict=True):
        reference = _full_forward_scores(model, fmt, item, labels)
        assert score == pytest.approx(reference[winner], abs=1e-4)
        # The same label, or one within rounding of it (two exact methods differ only on near-ties).
        assert reference[winner] == pytest.approx(max(reference), abs=1e-4)
