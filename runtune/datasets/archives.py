"""Archive safety: zip and tar uploads are unpacked only after every entry has been checked.

Refused: entries that are absolute or climb out with `..`, links and device files, more entries
than the limit, and expansion beyond the size or ratio limits. The sizes are counted on the bytes
actually written, never on what the archive's headers claim (a zip bomb lies in its headers).
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from runtune.datasets.limits import DatasetLimits
from runtune.datasets.problems import DataError, Location

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
# Below this many extracted bytes the ratio is not checked: a tiny archive of text compresses
# very well without being a bomb.
_RATIO_FLOOR_BYTES = 1 << 20
_COPY_CHUNK = 1 << 20
# Metadata that macOS and Windows add to archives; never data.
_JUNK_PARTS = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db"})


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def safe_member_path(name: str, where: Location) -> PurePosixPath | None:
    """The relative path an entry may be written to; None for entries to ignore (folders, junk)."""
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise DataError(f"archive entry '{name}' has an absolute path", where, code="unsafe_archive")
    parts = [part for part in cleaned.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise DataError(f"archive entry '{name}' escapes the archive's folder ('..')", where, code="unsafe_archive")
    if not parts or any(part in _JUNK_PARTS or part.startswith("._") for part in parts):
        return None
    return PurePosixPath(*parts)


class _Budget:
    """Counts extracted bytes against the size and ratio limits as they are written."""

    def __init__(self, archive_bytes: int, limits: DatasetLimits, where: Location) -> None:
        self._max_total = limits.max_extracted_bytes
        self._max_ratio = limits.max_expansion_ratio
        self._archive_bytes = max(archive_bytes, 1)
        self._where = where
        self.total = 0
        self.entries = 0
        self._max_entries = limits.max_archive_entries

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self._max_entries:
            raise DataError(
                f"the archive has more than {self._max_entries:,} entries", self._where, code="archive_too_large"
            )

    def add(self, count: int) -> None:
        self.total += count
        if self.total > self._max_total:
            raise DataError(
                f"the archive expands to more than {self._max_total:,} bytes", self._where, code="archive_too_large"
            )
        if self.total > _RATIO_FLOOR_BYTES and self.total > self._max_ratio * self._archive_bytes:
            raise DataError(
                f"the archive expands more than {self._max_ratio:g}x its size "
                f"({self._archive_bytes:,} bytes compressed): refused as a possible archive bomb",
                self._where,
                code="archive_too_large",
            )


def extract_archive(archive: Path, dest: Path, display_name: str, limits: DatasetLimits) -> int:
    """Unpack `archive` into `dest` (created) after the checks above; returns the files written."""
    where = Location(display_name)
    budget = _Budget(archive.stat().st_size, limits, where)
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, dest, budget, where)
    try:
        is_tar = tarfile.is_tarfile(archive)
    except OSError:
        is_tar = False
    if is_tar:
        return _extract_tar(archive, dest, budget, where)
    raise DataError("not a readable zip or tar archive", where, code="invalid_archive")


def _extract_zip(archive: Path, dest: Path, budget: _Budget, where: Location) -> int:
    written = 0
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                budget.entry()
                entry_where = where.at(field=info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise DataError(f"archive entry '{info.filename}' is a link", entry_where, code="unsafe_archive")
                relative = safe_member_path(info.filename, entry_where)
                if relative is None or info.is_dir():
                    continue
                with zf.open(info) as source:
                    _copy(source, _target(dest, relative, entry_where), budget)
                written += 1
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError) as exc:
        raise DataError(f"the zip archive is corrupt or unsupported ({exc})", where, code="invalid_archive") from exc
    return written


def _extract_tar(archive: Path, dest: Path, budget: _Budget, where: Location) -> int:
    written = 0
    try:
        # Streaming mode ('|*'): entries are read in order, never seeking back through a gzip.
        with archive.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                budget.entry()
                entry_where = where.at(field=member.name)
                if member.isdir():
                    safe_member_path(member.name, entry_where)
                    continue
                if not member.isfile():
                    kind = "a link" if member.issym() or member.islnk() else "not a regular file"
                    raise DataError(f"archive entry '{member.name}' is {kind}", entry_where, code="unsafe_archive")
                relative = safe_member_path(member.name, entry_where)
                if relative is None:
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                with source:
                    _copy(source, _target(dest, relative, entry_where), budget)
                written += 1
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"the tar archive is corrupt or unsupported ({exc})", where, code="invalid_archive") from exc
    return written


def _target(dest: Path, relative: PurePosixPath, where: Location) -> Path:
    target = dest.joinpath(*relative.parts)
    # Belt and braces: whatever the name checks missed, nothing is written outside `dest`.
    if not target.resolve().is_relative_to(dest.resolve()):
        raise DataError(f"archive entry '{relative}' escapes the archive's folder", where, code="unsafe_archive")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _copy(source: IO[bytes], target: Path, budget: _Budget) -> None:
    with target.open("wb") as out:
        while chunk := source.read(_COPY_CHUNK):
            budget.add(len(chunk))
            out.write(chunk)


@contextmanager
def scratch_dir(base: Path) -> Iterator[Path]:
    """A folder removed afterwards whatever happens (failed ingestions leave nothing on disk)."""
    base.mkdir(parents=True, exist_ok=True)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
