"""Inference engine port: the OpenAI-compatible protocol subset vLLM serves.

Chat completions (image parts as data URLs, streaming), the model list, and LoRA adapters loaded
and unloaded at run time (`/v1/load_lora_adapter`, `/v1/unload_lora_adapter`). In the cloud the
engine is `vllm serve <base> --enable-lora`; locally a small transformers server speaks the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any, Protocol

from runtune.errors import InvalidRequest


class EngineModelNotFound(InvalidRequest):
    """The engine does not serve the model named (404): an adapter it lost when it restarted, typically."""


class ScoringMethod(StrEnum):
    """How label scoring asks the engine; all give the same (exact) ranking."""

    batched = "batched"  # Runtune's scoring extension: one request, every label from one prefill
    # The same extension asked for the winner only: label prefixes expanded best first on the engine's
    # cache, so a confident model costs about a label's length of steps (`best` only; `score` with it
    # scores every label by `batched`).
    best_first = "best_first"
    per_label = "per_label"  # a `prompt_logprobs` request per label (vLLM: no prefix cache for them)
    prefix_search = "prefix_search"  # first-token top log-probabilities, then prefixes best first


class InferenceEngine(Protocol):
    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streaming chat completion (`body` is an OpenAI chat completions request)."""

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """The raw Server-Sent Events of a streaming chat completion."""

    async def models(self) -> list[str]:
        """The ids the engine serves now: its base model and the adapters loaded."""

    async def load_adapter(self, name: str, path: str) -> None:
        """Load the LoRA adapter in local folder `path` (on the engine's disk) under `name`."""

    async def unload_adapter(self, name: str) -> None: ...

    async def score(
        self,
        model: str,
        messages: list[dict[str, Any]],
        continuations: list[str],
        method: ScoringMethod | None = None,
    ) -> list[float]:
        """Log-likelihood of each continuation as the model's next turn after `messages` (label scoring).

        Only differences between the scores are meaningful: tokens shared by every continuation
        are left out, which leaves the ranking exactly that of the full continuations."""

    async def scoring_methods(self) -> list[ScoringMethod]:
        """The label-scoring methods this engine offers (each exact)."""

    async def best(
        self, model: str, messages: list[dict[str, Any]], continuations: list[str], method: ScoringMethod
    ) -> int:
        """The index of the most likely continuation (the first of equals)."""
