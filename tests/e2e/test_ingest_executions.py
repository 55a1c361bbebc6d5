"""Dataset ingestion runs as executions of its own: killing one (kill -9, as the kernel's OOM
killer or Cloud Run would) fails that dataset with the reason, and nobody else notices."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.datasets.builders import chat_line
from tests.datasets.client import api, bucket, create, ingest, upload, wait
from tests.e2e.jobs_support import processes_running
from tests.support import sign_up

pytestmark = pytest.mark.platform


def execution_pids(dataset_id: str) -> list[int]:
    """Processes whose argv names the dataset: its execution (a child of the preprocessing service),
    an unreaped one too."""
    return list(processes_running(dataset_id, "tests.e2e.scripted_ingest", zombies=True))


def wait_until(predicate, what: str, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_ingestion_fails_its_dataset_while_others_are_served(platform, monkeypatch) -> None:
    victim, other = sign_up(platform.auth_host), sign_up(platform.auth_host)
    lines = "\n".join(chat_line(f"question {i}", f"answer {i}") for i in range(200)).encode()
    with api(platform.gateway_url, victim["id_token"]) as client, api(platform.gateway_url, other["id_token"]) as peer:
        made = upload(client, "big.jsonl", lines)
        dataset = create(client, made["id"], name="hold-big")
        # Mid-way: rows converted, the dataset's own copy of its source already in its prefix.
        wait_until(
            lambda: (client.get(f"/v1/datasets/{dataset['id']}").json().get("progress") or {}).get("done"),
            "the ingestion to convert rows",
        )
        blobs = bucket(platform.emulator_env, monkeypatch)
        prefix = f"users/{victim['uid']}/datasets/{dataset['id']}/"
        assert blobs.list(prefix)
        (pid,) = execution_pids(dataset["id"])

        # Another user is served while that ingestion holds its execution...
        listed = peer.get("/v1/datasets")
        assert listed.status_code == 200 and listed.json()["data"] == []
        small = ingest(peer, "small.jsonl", chat_line("q", "a").encode() + b"\n")
        assert small["status"] == "ready", small

        os.kill(pid, signal.SIGKILL)
        failed = wait(client, dataset["id"])
        # ...and after it was killed.
        assert peer.get(f"/v1/datasets/{small['id']}").json()["status"] == "ready"

    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "ingestion_killed"
    assert "ingestion stopped: killed by signal SIGKILL" in failed["error"]["message"]
    assert failed["progress"] is None
    # The execution could not clean up after itself; the reconcile did.
    assert not blobs.list(prefix)
    assert not execution_pids(dataset["id"])
