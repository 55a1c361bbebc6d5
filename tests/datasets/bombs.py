"""Hostile inputs for the bounded-parsing tests (issue 13): each is small on disk and would cost the
ingesting process far more than its size if a reader trusted it."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from tests.datasets.builders import chat_line

_BLOCK = 512


def _header(name: str, kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(tarfile.USTAR_FORMAT)


def tar_header_bomb(path: Path, payload_bytes: int, kind: bytes = tarfile.GNUTYPE_LONGNAME) -> Path:
    """A `.tar.gz` whose first member is a metadata header (a GNU long name `././@LongLink` by
    default) with `payload_bytes` of zeros, then one ordinary file: `tarfile` reads that payload
    whole. The zeros are written in chunks, so building a 256 MiB bomb costs no memory here."""
    with path.open("wb") as raw:
        _write_tar_header_bomb(raw, payload_bytes, kind)
    return path


def tar_header_bomb_bytes(payload_bytes: int, kind: bytes = tarfile.GNUTYPE_LONGNAME) -> bytes:
    out = io.BytesIO()
    _write_tar_header_bomb(out, payload_bytes, kind)
    return out.getvalue()


def _write_tar_header_bomb(raw: BinaryIO, payload_bytes: int, kind: bytes) -> None:
    chunk = b"\0" * (1 << 20)
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as out:
        out.write(_header("././@LongLink", kind, payload_bytes))
        left = payload_bytes + (-payload_bytes % _BLOCK)
        while left:
            out.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
        out.write(_header("cat/1.txt", tarfile.REGTYPE, 1) + b"x" + b"\0" * (_BLOCK - 1))
        out.write(b"\0" * 2 * _BLOCK)


def zip_with_directory(files: dict[str, bytes], *, entries: int | None = None, size: int | None = None) -> bytes:
    """A zip whose end-of-central-directory record declares `entries` and a directory of `size` bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    data = bytearray(out.getvalue())
    end = data.rindex(b"PK\x05\x06")
    if entries is not None:
        struct.pack_into("<HH", data, end + 8, entries, entries)
    if size is not None:
        struct.pack_into("<L", data, end + 12, size)
    return bytes(data)


def encrypted_zip(files: dict[str, bytes]) -> bytes:
    """A zip whose entries carry the 'encrypted' flag (bit 0), as a password-protected zip's do."""
    data = bytearray(zip_with_directory(files))
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            data[at + flag_at] |= 0x1
            start = at + 4
    return bytes(data)


def corrupt_deflate_zip(name: str, payload: bytes) -> bytes:
    """A zip whose one deflated entry has its compressed bytes overwritten with garbage."""
    data = bytearray(zip_with_directory({name: payload}))
    header = data.index(b"PK\x03\x04")
    name_length, extra_length = struct.unpack_from("<HH", data, header + 26)
    start = header + 30 + name_length + extra_length
    data[start : start + 64] = b"\xff" * 64
    return bytes(data)


def deep_json_line(depth: int) -> str:
    return '{"messages": ' + "[" * depth + "]" * depth + "}"


def chat_jsonl_with_line(line: str) -> bytes:
    return (chat_line("q", "a") + "\n" + line + "\n" + chat_line("q2", "b") + "\n").encode()


def csv_with_field(field_chars: int) -> bytes:
    return ("question,answer\nhi,there\nbig," + "x" * field_chars + "\n").encode()


def parquet_bomb(path: Path | BinaryIO, rows: int = 16, value_bytes: int = 1 << 20) -> Path | BinaryIO:
    """A Parquet file of `rows` strings of `value_bytes` repeated letters, zstd-compressed without a
    dictionary: a few KiB on disk, `rows * value_bytes` decompressed."""
    table = pa.table({"question": ["a" * value_bytes] * rows, "answer": ["b"] * rows})
    pq.write_table(table, path, compression="zstd", use_dictionary=False, row_group_size=rows)
    return path


def parquet_bomb_bytes() -> bytes:
    out = io.BytesIO()
    parquet_bomb(out)
    return out.getvalue()
