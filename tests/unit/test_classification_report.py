"""runtune/metrics/classification.py: the per-class table and its averages, exact numbers."""

from __future__ import annotations

import pytest

from runtune.metrics.classification import classification_report


def test_per_class_precision_recall_f1_support_and_the_averages() -> None:
    labels = ["cat", "dog", "fox"]
    truth = ["cat"] * 4 + ["dog"] * 2
    # cat: 3 right, 1 unmapped; dog: 1 called cat, 1 called fox; fox: never true, predicted once.
    predicted = ["cat", "cat", "cat", None, "cat", "fox"]
    report = classification_report(truth, predicted, labels)
    cat, dog, fox = (report["per_class"][label] for label in labels)
    assert cat == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4.0, "unmapped": 1.0}
    assert dog == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2.0, "unmapped": 0.0}
    assert (fox["precision"], fox["support"]) == (0.0, 0.0)
    # Averages over the labels present in the truth (cat, dog): fox, never true, is left out.
    assert report["macro_precision"] == pytest.approx(0.375)
    assert report["macro_recall"] == pytest.approx(0.375)
    assert report["macro_f1"] == pytest.approx(0.375)
    assert report["weighted_f1"] == pytest.approx(0.75 * 4 / 6)
    rows = {row["label"]: row for row in report["confusion_matrix"]["rows"]}
    assert rows["cat"] == {"label": "cat", "predicted": [3, 0, 0], "unmapped": 1}
    assert rows["dog"] == {"label": "dog", "predicted": [1, 0, 1], "unmapped": 0}
    for label in labels:  # each row sums to its support
        assert sum(rows[label]["predicted"]) + rows[label]["unmapped"] == report["per_class"][label]["support"]
    assert report["unmapped_rate"] == pytest.approx(1 / 6) and report["samples"] == 6


def test_an_empty_split_reports_zeros() -> None:
    report = classification_report([], [], ["a", "b"])
    assert (report["accuracy"], report["macro_f1"], report["weighted_f1"], report["samples"]) == (0.0, 0.0, 0.0, 0)
