"""OpenAI chat messages -> the canonical messages the chat template renders, plus the images.

Image parts must be base64 data URLs: the engine never fetches a URL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from runtune.errors import InvalidRequest
from runtune.schemas.chat import check_messages, image_url_of

MAX_IMAGE_PIXELS = 50_000_000


@dataclass
class Conversation:
    messages: list[dict[str, Any]]  # canonical: content parts `{"type": "text", "text"}` / `{"type": "image"}`
    images: list[Any]  # PIL images, in order of appearance


class _DecodedImages:
    """The last images decoded, by their data URL's digest: an evaluation sends one request per label,
    each with the sample's image, and decoding it once serves them all. Bounded by total pixels."""

    def __init__(self, max_pixels: int) -> None:
        self._max_pixels = max_pixels
        self._images: OrderedDict[bytes, Any] = OrderedDict()
        self._pixels = 0
        self._lock = threading.Lock()

    def get(self, key: bytes) -> Any | None:
        with self._lock:
            image = self._images.get(key)
            if image is not None:
                self._images.move_to_end(key)
            return image

    def put(self, key: bytes, image: Any) -> None:
        size = image.width * image.height
        with self._lock:
            if size > self._max_pixels or key in self._images:
                return
            self._images[key], self._pixels = image, self._pixels + size
            while self._pixels > self._max_pixels:
                _, old = self._images.popitem(last=False)
                self._pixels -= old.width * old.height


_DECODED = _DecodedImages(max_pixels=32_000_000)


def decode_data_url(url: str, param: str) -> Any:
    """The RGB image of a data URL; callers share the object, so it must never be modified."""
    key = hashlib.sha256(url.encode()).digest()
    if (image := _DECODED.get(key)) is None:
        image = _decode(url, param)
        _DECODED.put(key, image)
    return image


def _decode(url: str, param: str) -> Any:
    from PIL import Image

    if not url.startswith("data:image/") or ";base64," not in url:
        raise InvalidRequest("Images must be base64 data URLs (data:image/...;base64,...)", param=param)
    try:
        raw = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
        image = Image.open(io.BytesIO(raw))
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise InvalidRequest(f"The image has more than {MAX_IMAGE_PIXELS} pixels", param=param)
        return image.convert("RGB")
    except (binascii.Error, ValueError, OSError) as exc:
        raise InvalidRequest(f"The image is not a readable base64 image: {exc}", param=param) from None


def parse_messages(raw: Any) -> Conversation:
    check_messages(raw)  # text and inline images only: the engine never fetches or reads a URL
    messages: list[dict[str, Any]] = []
    images: list[Any] = []
    for i, message in enumerate(raw):
        content = message["content"]
        parts: list[dict[str, Any]] = []
        for j, part in enumerate([{"type": "text", "text": content}] if isinstance(content, str) else content):
            if part["type"] == "text":
                parts.append({"type": "text", "text": part["text"]})
            else:
                images.append(decode_data_url(image_url_of(part) or "", f"messages[{i}].content[{j}].image_url.url"))
                parts.append({"type": "image"})
        messages.append({"role": message["role"], "content": parts})
    return Conversation(messages, images)
