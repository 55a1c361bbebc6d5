"""Evaluations run as executions of their own (`python -m jobs.evaluate <id>`, a child process of the
inference service's local launcher, as a Cloud Run job task in the cloud): killing one (kill -9, as an
out-of-memory kill would) fails that evaluation with the reason, while the service keeps answering
and another user's evaluation finishes."""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx
import pytest

from tests.e2e.jobs_support import processes_running, put_demo_dataset, wait_for
from tests.support import sign_up

pytestmark = pytest.mark.platform

BASES = ["tiny-gemma-3-vision", "tiny-gemma-4-vision"]


def _client(platform: Any) -> httpx.Client:
    user = sign_up(platform.auth_host)
    client = httpx.Client(
        base_url=platform.gateway_url, headers={"authorization": f"Bearer {user['id_token']}"}, timeout=120
    )
    client.uid = user["uid"]  # type: ignore[attr-defined]
    return client


def evaluation_processes(evaluation_id: str) -> list[int]:
    """Pids of the processes whose argv names the evaluation: its execution, found as an operator would
    (an unreaped one too)."""
    return list(processes_running("jobs.evaluate", evaluation_id, zombies=True))


def _evaluation(client: httpx.Client, evaluation_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/evaluations/{evaluation_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def _finished(client: httpx.Client, evaluation_id: str) -> dict[str, Any] | None:
    evaluation = _evaluation(client, evaluation_id)
    return evaluation if evaluation["status"] in ("succeeded", "failed") else None


def test_a_killed_evaluation_execution_fails_its_evaluation_only(platform: Any) -> None:
    victim, other = _client(platform), _client(platform)
    big = put_demo_dataset(platform, victim.uid, {"train": 240, "test": 8})
    small = put_demo_dataset(platform, other.uid, {"train": 8, "test": 8})
    # Long enough to be caught running: free generation by two models over the whole train split.
    body = {"dataset_id": big, "split": "train", "models": BASES, "method": "generation"}
    created = victim.post("/v1/evaluations", json=body)
    assert created.status_code == 202, created.text
    evaluation_id = created.json()["id"]
    assert "execution_name" not in created.json()  # internal

    wait_for(lambda: _evaluation(victim, evaluation_id)["status"] == "running", timeout_s=180, every_s=0.2)
    pids = evaluation_processes(evaluation_id)
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)

    # Meanwhile the service answers, and another user's evaluation runs to the end.
    theirs = other.post("/v1/evaluations", json={"dataset_id": small, "models": BASES[:1], "max_samples": 4})
    assert theirs.status_code == 202, theirs.text
    chat = other.post(
        "/v1/chat/completions",
        json={"model": BASES[0], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    )
    assert chat.status_code == 200, chat.text

    failed = wait_for(lambda: _finished(victim, evaluation_id), timeout_s=120, every_s=0.5)
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "evaluation_exited"
    assert "SIGKILL" in failed["error"]["message"] and failed["finished_at"] is not None
    assert evaluation_processes(evaluation_id) == []
    listed = victim.get("/v1/evaluations").json()["data"]
    assert [e["status"] for e in listed if e["id"] == evaluation_id] == ["failed"]

    done = wait_for(lambda: _finished(other, theirs.json()["id"]), timeout_s=300, every_s=0.5)
    assert done["status"] == "succeeded", done.get("error")
    assert done["metrics"][BASES[0]]["samples"] == 4
    # The report as runtune.metrics made it, every key kept (classification or text metrics).
    classification = {"accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "per_class"}
    classification |= {"confusion_matrix", "unmapped_rate", "samples"}
    assert set(done["metrics"][BASES[0]]) in (classification, {"exact_match", "token_f1", "rouge_l", "samples"})
