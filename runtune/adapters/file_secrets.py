"""Secret store for the local platform: one JSON file per user, readable by this OS user only.

`root/{sha256(uid)}.json` maps names to values. The directory is 0700 and every file 0600 from the
moment it exists (created with that mode, never chmod-ed after the fact), and files are replaced
atomically, so a reader never sees a half-written file and a crash never loses the previous one.
Values are never logged, and error messages never quote them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

from runtune.adapters.secret_rules import encode_secret_value, uid_digest, validate_secret_name

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


class LocalFileSecretStore:
    """`SecretStore` on local files, safe across threads and processes sharing `root`."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask, and an existing directory keeps whatever it had.
        os.chmod(self._root, DIR_MODE)
        self._thread_lock = threading.Lock()

    def put(self, uid: str, name: str, value: str) -> None:
        validate_secret_name(name)
        encode_secret_value(value)  # same limits as Secret Manager
        digest = uid_digest(uid)
        with self._locked(digest):
            values = self._read(digest)
            values[name] = value
            self._write(digest, values)
        log.info("secret stored", extra={"owner": digest[:32], "entry": name})

    def get(self, uid: str, name: str) -> str | None:
        validate_secret_name(name)
        # No lock: files are only ever replaced whole, so a read sees the old or the new version.
        return self._read(uid_digest(uid)).get(name)

    def delete(self, uid: str, name: str) -> None:
        validate_secret_name(name)
        digest = uid_digest(uid)
        with self._locked(digest):
            values = self._read(digest)
            if values.pop(name, None) is None:
                return
            if values:
                self._write(digest, values)
            else:
                self._path(digest).unlink(missing_ok=True)
        log.info("secret deleted", extra={"owner": digest[:32], "entry": name})

    def names(self, uid: str) -> list[str]:
        return sorted(self._read(uid_digest(uid)))

    def _path(self, digest: str) -> Path:
        return self._root / f"{digest}.json"

    @contextlib.contextmanager
    def _locked(self, digest: str) -> Iterator[None]:
        """Serialise read-modify-write per user: threads here, and other processes (flock)."""
        lock_path = self._root / f".{digest}.lock"
        with self._thread_lock:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # also releases the flock

    def _read(self, digest: str) -> dict[str, str]:
        try:
            raw = self._path(digest).read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            values = json.loads(raw)
        except json.JSONDecodeError:
            values = None  # not chained: a JSONDecodeError carries the whole document
        if not isinstance(values, dict):
            # Say which file, never what is in it.
            raise ValueError(f"secret file {self._path(digest).name} is not a JSON object")
        return {str(key): str(value) for key, value in values.items()}

    def _write(self, digest: str, values: dict[str, str]) -> None:
        target = self._path(digest)
        temp = self._root / f".{digest}.{secrets.token_hex(8)}.tmp"
        # O_EXCL with mode 0600: the file is private from its first byte, and never someone else's.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), FILE_MODE)  # the umask only removes bits; be explicit anyway
                json.dump(values, handle, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(self._root)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable: without it a crash can bring the old file back.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
