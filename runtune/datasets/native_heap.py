"""The C heap of an ingesting process, kept from hoarding the large buffers an ingestion frees.

An ingestion allocates many short-lived native buffers, among them the shard upload's 8 MiB reads
(`canonical._Pipe`). glibc serves an allocation of at least its mmap threshold (128 KiB) with `mmap`
and gives it back on free, but it raises that threshold to the size of every mapped chunk freed (up
to 32 MiB), after which those buffers come from the per-thread heaps instead, where freed space is
kept for reuse and fragments. Measured on the bench (issue 18), the heaps held 160 MiB free after
1,000 images and 290 MiB after 4,000, and peak RSS grew about 70 KB per image although no Python
object nor Arrow buffer outlived its row group. Fixing the threshold at 4 MiB keeps the large
buffers mapped and returned, so they no longer stay in the heaps (what still grows, about 32 KB an
image, is in docs/performance.md); smaller ones (images, 1 MiB pipe chunks) stay on the heaps, whose
reuse is cheaper than fresh pages (at 128 KiB the same bound cost about 10% more CPU).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import threading

# Fixed (mallopt(M_MMAP_THRESHOLD) also turns the raising off): above the image and pipe-chunk sizes.
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # malloc.h
_lock = threading.Lock()
_done = False


def _libc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None  # musl and others: their allocators do not raise a threshold
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def bound_native_heap() -> None:
    """Fix glibc's mmap threshold for this process (once; a no-op elsewhere than glibc)."""
    global _done
    with _lock:
        if _done:
            return
        libc = _libc()
        if libc is not None:
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        _done = True


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def free_heap_bytes() -> int | None:
    """Bytes glibc's heaps hold free (freed, kept for reuse, counted in RSS); None off glibc."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().fordblks)
