"""Chat formatting for training, evaluation and serving: one code path, so the prompt the model
sees at evaluation and inference is, token for token, the prefix it was trained on.

The rule: an assistant answer is trained as `generation prompt + answer + end-of-turn`, where the
generation prompt is the chat template's own rendering of the conversation so far with
`add_generation_prompt=True` (and the family's template kwargs). This is what serving renders, so
a template that adds something to the generation prompt only (Gemma 4's empty thinking block)
cannot make training and serving disagree. Earlier answers of a multi-turn chat carry loss too when
the template renders them in history exactly so; otherwise they are context only.

Loss masks come from the same renders: the loss-carrying characters are the answer spans, mapped to
tokens by tokenizing prefixes, so no token id is hard-coded for any family.
"""

from __future__ import annotations

import difflib
import io
from dataclasses import dataclass
from typing import Any

from runtune.datasets.canonical import Example
from runtune.models.loading import tokenizer_of
from runtune.models.registry import ModelSpec

IGNORE_INDEX = -100


class FormatError(ValueError):
    """An example the chat template cannot render as a training example (reported, then skipped)."""


@dataclass
class Encoded:
    """One example ready for the collator: token ids, labels, and the processed image tensors."""

    input_ids: list[int]
    labels: list[int]
    extras: dict[str, Any]  # per-token (`token_type_ids`, `mm_token_type_ids`) and per-image tensors

    def __len__(self) -> int:
        return len(self.input_ids)


def text_of(message: dict[str, Any]) -> str:
    return "".join(part.get("text") or "" for part in message["content"] if part["type"] == "text")


class ChatFormat:
    def __init__(self, spec: ModelSpec, processor: Any) -> None:
        self.spec = spec
        self.processor = processor
        self.tokenizer = tokenizer_of(processor)
        self.end_of_turn = spec.family.end_of_turn

    @property
    def chat_template(self) -> str:
        """The chat template every render uses (saved with every checkpoint and export)."""
        template = getattr(self.processor, "chat_template", None) or self.tokenizer.chat_template
        return template if isinstance(template, str) else str(template)

    # -- rendering ---------------------------------------------------------------------------

    def messages_for_model(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.spec.modality == "vision":
            return messages
        # Text models see text parts only (the jobs API refuses image datasets for them).
        return [{"role": m["role"], "content": [p for p in m["content"] if p["type"] == "text"]} for m in messages]

    def render(self, messages: list[dict[str, Any]], *, generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(
            self.messages_for_model(messages),
            tokenize=False,
            add_generation_prompt=generation_prompt,
            **self.spec.family.template_kwargs,
        )

    def prompt_text(self, messages: list[dict[str, Any]]) -> str:
        """What serving renders for a conversation whose next turn is the model's."""
        return self.render(messages, generation_prompt=True)

    def training_text(self, messages: list[dict[str, Any]]) -> tuple[str, list[tuple[int, int]]]:
        """The text trained on, and the character spans that carry loss (answers + end-of-turn)."""
        turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if not turns:
            raise FormatError("the example has no assistant message to learn from")
        last = turns[-1]
        prompt = self.prompt_text(messages[:last])
        text = prompt + text_of(messages[last]).strip() + self.end_of_turn
        spans = []
        for index in turns[:-1]:
            start = self.prompt_text(messages[:index])
            segment = start + text_of(messages[index]).strip() + self.end_of_turn
            if prompt.startswith(segment):  # history renders this answer as it was trained
                spans.append((len(start), len(segment)))
        spans.append((len(prompt), len(text)))
        return text, spans

    # -- tokenizing ----------------------------------------------------------------------------

    def raw_ids(self, text: str) -> list[int]:
        """The token ids of rendered text, as training tokenizes it (no image expansion). The chat
        template writes <bos> itself: the tokenizer never adds a second one."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _process(self, texts: list[str], images: list[list[Any]] | None) -> dict[str, Any]:
        if self.spec.modality == "vision" and images and any(images):
            return self.processor(text=texts, images=images, add_special_tokens=False, return_tensors="pt")
        return self.tokenizer(texts, add_special_tokens=False, return_tensors="pt")

    def encode_for_training(self, example: Example) -> Encoded:
        text, spans = self.training_text(example.messages)
        raw_ids, raw_labels = self._raw_labels(text, spans)
        images = decode_images(example) if self.spec.modality == "vision" else []
        features = self._process([text], [images] if images else None)
        input_ids = features["input_ids"][0].tolist()
        labels = _transfer_labels(raw_ids, raw_labels, input_ids)
        if sum(label != IGNORE_INDEX for label in labels) != sum(label != IGNORE_INDEX for label in raw_labels):
            raise FormatError("the processor changed the answer's tokens; the loss mask would be wrong")
        extras = {
            k: v[0] if k.endswith("token_type_ids") else v
            for k, v in features.items()
            if k not in ("input_ids", "attention_mask")
        }
        return Encoded(input_ids=input_ids, labels=labels, extras=extras)

    def _raw_labels(self, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
        ids = self.raw_ids(text)
        labels = [IGNORE_INDEX] * len(ids)
        for start, end in spans:
            before, through = self.raw_ids(text[:start]), self.raw_ids(text[:end])
            # Tokenizing a prefix must give a prefix of the tokens: that is what makes the prompt
            # served later identical to the one trained on.
            if ids[: len(before)] != before or ids[: len(through)] != through:
                raise FormatError("the tokenizer merges across the answer's boundary; cannot mask it exactly")
            for position in range(len(before), len(through)):
                labels[position] = ids[position]
        return ids, labels

    def encode_prompt(self, messages: list[dict[str, Any]], images: list[Any]) -> dict[str, Any]:
        """The model inputs for generating (or scoring) the next assistant turn."""
        return self._process([self.prompt_text(messages)], [images] if images else None)


def _transfer_labels(raw_ids: list[int], raw_labels: list[int], processed_ids: list[int]) -> list[int]:
    """Carry the labels of the text-only tokenization over to the processor's ids, which differ only
    where image placeholders were expanded into image tokens: aligning the two sequences maps every
    unchanged token, and answer tokens are always unchanged text."""
    if raw_ids == processed_ids:
        return list(raw_labels)
    labels = [IGNORE_INDEX] * len(processed_ids)
    matcher = difflib.SequenceMatcher(a=raw_ids, b=processed_ids, autojunk=False)
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            labels[block.b + offset] = raw_labels[block.a + offset]
    return labels


def decode_images(example: Example) -> list[Any]:
    from PIL import Image

    return [Image.open(io.BytesIO(data)).convert("RGB") for data in example.images]
