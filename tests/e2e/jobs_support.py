"""Helpers for the jobs tests: ready datasets, jobs left mid-launch, trainer processes, polling, and the
training service killed and started again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from openai import OpenAI
from openai.types.fine_tuning import FineTuningJob

from runtune.schemas import Dataset, DatasetStatus, TaskKind
from runtune.schemas.common import new_id, now_ts
from runtune.schemas.datasets import Progress
from tests.support import pets_dataset, wait_for


def put_dataset(platform, uid: str, *, status: DatasetStatus = DatasetStatus.ready, modality: str = "vision") -> str:
    """A dataset document as the preprocessing service leaves it (the jobs API reads only the document)."""
    from runtune.adapters.firestore import FirestoreMetadataStore

    splits = {"train": 40, "validation": 10, "test": 10}
    dataset = pets_dataset(uid, status, modality=modality, splits=splits)
    if status is DatasetStatus.processing:
        # Held mid-launch (a claim the preprocessing service leaves alone for 15 minutes): without it the
        # service would launch an ingestion for this document, which has no input, and fail it, at a
        # moment that depends on the machine's speed.
        dataset = dataset.model_copy(
            update={"execution_name": "launching", "progress": Progress(phase="launching", updated_at=now_ts())}
        )
    with pytest.MonkeyPatch.context() as patch:
        for name, value in platform.emulator_env.items():
            patch.setenv(name, value)
        FirestoreMetadataStore.for_project(platform.project_id).set(f"datasets/{dataset.id}", dataset.to_document())
    return dataset.id


def job_status(client: httpx.Client, job_id: str) -> str:
    return client.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"]


def sdk_job_succeeded(sdk: OpenAI, job_id: str) -> FineTuningJob:
    """The job once it ended, through the `openai` SDK; it must have succeeded (else its error)."""

    def ended() -> FineTuningJob | None:
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        return job if job.status in ("succeeded", "failed", "cancelled") else None

    job = wait_for(ended, timeout_s=600, every_s=1)
    assert job.status == "succeeded", job.error
    return job


def supervised_method(n_epochs: int, batch_size: int, *, checkpoint_every_steps: int) -> dict[str, Any]:
    """A supervised job's `method`: its epochs and batch, a resume state every `checkpoint_every_steps`
    steps, and the adapter alone exported (no merged model to write)."""
    hyperparameters = {"n_epochs": n_epochs, "batch_size": batch_size}
    runtune = {"checkpoint_every_steps": checkpoint_every_steps, "export": {"merged": False}}
    return {"type": "supervised", "supervised": {"hyperparameters": hyperparameters, "runtune": runtune}}


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


def claimed_launch(
    platform, uid: str, dataset_id: str, *, attempts: int, claimed_s_ago: float = 3600, script: str = "succeed"
) -> str:
    """A job as a training service leaves it between the launch claim and storing the execution
    (killed there, when the claim is old; still launching, when it is fresh): queued,
    `execution_name` "launching", the claim `claimed_s_ago` old."""
    from runtune import owned
    from runtune.adapters.firestore import FirestoreMetadataStore
    from runtune.schemas.jobs import CreateJobRequest, Job, JobPhase, JobStatus

    model = "tiny-gemma-3-vision"
    request = CreateJobRequest(model=model, training_file=dataset_id, metadata={"script": script})
    job = Job(
        id=new_id("ftjob"),
        owner=uid,
        model=model,
        training_file=dataset_id,
        hyperparameters={"n_epochs": 1, "batch_size": 1, "learning_rate_multiplier": 1.0},
        options=request.method.supervised.runtune,
        metadata={"script": script},
        status=JobStatus.queued,
        phase=JobPhase.launching,
        gpu="nvidia-l4",
        execution_name="launching",
        heartbeat_at=time.time() - claimed_s_ago,
        runtune={"launch_attempts": attempts},
    )
    with pytest.MonkeyPatch.context() as patch:
        for name, value in platform.emulator_env.items():
            patch.setenv(name, value)
        owned.jobs(FirestoreMetadataStore.for_project(platform.project_id)).create(job)
    return job.id


TRAINER_MODULES = ("jobs.trainer", "tests.e2e.scripted_trainer")


def processes_running(*words: str, zombies: bool = False) -> dict[int, list[str]]:
    """Live processes (pid -> argv) whose command line holds every one of `words` (Linux: /proc);
    with `zombies`, also those that ended but that their parent has not reaped."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
            zombie = not zombies and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:  # it ended meanwhile
            continue
        if not zombie and all(word in argv for word in words):
            found[int(entry.name)] = argv
    return found


def trainer_pids(job_id: str) -> list[int]:
    """The live trainer processes (real or scripted) of a job, whoever launched them."""
    return sorted(pid for module in TRAINER_MODULES for pid in processes_running(module, job_id))


class TrainingService:
    """The platform's training service, killed (SIGKILL) and started again as it was, on its port."""

    def __init__(self, platform) -> None:
        self.url = platform.services["training"]
        self.log_dir = Path(platform.log_dir)
        self.replacement: subprocess.Popen[bytes] | None = None

    def kill_and_restart(self) -> None:
        self.restart(self.kill())

    def kill(self) -> tuple[list[str], dict[str, str], str]:
        """SIGKILL it; returns what starts it again as it was (argv, environment, folder)."""
        port = str(urlparse(self.url).port)
        found = processes_running("services.training.app:create_app", port)
        assert len(found) == 1, found
        pid, argv = found.popitem()
        environ = dict(
            line.split("=", 1) for line in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in line
        )
        cwd = os.readlink(f"/proc/{pid}/cwd")
        os.kill(pid, signal.SIGKILL)
        if self.replacement is not None and self.replacement.pid == pid:
            self.replacement.wait()  # an earlier replacement: reaped, not left a zombie
        wait_for(lambda: pid not in processes_running("services.training.app:create_app", port), timeout_s=30)
        return argv, environ, cwd

    def restart(self, how: tuple[list[str], dict[str, str], str]) -> None:
        argv, environ, cwd = how
        self.log = self.log_dir / "training-restarted.log"
        with self.log.open("ab") as log:
            self.replacement = subprocess.Popen(argv, env=environ, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._healthy, timeout_s=120)

    def _healthy(self) -> bool:
        assert self.replacement is not None
        assert self.replacement.poll() is None, f"the restarted service exited: {self.log.read_text()[-3000:]}"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        if self.replacement is not None:
            self.replacement.terminate()
            try:
                self.replacement.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.replacement.kill()
                self.replacement.wait()
