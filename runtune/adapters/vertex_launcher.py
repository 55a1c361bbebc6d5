"""Job launcher on Vertex AI custom training: one CustomJob per fine-tuning run that outgrows Cloud Run.

The same trainer image and the same contract as the Cloud Run trainer jobs (`launch_contract`): argv
`[job_id]`, the request's non-secret environment plus `RUNTUNE_TASK_DEADLINE_S`, and the settings
Terraform sets on the Cloud Run jobs (a CustomJob has no deployed template, so `base_env` carries them).
One worker pool of one replica of the request's machine (runtune/compute.py VERTEX_MACHINES), with
`trainer_command`: one process per GPU under torchrun when the machine has more than one. `scheduling`
bounds the run with the request's timeout, restarts the job when a worker restarts (the trainer resumes
from its newest checkpoint) and asks for Spot capacity when the job allows it. Cancel is
`cancel_custom_job`; the job's state maps onto the port's `ExecutionState`s (`custom_job_status`) so the
reconciler follows both backends alike.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as google_exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import Credentials
from google.cloud import aiplatform_v1
from google.protobuf import duration_pb2

from runtune.adapters.google_executions import GoogleExecutions, error_fields
from runtune.adapters.launch_contract import DEFAULT_JOB_PREFIX, execution_env, validate_launch_request
from runtune.compute import machine
from runtune.errors import UpstreamUnavailable
from runtune.ports.launcher import ExecutionState, ExecutionStatus, LaunchRequest

log = logging.getLogger(__name__)

DEFAULT_RPC_TIMEOUT_S = 30.0
# The trainer keeps the base checkpoint (bf16, up to ~62 GB for a 31B model) and the merged export on
# the boot disk, which on Vertex is a real disk (not memory, as on Cloud Run).
BOOT_DISK_GB = 500
# How long a job may wait for its machine (or for Spot capacity) before Vertex expires it; the
# reconciler waits as long (ExecutionStatus.waiting_for_capacity).
DEFAULT_MAX_WAIT_S = 6 * 3600
# Vertex's message for a replica's exit: "The replica workerpool0-0 exited with a non-zero status of 1."
_EXIT_STATUS = re.compile(r"status of (\d+)", re.IGNORECASE)
_REQUEST_LINE = re.compile(r"^[A-Z]+ \S+: ")
_TIMEOUT = re.compile(r"time(?:d)?\s?out|deadline", re.IGNORECASE)

_State = aiplatform_v1.JobState
# Vertex's job states in the port's terms: what the reconciler decides on.
_STATES: dict[int, ExecutionState] = {
    _State.JOB_STATE_QUEUED: ExecutionState.pending,
    _State.JOB_STATE_PENDING: ExecutionState.pending,
    _State.JOB_STATE_PAUSED: ExecutionState.pending,
    _State.JOB_STATE_RUNNING: ExecutionState.running,
    _State.JOB_STATE_UPDATING: ExecutionState.running,
    _State.JOB_STATE_CANCELLING: ExecutionState.running,
    _State.JOB_STATE_SUCCEEDED: ExecutionState.succeeded,
    _State.JOB_STATE_FAILED: ExecutionState.failed,
    _State.JOB_STATE_PARTIALLY_SUCCEEDED: ExecutionState.failed,
    _State.JOB_STATE_EXPIRED: ExecutionState.failed,
    _State.JOB_STATE_CANCELLED: ExecutionState.cancelled,
}


def trainer_command(gpu_count: int) -> list[str]:
    """The container's command (its argument is the job id): `python -m jobs.trainer` on one GPU, as on
    Cloud Run; one process per GPU under torchrun otherwise (runtune/training/distributed.py reads the
    ranks torchrun sets; `--standalone`: one machine, a local rendezvous)."""
    if gpu_count <= 1:
        return ["python", "-m", "jobs.trainer"]
    return ["torchrun", "--standalone", "--nproc_per_node", str(gpu_count), "-m", "jobs.trainer"]


class VertexJobLauncher(GoogleExecutions):
    """`JobLauncher` on the Vertex AI API v1 `JobService` (REST transport), training only."""

    noun, a_noun, upstream = "custom job", "a custom job", "the Vertex AI training job"

    def __init__(
        self,
        project_id: str,
        region: str,
        *,
        image: str,
        service_account: str,
        base_env: Mapping[str, str] | None = None,
        job_prefix: str = DEFAULT_JOB_PREFIX,
        client_options: ClientOptions | dict[str, Any] | None = None,
        credentials: Credentials | None = None,
        rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S,
        max_wait_s: int = DEFAULT_MAX_WAIT_S,
    ) -> None:
        self._project_id, self._region, self._job_prefix = project_id, region, job_prefix
        self._max_wait_s = max_wait_s
        self._image, self._service_account = image, service_account
        self._base_env = dict(base_env or {})
        # Vertex AI serves each region's resources on the region's own endpoint.
        options = client_options or {"api_endpoint": f"{region}-aiplatform.googleapis.com"}
        self._jobs = aiplatform_v1.JobServiceClient(credentials=credentials, transport="rest", client_options=options)
        super().__init__(
            cancel=self._jobs.cancel_custom_job,
            get=self._jobs.get_custom_job,
            status_of=custom_job_status,
            rpc_timeout_s=rpc_timeout_s,
        )

    def launch(self, request: LaunchRequest) -> str:
        validate_launch_request(request, backend="vertex")
        parent = f"projects/{self._project_id}/locations/{self._region}"
        try:
            created = self._jobs.create_custom_job(
                parent=parent, custom_job=self.custom_job(request), timeout=self._rpc_timeout_s
            )
        except google_exceptions.GoogleAPICallError as exc:
            log.error("custom job not created", extra={"job_id": request.job_id, **error_fields(exc)})
            raise UpstreamUnavailable(f"Could not start the Vertex AI training job: {_refusal(exc)}") from exc
        if not created.name:
            raise UpstreamUnavailable("Vertex AI accepted the training job but did not name it")
        log.info(
            "custom job created",
            extra={
                "job_id": request.job_id,
                "execution": created.name,
                "machine": request.machine,
                "spot": request.spot,
            },
        )
        return str(created.name)

    def custom_job(self, request: LaunchRequest) -> aiplatform_v1.CustomJob:
        """The CustomJob that runs `request`: one replica of its machine, the trainer's contract."""
        shape = machine(request.machine or "")
        env = {**self._base_env, **execution_env(request)}
        container = aiplatform_v1.ContainerSpec(
            image_uri=self._image,
            command=trainer_command(shape.gpu_count),
            args=[request.job_id],
            env=[aiplatform_v1.EnvVar(name=key, value=value) for key, value in sorted(env.items())],
        )
        pool = aiplatform_v1.WorkerPoolSpec(
            container_spec=container,
            machine_spec=aiplatform_v1.MachineSpec(
                machine_type=shape.name,
                accelerator_type=aiplatform_v1.AcceleratorType[shape.accelerator],
                accelerator_count=shape.gpu_count,
            ),
            replica_count=1,
            disk_spec=aiplatform_v1.DiskSpec(boot_disk_type="pd-ssd", boot_disk_size_gb=BOOT_DISK_GB),
        )
        strategy = aiplatform_v1.Scheduling.Strategy
        scheduling = aiplatform_v1.Scheduling(
            timeout=duration_pb2.Duration(seconds=request.timeout_seconds),
            # A restarted worker (a Spot preemption, host maintenance) restarts the job, whose trainer
            # resumes from the newest checkpoint; it never trains on with a lost rank.
            restart_job_on_worker_restart=True,
            strategy=strategy.SPOT if request.spot else strategy.STANDARD,
            max_wait_duration=duration_pb2.Duration(seconds=self._max_wait_s),
        )
        return aiplatform_v1.CustomJob(
            display_name=f"{self._job_prefix}-trainer-{request.job_id}"[:128],
            labels={"app": "runtune", "workload": str(request.workload)},
            job_spec=aiplatform_v1.CustomJobSpec(
                worker_pool_specs=[pool], scheduling=scheduling, service_account=self._service_account
            ),
        )

    def owns(self, execution_name: str) -> bool:
        """`projects/<id or number>/locations/<region>/customJobs/<id>`: Vertex names its jobs by the
        project's number, so the region and the collection say whose it is."""
        pattern = rf"projects/[^/]+/locations/{re.escape(self._region)}/customJobs/[0-9]+"
        return re.fullmatch(pattern, execution_name) is not None


def custom_job_status(job: aiplatform_v1.CustomJob) -> ExecutionStatus:
    """Map a CustomJob onto the port's states; its error explains a failure."""
    state = _STATES.get(job.state, ExecutionState.unknown)
    name = job.name
    if job.state == _State.JOB_STATE_CANCELLING:
        return ExecutionStatus(name, ExecutionState.running, reason="cancelling")
    if state is ExecutionState.cancelled:
        return ExecutionStatus(name, state, reason="cancelled")
    if state is ExecutionState.succeeded:
        return ExecutionStatus(name, state, exit_code=0)
    if job.state in (_State.JOB_STATE_QUEUED, _State.JOB_STATE_PENDING):
        return ExecutionStatus(name, state, reason="waiting for capacity", waiting_for_capacity=True)
    if state is not ExecutionState.failed:
        return ExecutionStatus(name, state)
    message = job.error.message if "error" in job else ""
    if match := _EXIT_STATUS.search(message):
        code = int(match.group(1))
        return ExecutionStatus(name, state, reason=f"exit code {code}", exit_code=code)
    if job.state == _State.JOB_STATE_EXPIRED:
        return ExecutionStatus(name, state, reason=f"expired before capacity was found: {message}".rstrip(": "))
    if _TIMEOUT.search(message):
        # The local and Cloud Run launchers' wording, so a job shows one message whichever ran it.
        seconds = int(job.job_spec.scheduling.timeout.total_seconds()) if "job_spec" in job else 0
        return ExecutionStatus(name, state, reason=f"timeout after {seconds}s" if seconds else "timeout")
    return ExecutionStatus(name, state, reason=message or _State(job.state).name.removeprefix("JOB_STATE_").lower())


def _refusal(exc: google_exceptions.GoogleAPICallError) -> str:
    """What a user can act on, in a few words (no request payload is ever echoed). The HTTP classes:
    over REST the client raises them (ResourceExhausted, PermissionDenied, ... are their subclasses)."""
    if isinstance(exc, google_exceptions.TooManyRequests):
        return "the project's Vertex AI quota for this machine is exhausted (request more, or use another machine)"
    if isinstance(exc, google_exceptions.Forbidden):
        return "permission denied (the training service's account needs the Vertex AI job runner role)"
    if isinstance(exc, google_exceptions.BadRequest):
        # Over REST the message starts with the request's method and URL: only Vertex's own words.
        return f"the request was refused: {_REQUEST_LINE.sub('', exc.message or '')}"
    return "Vertex AI is unavailable"
