"""Tuned model ids and checkpoint ids: built in one place, parsed back exactly, odd ones refused."""

from __future__ import annotations

import pytest

from runtune.schemas.jobs import checkpoint_model_id, parse_tuned_model_id, tuned_model_id


def test_ids_round_trip() -> None:
    final = tuned_model_id("tiny-gemma-3-vision", "ftjob-a1")
    assert parse_tuned_model_id(final) == ("tiny-gemma-3-vision", "ftjob-a1", None)
    checkpoint = checkpoint_model_id("google/gemma-3-4b-it", "ftjob-a1", 12)
    assert checkpoint == "ft:google/gemma-3-4b-it:ftjob-a1:ckpt-step-12"
    assert parse_tuned_model_id(checkpoint) == ("google/gemma-3-4b-it", "ftjob-a1", 12)


@pytest.mark.parametrize(
    "model",
    [
        "tiny-gemma-3-vision",
        "ft:tiny-gemma-3-vision",
        "ft:b:ftjob-a:ckpt-step-0",
        "ft:b:ftjob-a:ckpt-step-012",
        "ft:b:ftjob-a:ckpt-step-1x",
        "ft:b:ftjob-a:ckpt-step-²",
        "ft:b:ftjob-a:step-3",
        "ft:b:ftjob-a:ckpt-step-3:more",
        "xx:b:ftjob-a",
    ],
)
def test_other_shapes_are_not_tuned_model_ids(model: str) -> None:
    assert parse_tuned_model_id(model) is None
