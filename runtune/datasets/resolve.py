"""Turning an image reference from the input into bytes, without ever fetching from elsewhere.

Accepted: raw bytes, a `{bytes, path}` struct (the Hugging Face layout), a base64 `data:` URL, or
a relative path to a file inside the uploaded archive. Refused: http(s)/gs/file URLs and absolute
or escaping paths. The service never fetches a URL or reads a path the user names outside the
upload: that would let a dataset read another user's objects or the server's own files.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path, PurePosixPath
from typing import Any

from runtune.datasets.problems import DataError, Location
from runtune.datasets.records import RawImage

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?);base64,(?P<data>.*)$", re.S)


class ImageResolver:
    def __init__(self, root: Path | None, *, max_bytes: int, base: PurePosixPath = PurePosixPath()) -> None:
        """`root`: the extracted archive (None when the upload is a single file); `base`: the folder
        of the table inside it, which relative paths are read from first."""
        self._root = root.resolve() if root is not None else None
        self._base = base
        self._max_bytes = max_bytes

    def resolve(self, value: Any, where: Location) -> RawImage:
        if isinstance(value, bytes | bytearray | memoryview):
            return RawImage(bytes(value), None, where)
        if isinstance(value, dict):
            data, path = value.get("bytes"), value.get("path")
            if data:
                if not isinstance(data, bytes | bytearray | memoryview):
                    # From JSON, `bytes(10**12)` would allocate a terabyte and `bytes("x")` raise.
                    raise DataError("the image struct's 'bytes' is not binary data", where, code="invalid_image")
                return RawImage(bytes(data), path if isinstance(path, str) else None, where)
            if path:
                return self._from_path(str(path), where)
            raise DataError("the image struct has neither bytes nor a path", where, code="invalid_image")
        if isinstance(value, str) and value.strip():
            text = value.strip()
            if text.startswith("data:"):
                return RawImage(_decode_data_url(text, where), None, where)
            return self._from_path(text, where)
        raise DataError("no image (the value is empty)", where, code="invalid_image")

    def _from_path(self, text: str, where: Location) -> RawImage:
        shown = text if len(text) <= 120 else text[:117] + "..."
        if _SCHEME.match(text) and not _DRIVE.match(text):
            raise DataError(
                f"image URL '{shown}' points outside the upload: only data URLs and paths inside the uploaded "
                "archive are read (the service fetches nothing from elsewhere)",
                where,
                code="image_outside_upload",
            )
        if self._root is None:
            raise DataError(
                f"image path '{shown}' refers to a file, but the upload is a single file: upload a zip or tar "
                "holding the table and its images",
                where,
                code="image_outside_upload",
            )
        cleaned = text.replace("\\", "/")
        parts = [part for part in cleaned.split("/") if part not in ("", ".")]
        if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":") or ".." in parts or not parts:
            raise DataError(
                f"image path '{shown}' points outside the upload (absolute or '..' paths are refused)",
                where,
                code="image_outside_upload",
            )
        for candidate in (self._root.joinpath(*self._base.parts, *parts), self._root.joinpath(*parts)):
            resolved = candidate.resolve()
            if resolved.is_relative_to(self._root) and resolved.is_file():
                return RawImage(self._read(resolved, shown, where), text, where)
        raise DataError(f"image '{shown}' is not in the uploaded archive", where, code="image_not_found")

    def _read(self, path: Path, shown: str, where: Location) -> bytes:
        size = path.stat().st_size
        if size > self._max_bytes:
            raise DataError(
                f"image '{shown}' is {size:,} bytes, over the limit of {self._max_bytes:,}",
                where,
                code="image_too_large",
            )
        return path.read_bytes()


def _decode_data_url(text: str, where: Location) -> bytes:
    match = _DATA_URL.match(text)
    if match is None:
        raise DataError("the data URL is not a base64 'data:image/...;base64,...' URL", where, code="invalid_image")
    try:
        return base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DataError("the data URL's base64 payload is invalid", where, code="invalid_image") from exc
