"""Label scoring through vLLM scores exactly the tokens the trainer trained on: a fake vLLM that
renders each request as vLLM does (the HF tokenizer's `apply_chat_template` with the request's
`add_generation_prompt`/`continue_final_message`, content parts in OpenAI form, no special tokens
added) with the tiny models' real tokenizers and chat templates, compared token for token with
`ChatFormat`'s rendering of the same example answered with each label."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtune.adapters.openai_engine import OpenAIEngine
from runtune.datasets.canonical import Example
from runtune.demo.shapes import CLASSES, example
from runtune.inference.evaluation import as_openai
from runtune.models import registry
from runtune.models.loading import load_processor, resolve_weights
from runtune.training.chat import ChatFormat
from tests.support import JsonHandler, serve_in_thread


def _conversation(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as vLLM hands them to the template (`openai` content format): text parts as they
    are, every image as `{"type": "image"}`, string content as one text part."""
    out = []
    for message in messages:
        content = message["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        out.append(
            {
                "role": message["role"],
                "content": [
                    {"type": "text", "text": p["text"]} if p["type"] == "text" else {"type": "image"} for p in parts
                ],
            }
        )
    return out


class RenderingVllm:
    """`/tokenize`, `/detokenize` and scoring chat completions, rendered like vLLM renders them."""

    def __init__(self, fmt: ChatFormat) -> None:
        self.rendered: list[list[int]] = []
        tokenizer = fmt.tokenizer
        fake = self

        def render(body: dict[str, Any]) -> list[int]:
            text = tokenizer.apply_chat_template(
                _conversation(body["messages"]),
                tokenize=False,
                chat_template=fmt.chat_template,
                add_generation_prompt=body.get("add_generation_prompt", True),
                continue_final_message=body.get("continue_final_message", False),
                **(body.get("chat_template_kwargs") or {}),
            )
            return tokenizer(text, add_special_tokens=False)["input_ids"]

        class Handler(JsonHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if self.path == "/tokenize":
                    return self.send_json(200, {"tokens": render(body)})
                if self.path == "/detokenize":
                    return self.send_json(200, {"prompt": tokenizer.decode(body["tokens"])})
                if self.path == "/v1/chat/completions" and body.get("prompt_logprobs") == 0:
                    ids = render(body)
                    fake.rendered.append(ids)
                    entries = [None] + [{str(i): {"logprob": -1.0, "rank": 1}} for i in ids[1:]]
                    return self.send_json(200, {"object": "chat.completion", "choices": [], "prompt_logprobs": entries})
                return self.send_json(404, {"detail": "Not Found"})

        self.server, self.url = serve_in_thread(Handler)


@pytest.fixture(params=["tiny-gemma-3-vision", "tiny-gemma-4-vision", "tiny-gemma-3-text"])
def fmt(request: pytest.FixtureRequest, local_dir: Path) -> ChatFormat:
    spec = registry.get(request.param)
    return ChatFormat(spec, load_processor(spec, resolve_weights(spec, local_dir)))


@pytest.fixture
def engine_for(fmt: ChatFormat) -> Iterator[RenderingVllm]:
    fake = RenderingVllm(fmt)
    yield fake
    fake.server.shutdown()


def _score(fake: RenderingVllm, messages: list[dict[str, Any]], labels: list[str], eot: str) -> None:
    async def run() -> None:
        engine = OpenAIEngine(fake.url)
        try:
            await engine.score("base", messages, [label + eot for label in labels])
        finally:
            await engine.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("turns", ["single", "multi"])
def test_vllm_scores_the_label_after_exactly_the_trained_prefix(
    fmt: ChatFormat, engine_for: RenderingVllm, turns: str
) -> None:
    item = example("circle", random.Random(4))
    if turns == "multi":  # an earlier answer in history: Gemma 4 renders it without the thinking block
        item = Example(
            messages=[
                *item.messages,
                {"role": "user", "content": [{"type": "text", "text": "And again?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "circle"}]},
            ],
            images=item.images,
        )
    messages, _ = as_openai(item)
    if fmt.spec.modality == "text":
        messages = [{**m, "content": [p for p in m["content"] if p["type"] == "text"]} for m in messages]
    labels = list(CLASSES)
    _score(engine_for, messages, labels, fmt.end_of_turn)
    expected = {}
    for label in labels:
        answered = [*item.messages[:-1], {"role": "assistant", "content": [{"type": "text", "text": label}]}]
        text, _ = fmt.training_text(answered)
        expected[label] = fmt.raw_ids(text)
    # One request per label, each rendered to exactly the trained tokens of that label's example
    # (prompt, answer, end of turn): the scored tokens follow the prefix the answer was trained after.
    assert sorted(engine_for.rendered) == sorted(expected.values())
