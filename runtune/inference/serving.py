"""The caller's models, servable on the engine: resolve a model id, load its adapter, ask the engine.
What the inference service's endpoints and the evaluation executions share."""

from __future__ import annotations

from typing import Any, TypeVar

from runtune.inference.adapter_pool import AdapterPool
from runtune.inference.resolver import ModelResolver, Target
from runtune.inference.staging import AdapterStager
from runtune.ports.blobs import BlobStore
from runtune.ports.engine import InferenceEngine, ScoringMethod
from runtune.ports.metadata import MetadataStore
from runtune.schemas.chat import check_messages
from runtune.settings import EngineClientSettings


class Serving:
    def __init__(self, store: MetadataStore, blobs: BlobStore, engine: InferenceEngine, stager: AdapterStager) -> None:
        self.store, self.blobs, self.engine = store, blobs, engine
        self.resolver = ModelResolver(store)
        self._stager = stager

    async def target(self, uid: str, model: str, param: str = "model") -> tuple[Target, str]:
        target = self.resolver.resolve(uid, model, param)
        return target, await self._stager.ready(target)

    async def answer(
        self,
        target: Target,
        messages: list[dict[str, Any]],
        max_tokens: int,
        temperature: float,
        top_p: float | None = None,
    ) -> str:
        check_messages(messages)  # vibe checks and evaluations: text and inline images only, as chat
        body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        if top_p is not None:
            body["top_p"] = top_p
        reply = await self._stager.run(target, lambda name: self.engine.chat({"model": name, **body}))
        return reply["choices"][0]["message"]["content"] or ""

    async def score(self, target: Target, messages: list[dict[str, Any]], continuations: list[str]) -> list[float]:
        check_messages(messages)
        return await self._stager.run(target, lambda name: self.engine.score(name, messages, continuations))

    async def best(
        self, target: Target, messages: list[dict[str, Any]], continuations: list[str], method: ScoringMethod
    ) -> int:
        """The index of the continuation the model finds most likely (label scoring), by `method`."""
        check_messages(messages)
        return await self._stager.run(target, lambda name: self.engine.best(name, messages, continuations, method))

    async def scoring_methods(self) -> list[ScoringMethod]:
        return await self.engine.scoring_methods()

    async def release(self) -> None:
        """Unload the adapters this process loaded (an evaluation execution's last step)."""
        await self._stager.release()

    async def aclose(self) -> None:
        close = getattr(self.engine, "aclose", None)
        if close is not None:
            await close()


def build_serving(settings: EngineClientSettings, store: MetadataStore, blobs: BlobStore, kind: type[S] = Serving) -> S:
    """The engine client, its adapter pool and stager, as the settings say (service and executions)."""
    from runtune import wiring

    engine = wiring.inference_engine(settings)
    stager = AdapterStager(
        AdapterPool(engine, settings.engine_max_adapters),
        blobs,
        root=settings.adapter_root,
        download=settings.engine_adapter_download,
    )
    return kind(store, blobs, engine, stager)


S = TypeVar("S", bound=Serving)
