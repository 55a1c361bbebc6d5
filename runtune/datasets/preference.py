"""Preference pairs: one prompt, a preferred and a non-preferred answer (what a `dpo` job trains on).

OpenAI's preference JSONL, one object per line:
`{"input": {"messages": [...]}, "preferred_output": [{"role": "assistant", "content": ...}],
"non_preferred_output": [{"role": "assistant", "content": ...}]}`; the input messages are chat
messages as in chat JSONL (images as `image_url` parts), ending with the user's turn, and each output
is one assistant message of text. A table maps a prompt, a `chosen` and a `rejected` column
(runtune/datasets/tables.py). Either becomes one `RawExample` whose `messages` end with the preferred
answer and whose `rejected` is the other; `check_pair` is the one rule both readers apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtune.datasets.chat_jsonl import chat_messages, read_jsonl
from runtune.datasets.problems import DataError, Location
from runtune.datasets.records import RawExample, RawImage, Rows, text_part
from runtune.datasets.resolve import ImageResolver

PREFERRED, NON_PREFERRED = "preferred_output", "non_preferred_output"
_ASSISTANT = frozenset({"assistant"})


def is_preference_record(record: Any) -> bool:
    """Whether a JSONL line is a preference pair (what detection reads from the first line)."""
    return isinstance(record, dict) and isinstance(record.get("input"), dict) and PREFERRED in record


def read_preference_jsonl(path: Path, display: str, resolver: ImageResolver, *, max_line_bytes: int) -> Rows:
    def example(record: Any, where: Location) -> RawExample:
        return preference_example(record, where, resolver)

    yield from read_jsonl(path, display, max_line_bytes, example)


def preference_example(record: Any, where: Location, resolver: ImageResolver) -> RawExample:
    if not isinstance(record, dict):
        raise DataError("expected a JSON object with 'input', 'preferred_output' and 'non_preferred_output'", where)
    source = record.get("input")
    raw_messages = source.get("messages") if isinstance(source, dict) else None
    if not isinstance(raw_messages, list) or not raw_messages:
        raise DataError("expected 'input' with a non-empty 'messages' list", where.at(field="input.messages"))
    images: list[RawImage] = []
    prompt = chat_messages(raw_messages, where, "input.messages", resolver, images)
    if prompt[-1]["role"] != "user":
        raise DataError(
            "the input must end with the user's turn (the outputs are the answers to it)",
            where.at(field=f"input.messages[{len(prompt) - 1}].role"),
            code="no_prompt",
        )
    chosen = _output(record, PREFERRED, where, resolver)
    rejected = _output(record, NON_PREFERRED, where, resolver)
    check_pair(_text(chosen), _text(rejected), where.at(field=PREFERRED), where.at(field=NON_PREFERRED))
    return RawExample(messages=[*prompt, chosen], where=where, images=images, rejected=[rejected])


def _output(record: dict[str, Any], name: str, where: Location, resolver: ImageResolver) -> dict[str, Any]:
    """The one assistant message of text at `record[name]`."""
    at = where.at(field=name)
    value = record.get(name)
    if value is None:
        raise DataError(f"'{name}' is missing: a preference pair needs both answers", at, code="missing_answer")
    if not isinstance(value, list) or len(value) != 1:
        raise DataError("expected a list of exactly one assistant message", at, code="invalid_answer")
    images: list[RawImage] = []
    message = chat_messages(value, where, name, resolver, images, roles=_ASSISTANT)[0]
    if images:
        raise DataError("an answer is text: images belong in the input", where.at(field=f"{name}[0].content"))
    return message


def _text(message: dict[str, Any]) -> str:
    return "".join(part.get("text") or "" for part in message["content"] if part["type"] == "text").strip()


def check_pair(chosen: str, rejected: str, chosen_at: Location, rejected_at: Location) -> None:
    """Both answers non-empty and different (identical ones teach nothing and are refused)."""
    if not chosen:
        raise DataError("the preferred answer is empty", chosen_at, code="missing_answer")
    if not rejected:
        raise DataError("the non-preferred answer is empty", rejected_at, code="missing_answer")
    if chosen == rejected:
        raise DataError(
            "the preferred and non-preferred answers are identical: a pair must say which answer is better",
            rejected_at,
            code="identical_answers",
        )


def answer_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [text_part(text)]}
