"""Export of a finished job, under its folder in the data bucket (`runtune.blob_layout.export_prefix`).

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
                                        The files `save_pretrained` would write (same tensor names,
                                        shards and index), but streamed: one shard at a time is
                                        written, uploaded and deleted, since the trainer's disk on
                                        Cloud Run is its memory (see `save_streamed`).
                                        QLoRA: merged into the *unquantized* base, never into the
                                        4-bit weights. Full fine-tuning: the tuned model itself
                                        (and no adapter folder). Absent with export.merged=false.
    config.json                         the resolved TrainConfig, written when the job starts
    history.json                        one record per optimizer step (loss, lr, grad norm, ...)
    export/checkpoints/step-XXXXXX/     LoRA and QLoRA jobs: the adapter at the end of each of the
                                        last epochs, laid out as export/adapter/ (a model checkpoint,
                                        `ft:...:ckpt-step-N`; runtune.training.model_checkpoints)
    checkpoints/step-XXXXXX/            resume states, see runtune.training.checkpoints

The job document's `runtune.export` maps `adapter` / `merged` to those folders' blob paths
(`users/{uid}/jobs/{job_id}/export/adapter/`); `fine_tuned_model` is `ft:{base model}:{job_id}`.
With export.push_to_hub set, the adapter folder (or the full model) is also pushed to that Hugging
Face repository (private when created) with the user's token.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from runtune.blob_layout import ADAPTER, MERGED, export_folder
from runtune.estimate import EXPORT_SHARD_BYTES
from runtune.models.loading import model_class
from runtune.models.registry import ModelSpec
from runtune.models.spm import SPM_FILE
from runtune.ports.blobs import BlobStore
from runtune.schemas.jobs import TrainConfig

log = logging.getLogger("runtune.trainer")

CHAT_FORMAT_FILE = "chat_format.json"
# The largest shard of a streamed model: what the memory filesystem holds at once (plus its bytes
# while safetensors serialises it). 2 GB keeps that small next to the 32/80 GiB instances and still
# makes objects large enough for the upload to run at full speed (~28 shards for a 27B model). The
# estimate counts the same figure.
MAX_SHARD_BYTES = EXPORT_SHARD_BYTES


def upload_dir(blobs: BlobStore, local: Path, prefix: str) -> list[str]:
    paths = []
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        path = prefix + file.relative_to(local).as_posix()
        blobs.upload_file(path, file)
        paths.append(path)
    return paths


def download_dir(blobs: BlobStore, prefix: str, local: Path) -> list[Path]:
    """Every object under `prefix` into `local`, at its path below the prefix."""
    files = []
    for info in blobs.list(prefix):
        blobs.download_file(info.path, local / info.path.removeprefix(prefix))
        files.append(local / info.path.removeprefix(prefix))
    return files


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
            *([f"- continued from: `{config.parent_model}` (the adapter holds all of it)"] * bool(config.parent_model)),
            f"- method: {config.method} (LoRA rank {config.lora_rank}, alpha {config.lora_alpha})",
            *([f"- objective: DPO on preference pairs, beta {config.beta}"] * (config.objective == "dpo")),
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
    adapter_prefix, merged_prefix = (export_folder(config.owner, config.job_id, kind) for kind in (ADAPTER, MERGED))
    card = model_card(config, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        if config.method == "full":
            folder = Path(tmp) / MERGED
            _stream_to(blobs, model.to(torch.bfloat16), folder, merged_prefix)
            _describe(folder, config, spec, processor, card)
            upload_dir(blobs, folder, merged_prefix)
            return {MERGED: merged_prefix}
    save_adapter(blobs, adapter_prefix, config=config, spec=spec, model=model, processor=processor, card=card)
    return {ADAPTER: adapter_prefix}


def save_adapter(
    blobs: BlobStore, prefix: str, *, config: TrainConfig, spec: ModelSpec, model: Any, processor: Any, card: str
) -> None:
    """The LoRA adapter as it stands, with what serving needs beside it, into `prefix`: the final
    export's `adapter/` and each model checkpoint's folder (runtune.training.model_checkpoints)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / ADAPTER
        # adapter_model.safetensors + adapter_config.json of the trained adapter alone (a continued dpo
        # job's frozen reference adapter is not part of its model).
        adapters = getattr(model, "peft_config", None) or {}
        model.save_pretrained(folder, **({"selected_adapters": ["default"]} if len(adapters) > 1 else {}))
        _describe(folder, config, spec, processor, card)
        upload_dir(blobs, folder, prefix)


def export_merged(
    blobs: BlobStore,
    *,
    config: TrainConfig,
    spec: ModelSpec,
    weights_path: str,
    processor: Any,
    metrics: dict[str, Any],
    token: str | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> dict[str, str]:
    """Merge the exported adapter into the unquantized base, in bfloat16, and upload it shard by
    shard. Call it after the training model is released: the base is loaded whole once more."""
    adapter_prefix, merged_prefix = (export_folder(config.owner, config.job_id, kind) for kind in (ADAPTER, MERGED))
    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(tmp) / ADAPTER
        download_dir(blobs, adapter_prefix, adapter)
        folder = Path(tmp) / MERGED
        merged = merge(spec, weights_path, adapter, token=token)
        _stream_to(blobs, merged, folder, merged_prefix, max_shard_bytes=max_shard_bytes)
        del merged
        release_memory()
        _describe(folder, config, spec, processor, model_card(config, metrics))
        copy_sentencepiece(weights_path, folder, token=token)
        upload_dir(blobs, folder, merged_prefix)
    return {MERGED: merged_prefix}


def copy_sentencepiece(weights_path: str, folder: Path, *, token: str | None = None) -> None:
    """The base's `tokenizer.model` beside the merged model: llama.cpp's converter reads a Gemma
    vocabulary from it (runtune.gguf_export), and a fast tokenizer's `save_pretrained` omits it."""
    if (Path(weights_path) / SPM_FILE).is_file():
        shutil.copyfile(Path(weights_path) / SPM_FILE, folder / SPM_FILE)
        return
    if Path(weights_path).exists():
        return  # a local base without one: the GGUF export will say so
    from huggingface_hub import hf_hub_download

    try:
        shutil.copyfile(hf_hub_download(weights_path, SPM_FILE, token=token), folder / SPM_FILE)
    except Exception as exc:  # the merged model is complete without it; only GGUF needs it
        log.warning(
            "no tokenizer.model for the merged export", extra={"model": weights_path, "error": type(exc).__name__}
        )


def merge(spec: ModelSpec, weights_path: str, adapter: Path, *, token: str | None = None) -> Any:
    """The base loaded unquantized in bfloat16 (on the GPU when it fits, else in host memory) with
    the adapter folded in."""
    from peft import PeftModel

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16, "token": token}
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        if free > 1.3 * spec.parameters * 2:
            kwargs["device_map"] = {"": 0}
    base = model_class(spec).from_pretrained(weights_path, **kwargs)
    return PeftModel.from_pretrained(base, adapter).merge_and_unload()


def _stream_to(
    blobs: BlobStore, model: Any, folder: Path, prefix: str, *, max_shard_bytes: int = MAX_SHARD_BYTES
) -> None:
    # A retried task may have left shards of another split behind; they must not sit next to (and
    # be listed with) this export's.
    blobs.delete_prefix(prefix)
    save_streamed(
        model, folder, lambda shard: blobs.upload_file(prefix + shard.name, shard), max_shard_bytes=max_shard_bytes
    )


def save_streamed(
    model: Any, folder: Path, upload: Callable[[Path], None], *, max_shard_bytes: int = MAX_SHARD_BYTES
) -> list[str]:
    """What `model.save_pretrained(folder, max_shard_size=max_shard_bytes)` writes, with each weight
    shard handed to `upload` as soon as it is written and deleted after it, so `folder` never holds
    more than one shard (and host memory one shard's tensors, when the model is on the GPU).
    Returns the shards' names in order. The index, `config.json` and `generation_config.json` stay
    in `folder` for the caller to upload with the other small files, after the shards: a folder
    with a config is then a complete one.

    The state dict goes through the steps `save_pretrained` takes (keys ignored on save, tied
    weights dropped, transformers' weight conversions reverted: Gemma 3's vision model saves the
    legacy `language_model.model.*` names), so the files load with `from_pretrained` exactly like
    its own; tests compare the two outputs tensor by tensor."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file
    from transformers.core_model_loading import revert_weight_conversion
    from transformers.modeling_utils import remove_tied_weights_from_state_dict
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    for key in getattr(model, "_keys_to_ignore_on_save", None) or ():
        state.pop(key, None)
    state = revert_weight_conversion(model, remove_tied_weights_from_state_dict(state, model))
    split = split_torch_state_dict_into_shards(
        state,
        filename_pattern=SAFE_WEIGHTS_NAME.replace(".safetensors", "{suffix}.safetensors"),
        max_shard_size=max_shard_bytes,
    )
    for name, tensor_names in split.filename_to_tensors.items():
        # Popped, so that tensors the conversion made (rather than the model's own) go with their
        # shard; on the GPU, `.to("cpu")` makes this shard's host copy, freed after the upload.
        shard = {key: state.pop(key).detach().to("cpu").contiguous() for key in tensor_names}
        path = folder / name
        save_file(shard, path, metadata={"format": "pt"})
        del shard
        upload(path)
        path.unlink()
    if split.is_sharded:
        index = {
            "metadata": {"total_parameters": model.num_parameters(), **split.metadata},
            "weight_map": split.tensor_to_filename,
        }
        (folder / SAFE_WEIGHTS_INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    # As `save_pretrained` records them: the dtype saved and the class that saved it.
    model.config.dtype = str(model.dtype).split(".")[1]
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(folder)
    if model.can_generate():
        model.generation_config.save_pretrained(folder)
    return list(split.filename_to_tensors)


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
