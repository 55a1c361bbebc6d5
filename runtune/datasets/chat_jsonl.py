"""OpenAI chat JSONL: one `{"messages": [...]}` object per line, images as `image_url` parts.

Each line becomes one example as it is read (the file is never held whole; a line is read up to
`max_line_bytes`, and a longer one is a bad row, skipped in bounded chunks). Content may be a
string or a list of parts (`text`, `image_url`); `image_url.url` is a base64 data URL, or a path
inside the uploaded archive when the JSONL came in one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from runtune.datasets.problems import DataError, Location
from runtune.datasets.records import IMAGE_PART, RawExample, RawImage, Rows, text_part
from runtune.datasets.resolve import ImageResolver

ROLES = frozenset({"system", "user", "assistant"})
_SKIP_CHUNK = 1 << 20


def numbered_lines(path: Path, display: str, max_line_bytes: int) -> Iterator[tuple[int, str | DataError]]:
    """(line number, text) of every non-blank line; a line that is not UTF-8, or longer than
    `max_line_bytes`, comes as a DataError."""
    with path.open("rb") as handle:
        number = 0
        while raw := handle.readline(max_line_bytes + 1):
            number += 1
            where = Location(display, number, row_word="line")
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                _skip_rest_of_line(handle)
                yield (
                    number,
                    DataError(f"the line is longer than {max_line_bytes:,} bytes", where, code="line_too_long"),
                )
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield (
                    number,
                    DataError(f"not valid UTF-8 text (byte {exc.start} of the line)", where, code="invalid_encoding"),
                )
                continue
            if number == 1:
                text = text.removeprefix("\ufeff")  # a byte-order mark is not data
            # Without its line break: JSON that ends early would otherwise be reported at the next
            # line's column 1 ("line 2 column 1") instead of where this line stops.
            text = text.removesuffix("\n").removesuffix("\r")
            if text.strip():
                yield number, text


def _skip_rest_of_line(handle: IO[bytes]) -> None:
    while chunk := handle.readline(_SKIP_CHUNK):
        if chunk.endswith(b"\n"):
            return


def parse_json_line(text: str, where: Location) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed JSON ({exc.msg} at column {exc.colno})", where, code="invalid_json") from exc
    except RecursionError as exc:
        # `json` recurses once per level of nesting; a line of `[[[[...` exhausts the stack.
        raise DataError("the JSON is nested too deeply", where, code="invalid_json") from exc


def read_jsonl(path: Path, display: str, max_line_bytes: int, example: Callable[[Any, Location], RawExample]) -> Rows:
    """Each line of a JSONL file as `example(record, where)` makes it, or the DataError that says why
    it could not (a file without a line is one error)."""
    seen_any = False
    for number, text in numbered_lines(path, display, max_line_bytes):
        seen_any = True
        if isinstance(text, DataError):
            yield text
            continue
        where = Location(display, number, row_word="line")
        try:
            yield example(parse_json_line(text, where), where)
        except DataError as exc:
            yield exc
    if not seen_any:
        raise DataError("the file has no examples (it is empty)", Location(display), code="empty_file")


def read_chat_jsonl(
    path: Path, display: str, resolver: ImageResolver, *, labels_from_answer: bool, max_line_bytes: int
) -> Rows:
    def example(record: Any, where: Location) -> RawExample:
        return chat_example(record, where, resolver, labels_from_answer=labels_from_answer)

    yield from read_jsonl(path, display, max_line_bytes, example)


def chat_example(record: Any, where: Location, resolver: ImageResolver, *, labels_from_answer: bool) -> RawExample:
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list) or not record["messages"]:
        raise DataError("expected an object with a non-empty 'messages' list", where.at(field="messages"))
    images: list[RawImage] = []
    messages = chat_messages(record["messages"], where, "messages", resolver, images)
    if messages[-1]["role"] != "assistant":
        raise DataError("the last message must be the assistant's answer", where.at(field="messages"), code="no_answer")
    label = None
    if labels_from_answer:
        label = final_answer(record)
        if not label:
            raise DataError("the answer (the label) is empty", where.at(field=f"messages[{len(messages) - 1}]"))
    return RawExample(messages=messages, where=where, images=images, label=label)


def chat_messages(
    raw: list[Any], where: Location, field: str, resolver: ImageResolver, images: list[RawImage], roles=ROLES
) -> list[dict[str, Any]]:
    """The messages of the list at `field` in the canonical layout, their images appended to `images`
    (a preference line's `input.messages` and outputs are read by this too)."""
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(raw):
        at = where.at(field=f"{field}[{index}]")
        if not isinstance(message, dict) or message.get("role") not in roles:
            allowed = " or ".join(sorted(roles))
            raise DataError(f"each message needs a 'role' of {allowed}", at.at(field=f"{at.field}.role"))
        parts = _parts(message.get("content"), at.at(field=f"{at.field}.content"), resolver, images)
        messages.append({"role": message["role"], "content": parts})
    return messages


def final_answer(record: Any) -> str | None:
    """The last message's text if it is the assistant's, stripped: a classification set's label
    (`chat_example`) and what task-kind detection counts; None for a record `chat_example` refuses."""
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return None
    last = messages[-1]
    if last.get("role") != "assistant":
        return None
    content = last.get("content")
    if isinstance(content, str):
        return content.strip()
    if not isinstance(content, list):
        return None
    texts = [part["text"] for part in content if isinstance(part, dict) and part.get("type") == "text"]
    return " ".join(text for text in texts if isinstance(text, str)).strip()


def _parts(content: Any, where: Location, resolver: ImageResolver, images: list[RawImage]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)]
    if not isinstance(content, list):
        raise DataError("content must be a string or a list of parts", where)
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        at = where.at(field=f"{where.field}[{index}]")
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(text_part(part["text"]))
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            images.append(resolver.resolve(url, at.at(field=f"{at.field}.image_url.url")))
            parts.append(dict(IMAGE_PART))
        else:
            raise DataError("a content part must be {'type': 'text', 'text'} or {'type': 'image_url', ...}", at)
    return parts
