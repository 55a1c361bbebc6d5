"""LocalFileSecretStore: round trips, permissions, isolation, validation, and no value in any log."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import threading
from pathlib import Path

import pytest

from runtune.adapters.file_secrets import LocalFileSecretStore
from runtune.errors import InvalidRequest
from tests.support import assert_secret_name_refused, assert_secret_values_not_logged

UID = "firebase|user:42/odd chars"
VALUE = "hf_0123456789abcdefSECRETVALUE"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "state" / "secrets"


@pytest.fixture
def store(root: Path) -> LocalFileSecretStore:
    return LocalFileSecretStore(root)


def user_file(root: Path, uid: str) -> Path:
    return root / f"{hashlib.sha256(uid.encode()).hexdigest()}.json"


def test_round_trip(store: LocalFileSecretStore) -> None:
    assert store.get(UID, "hf_token") is None

    store.put(UID, "hf_token", VALUE)
    assert store.get(UID, "hf_token") == VALUE

    store.put(UID, "hf_token", "replaced")
    assert store.get(UID, "hf_token") == "replaced"

    store.delete(UID, "hf_token")
    assert store.get(UID, "hf_token") is None
    store.delete(UID, "hf_token")  # idempotent


def test_directory_is_0700_and_files_are_0600(root: Path, store: LocalFileSecretStore) -> None:
    old_umask = os.umask(0)  # the most permissive umask must not loosen anything
    try:
        store.put(UID, "hf_token", VALUE)
        store.put(UID, "wandb", "w")
    finally:
        os.umask(old_umask)

    assert mode(root) == 0o700
    path = user_file(root, UID)
    assert mode(path) == 0o600
    assert json.loads(path.read_text()) == {"hf_token": VALUE, "wandb": "w"}
    assert all(mode(p) == 0o600 for p in root.iterdir())
    assert not list(root.glob("*.tmp")), "temporary files are renamed or removed"


def test_existing_loose_directory_is_tightened(root: Path) -> None:
    root.mkdir(parents=True, mode=0o755)
    os.chmod(root, 0o755)
    LocalFileSecretStore(root)
    assert mode(root) == 0o700


def test_users_are_isolated(root: Path, store: LocalFileSecretStore) -> None:
    store.put(UID, "hf_token", VALUE)
    store.put("another-user", "hf_token", "theirs")

    assert store.get(UID, "hf_token") == VALUE
    assert store.get("another-user", "hf_token") == "theirs"
    assert store.names("third-user") == []
    store.delete("another-user", "hf_token")
    assert store.get(UID, "hf_token") == VALUE
    # One file per user, named by the uid's hash: the uid itself appears nowhere on disk.
    assert user_file(root, UID).exists()
    assert all(UID not in p.name for p in root.iterdir())


def test_names_lists_names_only(store: LocalFileSecretStore) -> None:
    store.put(UID, "wandb", "w-value")
    store.put(UID, "hf_token", VALUE)
    assert store.names(UID) == ["hf_token", "wandb"]


@pytest.mark.parametrize("name", ["", "HF_TOKEN", "a/b", "x" * 64, "../etc", "name with space", "ünï"])
def test_invalid_names_are_refused(root: Path, store: LocalFileSecretStore, name: str) -> None:
    assert_secret_name_refused(store, UID, name, VALUE)
    assert not any(root.glob("*.json"))


def test_empty_value_is_refused(store: LocalFileSecretStore) -> None:
    with pytest.raises(InvalidRequest) as refused:
        store.put(UID, "hf_token", "")
    assert refused.value.param == "value"


def test_concurrent_puts_lose_nothing(store: LocalFileSecretStore) -> None:
    names = [f"s{i}" for i in range(20)]
    threads = [threading.Thread(target=store.put, args=(UID, name, f"v-{name}")) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.names(UID) == sorted(names)


def test_a_corrupt_file_is_reported_without_its_content(root: Path, store: LocalFileSecretStore) -> None:
    store.put(UID, "hf_token", VALUE)
    user_file(root, UID).write_text(f"[{VALUE!r}")
    with pytest.raises(ValueError) as failed:
        store.get(UID, "hf_token")
    assert VALUE not in str(failed.value)
    assert failed.value.__context__ is None and failed.value.__cause__ is None


def test_values_never_reach_the_logs(store: LocalFileSecretStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    assert_secret_values_not_logged(store, UID, VALUE, caplog.records)


def test_a_local_execution_reads_the_folder_the_services_write(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`RUNTUNE_SECRETS_DIR` names a folder, not a secret: the local launcher passes it on (the
    trainer then reads the users' tokens the training service stored); real secrets stay behind."""
    from runtune import wiring
    from runtune.settings import EMULATOR_VARIABLES, CommonSettings

    root = tmp_path / "elsewhere"
    monkeypatch.setenv("RUNTUNE_SECRETS_DIR", str(root))
    monkeypatch.setenv("RUNTUNE_INTERNAL_TOKEN", "not-for-executions")
    monkeypatch.setenv("RUNTUNE_LOCAL_DIR", str(tmp_path / "local"))
    for name in EMULATOR_VARIABLES:  # the local profile wants them; no emulator is called here
        monkeypatch.setenv(name, "127.0.0.1:9")
    wiring.secret_store(CommonSettings(), deployable="training").put(UID, "hf_token", VALUE)

    inherited = wiring.local_trainer_env()
    assert inherited["RUNTUNE_SECRETS_DIR"] == str(root)
    assert "RUNTUNE_INTERNAL_TOKEN" not in inherited
    for name in [name for name in os.environ if name.startswith("RUNTUNE_")]:
        monkeypatch.delenv(name)
    for name, value in inherited.items():
        monkeypatch.setenv(name, value)
    assert wiring.secret_store(CommonSettings(), deployable="trainer").get(UID, "hf_token") == VALUE
