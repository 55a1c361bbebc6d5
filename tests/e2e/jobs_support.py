"""Helpers for the jobs tests: ready datasets and polling."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from runtune.schemas import Dataset, DatasetStatus, TaskKind
from runtune.schemas.common import new_id


def put_dataset(platform, uid: str, *, status: DatasetStatus = DatasetStatus.ready, modality: str = "vision") -> str:
    """A dataset document as the preprocessing service leaves it (the jobs API reads only the document)."""
    from runtune.adapters.firestore import FirestoreMetadataStore

    dataset = Dataset(
        id=new_id("file"),
        owner=uid,
        name="pets",
        status=status,
        task_kind=TaskKind.classification,
        modality=modality,  # type: ignore[arg-type]
        splits={"train": 40, "validation": 10, "test": 10},
        labels=["cat", "dog"],
    )
    with pytest.MonkeyPatch.context() as patch:
        for name, value in platform.emulator_env.items():
            patch.setenv(name, value)
        FirestoreMetadataStore.for_project(platform.project_id).set(f"datasets/{dataset.id}", dataset.to_document())
    return dataset.id


def wait_for(check: Callable[[], Any], *, timeout_s: float = 60, every_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"condition not met in {timeout_s}s")


def job_status(client: httpx.Client, job_id: str) -> str:
    return client.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"]


def trainer_pid(job_id: str) -> int | None:
    """The pid of the local trainer process of this job (the local launcher's execution), if any."""
    found = subprocess.run(["pgrep", "-f", f"jobs.trainer {job_id}"], capture_output=True, text=True, check=False)
    pids = [int(pid) for pid in found.stdout.split()]
    return pids[0] if pids else None


def put_demo_dataset(platform, uid: str, counts: dict[str, int] | None = None) -> str:
    """The generated demo classification set, written as the preprocessing service would leave it."""
    from runtune.adapters.firestore import FirestoreMetadataStore
    from runtune.adapters.gcs import GcsBlobStore
    from runtune.demo.shapes import CLASSES, write_demo_dataset

    with pytest.MonkeyPatch.context() as patch:
        for name, value in platform.emulator_env.items():
            patch.setenv(name, value)
        blobs = GcsBlobStore.for_bucket(platform.project_id, platform.emulator_env["RUNTUNE_BUCKET"])
        dataset_id = new_id("file")
        demo = write_demo_dataset(blobs, uid, dataset_id, counts=counts)
        dataset = Dataset(
            id=dataset_id,
            owner=uid,
            name="demo shapes",
            status=DatasetStatus.ready,
            task_kind=TaskKind.classification,
            modality="vision",
            splits=demo.counts,
            labels=list(CLASSES),
        )
        FirestoreMetadataStore.for_project(platform.project_id).set(f"datasets/{dataset_id}", dataset.to_document())
    return dataset_id
