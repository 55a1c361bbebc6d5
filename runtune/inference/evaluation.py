"""Running an evaluation (in its own execution, `python -m jobs.evaluate`): every example of a split
through the engine, for each model; classification by label scoring (default) or by free generation
mapped to the labels, with the metric code the trainer uses (`runtune.metrics`). Per-sample
predictions go to the bucket as JSONL.

The execution owns the evaluation's progress fields (status, samples, metrics, error, heartbeat) and
writes only those, in a transaction that never reopens an evaluation that is over: the inference
service may have failed it meanwhile (its execution looked gone), and that verdict stands.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from runtune.blob_layout import predictions_path
from runtune.datasets.canonical import Example, read_split
from runtune.inference.resolver import Target
from runtune.inference.serving import Serving
from runtune.metrics.classification import classification_report, map_to_label
from runtune.metrics.text import generation_report
from runtune.outbox import on_transition
from runtune.owned import datasets
from runtune.ports.engine import ScoringMethod
from runtune.ports.metadata import Document, MetadataStore
from runtune.schemas.common import ApiError, now_ts
from runtune.schemas.datasets import TaskKind
from runtune.schemas.inference import Evaluation, EvaluationStatus
from runtune.schemas.reports import ClassificationReport, ModelReport, TextReport

log = logging.getLogger("runtune.evaluate")
# A label answer is short: room for a long label and a little chatter, not a paragraph.
LABEL_ANSWER_TOKENS = 16
GENERATION_TOKENS = 256
# Label scoring: samples (at least; the concurrency if more) each method is timed on before the rest
# run with the fastest.
CALIBRATION_SAMPLES = 16
# The fields the execution writes; everything else (owner, request, execution name) is the service's.
PROGRESS_FIELDS = (
    "status",
    "samples_done",
    "samples_total",
    "metrics",
    "scoring_method",
    "error",
    "finished_at",
    "heartbeat_at",
)


def evaluation_path(evaluation_id: str) -> str:
    return f"evaluations/{evaluation_id}"


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


class EvaluationOver(Exception):
    """The stored evaluation is already over (failed by the service, typically): stop working on it."""


class EvaluationRunner:
    def __init__(self, serving: Serving, store: MetadataStore, *, concurrency: int, heartbeat_s: float) -> None:
        self._serving, self._store = serving, store
        self._concurrency, self._heartbeat_s = concurrency, heartbeat_s

    async def run(self, evaluation: Evaluation) -> bool:
        """Run it to the end; True when it succeeded. Every failure ends it `failed` with a reason."""
        beating = asyncio.create_task(self._beat(evaluation))
        try:
            await self._run(evaluation)
            return True
        except EvaluationOver:
            log.warning("evaluation ended elsewhere; stopping", extra={"evaluation": evaluation.id})
            return False
        except Exception as exc:  # the evaluation ends `failed` with a reason, never stays `running`
            log.exception("evaluation failed", extra={"evaluation": evaluation.id})
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {str(exc)[:300]}"
            evaluation.status, evaluation.finished_at = EvaluationStatus.failed, now_ts()
            evaluation.error = ApiError(code="evaluation_failed", message=message)
            with contextlib.suppress(EvaluationOver):
                await run_in_threadpool(self.save, evaluation)
            return False
        finally:
            beating.cancel()
            try:
                await self._serving.release()
            except Exception:  # hygiene only: a leftover adapter is evicted by the engine's other users
                log.warning("could not unload this evaluation's adapters", exc_info=True)

    def save(self, evaluation: Evaluation) -> None:
        evaluation.heartbeat_at = now_ts()
        progress = {key: value for key, value in evaluation.to_document().items() if key in PROGRESS_FIELDS}

        def merge(current: Document | None) -> Document | None:
            if current is None or Evaluation.model_validate(current).is_finished:
                return None
            return {**current, **progress}

        if self._store.transact(evaluation_path(evaluation.id), merge, also=on_transition("evaluation")) is None:
            raise EvaluationOver(evaluation.id)

    async def _beat(self, evaluation: Evaluation) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                await run_in_threadpool(self.save, evaluation)
            except EvaluationOver:
                return
            except Exception:  # a Firestore hiccup: the next beat tries again
                log.warning("heartbeat failed", exc_info=True, extra={"evaluation": evaluation.id})

    async def _run(self, evaluation: Evaluation) -> None:
        uid = evaluation.owner
        dataset = await run_in_threadpool(datasets(self._store).get_owned, uid, evaluation.dataset_id)
        task = dataset.task_kind or TaskKind.generation
        # Resolved again here (the request was checked when it was made): a model deleted since is a
        # 404 that fails the evaluation with its message.
        targets = [
            self._serving.resolver.resolve(uid, model, f"models[{i}]") for i, model in enumerate(evaluation.models)
        ]
        examples = await run_in_threadpool(
            lambda: list(read_split(self._serving.blobs, uid, evaluation.dataset_id, evaluation.split))
        )
        examples = examples[: evaluation.max_samples] if evaluation.max_samples else examples
        evaluation.status, evaluation.samples_total = EvaluationStatus.running, len(examples) * len(evaluation.models)
        await run_in_threadpool(self.save, evaluation)
        rows: list[dict[str, Any]] = [{"index": i} for i in range(len(examples))]
        prompts = [as_openai(example) for example in examples]
        truth = [example.label or reference for example, (_, reference) in zip(examples, prompts, strict=True)]
        for model, target in zip(evaluation.models, targets, strict=True):
            await self._serving.target(uid, model)  # the adapter loaded before the first sample
            predictions = await self._predict(evaluation, target, prompts, task, target.spec.family.end_of_turn)
            report: ModelReport
            if task is TaskKind.classification:
                report = ClassificationReport.model_validate(
                    classification_report(truth, predictions, evaluation.labels)
                )
            else:
                report = TextReport.model_validate(generation_report(predictions, [ref for _, ref in prompts]))
            evaluation.metrics[model] = report
            for row, predicted, expected in zip(rows, predictions, truth, strict=True):
                row["expected"] = expected
                row.setdefault("predictions", {})[model] = predicted
        body = "".join(json.dumps(row) + "\n" for row in rows).encode()
        await run_in_threadpool(
            self._serving.blobs.upload_bytes,
            predictions_path(uid, evaluation.id),
            body,
            content_type="application/x-ndjson",
        )
        evaluation.status, evaluation.finished_at = EvaluationStatus.succeeded, now_ts()
        await run_in_threadpool(self.save, evaluation)

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
        serving = self._serving
        # The label as the model would write it, end of turn included (as trained), so a label that
        # is the prefix of another cannot win by stopping early.
        continuations = [label + eot for label in labels]
        scoring = task is TaskKind.classification and evaluation.method == "label_scoring"

        async def one(messages: list[dict[str, Any]], method: ScoringMethod | None = None, count: bool = True) -> Any:
            async with gate:
                if scoring:
                    assert method is not None
                    result: Any = labels[await serving.best(target, messages, continuations, method)]
                elif task is TaskKind.classification:
                    answer = await serving.answer(target, messages, LABEL_ANSWER_TOKENS, 0.0)
                    result = map_to_label(answer, labels)
                else:
                    result = await serving.answer(target, messages, GENERATION_TOKENS, 0.0)
            if count:
                evaluation.samples_done += 1
                if evaluation.samples_done % 25 == 0:
                    await run_in_threadpool(self.save, evaluation)
            return result

        messages = [conversation for conversation, _ in prompts]
        if not scoring:
            return list(await asyncio.gather(*(one(conversation) for conversation in messages)))
        done: list[Any] = []
        if evaluation.scoring_method is None:
            done, evaluation.scoring_method = await self._fastest(messages, one)
        method = ScoringMethod(evaluation.scoring_method)
        rest = await asyncio.gather(*(one(conversation, method) for conversation in messages[len(done) :]))
        return [*done, *rest]

    async def _fastest(
        self, messages: list[list[dict[str, Any]]], one: Callable[..., Awaitable[Any]]
    ) -> tuple[list[Any], ScoringMethod]:
        """The label-scoring method this engine runs fastest, timed on the first samples (every method
        is exact, so their answers agree): those samples' predictions and the method."""
        methods = await self._serving.scoring_methods()
        if len(messages) < 2 or len(methods) == 1:
            return [], methods[0]
        probe = messages[: max(CALIBRATION_SAMPLES, self._concurrency)]
        timed: dict[ScoringMethod, tuple[float, list[Any]]] = {}
        for index, method in enumerate(methods):
            await one(probe[0], method, count=False)  # warm-up: first use (a label plan, connections)
            started = time.perf_counter()
            answers = await asyncio.gather(*(one(m, method, count=index == 0) for m in probe))
            timed[method] = (time.perf_counter() - started, list(answers))
        chosen = min(timed, key=lambda method: timed[method][0])
        seconds = {str(method): round(elapsed, 3) for method, (elapsed, _) in timed.items()}
        disagreeing = sum(len({timed[m][1][i] for m in timed}) > 1 for i in range(len(probe)))
        log.info("label scoring method chosen", extra={"method": str(chosen), "seconds": seconds})
        if disagreeing:  # exact methods differ only on near-ties (float rounding)
            log.warning("label scoring methods disagreed on near-ties", extra={"samples": disagreeing})
        return timed[chosen][1], chosen
