"""Secret store on Google Secret Manager: one secret per (user, name), its value in the latest version.

Secret ids are `runtune-user-{owner}-{name}` with `owner` the first 32 hex digits of SHA-256(uid):
uids may hold characters secret ids do not allow, and the hash keeps user ids out of resource names.
Labels carry the owner and the name so a user's secrets can be listed with one filtered call.
Values are never logged, and error messages never quote them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import google_crc32c
from google.api_core import exceptions as google_exceptions
from google.cloud import secretmanager

from runtune.adapters.secret_rules import encode_secret_value, uid_digest, validate_secret_name
from runtune.errors import UpstreamUnavailable

log = logging.getLogger(__name__)

SECRET_ID_PREFIX = "runtune-user-"
OWNER_LABEL = "runtune-owner"
NAME_LABEL = "runtune-name"
DEFAULT_RPC_TIMEOUT_S = 30.0


class SecretManagerStore:
    """`SecretStore` on Secret Manager (the client defaults to gRPC with application credentials)."""

    def __init__(
        self,
        project_id: str,
        *,
        client: secretmanager.SecretManagerServiceClient | None = None,
        rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S,
    ) -> None:
        self._project_path = f"projects/{project_id}"
        self._client = client or secretmanager.SecretManagerServiceClient()
        self._timeout = rpc_timeout_s

    def put(self, uid: str, name: str, value: str) -> None:
        validate_secret_name(name)
        data = encode_secret_value(value)
        owner = _owner(uid)
        secret_path = self._secret_path(owner, name)
        with _upstream("put", owner=owner, entry=name):
            self._ensure_secret(owner, name)
            version = self._client.add_secret_version(
                request=secretmanager.AddSecretVersionRequest(
                    parent=secret_path,
                    # The checksum lets Secret Manager refuse a payload corrupted on the way.
                    payload=secretmanager.SecretPayload(data=data, data_crc32c=google_crc32c.value(data)),
                ),
                timeout=self._timeout,
            )
        self._destroy_versions_before(secret_path, version.name)
        log.info("secret stored", extra={"owner": owner, "entry": name, "version": _version_number(version.name)})

    def get(self, uid: str, name: str) -> str | None:
        validate_secret_name(name)
        owner = _owner(uid)
        with _upstream("get", owner=owner, entry=name):
            try:
                response = self._client.access_secret_version(
                    name=f"{self._secret_path(owner, name)}/versions/latest", timeout=self._timeout
                )
            except google_exceptions.GoogleAPICallError as exc:
                # No such secret, or its latest version disabled or destroyed: nothing to use.
                if isinstance(exc, google_exceptions.NotFound) or _is_failed_precondition(exc):
                    return None
                raise
        payload = response.payload
        if "data_crc32c" in payload and payload.data_crc32c != google_crc32c.value(payload.data):
            log.error("secret payload checksum mismatch", extra={"owner": owner, "entry": name})
            raise UpstreamUnavailable("The secret store returned a corrupted value")
        return payload.data.decode("utf-8")

    def delete(self, uid: str, name: str) -> None:
        validate_secret_name(name)
        owner = _owner(uid)
        with _upstream("delete", owner=owner, entry=name):
            try:
                self._client.delete_secret(name=self._secret_path(owner, name), timeout=self._timeout)
            except google_exceptions.NotFound:
                return
        log.info("secret deleted", extra={"owner": owner, "entry": name})

    def names(self, uid: str) -> list[str]:
        owner = _owner(uid)
        prefix = _secret_id(owner, "")
        request = secretmanager.ListSecretsRequest(parent=self._project_path, filter=f"labels.{OWNER_LABEL}={owner}")
        with _upstream("list", owner=owner):
            secret_ids = [
                secret.name.rsplit("/", 1)[-1]
                for secret in self._client.list_secrets(request=request, timeout=self._timeout)
            ]
        # The id, not the label, is authoritative: anyone able to label a secret cannot add to this list.
        return sorted(secret_id.removeprefix(prefix) for secret_id in secret_ids if secret_id.startswith(prefix))

    def _secret_path(self, owner: str, name: str) -> str:
        return f"{self._project_path}/secrets/{_secret_id(owner, name)}"

    def _ensure_secret(self, owner: str, name: str) -> None:
        secret = secretmanager.Secret(
            replication=secretmanager.Replication(automatic=secretmanager.Replication.Automatic()),
            labels={OWNER_LABEL: owner, NAME_LABEL: name},
        )
        # Conflict, not AlreadyExists: over REST a 409 is classed by its HTTP code alone.
        with suppress(google_exceptions.Conflict):
            self._client.create_secret(
                request=secretmanager.CreateSecretRequest(
                    parent=self._project_path, secret_id=_secret_id(owner, name), secret=secret
                ),
                timeout=self._timeout,
            )

    def _destroy_versions_before(self, secret_path: str, latest: str) -> None:
        """Destroy the enabled versions older than `latest`: a replaced token must stop being readable.

        Only older ones: a concurrent put may already have added a newer version, which must survive.
        Best effort: the new value is stored whatever happens here.
        """
        latest_number = _version_number(latest)
        request = secretmanager.ListSecretVersionsRequest(parent=secret_path, filter="state:ENABLED")
        try:
            for version in self._client.list_secret_versions(request=request, timeout=self._timeout):
                if _version_number(version.name) < latest_number:
                    self._client.destroy_secret_version(name=version.name, timeout=self._timeout)
        except google_exceptions.GoogleAPICallError as exc:
            log.warning(
                "older secret versions not destroyed",
                extra={"resource": secret_path, "error_class": type(exc).__name__, "error_code": exc.code},
            )


@contextmanager
def _upstream(action: str, **fields: Any) -> Iterator[None]:
    try:
        yield
    except google_exceptions.GoogleAPICallError as exc:
        # Class and code only: no need to reason about what an error text might echo back.
        log.error(
            "secret manager call failed",
            extra={"action": action, **fields, "error_class": type(exc).__name__, "error_code": exc.code},
        )
        raise UpstreamUnavailable("The secret store is unavailable") from exc


def _is_failed_precondition(exc: google_exceptions.GoogleAPICallError) -> bool:
    if isinstance(exc, google_exceptions.FailedPrecondition):  # gRPC
        return True
    # REST classes errors by HTTP code, and 400 also covers INVALID_ARGUMENT: read the body's status.
    response = getattr(exc, "response", None)
    if response is None:
        return False
    try:
        status = response.json()["error"]["status"]
    except (AttributeError, KeyError, TypeError, ValueError):
        return False
    return bool(status == "FAILED_PRECONDITION")


def _owner(uid: str) -> str:
    return uid_digest(uid)[:32]


def _secret_id(owner: str, name: str) -> str:
    return f"{SECRET_ID_PREFIX}{owner}-{name}"


def _version_number(version_name: str) -> int:
    return int(version_name.rsplit("/", 1)[-1])
