"""SecretManagerStore: the real `google-cloud-secret-manager` REST client against a fake v1 server.

The fake keeps secrets in memory (so round trips work) and records every request, and the tests
assert the request shapes Secret Manager would receive.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager

from runtune.adapters.secret_manager import SecretManagerStore
from runtune.errors import InvalidRequest, UpstreamUnavailable
from tests.support import (
    Recorded,
    assert_secret_name_refused,
    assert_secret_values_not_logged,
    fake_json_api,
    google_error,
)

PROJECT = "demo-proj"
UID = "firebase|user:42/odd chars"
OWNER = hashlib.sha256(UID.encode()).hexdigest()[:32]
VALUE = "hf_0123456789abcdefSECRETVALUE"


@dataclass
class _Secret:
    labels: dict[str, str]
    versions: list[dict[str, Any]] = field(default_factory=list)  # {"data": b64, "state": ...}


class FakeSecretManager:
    """Just enough of secretmanager.googleapis.com/v1 for the store, with its real status codes."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.secrets: dict[str, _Secret] = {}
        self.refuse_all = False

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if self.refuse_all:
            return 403, google_error(403, "caller lacks permission", "PERMISSION_DENIED")
        prefix = f"/v1/projects/{PROJECT}/secrets"
        if not path.startswith(prefix):
            return 404, google_error(404, "unknown path")
        rest = path.removeprefix(prefix).lstrip("/")
        if not rest:
            if method == "POST":
                return self._create(query["secretId"][0], body)
            return self._list(query)
        secret_id, _, tail = rest.partition("/")
        secret_id, _, verb = secret_id.partition(":")
        if secret_id not in self.secrets:
            return 404, google_error(404, f"Secret [{secret_id}] not found")
        return self._on_secret(method, secret_id, verb, tail, query)

    def _on_secret(
        self, method: str, secret_id: str, verb: str, tail: str, query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        secret = self.secrets[secret_id]
        if method == "DELETE" and not tail:
            del self.secrets[secret_id]
            return 200, {}
        if verb == "addVersion":
            return self._add_version(secret_id, secret)
        if tail == "versions":
            versions = [
                self._version_json(secret_id, number, version)
                for number, version in enumerate(secret.versions, start=1)
                if query.get("filter") != ["state:ENABLED"] or version["state"] == "ENABLED"
            ]
            return 200, {"versions": versions, "totalSize": len(versions)}
        version_ref, _, action = tail.removeprefix("versions/").partition(":")
        number = len(secret.versions) if version_ref == "latest" else int(version_ref)
        if not 1 <= number <= len(secret.versions):
            return 404, google_error(404, "version not found")
        version = secret.versions[number - 1]
        if action == "destroy":
            version.update(state="DESTROYED", data=None)
            return 200, self._version_json(secret_id, number, version)
        if action == "access":
            if version["state"] != "ENABLED":
                return 400, google_error(400, "version is destroyed", "FAILED_PRECONDITION")
            data = base64.b64decode(version["data"])
            name = self._version_json(secret_id, number, version)["name"]
            payload = {"data": version["data"], "dataCrc32c": str(google_crc32c.value(data))}
            return 200, {"name": name, "payload": payload}
        return 404, google_error(404, "unsupported")

    def _create(self, secret_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        if secret_id in self.secrets:
            return 409, google_error(409, f"Secret [{secret_id}] already exists", "ALREADY_EXISTS")
        self.secrets[secret_id] = _Secret(labels=body.get("labels", {}))
        return 200, {"name": f"projects/{PROJECT}/secrets/{secret_id}", **body}

    def _add_version(self, secret_id: str, secret: _Secret) -> tuple[int, Any]:
        body = self.requests[-1].body or {}
        secret.versions.append({"data": body["payload"]["data"], "state": "ENABLED"})
        return 200, self._version_json(secret_id, len(secret.versions), secret.versions[-1])

    def _list(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        # Supports exactly the filter the store sends, one secret per page to exercise paging.
        key, _, value = query["filter"][0].removeprefix("labels.").partition("=")
        matching = sorted(sid for sid, secret in self.secrets.items() if secret.labels.get(key) == value)
        start = int(query.get("pageToken", ["0"])[0])
        page = [{"name": f"projects/{PROJECT}/secrets/{sid}"} for sid in matching[start : start + 1]]
        more = start + 1 < len(matching)
        return 200, {"secrets": page, **({"nextPageToken": str(start + 1)} if more else {})}

    @staticmethod
    def _version_json(secret_id: str, number: int, version: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": f"projects/{PROJECT}/secrets/{secret_id}/versions/{number}",
            "state": version["state"],
        }


@pytest.fixture
def fake() -> Iterator[tuple[FakeSecretManager, str]]:
    fake = FakeSecretManager()
    with fake_json_api(fake.handle, fake.requests) as url:
        yield fake, url


@pytest.fixture
def server(fake: tuple[FakeSecretManager, str]) -> FakeSecretManager:
    return fake[0]


@pytest.fixture
def store(fake: tuple[FakeSecretManager, str]) -> SecretManagerStore:
    client = secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(), transport="rest", client_options={"api_endpoint": fake[1]}
    )
    return SecretManagerStore(PROJECT, client=client, rpc_timeout_s=5)


SECRET_PATH = f"/v1/projects/{PROJECT}/secrets/runtune-user-{OWNER}-hf_token"


def test_put_creates_the_secret_then_adds_the_value(server, store) -> None:
    store.put(UID, "hf_token", VALUE)

    create, add, list_versions = server.requests
    assert (create.method, create.path) == ("POST", f"/v1/projects/{PROJECT}/secrets")
    assert create.query["secretId"] == [f"runtune-user-{OWNER}-hf_token"]
    assert create.body == {
        "replication": {"automatic": {}},
        "labels": {"runtune-owner": OWNER, "runtune-name": "hf_token"},
    }
    assert (add.method, add.path) == ("POST", f"{SECRET_PATH}:addVersion")
    assert add.body["payload"]["data"] == base64.b64encode(VALUE.encode()).decode()
    assert add.body["payload"]["dataCrc32c"] == str(google_crc32c.value(VALUE.encode()))
    assert (list_versions.method, list_versions.path) == ("GET", f"{SECRET_PATH}/versions")
    assert list_versions.query["filter"] == ["state:ENABLED"]

    assert store.get(UID, "hf_token") == VALUE
    assert server.requests[-1].path == f"{SECRET_PATH}/versions/latest:access"


def test_replacing_a_value_destroys_the_old_version(server, store) -> None:
    store.put(UID, "hf_token", "old-value")
    server.requests.clear()

    store.put(UID, "hf_token", VALUE)

    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", f"/v1/projects/{PROJECT}/secrets"),  # answered 409: already exists
        ("POST", f"{SECRET_PATH}:addVersion"),
        ("GET", f"{SECRET_PATH}/versions"),
        ("POST", f"{SECRET_PATH}/versions/1:destroy"),
    ]
    assert store.get(UID, "hf_token") == VALUE


def test_get_of_a_missing_or_destroyed_secret_is_none(server, store) -> None:
    assert store.get(UID, "hf_token") is None

    store.put(UID, "hf_token", VALUE)
    server.secrets[f"runtune-user-{OWNER}-hf_token"].versions[-1]["state"] = "DESTROYED"
    assert store.get(UID, "hf_token") is None


def test_names_lists_only_this_users_names(server, store) -> None:
    store.put(UID, "wandb", "w")
    store.put(UID, "hf_token", "h")
    store.put("someone-else", "hf_token", "x")
    # A secret carrying this owner's label but not its id prefix is not theirs.
    server.secrets["stray"] = server.secrets[f"runtune-user-{OWNER}-wandb"]
    server.requests.clear()

    assert store.names(UID) == ["hf_token", "wandb"]

    assert server.requests[0].query["filter"] == [f"labels.runtune-owner={OWNER}"]
    assert len(server.requests) == 3  # one secret per page: the pager followed every page


def test_delete_removes_the_secret_and_is_idempotent(server, store) -> None:
    store.put(UID, "hf_token", VALUE)
    server.requests.clear()

    store.delete(UID, "hf_token")
    store.delete(UID, "hf_token")

    assert [(r.method, r.path) for r in server.requests] == [("DELETE", SECRET_PATH)] * 2
    assert store.get(UID, "hf_token") is None
    assert store.names(UID) == []


@pytest.mark.parametrize("name", ["", "HF_TOKEN", "a/b", "x" * 64, "../etc", "name with space"])
def test_invalid_names_are_refused_before_any_request(server, store, name) -> None:
    assert_secret_name_refused(store, UID, name, VALUE)
    assert server.requests == []


def test_empty_value_is_refused(server, store) -> None:
    with pytest.raises(InvalidRequest) as refused:
        store.put(UID, "hf_token", "")
    assert refused.value.param == "value"
    assert server.requests == []


def test_upstream_failure_is_upstream_unavailable_and_quotes_no_value(server, store, caplog) -> None:
    server.refuse_all = True
    caplog.set_level(logging.DEBUG)

    with pytest.raises(UpstreamUnavailable) as failed:
        store.put(UID, "hf_token", VALUE)

    assert VALUE not in str(failed.value)
    assert all(VALUE not in record.getMessage() and VALUE not in str(vars(record)) for record in caplog.records)


def test_values_never_reach_the_logs(store, caplog) -> None:
    caplog.set_level(logging.DEBUG)

    assert_secret_values_not_logged(store, UID, VALUE, caplog.records)
