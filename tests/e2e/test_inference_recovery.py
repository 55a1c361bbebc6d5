"""The inference service recovering from a stop, on the real Firestore emulator: evaluations a stopped
process left `queued`/`running` are failed with a reason when the service starts; an evaluation another
live instance still beats for is left alone, and finished ones are never touched."""

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
from services.inference.evaluations import STALE_S


def _evaluation(status: EvaluationStatus, *, beat_ago: int | None, created_ago: int = 3600) -> Evaluation:
    now = now_ts()
    return Evaluation(
        id=f"eval-{uuid.uuid4().hex[:12]}",
        owner=f"user-{uuid.uuid4().hex[:6]}",
        dataset_id="ds-1",
        models=["tiny-gemma-3-vision"],
        status=status,
        created_at=now - created_ago,
        heartbeat_at=None if beat_ago is None else now - beat_ago,
    )


def test_service_start_fails_the_evaluations_a_stopped_process_left_running(
    emulators: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in emulators.env().items():
        monkeypatch.setenv(name, value)
    store = FirestoreMetadataStore.for_project(emulators.project_id)
    cases = {
        "orphaned running": _evaluation(EvaluationStatus.running, beat_ago=10 * STALE_S),
        "orphaned queued": _evaluation(EvaluationStatus.queued, beat_ago=None),
        "live elsewhere": _evaluation(EvaluationStatus.running, beat_ago=5),
        "just queued": _evaluation(EvaluationStatus.queued, beat_ago=None, created_ago=5),
        "succeeded": _evaluation(EvaluationStatus.succeeded, beat_ago=10 * STALE_S),
    }
    for evaluation in cases.values():
        store.set(f"evaluations/{evaluation.id}", evaluation.to_document())

    app = create_app(InferenceSettings(internal_token_sha256=token_sha256("t"), engine_url="http://127.0.0.1:9"))

    async def start_and_stop() -> None:
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(start_and_stop())
    after = {
        name: Evaluation.model_validate(store.get(f"evaluations/{evaluation.id}")) for name, evaluation in cases.items()
    }
    for name in ("orphaned running", "orphaned queued"):
        assert after[name].status is EvaluationStatus.failed, name
        assert after[name].error is not None and after[name].error.code == "evaluation_interrupted"
        assert "stopped" in after[name].error.message and after[name].finished_at is not None
    assert after["live elsewhere"].status is EvaluationStatus.running
    assert after["just queued"].status is EvaluationStatus.queued
    assert after["succeeded"].status is EvaluationStatus.succeeded and after["succeeded"].error is None
