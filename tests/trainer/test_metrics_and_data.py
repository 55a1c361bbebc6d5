"""Metrics, batching and collation: pure functions, exact answers."""

from __future__ import annotations

import pytest

from runtune.metrics.classification import classification_report, map_to_label
from runtune.metrics.text import exact_match, rouge_l, token_f1
from runtune.training.chat import IGNORE_INDEX, Encoded
from runtune.training.data import collate, epoch_batches, steps_per_epoch


def test_classification_report_counts_unmapped_apart() -> None:
    labels = ["cat", "dog"]
    report = classification_report(["cat", "cat", "dog", "dog"], ["cat", None, "dog", "cat"], labels)
    assert report["accuracy"] == 0.5
    assert report["unmapped_rate"] == 0.25
    assert report["per_class"]["cat"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2.0, "unmapped": 1.0}
    assert report["per_class"]["dog"]["recall"] == 0.5 and report["per_class"]["dog"]["precision"] == 1.0
    assert report["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert report["confusion_matrix"]["rows"] == [
        {"label": "cat", "predicted": [1, 0], "unmapped": 1},
        {"label": "dog", "predicted": [1, 1], "unmapped": 0},
    ]


def test_map_to_label() -> None:
    labels = ["Abyssinian", "great pyrenees", "pug"]
    assert map_to_label("abyssinian.", labels) == "Abyssinian"
    assert map_to_label("It is a Great Pyrenees!", labels) == "great pyrenees"
    assert map_to_label("a pug or a great pyrenees", labels) is None  # names two: not guessed
    assert map_to_label("a pugnacious cat", labels) is None  # whole words only


def test_text_metrics() -> None:
    assert exact_match("The cat.", "the cat") == 1.0
    assert token_f1("a red cat", "the red cat") == pytest.approx(2 / 3)
    assert rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(2 * 1 * (5 / 6) / (1 + 5 / 6))


def test_batches_are_length_grouped_deterministic_and_cover_every_example_once() -> None:
    lengths = [(i * 37) % 101 + 10 for i in range(203)]
    batches = epoch_batches(lengths, 8, seed=1, epoch=0)
    assert batches == epoch_batches(lengths, 8, seed=1, epoch=0)
    assert batches != epoch_batches(lengths, 8, seed=1, epoch=1)
    assert sorted(i for batch in batches for i in batch) == list(range(203))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10  # grouped: a batch's lengths are close
    assert steps_per_epoch(203, 8, 4) == 7


def test_collate_pads_to_a_multiple_of_eight_only() -> None:
    import torch

    items = [
        Encoded([2, 5, 6, 7], [IGNORE_INDEX, IGNORE_INDEX, 6, 7], {"token_type_ids": torch.tensor([0, 1, 0, 0])}),
        Encoded(list(range(2, 11)), [IGNORE_INDEX] * 8 + [10], {"token_type_ids": torch.zeros(9, dtype=torch.long)}),
    ]
    batch = collate(items, pad_id=0)
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"][0].tolist() == [1] * 4 + [0] * 12
    assert batch["labels"][0].tolist()[:5] == [IGNORE_INDEX, IGNORE_INDEX, 6, 7, IGNORE_INDEX]
    assert batch["token_type_ids"][0].tolist()[:4] == [0, 1, 0, 0]


def test_failures_are_described_with_a_code_and_what_to_do() -> None:
    import torch

    from jobs.trainer.recipe import TrainerError, describe_failure
    from runtune.schemas import Job
    from runtune.training.config import ConfigError

    job = Job(id="ftjob-x", owner="u", model="tiny-gemma-3-text", training_file="ds", hyperparameters={"batch_size": 8})
    oom = describe_failure(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), job)
    assert oom.code == "out_of_memory"
    assert (
        "batch_size (now 8)" in oom.message and "max_length" in oom.message and "gradient_checkpointing" in oom.message
    )
    assert describe_failure(ConfigError(["a", "b"]), job).model_dump() == {
        "code": "invalid_config",
        "message": "a; b",
        "param": None,
    }
    assert describe_failure(TrainerError("invalid_dataset", "upload it"), job).code == "invalid_dataset"
    other = describe_failure(RuntimeError("boom"), job)
    assert other.code == "trainer_error" and other.message == "RuntimeError: boom"
