"""Loss masks and train/serve consistency for every family's real chat template."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from runtune.datasets.canonical import Example
from runtune.demo.shapes import example
from runtune.models import registry
from runtune.models.loading import load_processor, resolve_weights
from runtune.models.tiny import TINY_IDS
from runtune.training.chat import IGNORE_INDEX, ChatFormat, decode_images


def _format(local_dir: Path, model_id: str) -> ChatFormat:
    spec = registry.get(model_id)
    return ChatFormat(spec, load_processor(spec, resolve_weights(spec, local_dir)))


def _multi_turn() -> Example:
    first = example("circle", random.Random(0))
    return Example(
        messages=[
            *first.messages,
            {"role": "user", "content": [{"type": "text", "text": "And its colour?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": " red "}]},
        ],
        images=first.images,
    )


@pytest.mark.parametrize("model_id", TINY_IDS)
def test_only_answers_and_end_of_turn_carry_loss(local_dir: Path, model_id: str) -> None:
    fmt = _format(local_dir, model_id)
    encoded = fmt.encode_for_training(example("triangle", random.Random(1)))
    carrying = [label for label in encoded.labels if label != IGNORE_INDEX]
    assert fmt.tokenizer.decode(carrying) == "triangle" + fmt.end_of_turn
    # The labels are the input ids themselves where they carry loss.
    assert all(label in (IGNORE_INDEX, token) for label, token in zip(encoded.labels, encoded.input_ids, strict=True))


def test_multi_turn_history_answers_carry_loss_only_when_rendered_as_trained(local_dir: Path) -> None:
    gemma3 = _format(local_dir, "tiny-gemma-3-vision")
    labels = [label for label in gemma3.encode_for_training(_multi_turn()).labels if label != IGNORE_INDEX]
    assert gemma3.tokenizer.decode(labels) == "circle<end_of_turn>red<end_of_turn>"
    # Gemma 4 renders earlier answers without the empty thinking block the generation prompt has:
    # the first answer is context only, never trained after a prefix serving would not produce.
    gemma4 = _format(local_dir, "tiny-gemma-4-vision")
    labels = [label for label in gemma4.encode_for_training(_multi_turn()).labels if label != IGNORE_INDEX]
    assert gemma4.tokenizer.decode(labels) == "red<turn|>"


@pytest.mark.parametrize("model_id", TINY_IDS)
@pytest.mark.parametrize("conversation", ["single", "multi"])
def test_serving_prompt_is_the_trained_prefix_token_for_token(
    local_dir: Path, model_id: str, conversation: str
) -> None:
    fmt = _format(local_dir, model_id)
    item = example("cross", random.Random(2)) if conversation == "single" else _multi_turn()
    encoded = fmt.encode_for_training(item)
    images = decode_images(item) if fmt.spec.modality == "vision" else []
    prompt = fmt.encode_prompt(item.messages[:-1], images)["input_ids"][0].tolist()
    first_loss = max(i for i, label in enumerate(encoded.labels) if label == IGNORE_INDEX) + 1
    assert encoded.input_ids[: len(prompt)] == prompt
    assert len(prompt) == first_loss  # the answer starts exactly where the serving prompt ends


def test_gemma4_generation_prompt_ends_in_the_empty_thinking_block(local_dir: Path) -> None:
    # The published Gemma 4 recipe trained on `<|turn>model\n{label}` while serving appended this
    # block; the trainer trains after the block, so both agree.
    fmt = _format(local_dir, "tiny-gemma-4-vision")
    item = example("square", random.Random(3))
    assert fmt.prompt_text(item.messages[:-1]).endswith("<|turn>model\n<|channel>thought\n<channel|>")
    text, spans = fmt.training_text(item.messages)
    assert text[spans[-1][0] :] == "square<turn|>"
    naive = fmt.render(item.messages, generation_prompt=False)
    assert not naive.startswith(fmt.prompt_text(item.messages[:-1]))
