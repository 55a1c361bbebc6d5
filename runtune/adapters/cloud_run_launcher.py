"""Job launcher on Cloud Run Jobs: one execution per fine-tuning job, dataset ingestion or evaluation.

Each workload's job is deployed once (training: one job per GPU type, see `launch_contract`); each
launch runs the request's job with per-execution overrides (argv, non-secret environment, task
count, timeout). `launch` returns as soon as Cloud Run has accepted the execution:
the run operation stays open for the whole training, so its name is read from the operation's
metadata (an `Execution`) instead of waiting on it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from google.api_core import exceptions as google_exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import Credentials
from google.cloud import run_v2
from google.protobuf import duration_pb2

from runtune.adapters.google_executions import GoogleExecutions, error_fields
from runtune.adapters.launch_contract import (
    DEFAULT_JOB_PREFIX,
    cloud_run_job_name,
    execution_env,
    validate_launch_request,
)
from runtune.errors import UpstreamUnavailable
from runtune.ports.launcher import ExecutionState, ExecutionStatus, LaunchRequest

log = logging.getLogger(__name__)

DEFAULT_RPC_TIMEOUT_S = 30.0
# Cloud Run's messages: "... The container exited with an exit code of 3." / "... timeout was reached."
_EXIT_CODE = re.compile(r"exit(?:ed with an)? code(?: of)?:?\s*(\d+)", re.IGNORECASE)
_TIMEOUT = re.compile(r"time(?:d)?\s?out", re.IGNORECASE)

_Condition = run_v2.Condition


class CloudRunJobLauncher(GoogleExecutions):
    """`JobLauncher` on the Cloud Run Admin API v2 (REST transport)."""

    noun, a_noun, upstream = "execution", "an execution", "the execution"

    def __init__(
        self,
        project_id: str,
        region: str,
        *,
        job_prefix: str = DEFAULT_JOB_PREFIX,
        client_options: ClientOptions | dict[str, Any] | None = None,
        credentials: Credentials | None = None,
        rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S,
    ) -> None:
        self._project_id, self._region, self._job_prefix = project_id, region, job_prefix
        # REST rather than gRPC: plain HTTPS works through every proxy, and it is the transport the
        # fake-server tests exercise. Clients are built here so missing credentials fail at startup.
        self._jobs = run_v2.JobsClient(credentials=credentials, transport="rest", client_options=client_options)
        self._executions = run_v2.ExecutionsClient(
            credentials=credentials, transport="rest", client_options=client_options
        )
        super().__init__(
            cancel=self._executions.cancel_execution,
            get=self._executions.get_execution,
            status_of=execution_status,
            rpc_timeout_s=rpc_timeout_s,
        )

    def job_path(self, request: LaunchRequest) -> str:
        """The Cloud Run job that runs this request (its workload's, and for training its GPU's)."""
        name = cloud_run_job_name(request.workload, request.gpu, self._job_prefix)
        return run_v2.JobsClient.job_path(self._project_id, self._region, name)

    def launch(self, request: LaunchRequest) -> str:
        validate_launch_request(request)
        job_path = self.job_path(request)
        try:
            operation = self._jobs.run_job(request=self._run_request(job_path, request), timeout=self._rpc_timeout_s)
        except google_exceptions.GoogleAPICallError as exc:
            log.error(
                "execution not started",
                extra={"job_id": request.job_id, "cloud_run_job": job_path, **error_fields(exc)},
            )
            raise UpstreamUnavailable(f"Could not start the {request.workload} execution") from exc
        execution_name = _execution_name(operation)
        log.info(
            "execution started",
            extra={
                "job_id": request.job_id,
                "workload": str(request.workload),
                "gpu": request.gpu,
                "execution": execution_name,
                "task_count": request.task_count,
            },
        )
        return execution_name

    def owns(self, execution_name: str) -> bool:
        # projects/P/locations/R/jobs/<prefix>-<workload>[-gpu]/executions/<id>: one of this deployment's jobs.
        jobs = f"projects/{self._project_id}/locations/{self._region}/jobs/{self._job_prefix}-"
        job, sep, execution = execution_name.removeprefix(jobs).partition("/executions/")
        return execution_name.startswith(jobs) and bool(job) and "/" not in job and bool(sep and execution)

    def _run_request(self, job_path: str, request: LaunchRequest) -> run_v2.RunJobRequest:
        env = execution_env(request)
        container = run_v2.RunJobRequest.Overrides.ContainerOverride(
            args=[request.job_id],
            env=[run_v2.EnvVar(name=key, value=value) for key, value in sorted(env.items())],
        )
        overrides = run_v2.RunJobRequest.Overrides(
            container_overrides=[container],
            task_count=request.task_count,
            timeout=duration_pb2.Duration(seconds=request.timeout_seconds),
        )
        return run_v2.RunJobRequest(name=job_path, overrides=overrides)


def _execution_name(operation: Any) -> str:
    metadata = operation.metadata
    name = getattr(metadata, "name", "") if metadata is not None else ""
    if not name:
        # Cloud Run always fills it; without a name the job could never be followed or cancelled.
        log.error("run operation carried no execution name", extra={"operation": operation.operation.name})
        raise UpstreamUnavailable("Cloud Run accepted the run but did not name its execution")
    return str(name)


def execution_status(execution: run_v2.Execution) -> ExecutionStatus:
    """Map a Cloud Run execution onto the port's states; the failed condition explains failures."""
    completed = _completion_condition(execution)
    name = execution.name
    if _is_cancelled(execution, completed):
        return ExecutionStatus(name, ExecutionState.cancelled, reason="cancelled")
    if not _is_finished(execution, completed):
        return _in_progress(execution, completed)
    if execution.failed_count > 0 or (completed is not None and completed.state == _Condition.State.CONDITION_FAILED):
        return _failed(execution, completed)
    return ExecutionStatus(name, ExecutionState.succeeded, exit_code=0)


def _completion_condition(execution: run_v2.Execution) -> run_v2.Condition | None:
    """The execution's terminal condition ("Completed"), or else any failed one."""
    conditions = list(execution.conditions)
    for condition in conditions:
        if condition.type_ == "Completed":
            return condition
    return next((c for c in conditions if c.state == _Condition.State.CONDITION_FAILED), None)


def _is_cancelled(execution: run_v2.Execution, completed: run_v2.Condition | None) -> bool:
    if completed is not None and completed.execution_reason == _Condition.ExecutionReason.CANCELLED:
        return True
    return execution.cancelled_count > 0 and execution.completion_time is not None


def _is_finished(execution: run_v2.Execution, completed: run_v2.Condition | None) -> bool:
    if execution.completion_time is not None:
        return True
    terminal = (_Condition.State.CONDITION_FAILED, _Condition.State.CONDITION_SUCCEEDED)
    return completed is not None and completed.state in terminal


def _in_progress(execution: run_v2.Execution, completed: run_v2.Condition | None) -> ExecutionStatus:
    state = ExecutionState.running if execution.running_count > 0 else ExecutionState.pending
    cancelling = completed is not None and completed.execution_reason == _Condition.ExecutionReason.CANCELLING
    return ExecutionStatus(execution.name, state, reason="cancelling" if cancelling else None)


def _failed(execution: run_v2.Execution, condition: run_v2.Condition | None) -> ExecutionStatus:
    message = condition.message if condition is not None else ""
    if match := _EXIT_CODE.search(message):
        code = int(match.group(1))
        return ExecutionStatus(execution.name, ExecutionState.failed, reason=f"exit code {code}", exit_code=code)
    if _TIMEOUT.search(message):
        return ExecutionStatus(execution.name, ExecutionState.failed, reason=_timeout_reason(execution))
    return ExecutionStatus(execution.name, ExecutionState.failed, reason=message or _enum_reason(condition))


def _timeout_reason(execution: run_v2.Execution) -> str:
    # Same wording as the local launcher, so the job shows one message whichever launcher ran it.
    seconds = int(execution.template.timeout.total_seconds()) if "template" in execution else 0
    return f"timeout after {seconds}s" if seconds else "timeout"


def _enum_reason(condition: run_v2.Condition | None) -> str:
    if condition is not None:
        if condition.execution_reason:
            return condition.execution_reason.name.lower()
        if condition.reason:
            return condition.reason.name.lower()
    return "failed"
