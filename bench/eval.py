"""Classification evaluation: label scoring against per-sample generation, same split, one run.

    .venv/bin/python -m bench.eval [--samples 320] [--concurrency 32] [--no-train] [--sets demo,37]

Starts the local engine server (tiny Gemma 3 vision, CPU) on a free port and drives it through the
inference service's own client (`OpenAIEngine`) and prompt conversion, on the demo shapes test split,
for the base model and for an adapter this script first trains on the demo train split (LoRA, the
trainer's chat format, encoding and collation; a few seconds on the CPU), where accuracy means
something. Two label sets: the demo's 4 shapes, and 37 labels (the Oxford Pets breeds, the published
recipe's set: the four shapes answered with four breeds that share first words, 33 more that are
never right), where every sample scores 37 multi-token labels.
- `label scoring (<method>)`: every exact method the engine offers (`ScoringMethod`): `batched`,
  Runtune's one-request extension (each prompt computed once, every label from its cache);
  `best_first`, the same extension asked for the winner only (label prefixes expanded best first on
  the engine's cache: about a label's length of steps on a confident model);
  `prefix_search`, what vLLM gets (first-token top log-probabilities in one `max_tokens=1` request
  that reads the prefix cache, then only the prefixes that can still win);
- `label scoring`: the fastest of those, as an evaluation chooses on its first samples;
- `per-sample generation`: the baseline of the published recipes: one sample at a time, a greedy
  answer of up to 128 new tokens, mapped to the first label it contains (substring);
- `batched generation`: the service's own generation method: 16 tokens, `--concurrency` samples in
  flight (batched by the engine), mapped by `map_to_label`.
Prints samples/s and accuracy of each, and the ratios against the baseline measured in the same run.
Targets (issue 18): label scoring >= 5x the samples/s of per-sample generation and >= batched
generation's, at equal or better accuracy, on both sets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.trainer import PET_BREEDS
from runtune.adapters.openai_engine import OpenAIEngine
from runtune.datasets.canonical import Example
from runtune.demo.shapes import CLASSES, examples
from runtune.dev.processes import ManagedProcess, free_port
from runtune.inference.evaluation import LABEL_ANSWER_TOKENS, as_openai
from runtune.metrics.classification import classification_report, map_to_label
from runtune.models.registry import get
from runtune.models.tiny import ensure_tiny_model, tiny_dir
from runtune.ports.engine import ScoringMethod

BASE = "tiny-gemma-3-vision"
RECIPE_NEW_TOKENS = 128  # the published recipes' max_new_tokens for a label answer
TUNED = "bench-tuned"
# The 37-label set: each shape answered with a breed; breeds sharing a first word, so a prefix search
# has labels to tell apart after their first token.
SHAPE_BREEDS = {
    "circle": "american bulldog",
    "square": "american pit bull terrier",
    "triangle": "english setter",
    "cross": "english cocker spaniel",
}


def label_set(name: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """The labels, and each demo class's answer in them."""
    if name == "demo":
        return CLASSES, {label: label for label in CLASSES}
    assert set(SHAPE_BREEDS.values()) <= set(PET_BREEDS)
    return PET_BREEDS, SHAPE_BREEDS


def relabelled(items: list[Example], answers: dict[str, str]) -> list[Example]:
    out = []
    for item in items:
        label = answers[item.label or ""]
        messages = [item.messages[0], {"role": "assistant", "content": [{"type": "text", "text": label}]}]
        out.append(Example(messages=messages, images=item.images, label=label))
    return out


def start_engine(local_dir: Path) -> tuple[ManagedProcess, str]:
    """`python -m engine` in its own process, as `runtune dev up` runs it (a server in
    this process would share the client's interpreter lock and measure the client as much as the engine)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    engine = ManagedProcess(
        "engine",
        [sys.executable, "-m", "engine"],
        local_dir / "engine.log",
        health_url=f"{url}/healthz",
        env={
            "RUNTUNE_LOCAL_DIR": str(local_dir),
            "RUNTUNE_ENGINE_PORT": str(port),
            "RUNTUNE_ENGINE_MODELS": json.dumps([BASE]),
        },
    )
    engine.start().wait_healthy()
    return engine, url


def train_adapter(local_dir: Path, out: Path, train_samples: int, epochs: int, answers: dict[str, str]) -> float:
    """LoRA on the demo train split with the trainer's own encoding (labels on the answer only); seconds."""
    import torch
    from peft import LoraConfig, get_peft_model

    from runtune.demo.shapes import examples as demo_examples
    from runtune.models.loading import load_processor, model_class, resolve_weights
    from runtune.training.chat import ChatFormat
    from runtune.training.data import collate, encode_all, epoch_batches
    from runtune.training.model import lora_targets

    started = time.perf_counter()
    torch.manual_seed(0)
    spec = get(BASE)
    weights = resolve_weights(spec, local_dir)
    fmt = ChatFormat(spec, load_processor(spec, weights))
    model = model_class(spec).from_pretrained(weights, dtype=torch.float32)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=lora_targets(model, spec, vision_tower=False))
    model = get_peft_model(model, lora).train()
    split = encode_all(fmt, relabelled(demo_examples("train", train_samples), answers), max_length=512)
    # The trainer's learning rate for this model: 2e-4 x the tiny models' scale (10) x 5.
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    lengths = [len(item) for item in split.examples]
    for epoch in range(epochs):
        for batch in epoch_batches(lengths, 8, seed=0, epoch=epoch):
            inputs = collate([split.examples[i] for i in batch], fmt.tokenizer.pad_token_id)
            model(**inputs).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    model.save_pretrained(out)
    (out / "training_config.json").write_text(json.dumps({"model": BASE}))
    return time.perf_counter() - started


def first_label_in(answer: str, labels: tuple[str, ...]) -> str | None:
    """The recipes' mapping: the first label (in label order) the lower-cased answer contains."""
    said = answer.lower()
    return next((label for label in labels if label.lower() in said), None)


async def measure(
    engine: OpenAIEngine,
    model: str,
    samples: int,
    concurrency: int,
    labels: tuple[str, ...],
    answers: dict[str, str],
    recipe_tokens: int = RECIPE_NEW_TOKENS,
) -> dict[str, dict[str, float]]:
    items = relabelled(examples("test", samples, seed=0), answers)
    prompts = [as_openai(item)[0] for item in items]
    truth = [item.label or "" for item in items]
    end_of_turn = get(BASE).family.end_of_turn
    continuations = [label + end_of_turn for label in labels]

    def scored(method: ScoringMethod) -> Callable[[list[dict[str, Any]]], Awaitable[str | None]]:
        async def run(messages: list[dict[str, Any]]) -> str | None:
            return labels[await engine.best(model, messages, continuations, method)]

        return run

    async def answer(messages: list[dict[str, Any]], max_tokens: int) -> str:
        body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
        return (await engine.chat(body))["choices"][0]["message"]["content"] or ""

    async def per_sample(messages: list[dict[str, Any]]) -> str | None:
        return first_label_in(await answer(messages, recipe_tokens), labels)

    async def batched(messages: list[dict[str, Any]]) -> str | None:
        return map_to_label(await answer(messages, LABEL_ANSWER_TOKENS), list(labels))

    methods: list[tuple[str, Callable[[list[dict[str, Any]]], Awaitable[str | None]], int]] = [
        (f"label scoring ({method})", scored(method), concurrency) for method in await engine.scoring_methods()
    ]
    methods += [("per-sample generation", per_sample, 1), ("batched generation", batched, concurrency)]
    results: dict[str, dict[str, float]] = {}
    for name, method, in_flight in methods:
        gate = asyncio.Semaphore(in_flight)

        async def one(messages: list[dict[str, Any]], method: Any = method, gate: Any = gate) -> str | None:
            async with gate:
                return await method(messages)

        await one(prompts[0])  # warm-up (first use of a code path)
        started = time.perf_counter()
        predicted = await asyncio.gather(*(one(messages) for messages in prompts))
        seconds = time.perf_counter() - started
        accuracy = classification_report(truth, predicted, list(labels))["accuracy"]
        results[name] = {"samples_per_s": samples / seconds, "accuracy": accuracy, "seconds": seconds}
    fastest = max((n for n in results if n.startswith("label scoring (")), key=lambda n: results[n]["samples_per_s"])
    results["label scoring"] = {**results[fastest], "method": fastest.removeprefix("label scoring (")[:-1]}
    return results


def report(model: str, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    baseline = results["per-sample generation"]["samples_per_s"]
    batched = results["batched generation"]
    print(f"\n{model}")
    for name, figures in results.items():
        ratio = figures["samples_per_s"] / baseline
        print(
            f"  {name:30s} {figures['samples_per_s']:8.1f} samples/s  accuracy {figures['accuracy']:.3f}"
            f"  {ratio:6.1f}x per-sample generation"
            f"  {figures['samples_per_s'] / batched['samples_per_s']:5.2f}x batched"
            + (f"  (= {figures['method']})" if "method" in figures else "")
        )
    scoring = results["label scoring"]
    ratio = scoring["samples_per_s"] / baseline
    accurate = scoring["accuracy"] >= max(results["per-sample generation"]["accuracy"], batched["accuracy"])
    met = ratio >= 5 and scoring["samples_per_s"] >= batched["samples_per_s"] and accurate
    print(
        "  target (label scoring >= 5x per-sample generation and >= batched generation, accuracy >= both): "
        + ("met" if met else "MISSED")
    )
    return {"model": model, "ratio": ratio, "vs_batched": scoring["samples_per_s"] / batched["samples_per_s"],
            "target_met": met, **results}  # fmt: skip


async def run_all(url: str, args: argparse.Namespace, adapters: dict[str, Path | None]) -> list[dict[str, Any]]:
    engine = OpenAIEngine(url)
    try:
        out = []
        for name, adapter in adapters.items():
            labels, answers = label_set(name)
            title = f"{BASE}, {name} set ({len(labels)} labels)"
            figures = await measure(engine, BASE, args.samples, args.concurrency, labels, answers, args.recipe_tokens)
            out.append(report(title, figures))
            if adapter is not None:
                await engine.load_adapter(f"{TUNED}-{name}", str(adapter))
                figures = await measure(
                    engine, f"{TUNED}-{name}", args.samples, args.concurrency, labels, answers, args.recipe_tokens
                )
                out.append(report(f"{title} + adapter", figures))
        return out
    finally:
        await engine.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=320)
    # The inference service's default evaluation_concurrency: samples in flight.
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--train-samples", type=int, default=240)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--sets", default="demo,37", help="label sets: demo (4 labels), 37 (37 labels)")
    parser.add_argument("--no-train", action="store_true", help="measure the base model only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--recipe-tokens", type=int, default=RECIPE_NEW_TOKENS, help="per-sample generation's budget")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would be measured too
    with tempfile.TemporaryDirectory() as tmp:
        # RUNTUNE_BENCH_MODELS: a folder of tiny models already built (the tests' own), else built here.
        if models := os.environ.get("RUNTUNE_BENCH_MODELS"):
            tiny_dir(Path(tmp), BASE).parent.mkdir(parents=True)
            os.symlink(tiny_dir(Path(models), BASE), tiny_dir(Path(tmp), BASE))
        ensure_tiny_model(BASE, tiny_dir(Path(tmp), BASE))
        adapters: dict[str, Path | None] = {}
        for name in args.sets.split(","):
            adapters[name] = None
            if not args.no_train:
                adapters[name] = Path(tmp) / f"adapter-{name}"
                seconds = train_adapter(Path(tmp), adapters[name], args.train_samples, args.epochs, label_set(name)[1])
                print(f"trained a {name}-set adapter on {args.train_samples} samples x {args.epochs} epochs "
                      f"in {seconds:.0f} s")  # fmt: skip
        engine, url = start_engine(Path(tmp))
        try:
            results = asyncio.run(run_all(url, args, adapters))
        finally:
            engine.stop()
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
