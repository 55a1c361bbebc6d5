"""One base model in memory with its LoRA adapters (peft multi-adapter): adapters come and go
without the base weights ever being reloaded, and one batch may mix rows of different adapters."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import torch

from runtune.errors import InvalidRequest, NotFound
from runtune.models.loading import load_processor, model_class, resolve_weights, tokenizer_of
from runtune.models.registry import ModelSpec
from runtune.training.chat import ChatFormat

log = logging.getLogger("runtune.engine")

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


class ModelRuntime:
    def __init__(self, spec: ModelSpec, local_dir: Path) -> None:
        self.spec = spec
        weights = resolve_weights(spec, local_dir)
        self.processor = load_processor(spec, weights)
        self.fmt = ChatFormat(spec, self.processor)
        self.tokenizer = tokenizer_of(self.processor)
        # Generation pads on the left, so every row's next token follows its own last token.
        self.tokenizer.padding_side = "left"
        # float32: the CPU has no fast bf16 matmuls (the same choice as the trainer's).
        self.model: Any = model_class(spec).from_pretrained(weights, dtype=torch.float32).eval()
        self.adapters: dict[str, str] = {}
        self.lock = threading.Lock()  # adapter changes never overlap a forward pass
        self._pieces: dict[int, str] = {}  # token id -> its text, for `prompt_logprobs`' decoded_token
        self.stop_ids = sorted(
            {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids(spec.family.end_of_turn)}
        )

    def load_adapter(self, name: str, path: str) -> None:
        from peft import PeftModel

        folder = Path(path)
        if not (folder / "adapter_config.json").is_file():
            raise NotFound(f"No LoRA adapter at '{path}'", param="lora_path", code="adapter_not_found")
        with self.lock:
            if name in self.adapters:
                raise InvalidRequest(f"The lora adapter '{name}' has already been loaded.", param="lora_name")
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(folder), adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(folder), adapter_name=name).eval()
            self.adapters[name] = path
        log.info("adapter loaded", extra={"adapter": name, "base": self.spec.id})

    def unload_adapter(self, name: str) -> None:
        with self.lock:
            if name not in self.adapters:
                raise NotFound(f"The lora adapter '{name}' cannot be found.", param="lora_name")
            del self.adapters[name]
            if self.adapters:
                self.model.delete_adapter(name)
            else:
                # The last one: back to the plain base model (weights untouched, LoRA layers removed).
                self.model = self.model.unload()
        log.info("adapter unloaded", extra={"adapter": name, "base": self.spec.id})

    def piece(self, token: int) -> str:
        """A token's text, decoded once per process (a prompt's every token is reported when scoring)."""
        if (text := self._pieces.get(token)) is None:
            text = self._pieces[token] = self.tokenizer.decode([token])
        return text

    def adapter_kwargs(self, adapters: list[str | None]) -> dict[str, Any]:
        """`adapter_names` for a mixed batch (rows without an adapter run the base weights)."""
        if not self.adapters:
            return {}
        return {"adapter_names": [name or BASE for name in adapters]}

    def encode(self, texts: list[str], images: list[list[Any]]) -> dict[str, Any]:
        """Left-padded model inputs for rendered prompts (all rows with images, or none)."""
        if self.spec.modality == "vision" and any(images):
            return dict(
                self.processor(text=texts, images=images, padding=True, add_special_tokens=False, return_tensors="pt")
            )
        return dict(self.tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt"))


def base_model_of(adapter_folder: Path) -> str | None:
    """The registry id an exported adapter was trained on (Runtune writes its training config beside it)."""
    config = adapter_folder / "training_config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("model")
    peft_config = adapter_folder / "adapter_config.json"
    if peft_config.is_file():
        base = json.loads(peft_config.read_text()).get("base_model_name_or_path") or ""
        return Path(base).name or None
    return None


def adapter_tensor_names(adapter_folder: Path) -> list[str]:
    """The names of a saved peft adapter's weights (read from the safetensors header, no tensor loaded)."""
    from safetensors import safe_open

    weights = adapter_folder / "adapter_model.safetensors"
    if not weights.is_file():
        return []
    with safe_open(str(weights), framework="pt") as tensors:
        return list(tensors.keys())
