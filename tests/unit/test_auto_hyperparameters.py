"""`auto` hyperparameters (runtune/jobs/hyperparameters.py): epochs from the set's size, batch size from
its lengths and the GPU, the learning-rate multiplier from the model family; given values kept."""

from __future__ import annotations

import math

import pytest

from runtune.estimate import memory_gib
from runtune.jobs import hyperparameters as hp
from runtune.jobs.hyperparameters import SequenceLengths, resolve, run_shape
from runtune.models.registry import get
from runtune.schemas.jobs import Hyperparameters, RuntuneOptions

GEMMA3_4B = get("google/gemma-3-4b-it")
OPTIONS = RuntuneOptions()


def _resolve(examples: int, given: Hyperparameters | None = None, **kwargs) -> hp.Resolved:
    return resolve(given or Hyperparameters(), model=GEMMA3_4B, examples=examples, options=OPTIONS, **kwargs)


def _steps(resolved: hp.Resolved, examples: int) -> int:
    return math.ceil(examples / resolved.batch_size) * resolved.epochs


def test_a_small_set_gets_more_epochs_and_at_least_the_minimum_of_steps() -> None:
    small, medium = _resolve(30), _resolve(2_000)
    assert small.epochs > hp.TARGET_EPOCHS and _steps(small, 30) >= hp.MIN_STEPS
    assert medium.epochs == hp.TARGET_EPOCHS
    assert "30 examples" in small.auto["n_epochs"] and f"{_steps(small, 30)} steps" in small.auto["n_epochs"]


def test_a_large_set_gets_fewer_epochs_and_at_most_the_maximum_of_steps() -> None:
    large, huge = _resolve(5_000), _resolve(5_000_000)
    assert large.batch_size == 4  # what fits an L4 at max_length 1024 (the set's lengths unknown)
    assert 1 < large.epochs < hp.TARGET_EPOCHS and _steps(large, 5_000) <= hp.MAX_STEPS
    assert huge.epochs == hp.MIN_EPOCHS  # one pass, however many steps it takes


def test_epochs_stay_within_bounds_for_a_tiny_set() -> None:
    one = _resolve(1)
    assert one.epochs == hp.MAX_EPOCHS and one.batch_size == 1


@pytest.mark.parametrize("examples", [1, 10, 100, 1_000, 30_000, 1_000_000])
def test_epochs_and_batch_are_always_in_range(examples: int) -> None:
    resolved = _resolve(examples)
    assert hp.MIN_EPOCHS <= resolved.epochs <= hp.MAX_EPOCHS
    assert 1 <= resolved.batch_size <= hp.MAX_AUTO_BATCH
    assert resolved.batch_size & (resolved.batch_size - 1) == 0  # a power of two


def test_the_batch_grows_with_the_set_but_keeps_steps_per_epoch() -> None:
    batches = [_resolve(n).batch_size for n in (30, 64, 128, 256, 100_000)]
    assert batches == sorted(batches) and batches[0] == 1 and batches[-1] > 1
    assert all(n // b >= hp.MIN_STEPS_PER_EPOCH for n, b in zip((64, 128, 256), batches[1:4], strict=True))


def test_the_batch_shrinks_for_long_sequences_to_fit_the_gpu() -> None:
    short = SequenceLengths(mean_tokens=300, longest_tokens=300)
    long = SequenceLengths(mean_tokens=2_000, longest_tokens=4_096)
    options = RuntuneOptions(max_length=4_096)
    args = {"model": GEMMA3_4B, "examples": 100_000, "options": options}
    fast, slow = resolve(Hyperparameters(), lengths=short, **args), resolve(Hyperparameters(), lengths=long, **args)
    assert slow.batch_size < fast.batch_size
    shape = run_shape(options, long, 100_000, epochs=1, batch_size=slow.batch_size)
    assert memory_gib(GEMMA3_4B.figures(), shape) <= 24 * 0.9  # it fits the L4 it was sized for
    assert "NVIDIA L4" in slow.auto["batch_size"] and "4096 tokens" in slow.auto["batch_size"]


def test_the_batch_is_sized_for_the_gpu_asked_for() -> None:
    long = SequenceLengths(mean_tokens=2_000, longest_tokens=4_096)
    options = RuntuneOptions(max_length=4_096)
    on_l4 = resolve(Hyperparameters(), model=GEMMA3_4B, examples=100_000, options=options, lengths=long)
    big = RuntuneOptions(max_length=4_096, gpu="nvidia-rtx-pro-6000")
    on_rtx = resolve(Hyperparameters(), model=GEMMA3_4B, examples=100_000, options=big, lengths=long)
    assert on_rtx.batch_size > on_l4.batch_size and "RTX PRO 6000" in on_rtx.auto["batch_size"]


def test_the_learning_rate_multiplier_comes_from_the_family() -> None:
    gemma3 = resolve(Hyperparameters(), model=GEMMA3_4B, examples=100, options=OPTIONS)
    gemma4 = resolve(Hyperparameters(), model=get("google/gemma-4-E4B-it"), examples=100, options=OPTIONS)
    assert gemma3.hyperparameters.learning_rate_multiplier == 1.0
    assert gemma4.hyperparameters.learning_rate_multiplier == 0.5
    assert "gemma4 vision" in gemma4.auto["learning_rate_multiplier"]


def test_given_values_are_kept_and_only_auto_ones_explained() -> None:
    given = Hyperparameters(n_epochs=2, batch_size=8, learning_rate_multiplier=0.3)
    resolved = _resolve(30, given)
    assert resolved.hyperparameters == given and resolved.auto == {}
    partly = _resolve(30, Hyperparameters(batch_size=2))
    assert partly.batch_size == 2 and set(partly.auto) == {"n_epochs", "learning_rate_multiplier"}
    assert _steps(partly, 30) >= hp.MIN_STEPS  # epochs follow the batch that was given


def test_sequence_lengths_come_from_the_dataset_stats() -> None:
    stats = {
        "rows": 10,
        "images": 10,
        "max_images_per_example": 1,
        "example_chars": {"count": 10, "mean": 60, "max": 300},
    }
    lengths = SequenceLengths.of_stats(stats, GEMMA3_4B)
    assert lengths.longest_tokens == math.ceil(300 / hp.CHARS_PER_TOKEN + hp.TEMPLATE_TOKENS + 256)
    assert lengths.mean_tokens == pytest.approx(60 / hp.CHARS_PER_TOKEN + hp.TEMPLATE_TOKENS + 256)
    # Stats from before lengths were recorded: the typical example, memory sized for max_length.
    old = SequenceLengths.of_stats({"rows": 10}, GEMMA3_4B)
    assert old.longest_tokens is None and hp.sequence_tokens(OPTIONS, old) == OPTIONS.max_length


def test_the_cli_line_marks_what_auto_chose() -> None:
    from runtune.cli.jobs import hyperparameters_line

    job = {
        "hyperparameters": {"n_epochs": 4, "batch_size": 8, "learning_rate_multiplier": 1.0},
        "auto_hyperparameters": {"n_epochs": "why", "learning_rate_multiplier": "why"},
    }
    assert hyperparameters_line(job) == "n_epochs auto → 4, batch_size 8, learning_rate_multiplier auto → 1.0"
    waiting = {"hyperparameters": {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}}
    assert hyperparameters_line(waiting) == "n_epochs auto, batch_size auto, learning_rate_multiplier auto"


def test_the_cli_builds_a_dpo_method_and_shows_its_beta() -> None:
    from runtune.cli.jobs import hyperparameters_line, method_body
    from runtune.schemas.jobs import JobMethod

    body = method_body("dpo", {"n_epochs": 2, "batch_size": None, "beta": 0.3}, {"method": "qlora"})
    assert body == {
        "type": "dpo",
        "dpo": {"hyperparameters": {"n_epochs": 2, "beta": 0.3}, "runtune": {"method": "qlora"}},
    }
    assert JobMethod.model_validate(body).beta == 0.3
    supervised = method_body("supervised", {"n_epochs": None, "beta": None}, {})
    assert supervised == {"type": "supervised", "supervised": {"hyperparameters": {}, "runtune": {}}}
    job = {
        "hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 1.0},
        "auto_hyperparameters": {"beta": "why"},
        "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}},
    }
    assert hyperparameters_line(job).endswith("learning_rate_multiplier 1.0, beta auto → 0.1")
