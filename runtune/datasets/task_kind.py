"""Whether an OpenAI chat JSONL is a classification set: every final assistant answer comes from a
small closed set of short answers, each seen several times. Then its labels are those answers, the
split is stratified by them, and label-scoring evaluation and the confusion matrix apply, as for a
table with a label column or an image folder. The create request's `task_kind` overrides it.

The answers are read in a first, cheap pass over the file (JSON only: no image is decoded), which
stops at the first answer that cannot be a label, so an open-ended set costs a few lines; the
conversion pass then knows the task before it places the first example in a split.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from runtune.datasets.chat_jsonl import final_answer, numbered_lines, parse_json_line
from runtune.datasets.problems import DataError, Location
from runtune.schemas.datasets import TaskKind

# The classification rule (docs/architecture.md, "Task kind of a chat JSONL").
MAX_LABELS = 50
MAX_LABEL_CHARS = 40
MAX_LABEL_WORDS = 4
# Each answer seen at least twice, and on average at least this many examples per answer.
MIN_PER_LABEL = 2
MIN_EXAMPLES_PER_LABEL = 4


@dataclass(frozen=True)
class Detection:
    kind: TaskKind
    reason: str


def _generation(reason: str) -> Detection:
    return Detection(TaskKind.generation, reason)


def classify(counts: Counter[str], examples: int) -> Detection:
    """The rule applied to the final answers' counts."""
    if len(counts) < 2:
        return _generation("fewer than two distinct answers")
    if len(counts) > MAX_LABELS:
        return _generation(f"more than {MAX_LABELS} distinct answers")
    rare = [answer for answer, count in counts.items() if count < MIN_PER_LABEL]
    if rare:
        return _generation(f"answer '{rare[0]}' occurs once: the answers are not a closed set")
    if examples < MIN_EXAMPLES_PER_LABEL * len(counts):
        return _generation(
            f"{len(counts)} distinct answers in {examples} examples (a label needs {MIN_EXAMPLES_PER_LABEL} "
            "examples on average)"
        )
    return Detection(
        TaskKind.classification,
        f"every final answer is one of {len(counts)} short answers, over {examples} examples",
    )


def detect_chat_task(path: Path, display: str, max_line_bytes: int) -> Detection:
    """Classification or generation for the chat JSONL at `path` (see the module's rule)."""
    counts: Counter[str] = Counter()
    examples = 0
    for number, text in numbered_lines(path, display, max_line_bytes):
        if isinstance(text, DataError):
            continue  # the conversion reports it (or skips it, as asked)
        try:
            answer = final_answer(parse_json_line(text, Location(display, number, row_word="line")))
        except DataError:
            continue
        if answer is None:
            continue
        examples += 1
        if not answer:
            return _generation(f"line {number}'s answer is empty")
        if len(answer) > MAX_LABEL_CHARS or len(answer.split()) > MAX_LABEL_WORDS:
            return _generation(
                f"line {number}'s answer is open text (over {MAX_LABEL_WORDS} words or {MAX_LABEL_CHARS} characters)"
            )
        counts[answer] += 1
        if len(counts) > MAX_LABELS:
            return _generation(f"more than {MAX_LABELS} distinct answers")
    return classify(counts, examples)
