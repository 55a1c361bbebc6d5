"""The local engine server (transformers + peft on the CPU) speaks the vLLM protocol subset: chat with
image data URLs, streaming, prompt log-probabilities, adapters loaded and unloaded at run time without
reloading the base, and concurrent requests (of different adapters) batched together."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtune import serving
from runtune.internal_auth import token_sha256
from runtune.models.tiny import ensure_tiny_model, tiny_dir
from runtune.settings import EngineServerSettings

BASE = "tiny-gemma-3-vision"


@pytest.fixture(scope="module")
def local_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("engine")
    ensure_tiny_model(BASE, tiny_dir(root, BASE))
    return root


# The language model's attention projections only: the serving contract (runtune/serving.json) has
# no tower/connector LoRA, so an adapter of the vision tower is refused (see below).
LANGUAGE_ATTENTION = r".*\.language_model\..*\.(q_proj|v_proj|o_proj)"


def _save_adapter(local_dir: Path, name: str, *, rank: int = 4, targets: str | list[str] = LANGUAGE_ATTENTION) -> Path:
    """A LoRA adapter with random (non-zero) weights, saved as Runtune's trainer exports one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Gemma3ForConditionalGeneration

    torch.manual_seed(3)
    base = Gemma3ForConditionalGeneration.from_pretrained(tiny_dir(local_dir, BASE))
    config = LoraConfig(r=rank, lora_alpha=64, target_modules=targets, init_lora_weights=False)
    folder = local_dir / name
    get_peft_model(base, config).save_pretrained(folder)
    (folder / "training_config.json").write_text(json.dumps({"model": BASE}))
    return folder


@pytest.fixture(scope="module")
def adapter(local_dir: Path) -> Path:
    return _save_adapter(local_dir, "adapter")


def _image(colour: tuple[int, int, int]) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _chat(model: str, colour: tuple[int, int, int], **extra: Any) -> dict[str, Any]:
    content = [{"type": "image_url", "image_url": {"url": _image(colour)}}, {"type": "text", "text": "What is it?"}]
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": 6,
        **extra,
    }


COLOURS = [(200, 20, 20), (20, 200, 20), (20, 20, 200)]


@pytest.fixture(scope="module")
def engine(local_dir: Path) -> Iterator[Any]:
    from engine.app import create_app

    settings = EngineServerSettings(
        local_dir=local_dir, models=[BASE], batch_window_ms=50, api_key_sha256=token_sha256("k")
    )
    app = create_app(settings)
    loop = asyncio.new_event_loop()

    @asynccontextmanager
    async def started() -> AsyncIterator[None]:
        async with app.router.lifespan_context(app):
            yield

    context = started()
    loop.run_until_complete(context.__aenter__())
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://engine", headers={"authorization": "Bearer k"}
    )
    yield _Engine(loop, client, app)
    loop.run_until_complete(client.aclose())
    loop.run_until_complete(context.__aexit__(None, None, None))
    loop.close()


class _Engine(tuple):
    """(event loop, client) of the in-process engine, and its app (`.app`)."""

    def __new__(cls, loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient, app: Any) -> _Engine:
        made = super().__new__(cls, (loop, client))
        made.app = app
        return made


def _run(engine: Any, coroutine: Any) -> Any:
    loop, _ = engine
    return loop.run_until_complete(coroutine)


def _answer(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def _scored(model: str, colour: tuple[int, int, int]) -> dict[str, Any]:
    body = _chat(model, colour, continue_final_message=True, add_generation_prompt=False, prompt_logprobs=0)
    body["messages"].append({"role": "assistant", "content": "a red square<end_of_turn>"})
    return body


async def _logprobs(client: httpx.AsyncClient, body: dict[str, Any]) -> list[float]:
    reply = await client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    return [next(iter(entry.values()))["logprob"] for entry in reply.json()["prompt_logprobs"][1:]]


def test_adapters_swap_without_reloading_the_base_and_batches_mix_them(engine: Any, adapter: Path) -> None:
    _, client = engine

    async def scenario() -> dict[str, Any]:
        base_before = [await _logprobs(client, _scored(BASE, c)) for c in COLOURS]
        loaded = await client.post("/v1/load_lora_adapter", json={"lora_name": "ftjob-a", "lora_path": str(adapter)})
        assert loaded.status_code == 200, loaded.text
        again = await client.post("/v1/load_lora_adapter", json={"lora_name": "ftjob-a", "lora_path": str(adapter)})
        assert again.status_code == 400 and again.json()["error"]["param"] == "lora_name"
        models = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
        tuned_alone = [await _logprobs(client, _scored("ftjob-a", c)) for c in COLOURS]
        before = (await client.get("/stats")).json()
        # Base and adapter rows sent together share batches (peft's mixed-adapter forward).
        together = await asyncio.gather(*(_logprobs(client, _scored(m, c)) for m in (BASE, "ftjob-a") for c in COLOURS))
        generated = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=_chat(m, c)) for m in (BASE, "ftjob-a") for c in COLOURS)
        )
        after = (await client.get("/stats")).json()
        unloaded = await client.post("/v1/unload_lora_adapter", json={"lora_name": "ftjob-a"})
        gone = await client.post("/v1/chat/completions", json=_chat("ftjob-a", COLOURS[0]))
        base_after = [await _logprobs(client, _scored(BASE, c)) for c in COLOURS]
        return locals()

    result = _run(engine, scenario())
    assert result["models"] == [BASE, "ftjob-a"]
    # The adapter really changes the model's predictions.
    assert max(abs(a - b) for a, b in zip(result["tuned_alone"][0], result["base_before"][0], strict=True)) > 1e-3
    for batched, alone in zip(result["together"], result["base_before"] + result["tuned_alone"], strict=True):
        assert batched == pytest.approx(alone, abs=1e-4)
    assert all(_answer(reply) is not None for reply in result["generated"])
    assert result["after"]["largest_batch"] >= 2
    assert result["after"]["batches"] - result["before"]["batches"] < 2 * len(result["together"])
    assert result["unloaded"].status_code == 200
    assert result["gone"].status_code == 404 and result["gone"].json()["error"]["param"] == "model"
    for after, before in zip(result["base_after"], result["base_before"], strict=True):
        assert after == pytest.approx(before, abs=1e-5)  # the base weights were never touched


@pytest.mark.parametrize(
    ("name", "rank", "targets", "says"),
    [
        ("over-rank", serving.load().max_lora_rank * 2, LANGUAGE_ATTENTION, "greater than max_lora_rank"),
        # peft matches listed names by suffix: these adapt the vision tower's projections too.
        ("towers", 4, ["q_proj", "v_proj"], "vision (or audio) tower"),
    ],
)
def test_adapters_the_cloud_engine_could_not_serve_are_refused(
    engine: Any, local_dir: Path, name: str, rank: int, targets: str | list[str], says: str
) -> None:
    """The serving contract's limits hold locally as in vLLM: too high a rank, or tower LoRA while the
    contract has none (vLLM would drop those layers and serve another model than the one trained)."""
    _, client = engine
    folder = _save_adapter(local_dir, name, rank=rank, targets=targets)
    loaded = _run(engine, client.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(folder)}))
    assert loaded.status_code == 400, loaded.text
    error = loaded.json()["error"]
    assert error["param"] == "lora_path" and error["code"] == "adapter_not_servable" and says in error["message"]
    models = [m["id"] for m in _run(engine, client.get("/v1/models")).json()["data"]]
    assert name not in models


def test_streaming_sends_chunks_that_add_up_to_the_answer(engine: Any) -> None:
    _, client = engine

    async def scenario() -> tuple[str, list[dict[str, Any]]]:
        plain = _answer(await client.post("/v1/chat/completions", json=_chat(BASE, COLOURS[1])))
        chunks = []
        async with client.stream("POST", "/v1/chat/completions", json=_chat(BASE, COLOURS[1], stream=True)) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    chunks.append(json.loads(line[6:]))
                elif line == "data: [DONE]":
                    chunks.append({"done": True})
        return plain, chunks

    plain, chunks = _run(engine, scenario())
    assert chunks[-1] == {"done": True}
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]]
    assert "".join(deltas) == plain
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks[:-1])


def test_prompt_logprobs_score_the_final_assistant_turn(engine: Any) -> None:
    _, client = engine
    body = _chat(BASE, COLOURS[2])
    body["messages"].append({"role": "assistant", "content": "circle<end_of_turn>"})
    body.update(continue_final_message=True, add_generation_prompt=False, prompt_logprobs=0, max_tokens=1)
    reply = _run(engine, client.post("/v1/chat/completions", json=body))
    assert reply.status_code == 200, reply.text
    entries = reply.json()["prompt_logprobs"]
    assert entries[0] is None and len(entries) == reply.json()["usage"]["prompt_tokens"]
    last = [next(iter(entry.values())) for entry in entries[-2:]]
    assert [e["decoded_token"] for e in last] == ["circle", "<end_of_turn>"]
    assert all(e["logprob"] < 0 and e["rank"] >= 1 for e in last)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (_chat("no-such-model", COLOURS[0]), 404, "model"),
        ({**_chat(BASE, COLOURS[0]), "max_tokens": 0}, 400, "max_tokens"),
        (
            {
                "model": BASE,
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}
                ],
            },
            400,
            "messages[0].content[0].image_url.url",
        ),
        ({"model": BASE, "messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role"),
    ],
)
def test_bad_requests_are_refused_with_the_field(engine: Any, body: dict[str, Any], status: int, param: str) -> None:
    _, client = engine
    reply = _run(engine, client.post("/v1/chat/completions", json=body))
    assert reply.status_code == status and reply.json()["error"]["param"] == param


def test_callers_without_the_key_are_refused(engine: Any) -> None:
    _, client = engine
    reply = _run(engine, client.get("/v1/models", headers={"authorization": "Bearer wrong"}))
    assert reply.status_code == 401
    assert _run(engine, client.get("/health", headers={"authorization": ""})).status_code == 200


def test_scoring_masks_are_the_ones_transformers_builds(local_dir: Path) -> None:
    """The scoring pass builds Gemma 3's attention masks itself (transformers' `vmap` one is slow on the
    CPU): with left padding and images, the logits at every real position are transformers' own."""
    import torch

    from engine.execute import _gemma3_vision_masks
    from engine.local_engine import LocalEngine
    from engine.messages import parse_messages

    engine = LocalEngine(EngineServerSettings(local_dir=local_dir, models=[BASE]))
    try:
        prompts = []
        for words, colour in zip(("Which shape?", "What is this shape, in one word?", "Name it"), COLOURS, strict=True):
            content = [{"type": "image_url", "image_url": {"url": _image(colour)}}, {"type": "text", "text": words}]
            messages = [{"role": "user", "content": content}, {"role": "assistant", "content": "circle<end_of_turn>"}]
            prompts.append(engine.prompt(BASE, parse_messages(messages), continue_final=True))
        runtime = prompts[0].runtime
        inputs = runtime.encode([p.text for p in prompts], [p.images for p in prompts])
        real = inputs["attention_mask"].bool()
        assert not real.all()  # rows of different lengths: left padding is exercised
        fast = _gemma3_vision_masks(runtime, inputs)
        assert set(fast["attention_mask"]) == {"full_attention", "sliding_attention"}
        with torch.inference_mode():
            expected = runtime.model(**inputs).logits
            got = runtime.model(**fast).logits
        assert torch.allclose(got[real], expected[real], atol=1e-5)
    finally:
        engine.close()


def test_a_batch_waits_for_requests_still_being_parsed() -> None:
    """A request the server has accepted but not yet parsed joins the batch about to start."""
    import threading
    import time

    from engine.batcher import Batcher, Work

    batches: list[list[str]] = []
    done = threading.Event()

    def run(batch: Any) -> None:
        batches.append([work.payload for work in batch])
        if sum(len(b) for b in batches) == 2:
            done.set()

    class Quiet:
        def put(self, kind: str, value: Any = None) -> None:
            pass

    batcher = Batcher(run, max_batch=8, window_s=0.05)
    try:
        with batcher.arriving():
            batcher.submit(Work("k", "first", Quiet()))  # type: ignore[arg-type]
            time.sleep(0.15)  # three windows: alone, "first" would have run by now
            batcher.submit(Work("k", "second", Quiet()))  # type: ignore[arg-type]
        assert done.wait(5)
    finally:
        batcher.close()
    assert batches == [["first", "second"]]


def test_an_image_sent_once_per_label_is_decoded_once() -> None:
    from engine.messages import parse_messages

    def parsed(colour: tuple[int, int, int], label: str) -> Any:
        content = [{"type": "image_url", "image_url": {"url": _image(colour)}}, {"type": "text", "text": "Which?"}]
        conversation = parse_messages([{"role": "user", "content": content}, {"role": "assistant", "content": label}])
        return conversation.images[0]

    first, second = parsed((1, 2, 3), "circle"), parsed((1, 2, 3), "square")
    assert first is second and first.getpixel((0, 0)) == (1, 2, 3)
    assert parsed((3, 2, 1), "circle") is not first


def test_one_scoring_request_gives_what_vllms_per_label_requests_give(engine: Any) -> None:
    """Runtune's extension (`/v1/runtune/score`) runs every label of a sample in one request and one
    batch; its scores are the ones computed from per-label `prompt_logprobs`, as sent to vLLM."""
    from runtune.adapters.openai_engine import prompt_token_logprobs, tail_scores

    _, client = engine
    labels = ["circle<end_of_turn>", "square<end_of_turn>", "a red square<end_of_turn>"]
    chat = _chat(BASE, COLOURS[0])
    batched = _run(
        engine,
        client.post("/v1/runtune/score", json={"model": BASE, "messages": chat["messages"], "continuations": labels}),
    )
    assert batched.status_code == 200, batched.text

    async def per_label() -> list[dict[str, Any]]:
        replies = []
        for label in labels:
            body = _chat(BASE, COLOURS[0], continue_final_message=True, add_generation_prompt=False)
            body.update(prompt_logprobs=0, max_tokens=1)
            body["messages"].append({"role": "assistant", "content": label})
            replies.append((await client.post("/v1/chat/completions", json=body)).json())
        return replies

    expected = tail_scores([prompt_token_logprobs(reply) for reply in _run(engine, per_label())])
    assert batched.json()["scores"] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "no-such-model", "continuations": ["a"]}, 404, "model"),
        ({"model": BASE, "continuations": []}, 400, "continuations"),
        ({"model": BASE, "continuations": ["a", ""]}, 400, "continuations"),
        ({"model": BASE, "continuations": "a"}, 400, "continuations"),
        ({"model": BASE, "continuations": ["a"], "best_only": "yes"}, 400, "best_only"),
    ],
)
def test_bad_scoring_requests_are_refused_with_the_field(
    engine: Any, body: dict[str, Any], status: int, param: str
) -> None:
    _, client = engine
    messages = _chat(BASE, COLOURS[0])["messages"]
    reply = _run(engine, client.post("/v1/runtune/score", json={"messages": messages, **body}))
    assert reply.status_code == status and reply.json()["error"]["param"] == param


@pytest.mark.parametrize("top_logprobs", [20, 2])
def test_every_scoring_method_ranks_and_scores_as_the_engines_own_scoring(engine: Any, top_logprobs: int) -> None:
    """Through the service's client: the prefix search (first-token top log-probabilities, then label
    prefixes continued, as sent to vLLM) and per-label `prompt_logprobs` give the scores and the
    winner of the engine's one-request scoring, and its best-first search (`best_only`) the winner;
    with 2 alternatives per position most labels fall outside the list and are scored per label,
    exactly still. Labels sharing first tokens included."""
    from runtune.adapters.openai_engine import OpenAIEngine
    from runtune.demo.shapes import CLASSES
    from runtune.ports.engine import ScoringMethod

    labels = [label + "<end_of_turn>" for label in [*CLASSES, "a red square", "a red circle", "a blue square"]]
    client = OpenAIEngine(
        "http://engine", api_key="k", top_logprobs=top_logprobs, transport=httpx.ASGITransport(app=engine.app)
    )

    async def run() -> list[dict[ScoringMethod, tuple[list[float], int]]]:
        assert await client.scoring_methods() == [
            ScoringMethod.batched,
            ScoringMethod.best_first,
            ScoringMethod.prefix_search,
        ]
        out = []
        for colour in COLOURS:
            messages = _chat(BASE, colour)["messages"]
            out.append(
                {
                    method: (
                        await client.score(BASE, messages, labels, method),
                        await client.best(BASE, messages, labels, method),
                    )
                    for method in ScoringMethod
                }
            )
        return out

    try:
        results = _run(engine, run())
    finally:
        _run(engine, client.aclose())
    for by_method in results:
        reference, winner = by_method[ScoringMethod.batched]
        assert winner == max(range(len(labels)), key=reference.__getitem__)
        for scores, best in by_method.values():
            assert scores == pytest.approx(reference, abs=1e-4)
            assert best == winner


def test_top_logprobs_are_the_raw_next_token_distribution(engine: Any) -> None:
    _, client = engine
    body = _chat(BASE, COLOURS[1], max_tokens=1, logprobs=True, top_logprobs=5, return_tokens_as_token_ids=True)
    reply = _run(engine, client.post("/v1/chat/completions", json=body))
    assert reply.status_code == 200, reply.text
    position = reply.json()["choices"][0]["logprobs"]["content"][0]
    alternatives = [entry["logprob"] for entry in position["top_logprobs"]]
    assert len(alternatives) == 5 and alternatives == sorted(alternatives, reverse=True)
    assert all(entry["token"].startswith("token_id:") for entry in position["top_logprobs"])
    assert position["logprob"] == pytest.approx(alternatives[0])  # greedy: the top token
    bad = _run(engine, client.post("/v1/chat/completions", json={**body, "top_logprobs": 21}))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "top_logprobs"
