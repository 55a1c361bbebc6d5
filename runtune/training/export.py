"""Export of a finished job, under its folder in the data bucket (`users/{uid}/jobs/{job_id}/`).

Layout (what the inference service and users load; stable):

    export/adapter/                     LoRA and QLoRA jobs: the adapter, loadable with
        adapter_model.safetensors         `PeftModel.from_pretrained(base, folder)`
        adapter_config.json
        chat_template.jinja             the chat template it was trained with, plus the processor's
        tokenizer.json, tokenizer_config.json, processor_config.json, ... (vision models)
        chat_format.json                how prompts are rendered: the template kwargs (Gemma 4:
                                          enable_thinking=false), add_generation_prompt, end of turn
        training_config.json            the resolved TrainConfig (`model` is the registry id)
        README.md                       the model card, with the evaluation metrics
    export/merged/                      a merged 16-bit (bfloat16) model: `from_pretrained(folder)`
        model.safetensors (or sharded model-0000x-of-0000y.safetensors + index), config.json,
        generation_config.json, the same processor files, chat_format.json, README.md
                                        QLoRA: merged into the *unquantized* base, never into the
                                        4-bit weights. Full fine-tuning: the tuned model itself
                                        (and no adapter folder). Absent with export.merged=false.
    config.json                         the resolved TrainConfig, written when the job starts
    history.json                        one record per optimizer step (loss, lr, grad norm, ...)
    checkpoints/step-XXXXXX/            see runtune.training.checkpoints

The job document's `runtune.export` maps `adapter` / `merged` to those folders' blob paths
(`users/{uid}/jobs/{job_id}/export/adapter/`); `fine_tuned_model` is `ft:{base model}:{job_id}`.
With export.push_to_hub set, the adapter folder (or the full model) is also pushed to that Hugging
Face repository (private when created) with the user's token.
"""

from __future__ import annotations

import gc
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from runtune.models.loading import model_class
from runtune.models.registry import ModelSpec
from runtune.ports.blobs import BlobStore
from runtune.training.checkpoints import job_prefix
from runtune.training.config import TrainConfig

log = logging.getLogger("runtune.trainer")

ADAPTER, MERGED = "adapter", "merged"
CHAT_FORMAT_FILE = "chat_format.json"


def export_prefix(uid: str, job_id: str) -> str:
    return f"{job_prefix(uid, job_id)}export/"


def upload_dir(blobs: BlobStore, local: Path, prefix: str) -> list[str]:
    paths = []
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        path = prefix + file.relative_to(local).as_posix()
        blobs.upload_file(path, file)
        paths.append(path)
    return paths


def chat_format(spec: ModelSpec) -> dict[str, Any]:
    return {
        "template_kwargs": dict(spec.family.template_kwargs),
        "add_generation_prompt": True,
        "end_of_turn": spec.family.end_of_turn,
        "family": spec.family.name,
    }


def model_card(config: TrainConfig, metrics: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"# {config.model} fine-tuned by Runtune (job {config.job_id})",
            "",
            f"- base model: `{config.model}`",
            f"- method: {config.method} (LoRA rank {config.lora_rank}, alpha {config.lora_alpha})",
            f"- epochs: {config.epochs}, batch size {config.batch_size} x {config.gradient_accumulation_steps}",
            f"- learning rate: {config.learning_rate} ({config.lr_scheduler}, warmup {config.warmup_ratio})",
            "",
            "The chat template the model was trained with is `chat_template.jinja`; prompts must be rendered",
            "with it, `add_generation_prompt=True` and the keyword arguments of `chat_format.json` to match",
            "training token for token.",
            "",
            "## Metrics",
            "",
            "```json",
            json.dumps(metrics, indent=2, default=float),
            "```",
            "",
        ]
    )


def _describe(folder: Path, config: TrainConfig, spec: ModelSpec, processor: Any, card: str) -> None:
    processor.save_pretrained(folder)  # tokenizer, image processor, chat_template.jinja
    (folder / CHAT_FORMAT_FILE).write_text(json.dumps(chat_format(spec), indent=2))
    (folder / "training_config.json").write_text(config.model_dump_json(indent=2))
    (folder / "README.md").write_text(card)


def export_adapter(
    blobs: BlobStore,
    *,
    config: TrainConfig,
    spec: ModelSpec,
    model: Any,
    processor: Any,
    metrics: dict[str, Any],
) -> dict[str, str]:
    """The adapter (LoRA, QLoRA) or, for full fine-tuning, the model itself as `merged/`."""
    prefix = export_prefix(config.owner, config.job_id)
    card = model_card(config, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        if config.method == "full":
            folder = Path(tmp) / MERGED
            model.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
            _describe(folder, config, spec, processor, card)
            upload_dir(blobs, folder, prefix + f"{MERGED}/")
            return {MERGED: prefix + f"{MERGED}/"}
        folder = Path(tmp) / ADAPTER
        model.save_pretrained(folder)  # adapter_model.safetensors + adapter_config.json
        _describe(folder, config, spec, processor, card)
        upload_dir(blobs, folder, prefix + f"{ADAPTER}/")
    return {ADAPTER: prefix + f"{ADAPTER}/"}


def export_merged(
    blobs: BlobStore,
    *,
    config: TrainConfig,
    spec: ModelSpec,
    weights_path: str,
    processor: Any,
    metrics: dict[str, Any],
    token: str | None = None,
) -> dict[str, str]:
    """Merge the exported adapter into the unquantized base, in bfloat16, and upload it. Call it after
    the training model is released: the base is loaded whole once more."""
    prefix = export_prefix(config.owner, config.job_id)
    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(tmp) / ADAPTER
        for info in blobs.list(prefix + f"{ADAPTER}/"):
            blobs.download_file(info.path, adapter / info.path.removeprefix(prefix + f"{ADAPTER}/"))
        merged = Path(tmp) / MERGED
        merge(spec, weights_path, adapter, merged, token=token)
        _describe(merged, config, spec, processor, model_card(config, metrics))
        upload_dir(blobs, merged, prefix + f"{MERGED}/")
    return {MERGED: prefix + f"{MERGED}/"}


def merge(spec: ModelSpec, weights_path: str, adapter: Path, out: Path, *, token: str | None = None) -> None:
    """Load the base unquantized in bfloat16 (on the GPU when it fits, else in host memory), apply
    the adapter, fold it in, save 16-bit safetensors."""
    from peft import PeftModel

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16, "token": token}
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        if free > 1.3 * spec.parameters * 2:
            kwargs["device_map"] = {"": 0}
    base = model_class(spec).from_pretrained(weights_path, **kwargs)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    del base, merged
    release_memory()


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def push_to_hub(blobs: BlobStore, locations: dict[str, str], repo_id: str, token: str | None) -> str:
    """Push the adapter folder (or the full model) to a Hugging Face repository; returns its URL."""
    if not token:
        raise PermissionError(
            "export.push_to_hub needs a Hugging Face token with write access: add it as the 'hf_token' secret "
            "(PUT /v1/secrets/hf_token)"
        )
    from huggingface_hub import HfApi

    prefix = locations.get(ADAPTER) or locations[MERGED]
    api = HfApi(token=token)
    api.create_repo(repo_id, private=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for info in blobs.list(prefix):
            blobs.download_file(info.path, Path(tmp) / info.path.removeprefix(prefix))
        api.upload_folder(folder_path=tmp, repo_id=repo_id, commit_message="Runtune export")
    return f"https://huggingface.co/{repo_id}"
