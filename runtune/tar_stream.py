"""A tar archive written as it is read: entries from any byte source, a chunk at a time, so an
archive of a model of many gigabytes passes through a process without being held in memory or on
its disk (on Cloud Run both are the same RAM). Uncompressed: safetensors weights do not compress,
and an uncompressed archive's length is known before the first byte (`Content-Length`)."""

from __future__ import annotations

import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

BLOCK = tarfile.BLOCKSIZE  # 512
END = b"\0" * (2 * BLOCK)  # two zero blocks end an archive


@dataclass(frozen=True)
class Entry:
    name: str
    size: int
    # The entry's bytes, in chunks; exactly `size` of them.
    chunks: Callable[[], Iterable[bytes]]


def _header(entry: Entry, mtime: int) -> bytes:
    info = tarfile.TarInfo(entry.name)
    info.size, info.mtime, info.mode = entry.size, mtime, 0o644
    # PAX: names of any length and sizes over 8 GiB (ustar's limits), in extra header blocks.
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> int:
    return -size % BLOCK


def archive_size(entries: list[Entry], mtime: int = 0) -> int:
    """The archive's exact length, for `stream(entries, mtime)` with the same `mtime`."""
    return sum(len(_header(e, mtime)) + e.size + _padding(e.size) for e in entries) + len(END)


def stream(entries: list[Entry], mtime: int | None = None) -> Iterator[bytes]:
    """The archive's bytes. A source that yields more or fewer bytes than its entry's `size` stops the
    archive with an error (a truncated download, never a silently corrupt one)."""
    stamp = int(time.time()) if mtime is None else mtime
    for entry in entries:
        yield _header(entry, stamp)
        sent = 0
        for chunk in entry.chunks():
            sent += len(chunk)
            if sent > entry.size:
                raise ValueError(f"'{entry.name}' is longer than its {entry.size} bytes")
            yield chunk
        if sent != entry.size:
            raise ValueError(f"'{entry.name}' ended after {sent} of its {entry.size} bytes")
        yield b"\0" * _padding(entry.size)
    yield END
