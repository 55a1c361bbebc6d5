"""Running an evaluation in the background: every example of a split through the engine, for each
model; classification by label scoring (default) or by free generation mapped to the labels, with the
metric code the trainer uses (`runtune.metrics`). Per-sample predictions go to the bucket as JSONL."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool

from runtune.datasets.canonical import Example, read_split
from runtune.metrics.classification import classification_report, map_to_label
from runtune.metrics.text import generation_report
from runtune.owned import OwnedCollection
from runtune.ports.metadata import MetadataStore, Where
from runtune.schemas.common import ApiError, now_ts
from runtune.schemas.datasets import TaskKind
from runtune.schemas.inference import Evaluation, EvaluationStatus
from services.inference.models import Target
from services.inference.service import InferenceService

log = logging.getLogger("runtune.inference")
# A running evaluation is saved at least this often (its heartbeat) ...
HEARTBEAT_S = 20
# ... so one whose last beat is older than this has no live worker (the service stopped under it).
STALE_S = 120
ORPHANED = "The inference service stopped while this evaluation ran; start it again"
# A label answer is short: room for a long label and a little chatter, not a paragraph.
LABEL_ANSWER_TOKENS = 16
GENERATION_TOKENS = 256


def predictions_path(uid: str, evaluation_id: str) -> str:
    return f"users/{uid}/evaluations/{evaluation_id}/predictions.jsonl"


def _text(message: dict[str, Any]) -> str:
    return "".join(part.get("text") or "" for part in message["content"] if part["type"] == "text")


def as_openai(example: Example) -> tuple[list[dict[str, Any]], str]:
    """The prompt (OpenAI messages, images as data URLs) and the reference answer of an example."""
    last = max(i for i, m in enumerate(example.messages) if m["role"] == "assistant")
    images = iter(example.images)
    messages = []
    for message in example.messages[:last]:
        parts = []
        for part in message["content"]:
            if part["type"] == "image":
                data = base64.b64encode(next(images)).decode()
                parts.append({"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}})
            else:
                parts.append({"type": "text", "text": part.get("text") or ""})
        messages.append({"role": message["role"], "content": parts})
    return messages, _text(example.messages[last]).strip()


def fail_orphaned(store: MetadataStore, evaluations: OwnedCollection[Evaluation], now: int | None = None) -> int:
    """Mark `failed` every queued or running evaluation whose worker stopped beating; how many."""
    now = now or now_ts()
    failed = 0
    active = [EvaluationStatus.queued.value, EvaluationStatus.running.value]
    for _, document in store.query("evaluations", where=[Where("status", "in", active)]):
        evaluation = Evaluation.model_validate(document)
        if now - (evaluation.heartbeat_at or evaluation.created_at) <= STALE_S:
            continue  # another instance is still working on it
        evaluation.status, evaluation.finished_at = EvaluationStatus.failed, now
        evaluation.error = ApiError(code="evaluation_interrupted", message=ORPHANED)
        evaluations.save(evaluation)
        failed += 1
        log.warning("orphaned evaluation marked failed", extra={"evaluation": evaluation.id})
    return failed


class EvaluationRunner:
    def __init__(self, inference: InferenceService, evaluations: OwnedCollection[Evaluation], concurrency: int) -> None:
        self._inference, self._evaluations, self._concurrency = inference, evaluations, concurrency

    async def run(self, evaluation: Evaluation, task: TaskKind, end_of_turn: dict[str, str]) -> None:
        beating = asyncio.create_task(self._beat(evaluation))
        try:
            await self._run(evaluation, task, end_of_turn)
        except asyncio.CancelledError:  # the service is stopping: say so now rather than at the next sweep
            evaluation.status, evaluation.finished_at = EvaluationStatus.failed, now_ts()
            evaluation.error = ApiError(code="evaluation_interrupted", message=ORPHANED)
            await asyncio.shield(run_in_threadpool(self._save, evaluation))
            raise
        except Exception as exc:  # the evaluation ends `failed` with a reason, never stays `running`
            log.exception("evaluation failed", extra={"evaluation": evaluation.id})
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {str(exc)[:300]}"
            evaluation.status, evaluation.finished_at = EvaluationStatus.failed, now_ts()
            evaluation.error = ApiError(code="evaluation_failed", message=message)
            await run_in_threadpool(self._save, evaluation)
        finally:
            beating.cancel()

    def _save(self, evaluation: Evaluation) -> None:
        evaluation.heartbeat_at = now_ts()
        self._evaluations.save(evaluation)

    async def _beat(self, evaluation: Evaluation) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await run_in_threadpool(self._save, evaluation)

    async def _run(self, evaluation: Evaluation, task: TaskKind, end_of_turn: dict[str, str]) -> None:
        uid = evaluation.owner
        examples = await run_in_threadpool(
            lambda: list(read_split(self._inference.blobs, uid, evaluation.dataset_id, evaluation.split))
        )
        examples = examples[: evaluation.max_samples] if evaluation.max_samples else examples
        evaluation.status, evaluation.samples_total = EvaluationStatus.running, len(examples) * len(evaluation.models)
        await run_in_threadpool(self._save, evaluation)
        rows: list[dict[str, Any]] = [{"index": i} for i in range(len(examples))]
        prompts = [as_openai(example) for example in examples]
        truth = [example.label or reference for example, (_, reference) in zip(examples, prompts, strict=True)]
        for model in evaluation.models:
            target, _ = await self._inference.target(uid, model)
            predictions = await self._predict(evaluation, target, prompts, task, end_of_turn[model])
            if task is TaskKind.classification:
                metrics = classification_report(truth, predictions, evaluation.labels)
            else:
                metrics = generation_report(predictions, [reference for _, reference in prompts])
            evaluation.metrics[model] = metrics
            for row, predicted, expected in zip(rows, predictions, truth, strict=True):
                row["expected"] = expected
                row.setdefault("predictions", {})[model] = predicted
        body = "".join(json.dumps(row) + "\n" for row in rows).encode()
        await run_in_threadpool(
            self._inference.blobs.upload_bytes,
            predictions_path(uid, evaluation.id),
            body,
            content_type="application/x-ndjson",
        )
        evaluation.status, evaluation.finished_at = EvaluationStatus.succeeded, now_ts()
        await run_in_threadpool(self._save, evaluation)

    async def _predict(
        self,
        evaluation: Evaluation,
        target: Target,
        prompts: list[tuple[list[dict[str, Any]], str]],
        task: TaskKind,
        eot: str,
    ) -> list[Any]:
        gate = asyncio.Semaphore(self._concurrency)
        labels = evaluation.labels
        inference = self._inference

        async def one(messages: list[dict[str, Any]]) -> Any:
            async with gate:
                if task is TaskKind.classification and evaluation.method == "label_scoring":
                    # The label as the model would write it, end of turn included (as trained), so a
                    # label that is the prefix of another cannot win by stopping early.
                    scores = await inference.score(target, messages, [label + eot for label in labels])
                    result: Any = labels[max(range(len(labels)), key=scores.__getitem__)]
                elif task is TaskKind.classification:
                    answer = await inference.answer(target, messages, LABEL_ANSWER_TOKENS, 0.0)
                    result = map_to_label(answer, labels)
                else:
                    result = await inference.answer(target, messages, GENERATION_TOKENS, 0.0)
            evaluation.samples_done += 1
            if evaluation.samples_done % 25 == 0:
                await run_in_threadpool(self._save, evaluation)
            return result

        return list(await asyncio.gather(*(one(messages) for messages, _ in prompts)))
