"""The training service's launcher when a deployment trains on both backends: Cloud Run and Vertex AI.

A launch goes to Vertex AI when its request names a machine (the job's plan chose one: runtune/jobs/
plan.py), to Cloud Run otherwise; cancel and status go to the backend whose names the execution has
(a Cloud Run execution's path, or a Vertex CustomJob's), so a job is followed on the backend that
runs it and the reconciler sees one set of states. Composed in runtune/wiring.py.
"""

from __future__ import annotations

from typing import Protocol

from runtune.ports.launcher import ExecutionState, ExecutionStatus, JobLauncher, LaunchRequest


class OwningLauncher(JobLauncher, Protocol):
    def owns(self, execution_name: str) -> bool:
        """Whether `execution_name` is one of this backend's executions in this deployment."""


class ComputeLauncher:
    """`JobLauncher` over one launcher per backend."""

    def __init__(self, cloud_run: OwningLauncher, vertex: OwningLauncher) -> None:
        self._cloud_run, self._vertex = cloud_run, vertex

    def launch(self, request: LaunchRequest) -> str:
        return (self._vertex if request.machine is not None else self._cloud_run).launch(request)

    def cancel(self, execution_name: str) -> None:
        if (launcher := self._owner(execution_name)) is not None:
            launcher.cancel(execution_name)

    def status(self, execution_name: str) -> ExecutionStatus:
        launcher = self._owner(execution_name)
        if launcher is None:
            return ExecutionStatus(execution_name, ExecutionState.unknown, reason="not an execution of this deployment")
        return launcher.status(execution_name)

    def _owner(self, execution_name: str) -> OwningLauncher | None:
        return next((b for b in (self._cloud_run, self._vertex) if b.owns(execution_name)), None)
