"""Classification metrics: accuracy, macro-F1, per-class precision/recall/F1, confusion matrix, and
the mapping of free-form answers to labels (answers that map to none are counted apart, never as a
fake class in macro-F1)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_NON_WORD = re.compile(r"[^\w\s]")


def normalise(text: str) -> str:
    """Lower case, punctuation replaced by spaces, runs of whitespace collapsed."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def map_to_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label an answer names: an exact (normalised) match, else the only label it contains as a
    whole word; None when it names no label or several."""
    said = normalise(answer)
    by_form = {normalise(label): label for label in labels}
    if said in by_form:
        return by_form[said]
    found = [label for form, label in by_form.items() if form and re.search(rf"\b{re.escape(form)}\b", said)]
    return found[0] if len(found) == 1 else None


def classification_report(
    truth: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str]
) -> dict[str, Any]:
    """Metrics over all examples; an unmapped prediction (None) counts as wrong and in `unmapped_rate`.

    Returns `accuracy`; `macro_precision`, `macro_recall`, `macro_f1` (means over the labels present
    in `truth`) and `weighted_f1` (weighted by support); `per_class` (label -> precision, recall, f1,
    support, and `unmapped`: how many of its examples got an answer naming no label);
    `confusion_matrix` ({"labels": [...], "rows": [{"label", "predicted": counts in `labels` order,
    "unmapped"}]}: a row sums to its label's support); `unmapped_rate` and `samples`. Every truth
    value must be one of `labels`."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predictions differ in length")
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    unmapped = [0] * len(labels)
    for expected, got in zip(truth, predicted, strict=True):
        if got is None:
            unmapped[index[expected]] += 1
            continue
        matrix[index[expected]][index[got]] += 1
    per_class: dict[str, dict[str, float]] = {}
    for label, i in index.items():
        tp = matrix[i][i]
        predicted_as = sum(row[i] for row in matrix)
        actual = sum(1 for expected in truth if expected == label)
        precision = tp / predicted_as if predicted_as else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": float(actual),
            "unmapped": float(unmapped[i]),
        }
    present = [label for label in labels if per_class[label]["support"] > 0]
    total = len(truth)

    def mean(key: str) -> float:
        return sum(per_class[label][key] for label in present) / len(present) if present else 0.0

    return {
        "accuracy": sum(matrix[i][i] for i in range(len(labels))) / total if total else 0.0,
        "macro_precision": mean("precision"),
        "macro_recall": mean("recall"),
        "macro_f1": mean("f1"),
        "weighted_f1": sum(c["f1"] * c["support"] for c in per_class.values()) / total if total else 0.0,
        "per_class": per_class,
        # Rows as maps (true label -> counts per predicted label, in `labels` order): Firestore stores
        # no arrays directly inside arrays.
        "confusion_matrix": {
            "labels": list(labels),
            "rows": [{"label": label, "predicted": matrix[i], "unmapped": unmapped[i]} for label, i in index.items()],
        },
        "unmapped_rate": sum(unmapped) / total if total else 0.0,
        "samples": total,
    }
