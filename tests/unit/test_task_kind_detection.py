"""A chat JSONL's task kind (runtune/datasets/task_kind.py): a small closed set of short final answers
is classification, with its labels in the stats; open answers are generation; the request overrides."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from runtune.datasets import task_kind
from runtune.datasets.limits import DatasetLimits
from runtune.datasets.pipeline import IngestOptions, Ingestor, IngestResult
from runtune.schemas.datasets import CreateDatasetRequest, TaskKind
from tests.datasets.builders import MemoryBlobStore, chat_line, write_zip


def _jsonl(pairs: list[tuple[str, str]]) -> bytes:
    return ("\n".join(chat_line(question, answer) for question, answer in pairs) + "\n").encode()


def _ingest(tmp_path: Path, data: bytes, name: str = "chat.jsonl", **options) -> IngestResult:
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / name
    source.write_bytes(data)
    ingestor = Ingestor(MemoryBlobStore(), "u", "d", limits=DatasetLimits(), workdir=tmp_path / "work")
    return ingestor.ingest_file(source, name, IngestOptions(**options))


SENTIMENT = [
    (f"Review {i}: {'great' if i % 2 else 'awful'} product", "positive" if i % 2 else "negative") for i in range(20)
]
OPEN = [(f"Describe picture {i}", f"A picture of {i} birds flying over a lake at dawn") for i in range(20)]


def test_a_closed_set_of_short_answers_is_classification_with_its_labels(tmp_path) -> None:
    result = _ingest(tmp_path, _jsonl(SENTIMENT))
    assert result.task_kind is TaskKind.classification
    assert result.labels == ["negative", "positive"]
    assert result.label_counts == {"negative": 10, "positive": 10}
    assert result.stats["label_counts"]["train"]  # per split, stratified by label
    assert "one of 2 short answers" in result.stats["task_kind_reason"]


def test_open_answers_are_generation(tmp_path) -> None:
    result = _ingest(tmp_path, _jsonl(OPEN))
    assert result.task_kind is TaskKind.generation and result.labels == [] and result.label_counts == {}
    assert "open text" in result.stats["task_kind_reason"]


def test_the_request_overrides_the_detection(tmp_path) -> None:
    generation = _ingest(tmp_path / "a", _jsonl(SENTIMENT), task_kind=TaskKind.generation)
    assert generation.task_kind is TaskKind.generation and generation.labels == []
    assert generation.stats["task_kind_reason"] == "given in the request"
    forced = _ingest(
        tmp_path / "b", _jsonl([(f"q{i}", f"answer {i % 3}") for i in range(6)]), task_kind=TaskKind.classification
    )
    assert forced.task_kind is TaskKind.classification and forced.labels == ["answer 0", "answer 1", "answer 2"]
    assert CreateDatasetRequest(upload_id="up", task_kind="auto").task_kind is None


def test_a_chat_jsonl_inside_an_archive_is_detected_too(tmp_path) -> None:
    archive = write_zip(tmp_path / "chat.zip", {"data/train.jsonl": _jsonl(SENTIMENT)})
    result = _ingest(tmp_path, archive.read_bytes(), name="chat.zip")
    assert result.task_kind is TaskKind.classification and result.labels == ["negative", "positive"]


def test_multi_turn_chats_are_judged_by_their_final_answer(tmp_path) -> None:
    lines = []
    for i in range(12):
        label = ("yes", "no")[i % 2]
        messages = [
            {"role": "system", "content": "Answer yes or no."},
            {"role": "user", "content": f"Is {i} even?"},
            {"role": "assistant", "content": f"Let me think about the number {i} for a while first."},
            {"role": "user", "content": "So?"},
            {"role": "assistant", "content": [{"type": "text", "text": f" {label} "}]},
        ]
        lines.append(json.dumps({"messages": messages}))
    result = _ingest(tmp_path, ("\n".join(lines) + "\n").encode())
    assert result.task_kind is TaskKind.classification and result.labels == ["no", "yes"]


@pytest.mark.parametrize(
    ("counts", "examples", "kind", "why"),
    [
        (Counter({"a": 10, "b": 10}), 20, TaskKind.classification, "one of 2"),
        (Counter({"a": 20}), 20, TaskKind.generation, "fewer than two"),
        (Counter({"a": 10, "b": 9, "c": 1}), 20, TaskKind.generation, "'c' occurs once"),
        (Counter({f"l{i}": 2 for i in range(6)}), 12, TaskKind.generation, "4 examples on average"),
        (Counter({f"l{i}": 4 for i in range(51)}), 204, TaskKind.generation, "more than 50"),
    ],
)
def test_the_rule(counts: Counter[str], examples: int, kind: TaskKind, why: str) -> None:
    detection = task_kind.classify(counts, examples)
    assert detection.kind is kind and why in detection.reason


def test_one_long_or_empty_answer_makes_it_generation_and_stops_reading(tmp_path) -> None:
    long = tmp_path / "long.jsonl"
    long.write_bytes(_jsonl([*SENTIMENT, ("q", "one two three four five"), *SENTIMENT]))
    detection = task_kind.detect_chat_task(long, "long.jsonl", 1 << 20)
    assert detection.kind is TaskKind.generation and "line 21" in detection.reason
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(_jsonl([("q", " "), *SENTIMENT]))
    assert "line 1's answer is empty" in task_kind.detect_chat_task(empty, "empty.jsonl", 1 << 20).reason


def test_bad_lines_are_left_to_the_conversion(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"{not json\n" + _jsonl(SENTIMENT) + b'{"messages": [{"role": "user", "content": "q"}]}\n')
    assert task_kind.detect_chat_task(path, "bad.jsonl", 1 << 20).kind is TaskKind.classification
    result = _ingest(tmp_path, path.read_bytes(), skip_bad_rows=True)
    assert result.task_kind is TaskKind.classification and result.stats["skipped_rows"] == 2
