"""Preference sets (runtune/datasets/preference.py and the pipeline): OpenAI's preference JSONL and
tables mapped to chosen/rejected become pairs in the canonical shards; bad pairs fail with line (or
row), field and reason before anything trains; the stats count pairs and how often chosen is longer."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from runtune.datasets.canonical import decode_shard
from runtune.datasets.limits import DatasetLimits
from runtune.datasets.pipeline import IngestOptions, Ingestor
from runtune.datasets.problems import DataError
from runtune.schemas.datasets import ColumnMapping, SplitOptions, TaskKind
from tests.datasets.builders import MemoryBlobStore, jpeg, preference_line

LIMITS = DatasetLimits()
NO_SPLIT = SplitOptions(validation=0.0, test=0.0)


def _ingest(tmp_path: Path, name: str, data: bytes, **options):
    source = tmp_path / name
    source.write_bytes(data)
    blobs = MemoryBlobStore()
    ingestor = Ingestor(blobs, "u", "d", limits=LIMITS, workdir=tmp_path / "work")
    return blobs, ingestor.ingest_file(source, name, IngestOptions(**options))


def _jsonl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _pairs(blobs: MemoryBlobStore):
    return list(decode_shard(blobs.download_bytes("users/u/datasets/d/train-00000.parquet")))


def test_a_preference_jsonl_with_images_becomes_pairs_in_the_shards(tmp_path) -> None:
    lines = [preference_line(f"Which colour? {i}", "red", "a long wrong answer", jpeg((200, 10, 10))) for i in range(4)]
    lines.append(preference_line("Say hi briefly", "a much longer preferred greeting", "hi"))
    blobs, result = _ingest(tmp_path, "prefs.jsonl", _jsonl(*lines), split=NO_SPLIT)
    assert result.task_kind is TaskKind.preference and result.kind.value == "preference_jsonl"
    assert result.modality == "vision" and result.splits == {"train": 5}
    pairs = _pairs(blobs)
    first = next(pair for pair in pairs if pair.images)
    assert first.is_pair and len(first.images) == 1
    assert first.messages[0]["content"][0] == {"type": "image"}
    assert first.messages[-1] == {"role": "assistant", "content": [{"type": "text", "text": "red"}]}
    assert first.rejected == [{"role": "assistant", "content": [{"type": "text", "text": "a long wrong answer"}]}]
    assert first.rejected_messages()[:-1] == first.messages[:-1]
    preview = json.loads(blobs.download_bytes("users/u/datasets/d/preview/train-00000.jsonl").splitlines()[0])
    assert preview["rejected"][0]["role"] == "assistant" and preview["messages"][-1]["role"] == "assistant"
    stats = result.stats
    assert stats["pairs"] == 5 and stats["chosen_longer_share"] == 0.2
    assert stats["chosen_chars"]["max"] == len("a much longer preferred greeting")
    assert stats["rejected_chars"]["max"] == len("a long wrong answer")


@pytest.mark.parametrize(
    ("line", "field", "code"),
    [
        (preference_line("q", "a", None), "non_preferred_output", "missing_answer"),
        (preference_line("q", None, "b"), "preferred_output", "missing_answer"),
        (preference_line("q", "same", " same "), "non_preferred_output", "identical_answers"),
        (preference_line("q", "a", ""), "non_preferred_output", "missing_answer"),
        (
            preference_line("q", "a", "b", b"not an image"),
            "input.messages[0].content[0].image_url.url",
            "invalid_image",
        ),
        (
            preference_line("q", "a", "b", url="https://example.com/x.jpg"),
            "input.messages[0].content[0].image_url.url",
            "image_outside_upload",
        ),
        (json.dumps({"input": {"messages": []}, "preferred_output": []}), "input.messages", "invalid_data"),
        (
            json.dumps(
                {
                    "input": {"messages": [{"role": "user", "content": "q"}]},
                    "preferred_output": "a",
                    "non_preferred_output": [{"role": "assistant", "content": "b"}],
                }
            ),
            "preferred_output",
            "invalid_answer",
        ),
        (
            json.dumps(
                {
                    "input": {"messages": [{"role": "user", "content": "q"}]},
                    "preferred_output": [{"role": "user", "content": "a"}],
                    "non_preferred_output": [{"role": "assistant", "content": "b"}],
                }
            ),
            "preferred_output[0].role",
            "invalid_data",
        ),
        (
            json.dumps(
                {
                    "input": {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]},
                    "preferred_output": [{"role": "assistant", "content": "a"}],
                    "non_preferred_output": [{"role": "assistant", "content": "b"}],
                }
            ),
            "input.messages[1].role",
            "no_prompt",
        ),
    ],
    ids=[
        "no-rejected",
        "no-chosen",
        "identical",
        "empty-rejected",
        "broken-image",
        "url-image",
        "no-input",
        "output-not-a-list",
        "output-not-assistant",
        "input-ends-with-answer",
    ],
)
def test_bad_pairs_fail_with_line_field_and_reason(tmp_path, line: str, field: str, code: str) -> None:
    good = preference_line("fine", "yes", "no")
    with pytest.raises(DataError) as caught:
        _ingest(tmp_path, "p.jsonl", _jsonl(good, line))
    error = caught.value
    assert (error.where.row, error.where.field, error.code) == (2, field, code), error.message
    assert error.message.startswith(f"p.jsonl, line 2, field '{field}': ")


def test_bad_pairs_are_skipped_and_counted_when_asked(tmp_path) -> None:
    body = _jsonl(preference_line("q1", "a", "b"), preference_line("q2", "c", "c"), preference_line("q3", "d", "e"))
    _, result = _ingest(tmp_path, "p.jsonl", body, skip_bad_rows=True, split=NO_SPLIT)
    assert result.stats["pairs"] == 2 and result.stats["skipped_rows"] == 1
    assert "identical" in result.stats["skipped_examples"][0]


def _csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def test_a_table_with_chosen_and_rejected_columns_is_a_preference_set(tmp_path) -> None:
    rows = [{"prompt": f"question {i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(6)]
    blobs, result = _ingest(tmp_path, "t.csv", _csv(rows), split=NO_SPLIT)  # the mapping guessed by name
    assert result.task_kind is TaskKind.preference and result.stats["pairs"] == 6
    pair = _pairs(blobs)[0]
    assert pair.messages[0]["content"] == [{"type": "text", "text": pair.messages[0]["content"][0]["text"]}]
    assert pair.messages[-1]["content"][0]["text"].startswith("good") and pair.rejected is not None
    assert pair.rejected[0]["content"][0]["text"].startswith("bad")


def test_a_mapped_table_names_the_row_and_column_of_a_bad_pair(tmp_path) -> None:
    rows = [
        {"q": "one", "better": "yes", "worse": "no"},
        {"q": "two", "better": "same", "worse": "same"},
    ]
    mapping = ColumnMapping(user="{q}", chosen="better", rejected="worse")
    with pytest.raises(DataError) as caught:
        _ingest(tmp_path, "t.csv", _csv(rows), mapping=mapping)
    assert (caught.value.where.row, caught.value.where.field, caught.value.code) == (2, "worse", "identical_answers")
    rows[1] = {"q": "two", "better": "fine", "worse": ""}
    with pytest.raises(DataError) as caught:
        _ingest(tmp_path, "t.csv", _csv(rows), mapping=mapping)
    assert (caught.value.where.row, caught.value.where.field, caught.value.code) == (2, "worse", "missing_answer")


def test_a_mapping_needs_both_answers_and_a_task_kind_must_agree(tmp_path) -> None:
    rows = [{"q": "one", "better": "yes", "worse": "no"}]
    with pytest.raises(DataError) as caught:
        _ingest(tmp_path, "t.csv", _csv(rows), mapping=ColumnMapping(user="{q}", chosen="better"))
    assert caught.value.where.field == "mapping.rejected"
    with pytest.raises(DataError) as caught:
        _ingest(
            tmp_path,
            "t.csv",
            _csv(rows),
            mapping=ColumnMapping(user="{q}", answer="better"),
            task_kind=TaskKind.preference,
        )
    assert caught.value.code == "task_kind_mismatch"
    with pytest.raises(DataError) as caught:
        _ingest(tmp_path, "p.jsonl", _jsonl(preference_line("q", "a", "b")), task_kind=TaskKind.classification)
    assert caught.value.code == "task_kind_mismatch"


def test_the_same_prompt_with_another_rejected_answer_is_no_duplicate(tmp_path) -> None:
    body = _jsonl(preference_line("q", "a", "b"), preference_line("q", "a", "c"), preference_line("q", "a", "b"))
    _, result = _ingest(tmp_path, "p.jsonl", body, split=NO_SPLIT)
    assert result.stats["pairs"] == 2 and result.stats["duplicates_removed"] == 1
