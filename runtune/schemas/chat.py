"""The chat messages Runtune passes to an inference engine: text, and images inline as data URLs.

Nothing else: a part of another type (`input_image`, `video_url`, `audio_url`, `file`, or none at
all) or an image by URL (http(s), `file:`, `gs:`) would have the engine fetch or read it, and the
engine sits inside the platform's network with every user's adapters mounted. Checked by the
inference service before a model is resolved, again on every engine call of the service and the
evaluation executions (`runtune.inference.serving`), and by the local engine server.
"""

from __future__ import annotations

from typing import Any

from runtune.errors import InvalidRequest

ROLES = ("system", "user", "assistant")
IMAGE_DATA_URL_PREFIX = "data:image/"
_INLINE_ONLY = "Images must be base64 data URLs (data:image/...;base64,...); the platform fetches no URL"


def check_messages(messages: Any) -> None:
    """Raises InvalidRequest naming the first message or content part that is not text or an inline image."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}", param=f"messages[{i}].role")
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise InvalidRequest("content must be a string or a list of parts", param=f"messages[{i}].content")
        for j, part in enumerate(content):
            _check_part(part, f"messages[{i}].content[{j}]")


def image_url_of(part: dict[str, Any]) -> str | None:
    """The URL of an `image_url` part (`{"type": "image_url", "image_url": {"url": ...}}`), if any."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    return url if isinstance(url, str) else None


def _check_part(part: Any, param: str) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise InvalidRequest("A text part needs a string 'text'", param=f"{param}.text")
        return
    if kind == "image_url":
        url = image_url_of(part)
        if url is None or not url.startswith(IMAGE_DATA_URL_PREFIX) or ";base64," not in url:
            raise InvalidRequest(_INLINE_ONLY, param=f"{param}.image_url.url")
        return
    named = f"'{kind}'" if isinstance(kind, str) else "a part without a type"
    raise InvalidRequest(
        f"Content parts must be 'text' or 'image_url' (with a data URL), not {named[:100]}",
        param=param,
    )
