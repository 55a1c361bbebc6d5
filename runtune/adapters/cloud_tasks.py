"""Cloud Tasks adapter of the task queue port (the real service, or `gcloud-tasks-emulator` locally).

Each task is an HTTP target: a POST of a JSON body to the dispatcher, with an OIDC token Cloud Tasks
mints for the dispatcher's own service account (cloud), or a bearer token the dispatcher checks
(local: the emulator mints no tokens). The queue's retry settings (exponential backoff, how long it
keeps trying, its dispatch rate) are the queue's own: Terraform sets them (infra/tasks.tf).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

log = logging.getLogger("runtune.tasks")

_TASK_ID = re.compile(r"[^A-Za-z0-9_-]")


class CloudTasksQueue:
    def __init__(
        self,
        client: tasks_v2.CloudTasksClient,
        queue: str,
        target_url: str,
        *,
        oidc_service_account: str | None = None,
        oidc_audience: str | None = None,
        bearer_token: str | None = None,
    ) -> None:
        """`queue`: `projects/{p}/locations/{l}/queues/{q}`. Exactly one of `oidc_service_account`
        (cloud) and `bearer_token` (local) authenticates the calls."""
        if (oidc_service_account is None) == (bearer_token is None):
            raise ValueError("one of oidc_service_account and bearer_token is needed")
        self._client, self._queue, self._url = client, queue, target_url
        self._oidc = (
            tasks_v2.OidcToken(service_account_email=oidc_service_account, audience=oidc_audience or target_url)
            if oidc_service_account
            else None
        )
        self._bearer = bearer_token

    @classmethod
    def for_emulator(cls, host: str, queue: str, target_url: str, bearer_token: str) -> CloudTasksQueue:
        """The emulator's client (plain gRPC, no credentials); the queue is created if missing."""
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(host)))
        with contextlib.suppress(gexc.AlreadyExists):
            client.create_queue(parent=queue.rsplit("/queues/", 1)[0], queue=tasks_v2.Queue(name=queue))
        return cls(client, queue, target_url, bearer_token=bearer_token)

    def enqueue(self, name: str, body: dict[str, Any]) -> None:
        headers = {"content-type": "application/json"}
        if self._bearer is not None:
            headers["authorization"] = f"Bearer {self._bearer}"
        request = tasks_v2.HttpRequest(
            url=self._url,
            http_method=tasks_v2.HttpMethod.POST,
            headers=headers,
            body=json.dumps(body).encode(),
            oidc_token=self._oidc,
        )
        task = tasks_v2.Task(name=f"{self._queue}/tasks/{_TASK_ID.sub('_', name)[:500]}", http_request=request)
        try:
            self._client.create_task(parent=self._queue, task=task)
        except gexc.AlreadyExists:
            # Cloud Tasks keeps a task's name for a while after it ran: enqueued already, nothing to do.
            log.info("task already enqueued", extra={"task": name})
