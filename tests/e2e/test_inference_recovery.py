"""The inference service reconciling evaluations on the real Firestore emulator, when it starts: one
whose execution is gone (the launcher knows no such execution) or that was never launched is failed
with the reason; one whose execution still beats is left alone, and finished ones are never touched."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from runtune.adapters.firestore import FirestoreMetadataStore
from runtune.internal_auth import token_sha256
from runtune.schemas.common import now_ts
from runtune.schemas.inference import Evaluation, EvaluationStatus
from runtune.settings import InferenceSettings
from services.inference.app import create_app

LONG_AGO = 3600


def _evaluation(
    status: EvaluationStatus, *, beat_ago: int | None, created_ago: int = LONG_AGO, execution: str | None = None
) -> Evaluation:
    now = now_ts()
    return Evaluation(
        id=f"eval-{uuid.uuid4().hex[:12]}",
        owner=f"user-{uuid.uuid4().hex[:6]}",
        dataset_id="ds-1",
        models=["tiny-gemma-3-vision"],
        status=status,
        created_at=now - created_ago,
        heartbeat_at=None if beat_ago is None else now - beat_ago,
        execution_name=execution,
    )


def test_service_start_fails_the_evaluations_whose_execution_is_gone(
    emulators: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name, value in emulators.env().items():
        monkeypatch.setenv(name, value)
    store = FirestoreMetadataStore.for_project(emulators.project_id)
    cases = {
        "execution gone": _evaluation(EvaluationStatus.running, beat_ago=LONG_AGO, execution="local/eval-x/0badc0de"),
        "never launched": _evaluation(EvaluationStatus.queued, beat_ago=None),
        "beating": _evaluation(EvaluationStatus.running, beat_ago=5, execution="local/eval-y/0badc0de"),
        "just created": _evaluation(EvaluationStatus.queued, beat_ago=None, created_ago=5),
        "succeeded": _evaluation(EvaluationStatus.succeeded, beat_ago=LONG_AGO, execution="local/eval-z/0badc0de"),
    }
    for evaluation in cases.values():
        store.set(f"evaluations/{evaluation.id}", evaluation.to_document())

    settings = InferenceSettings(
        internal_token_sha256=token_sha256("t"), engine_url="http://127.0.0.1:9", local_dir=tmp_path
    )
    app = create_app(settings)

    async def start() -> None:
        # Only the start's sweep: stopping fails what this service's own launcher stopped.
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(start())
    after = {
        name: Evaluation.model_validate(store.get(f"evaluations/{evaluation.id}")) for name, evaluation in cases.items()
    }
    gone, never = after["execution gone"], after["never launched"]
    assert gone.status is EvaluationStatus.failed and gone.error is not None
    assert gone.error.code == "evaluation_interrupted" and "no such execution" in gone.error.message
    assert never.status is EvaluationStatus.failed and never.error is not None
    assert never.error.code == "evaluation_interrupted" and "never started" in never.error.message
    assert gone.finished_at is not None and gone.execution_name == "local/eval-x/0badc0de"
    assert after["beating"].status is EvaluationStatus.running
    assert after["just created"].status is EvaluationStatus.queued
    assert after["succeeded"].status is EvaluationStatus.succeeded and after["succeeded"].error is None
