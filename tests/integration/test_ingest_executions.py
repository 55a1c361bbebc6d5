"""Dataset ingestion as executions: the service launches one per dataset and reconciles the ones
that stop without finishing (against the real emulators, with a scripted launcher), and
`python -m jobs.ingest` runs one dataset end to end as a process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from runtune.adapters.firestore import FirestoreMetadataStore
from runtune.adapters.gcs import GcsBlobStore
from runtune.datasets.ingest_execution import DatasetIngestion, Outcome, describe_stop
from runtune.datasets.limits import DatasetLimits
from runtune.errors import UpstreamUnavailable
from runtune.owned import datasets as dataset_collection
from runtune.owned import uploads as upload_collection
from runtune.ports.launcher import ExecutionState, ExecutionStatus, LaunchRequest, Workload
from runtune.schemas.common import now_ts
from runtune.schemas.datasets import Dataset, DatasetStatus, IngestSpec, Progress
from runtune.settings import REPO_ROOT
from services.preprocessing.service import LAUNCHING, DatasetService, IngestPolicy

pytestmark = pytest.mark.emulators


@pytest.mark.parametrize(
    ("status", "code", "says"),
    [
        (ExecutionStatus("e", ExecutionState.failed, "killed by signal SIGKILL", 137), "ingestion_killed", "SIGKILL"),
        # Cloud Run reports a container killed by the kernel as exit code 137.
        (ExecutionStatus("e", ExecutionState.failed, "exit code 137", 137), "ingestion_killed", "SIGKILL"),
        (
            ExecutionStatus("e", ExecutionState.failed, "Memory limit of 16384 MiB exceeded with 16401 MiB used."),
            "ingestion_out_of_memory",
            "out of memory (Memory limit of 16384 MiB exceeded",
        ),
        (
            ExecutionStatus("e", ExecutionState.failed, "timeout after 3600s"),
            "ingestion_timeout",
            "timed out after 3600s",
        ),
        (ExecutionStatus("e", ExecutionState.failed, "exit code 1", 1), "ingestion_crashed", "exited with code 1"),
        (ExecutionStatus("e", ExecutionState.cancelled, "cancelled"), "ingestion_cancelled", "cancelled"),
        (ExecutionStatus("e", ExecutionState.succeeded, None, 0), "ingestion_lost", "without recording a result"),
        (ExecutionStatus("e", ExecutionState.unknown, "no such execution"), "ingestion_lost", "no such execution"),
    ],
)
def test_why_an_execution_stopped_in_the_users_words(status, code, says) -> None:
    error = describe_stop(status)
    assert error.code == code
    assert error.message.startswith("ingestion stopped: ") and says in error.message


class ScriptedLauncher:
    def __init__(self) -> None:
        self.launched: list[LaunchRequest] = []
        self.cancelled: list[str] = []
        self.states: dict[str, ExecutionStatus] = {}
        self.fail_launch = False

    def launch(self, request: LaunchRequest) -> str:
        if self.fail_launch:
            raise UpstreamUnavailable("Could not start the ingest execution")
        self.launched.append(request)
        name = f"executions/{request.job_id}"
        self.states[name] = ExecutionStatus(name, ExecutionState.pending)
        return name

    def cancel(self, execution_name: str) -> None:
        self.cancelled.append(execution_name)

    def status(self, execution_name: str) -> ExecutionStatus:
        return self.states.get(execution_name, ExecutionStatus(execution_name, ExecutionState.unknown, "gone"))


def dataset_service(
    emulators, launcher: ScriptedLauncher, project: str, **policy
) -> tuple[DatasetService, GcsBlobStore]:
    store = FirestoreMetadataStore.for_project(project)
    blobs = GcsBlobStore.for_bucket(emulators.project_id, emulators.bucket)
    blobs.ensure_bucket()
    service = DatasetService(
        dataset_collection(store),
        upload_collection(store),
        blobs,
        DatasetLimits(),
        launcher,
        IngestPolicy(task_timeout_s=1800, check_after_s=5, **policy),
    )
    return service, blobs


@pytest.fixture
def project() -> str:
    # A project of its own: scheduling reads every user's processing datasets (other tests' included).
    return f"demo-ingest-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def parts(emulators, project):
    launcher = ScriptedLauncher()
    service, blobs = dataset_service(emulators, launcher, project)
    return service, launcher, blobs


def new_file(service: DatasetService, uid: str) -> Dataset:
    return service.create_file(uid, "t.jsonl", "fine-tune", io.BytesIO(b'{"messages": []}\n'), None)


def quiet(service: DatasetService, dataset_id: str, seconds: int) -> None:
    """Backdate the dataset's last progress report (what a stopped execution leaves behind)."""
    progress = Progress(phase="converting", done=10, updated_at=now_ts() - seconds)
    service.datasets.update(dataset_id, {"progress": progress.model_dump(mode="json")})


def test_create_launches_one_ingest_execution_and_stores_its_inputs(parts) -> None:
    service, launcher, _ = parts
    uid = f"u-{uuid.uuid4().hex[:8]}"
    dataset = new_file(service, uid)
    (request,) = launcher.launched
    assert (request.job_id, request.workload, request.gpu, request.timeout_seconds) == (
        dataset.id,
        Workload.ingest,
        None,
        1800,
    )
    stored = service.datasets.get(dataset.id)
    assert stored is not None and stored.execution_name == f"executions/{dataset.id}"
    assert stored.ingest == IngestSpec(
        object_path=f"users/{uid}/datasets/{dataset.id}/source/t.jsonl", filename="t.jsonl"
    )
    # Internal fields never reach the API.
    assert "ingest" not in dataset.model_dump() and "execution_name" not in dataset.model_dump()


def test_a_killed_execution_fails_its_dataset_on_read_and_removes_its_blobs(parts) -> None:
    service, launcher, blobs = parts
    uid = f"u-{uuid.uuid4().hex[:8]}"
    dataset = new_file(service, uid)
    execution = f"executions/{dataset.id}"
    launcher.states[execution] = ExecutionStatus(execution, ExecutionState.running)
    quiet(service, dataset.id, 60)
    assert service.get(uid, dataset.id).status is DatasetStatus.processing  # alive, only quiet

    launcher.states[execution] = ExecutionStatus(execution, ExecutionState.failed, "killed by signal SIGKILL", 137)
    failed = service.get(uid, dataset.id)
    assert failed.status is DatasetStatus.failed and failed.error is not None
    assert failed.error.message.startswith("ingestion stopped: killed by signal SIGKILL")
    assert service.datasets.get(dataset.id).status is DatasetStatus.failed
    assert not blobs.list(f"users/{uid}/datasets/{dataset.id}/")


def test_a_recent_report_is_not_checked_and_a_finished_dataset_is_kept(parts) -> None:
    service, launcher, _ = parts
    uid = f"u-{uuid.uuid4().hex[:8]}"
    dataset = new_file(service, uid)
    execution = f"executions/{dataset.id}"
    launcher.states[execution] = ExecutionStatus(execution, ExecutionState.failed, "exit code 1", 1)
    # Reported a moment ago: not checked yet.
    assert service.get(uid, dataset.id).status is DatasetStatus.processing
    # The execution wrote `ready` just before it ended: the reconcile never overwrites it.
    quiet(service, dataset.id, 60)
    stale = service.datasets.get(dataset.id)
    service.datasets.update(dataset.id, {"status": DatasetStatus.ready.value})
    assert service.reconciled(stale).status is DatasetStatus.ready


def test_the_periodic_pass_fails_unread_datasets(parts) -> None:
    service, launcher, _ = parts
    uid = f"u-{uuid.uuid4().hex[:8]}"
    dataset = new_file(service, uid)
    quiet(service, dataset.id, 60)
    launcher.states[f"executions/{dataset.id}"] = ExecutionStatus("x", ExecutionState.failed, "timeout after 1800s")
    assert dataset.id in service.reconcile()
    error = service.datasets.get(dataset.id).error
    assert error is not None and "timed out after 1800s" in error.message


def test_a_launch_claimed_and_never_recorded_fails_after_a_while(parts) -> None:
    service, _, _ = parts
    uid = f"u-{uuid.uuid4().hex[:8]}"
    dataset = new_file(service, uid)
    # The service stopped between claiming the launch and recording the execution.
    service.datasets.update(dataset.id, {"execution_name": LAUNCHING})
    assert service.reconciled(service.datasets.get(dataset.id)).status is DatasetStatus.processing
    later = service.reconciled(service.datasets.get(dataset.id), now=time.time() + 16 * 60)
    assert later.status is DatasetStatus.failed and "never started" in later.error.message


def test_ingestion_starts_round_robin_across_users_and_waiting_never_fails(emulators) -> None:
    launcher = ScriptedLauncher()
    service, _ = dataset_service(emulators, launcher, f"demo-fair-{uuid.uuid4().hex[:8]}", max_concurrent=2)
    greedy, modest = f"u-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
    first = [new_file(service, greedy) for _ in range(4)]
    theirs = new_file(service, modest)
    started = [request.job_id for request in launcher.launched]
    assert started == [first[0].id, first[1].id]  # both slots taken; three datasets wait
    waiting = service.datasets.get(theirs.id)
    assert waiting.status is DatasetStatus.processing and waiting.execution_name is None
    assert waiting.progress is not None and waiting.progress.phase == "queued"
    # Waiting is not being lost: a day later, unlaunched, it is still just waiting.
    assert service.reconciled(waiting, now=time.time() + 24 * 3600).status is DatasetStatus.processing

    # A slot frees: the next turn is the user with none running, not the greedy user's next in line.
    service.datasets.update(first[0].id, {"status": DatasetStatus.ready.value})
    service.reconcile()
    assert [request.job_id for request in launcher.launched][2:] == [theirs.id]
    service.datasets.update(first[1].id, {"status": DatasetStatus.ready.value})
    assert service.get(greedy, first[2].id).execution_name == f"executions/{first[2].id}"
    assert [request.job_id for request in launcher.launched][3:] == [first[2].id]
    assert service.datasets.get(first[3].id).execution_name is None


def test_a_dataset_failed_while_its_execution_runs_never_flips_back_to_ready(emulators) -> None:
    launcher = ScriptedLauncher()
    service, blobs = dataset_service(emulators, launcher, f"demo-flip-{uuid.uuid4().hex[:8]}")
    uid = f"u-{uuid.uuid4().hex[:8]}"
    body = "\n".join(
        json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]})
        for i in range(3)
    )
    dataset = service.create_file(uid, "t.jsonl", "fine-tune", io.BytesIO(body.encode() + b"\n"), None)

    def failed_by_the_service(current: Dataset, phase: str, done: int, total: int | None) -> None:
        if phase == "converting" and done > 0:
            service.datasets.update(current.id, {"status": DatasetStatus.failed.value})

    ingestion = DatasetIngestion(
        service.datasets, blobs, lambda owner, name: None, DatasetLimits(), failed_by_the_service
    )
    assert ingestion.run(service.datasets.get(dataset.id)) is Outcome.skipped
    assert service.datasets.get(dataset.id).status is DatasetStatus.failed
    assert not blobs.list(f"users/{uid}/datasets/{dataset.id}/")


def test_launch_failure_answers_a_failed_dataset(parts) -> None:
    service, launcher, blobs = parts
    uid = f"u-{uuid.uuid4().hex[:8]}"
    launcher.fail_launch = True
    dataset = new_file(service, uid)
    assert dataset.status is DatasetStatus.failed and dataset.error is not None
    assert dataset.error.code == "ingestion_not_started"
    assert "Could not start the ingest execution" in dataset.error.message
    assert service.get(uid, dataset.id).status is DatasetStatus.failed
    assert not blobs.list(f"users/{uid}/datasets/{dataset.id}/")


def test_deleting_a_processing_dataset_cancels_its_execution(parts) -> None:
    service, launcher, _ = parts
    uid = f"u-{uuid.uuid4().hex[:8]}"
    dataset = new_file(service, uid)
    service.delete(uid, dataset.id)
    assert launcher.cancelled == [f"executions/{dataset.id}"]
    assert service.datasets.get(dataset.id) is None


def run_job(emulators, local_dir, dataset_id: str, project: str) -> tuple[int, str, float]:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(REPO_ROOT),
        "RUNTUNE_LOCAL_DIR": str(local_dir),
        **emulators.env(),
        "RUNTUNE_PROJECT_ID": project,
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jobs.ingest", dataset_id],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def test_the_ingest_job_ingests_one_dataset_by_its_id(parts, project, emulators, tmp_path) -> None:
    service, _, blobs = parts
    uid = f"u-{uuid.uuid4().hex[:8]}"
    body = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    dataset = service.create_file(uid, "chat.jsonl", "fine-tune", io.BytesIO(body * 3), None)

    code, output, _ = run_job(emulators, tmp_path, dataset.id, project)
    assert code == 0, output
    ready = service.datasets.get(dataset.id)
    assert ready.status is DatasetStatus.ready, ready.error
    assert any("train-" in b.path for b in blobs.list(f"users/{uid}/datasets/{dataset.id}/"))
    # Ran again (a retried task), or for a dataset deleted meanwhile: nothing to do, still a success.
    assert run_job(emulators, tmp_path, dataset.id, project)[0] == 0
    assert run_job(emulators, tmp_path, "file-gone", project)[0] == 0


def test_the_ingest_job_fails_bad_data_and_still_exits_zero(parts, project, emulators, tmp_path) -> None:
    service, _, _ = parts
    uid = f"u-{uuid.uuid4().hex[:8]}"
    dataset = service.create_file(uid, "bad.jsonl", "fine-tune", io.BytesIO(b"{not json\n"), None)
    code, output, _ = run_job(emulators, tmp_path, dataset.id, project)
    assert code == 0, output
    failed = service.datasets.get(dataset.id)
    assert failed.status is DatasetStatus.failed and failed.error.code != "server_error"
