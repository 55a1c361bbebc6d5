"""The engine's state: base models (loaded on first use, never reloaded), which adapter belongs to
which base, and the batcher every request goes through."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import torch
from jinja2 import TemplateError

from engine.batcher import Batcher, Sink, Work
from engine.execute import (
    GenerateRequest,
    Prompt,
    ScoreRequest,
    ScoreSetRequest,
    batch_key,
    batch_limit,
    run_batch,
)
from engine.messages import Conversation
from engine.runtime import ModelRuntime, adapter_tensor_names, base_model_of
from runtune import serving
from runtune.errors import InvalidRequest, NotFound
from runtune.models.registry import lookup
from runtune.settings import EngineServerSettings
from runtune.training.chat import text_of


class LocalEngine:
    def __init__(self, settings: EngineServerSettings) -> None:
        self.settings = settings
        self._runtimes: dict[str, ModelRuntime] = {}
        self._adapters: dict[str, str] = {}  # adapter name -> base model id
        self._loading = threading.Lock()
        # One intra-op thread: the tiny models' matrices are too small to split, and on a shared CPU
        # torch's spinning worker threads cost more than they give (a 64-row forward pass measured
        # 52 ms on one thread, 1.4 s on two while other processes ran).
        torch.set_num_threads(1)
        self.batcher = Batcher(
            run_batch,
            max_batch=settings.max_batch,
            window_s=settings.batch_window_ms / 1000,
            limit=lambda key: batch_limit(key, settings.max_batch),
        )

    def close(self) -> None:
        self.batcher.close()

    # -- models and adapters ----------------------------------------------------------------------

    def model_ids(self) -> list[str]:
        return [*self.settings.models, *self._adapters]

    def runtime(self, base_id: str) -> ModelRuntime:
        """The base model, loaded on first use (one load per process, under a lock)."""
        with self._loading:
            if base_id not in self._runtimes:
                spec = lookup(base_id)
                assert spec is not None
                self._runtimes[base_id] = ModelRuntime(spec, self.settings.local_dir)
            return self._runtimes[base_id]

    def resolve(self, model: str) -> tuple[ModelRuntime, str | None]:
        if model in self._adapters:
            return self.runtime(self._adapters[model]), model
        if model in self.settings.models:
            return self.runtime(model), None
        raise NotFound(f"The model `{model}` does not exist.", param="model", code="model_not_found")

    def load_adapter(self, name: str, path: str) -> None:
        if name in self._adapters or name in self.settings.models:
            raise InvalidRequest(f"The lora adapter '{name}' has already been loaded.", param="lora_name")
        base = base_model_of(Path(path))
        if base is None or not Path(path, "adapter_config.json").is_file():
            raise NotFound(f"No LoRA adapter at '{path}'", param="lora_path", code="adapter_not_found")
        if base not in self.settings.models:
            raise InvalidRequest(
                f"The adapter was trained on '{base}', which this engine does not serve", param="lora_path"
            )
        spec = lookup(base)
        assert spec is not None  # the settings serve registry ids only
        config = json.loads(Path(path, "adapter_config.json").read_text())
        # The cloud engine's limits (vLLM --max-lora-rank, tower/connector LoRA), so an adapter this
        # engine serves is one vLLM serves too, and serves as trained.
        problem = serving.adapter_problem(config, adapter_tensor_names(Path(path)), spec, serving.load())
        if problem is not None:
            raise InvalidRequest(problem, param="lora_path", code="adapter_not_servable")
        self.runtime(base).load_adapter(name, path)
        self._adapters[name] = base

    def unload_adapter(self, name: str) -> None:
        base = self._adapters.get(name)
        if base is None:
            raise NotFound(f"The lora adapter '{name}' cannot be found.", param="lora_name")
        self.runtime(base).unload_adapter(name)
        del self._adapters[name]

    # -- requests -----------------------------------------------------------------------------------

    def prompt(self, model: str, conversation: Conversation, *, continue_final: bool) -> Prompt:
        runtime, adapter = self.resolve(model)
        if conversation.images and runtime.spec.modality != "vision":
            raise InvalidRequest(f"The model `{model}` reads text only", param="messages")
        messages = conversation.messages
        try:
            if continue_final and messages[-1]["role"] == "assistant":
                text = runtime.fmt.prompt_text(messages[:-1]) + text_of(messages[-1])
            elif continue_final:
                # As transformers' `continue_final_message` (what vLLM renders with): the conversation
                # without a generation prompt, cut after the final message's last text part (stripped).
                parts = [p for p in messages[-1]["content"] if p["type"] == "text"]
                final = (parts[-1].get("text") or "").strip() if parts else ""
                rendered = runtime.fmt.render(messages, generation_prompt=False)
                if not final or final not in rendered:
                    raise InvalidRequest("continue_final_message needs a final message with text", param="messages")
                text = rendered[: rendered.rindex(final) + len(final)]
            else:
                text = runtime.fmt.prompt_text(messages)
        except TemplateError as exc:
            raise InvalidRequest(f"The chat template refused the messages: {exc}", param="messages") from None
        return Prompt(runtime, adapter, text, conversation.images)

    def score_set(
        self, model: str, conversation: Conversation, continuations: list[str], *, best_only: bool = False
    ) -> ScoreSetRequest:
        """Every continuation after the conversation's prompt (as `prompt(..., continue_final=True)`
        renders a conversation ending in that assistant text), the prompt computed once for all."""
        head = self.prompt(model, conversation, continue_final=False)
        return ScoreSetRequest(head.runtime, head.adapter, head.text, head.images, continuations, best_only)

    def submit(self, request: GenerateRequest | ScoreRequest | ScoreSetRequest) -> Sink:
        sink = Sink(asyncio.get_running_loop())
        self.batcher.submit(Work(batch_key(request), request, sink))
        return sink

    def stats(self) -> dict[str, Any]:
        stats = self.batcher.stats
        return {
            "batches": stats.batches,
            "requests": stats.items,
            "largest_batch": stats.largest,
            "busy_s": round(stats.busy_s, 4),
            "recent": stats.sizes,
        }
