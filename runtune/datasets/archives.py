"""Archive safety: zip and tar uploads are unpacked only after every entry has been checked.

Refused: entries that are absolute or climb out with `..`, links and device files, more entries
than the limit, and expansion beyond the size or ratio limits. The sizes are counted on the bytes
actually written, never on what the archive's headers claim (a zip bomb lies in its headers).

Metadata is bounded before it is read. `tarfile` reads a GNU long name/link or a pax header whole,
however large its header says it is (one such header of 1 GiB in a 1 MB `.tar.gz` is a memory
bomb), so headers go through `_BoundedTarInfo`, which refuses one over `max_tar_header_bytes`
from its 512-byte header block, before its payload is read. `zipfile` reads and parses a zip's
whole central directory when it opens one, so its end record is checked first: the directory's
declared size, and the entries it actually holds, counted by walking their fixed-size headers.
"""

from __future__ import annotations

import stat
import struct
import tarfile
import zipfile
import zlib
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
    # `is_zipfile` reads only the end record. Never `tarfile.is_tarfile`: it opens the archive
    # with the unbounded `TarInfo` and so reads a header bomb whole.
    if zipfile.is_zipfile(archive):
        check_zip_directory(archive, limits, where)
        return _extract_zip(archive, dest, budget, where)
    return _extract_tar(archive, dest, budget, where, limits.max_tar_header_bytes)


def check_zip_directory(archive: Path, limits: DatasetLimits, where: Location) -> None:
    """Refuse a central directory over the size or entry limits before `zipfile` parses it whole."""
    with archive.open("rb") as handle:
        try:
            # The very parse `ZipFile` starts with, so the bound applies to exactly what it will read.
            end = zipfile._EndRecData(handle)
        except OSError:
            end = None
        if not end:
            raise DataError("not a readable zip archive (no end-of-directory record)", where, code="invalid_archive")
        declared, size, offset = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE], end[zipfile._ECD_OFFSET]
        if declared > limits.max_archive_entries:
            raise DataError(
                f"the archive has more than {limits.max_archive_entries:,} entries "
                f"(its directory declares {declared:,})",
                where,
                code="archive_too_large",
            )
        if size > limits.max_zip_directory_bytes:
            raise DataError(
                f"the archive's directory is {size:,} bytes, over the limit of {limits.max_zip_directory_bytes:,}",
                where,
                code="archive_too_large",
            )
        concat = end[zipfile._ECD_LOCATION] - size - offset
        if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
            concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
        start = offset + concat
        if start < 0 or start + size > archive.stat().st_size:
            raise DataError(
                "the zip archive is corrupt (its directory lies outside the file)", where, code="invalid_archive"
            )
        handle.seek(start)
        _count_directory_entries(handle, size, limits.max_archive_entries, where)


_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")  # zipfile's structCentralDir: 46 bytes


def _count_directory_entries(handle: IO[bytes], size: int, max_entries: int, where: Location) -> None:
    """Walk the directory's fixed headers (skipping names, extras, comments) as `zipfile` will: the
    declared entry count can lie, the walk cannot."""
    done = entries = 0
    while done < size:
        header = handle.read(_CENTRAL_HEADER.size)
        if len(header) != _CENTRAL_HEADER.size:
            raise DataError("the zip archive is corrupt (truncated directory)", where, code="invalid_archive")
        fields = _CENTRAL_HEADER.unpack(header)
        variable = fields[12] + fields[13] + fields[14]  # name, extra field, comment lengths
        handle.seek(variable, 1)
        done += _CENTRAL_HEADER.size + variable
        entries += 1
        if entries > max_entries:
            raise DataError(f"the archive has more than {max_entries:,} entries", where, code="archive_too_large")


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
                if info.flag_bits & 0x1:
                    raise DataError(
                        f"archive entry '{info.filename}' is encrypted: password-protected zips are not supported",
                        entry_where,
                        code="invalid_archive",
                    )
                _copy_zip_entry(zf, info, _target(dest, relative, entry_where), budget, entry_where)
                written += 1
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError) as exc:
        raise DataError(f"the zip archive is corrupt or unsupported ({exc})", where, code="invalid_archive") from exc
    return written


def _copy_zip_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: _Budget, where: Location) -> None:
    try:
        with zf.open(info) as source:
            _copy(source, target, budget)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        # A corrupt deflate stream (zlib.error), a bad CRC, an unknown compression method: the
        # entry's fault, so the message names it. (Encrypted entries are refused before this.)
        raise DataError(
            f"archive entry '{info.filename}' is corrupt or unsupported ({exc})", where, code="invalid_archive"
        ) from exc


def _bounded_tarinfo(max_header_bytes: int) -> type[tarfile.TarInfo]:
    class BoundedTarInfo(tarfile.TarInfo):
        """Refuses a metadata member whose payload is over the limit, from its header block alone,
        before `tarfile` reads that payload; and sparse files (their maps are unbounded lists)."""

        def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
            if self.type in _METADATA_TYPES and self.size > max_header_bytes:
                kind = "long name" if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK) else "pax"
                raise DataError(
                    f"the archive has a {kind} header of {self.size:,} bytes, over the limit of {max_header_bytes:,}",
                    None,
                    code="archive_too_large",
                )
            if self.type == tarfile.GNUTYPE_SPARSE:
                raise _SparseMember(self.name)
            return super()._proc_member(tar)

        def _proc_gnusparse_00(self, *args: object) -> None:
            raise _SparseMember(self.name)

        _proc_gnusparse_01 = _proc_gnusparse_10 = _proc_gnusparse_00

    return BoundedTarInfo


_METADATA_TYPES = frozenset(
    {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE}
)


class _SparseMember(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _extract_tar(archive: Path, dest: Path, budget: _Budget, where: Location, max_header_bytes: int) -> int:
    written = 0
    try:
        # Streaming mode ('|*'): entries are read in order, never seeking back through a gzip.
        with (
            archive.open("rb") as raw,
            tarfile.open(fileobj=raw, mode="r|*", tarinfo=_bounded_tarinfo(max_header_bytes)) as tar,
        ):
            while (member := tar.next()) is not None:
                # A TarFile keeps every member it has read; here only the current one is needed.
                tar.members.clear()
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
    except DataError as exc:
        if exc.where is not None:
            raise
        # From `_BoundedTarInfo`, which does not know the archive's name.
        raise DataError(exc.reason, where, code=exc.code) from exc
    except _SparseMember as exc:
        raise DataError(
            f"archive entry '{exc.name}' is a sparse file (not supported)",
            where.at(field=exc.name),
            code="unsafe_archive",
        ) from exc
    except tarfile.ReadError as exc:
        if budget.entries == 0:
            raise DataError("not a readable zip or tar archive", where, code="invalid_archive") from exc
        raise DataError(f"the tar archive is corrupt or unsupported ({exc})", where, code="invalid_archive") from exc
    except (tarfile.TarError, EOFError, OSError, zlib.error, RecursionError) as exc:
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
