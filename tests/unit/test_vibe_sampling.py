"""A vibe check's sampling settings reach the engine's chat completion as chat completions name them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from runtune.inference.resolver import Target
from runtune.inference.serving import Serving
from runtune.inference.staging import AdapterStager
from runtune.models import registry
from runtune.schemas.inference import CreateVibeCheckRequest


class RecordingEngine:
    """The engine port's `chat` (vLLM has no emulator): records each body, answers blank space."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        return {"choices": [{"message": {"role": "assistant", "content": " \n "}}]}


def _answer(engine: RecordingEngine, **sampling: Any) -> str:
    stager = AdapterStager(None, None, root="", download=False)  # type: ignore[arg-type]  # a base model loads nothing
    serving = Serving(None, None, engine, stager)  # type: ignore[arg-type]
    target = Target(model="tiny-gemma-3-vision", spec=registry.get("tiny-gemma-3-vision"))
    messages = [{"role": "user", "content": "hi"}]
    return asyncio.run(serving.answer(target, messages, **sampling))


def test_temperature_top_p_and_max_tokens_are_sent() -> None:
    engine = RecordingEngine()
    request = CreateVibeCheckRequest.model_validate(
        {"model": "ft:x:ftjob-1", "prompts": [{"prompt": "hi"}], "max_tokens": 32, "temperature": 0.7, "top_p": 0.9}
    )
    answer = _answer(engine, max_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p)
    assert answer == " \n "  # kept as the model gave it; the UI shows "(empty answer)" for it
    (body,) = engine.bodies
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (32, 0.7, 0.9)
    # Unset, the engine's own default applies (as an OpenAI client that sends none).
    _answer(engine, max_tokens=8, temperature=0.0)
    assert "top_p" not in engine.bodies[1]


@pytest.mark.parametrize("top_p", [0, 1.5])
def test_top_p_outside_its_range_names_the_field(top_p: float) -> None:
    with pytest.raises(ValidationError) as caught:
        CreateVibeCheckRequest.model_validate({"model": "ft:x:ftjob-1", "prompts": [{"prompt": "hi"}], "top_p": top_p})
    assert caught.value.errors()[0]["loc"] == ("top_p",)
