"""Firestore security rules (infra/firestore.rules) on the emulator: a client SDK can do nothing.

The Firebase JS SDK the web UI ships, signed in as the document's owner through the Auth emulator and
also not signed in, tries every read and write; each one is denied. The platform's own server-side
client (the Cloud client library, which bypasses rules as service accounts do in the cloud) still
reads and writes, and the client's attempted writes left nothing behind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from runtune.adapters.firestore import FirestoreMetadataStore
from runtune.dev.emulators import FIRESTORE_RULES
from runtune.ports.metadata import Where
from runtune.settings import REPO_ROOT
from tests.support import sign_up

pytestmark = pytest.mark.emulators

CLIENT = Path(__file__).with_name("firestore_client.cjs")
SDK_ROOT = REPO_ROOT / "frontend"
ATTEMPTS = {
    "get",
    "list",
    "query_own",
    "collection_group",
    "create",
    "add",
    "set",
    "update",
    "delete",
    "batch",
    "transaction",
}


def test_the_rules_file_denies_everything() -> None:
    rules = FIRESTORE_RULES.read_text()
    statements = [line.strip() for line in rules.splitlines() if line.strip().startswith("allow")]
    assert statements == ["allow read, write: if false;"]
    assert "match /{document=**}" in rules


def test_client_sdk_reads_and_writes_are_all_denied(emulators) -> None:
    if shutil.which("node") is None or not (SDK_ROOT / "node_modules" / "firebase").is_dir():
        pytest.fail("needs Node.js and the web UI's packages (make setup: frontend/node_modules)")
    store = FirestoreMetadataStore.for_project(emulators.project_id)
    password = "pa55word!"
    account = sign_up(emulators.auth_host, password=password)
    document = f"datasets/rules-{uuid.uuid4().hex[:12]}"
    original = {"owner": account["uid"], "status": "processing", "name": "mine"}
    store.create(document, original)

    config = {
        "sdkRoot": str(SDK_ROOT),
        "projectId": emulators.project_id,
        "firestoreHost": emulators.firestore_host,
        "authHost": emulators.auth_host,
        "email": account["email"],
        "password": password,
        "document": document,
    }
    result = subprocess.run(
        ["node", str(CLIENT), json.dumps(config)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    outcomes = json.loads(result.stdout)

    # The signed-in client really is the owner: the denial is the rules', not a failed sign-in.
    assert outcomes["signed_in"].pop("uid") == account["uid"]
    assert outcomes["anonymous"].pop("uid") is None
    for who, attempts in outcomes.items():
        assert set(attempts) == ATTEMPTS
        assert attempts == dict.fromkeys(ATTEMPTS, "permission-denied"), who

    # The server side is unaffected, and no client write got through.
    assert store.get(document) == original
    mine = store.query("datasets", where=[Where("owner", "==", account["uid"])])
    assert [name for name, _ in mine] == [document.split("/")[1]]
    store.update(document, {"status": "ready"})
    assert store.get(document) == original | {"status": "ready"}
    store.delete(document)
