"""What the two launchers on Google's APIs (Cloud Run jobs, Vertex AI custom jobs) do alike: cancel
and read an execution by name, forgiving what is already over, and log Google's errors the same way."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from google.api_core import exceptions as google_exceptions

from runtune.errors import UpstreamUnavailable
from runtune.ports.launcher import ExecutionState, ExecutionStatus

FINISHED = frozenset({ExecutionState.succeeded, ExecutionState.failed, ExecutionState.cancelled})


def error_fields(exc: google_exceptions.GoogleAPICallError) -> dict[str, Any]:
    # Google's error text describes the resource and the failure, never our request payload.
    return {"error_class": type(exc).__name__, "error_code": exc.code, "error_detail": exc.message}


class GoogleExecutions(ABC):
    """`cancel` and `status` of a `JobLauncher` whose executions live behind a Google API; a subclass
    names them (`noun`, `a_noun`, `upstream`), says which are its own (`owns`) and passes its client's
    calls: `cancel` and `get` (each called with `name` and `timeout`), and `status_of` what `get` returns."""

    noun: ClassVar[str]  # in logs and reasons: "execution", "custom job"
    a_noun: ClassVar[str]  # "an execution"
    upstream: ClassVar[str]  # in errors users see: "the execution"

    def __init__(
        self,
        *,
        cancel: Callable[..., Any],
        get: Callable[..., Any],
        status_of: Callable[[Any], ExecutionStatus],
        rpc_timeout_s: float,
    ) -> None:
        self._cancel_rpc, self._get_rpc, self._status_of = cancel, get, status_of
        self._rpc_timeout_s = rpc_timeout_s

    @abstractmethod
    def owns(self, execution_name: str) -> bool: ...

    @property
    def _log(self) -> logging.Logger:
        # The launcher's own logger, as when each wrote these lines itself.
        return logging.getLogger(type(self).__module__)

    def cancel(self, execution_name: str) -> None:
        if not self.owns(execution_name):
            # A name from another launcher (say, a local one before a profile switch): nothing to stop here.
            refusal = f"cancel ignored: not {self.a_noun} of this deployment"
            self._log.warning(refusal, extra={"execution": execution_name})
            return
        try:
            self._cancel_rpc(name=execution_name, timeout=self._rpc_timeout_s)
        except google_exceptions.GoogleAPICallError as exc:
            # Refusals of an execution that is gone or already finished (their codes differ between
            # transports: FAILED_PRECONDITION is a plain 400 over REST) are the outcome the caller wanted.
            if isinstance(exc, google_exceptions.NotFound) or self._is_finished(execution_name):
                self._log.info("cancel had nothing to stop", extra={"execution": execution_name, **error_fields(exc)})
                return
            self._log.error("cancel failed", extra={"execution": execution_name, **error_fields(exc)})
            raise UpstreamUnavailable(f"Could not cancel {self.upstream}") from exc
        self._log.info(f"{self.noun} cancel requested", extra={"execution": execution_name})

    def status(self, execution_name: str) -> ExecutionStatus:
        if not self.owns(execution_name):
            return ExecutionStatus(
                execution_name, ExecutionState.unknown, reason=f"not {self.a_noun} of this deployment"
            )
        try:
            resource = self._get_rpc(name=execution_name, timeout=self._rpc_timeout_s)
        except google_exceptions.NotFound:
            return ExecutionStatus(execution_name, ExecutionState.unknown, reason=f"{self.noun} not found")
        except google_exceptions.GoogleAPICallError as exc:
            self._log.error(f"{self.noun} status unavailable", extra={"execution": execution_name, **error_fields(exc)})
            raise UpstreamUnavailable(f"Could not read {self.upstream}'s status") from exc
        return self._status_of(resource)

    def _is_finished(self, execution_name: str) -> bool:
        try:
            return self.status(execution_name).state in FINISHED
        except UpstreamUnavailable:
            return False
