"""What the worker thread runs for a batch: greedy or sampled generation (tokens streamed to each
request as they are produced), or prompt log-probabilities (one forward pass for the whole batch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from engine.batcher import Sink, Work
from engine.runtime import ModelRuntime


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Prompt:
    runtime: ModelRuntime
    adapter: str | None
    text: str
    images: list[Any]


@dataclass
class GenerateRequest(Prompt):
    max_tokens: int
    sampling: Sampling
    seed: int | None = None
    # `logprobs`: None for none; else the log-probability of each generated token and this many
    # alternatives (vLLM's `top_logprobs`), from the raw logits, as vLLM reports them.
    top_logprobs: int | None = None
    token_ids: bool = False  # `return_tokens_as_token_ids`: tokens named `token_id:<id>`


@dataclass
class ScoreRequest(Prompt):
    pass


@dataclass
class ScoreSetRequest(Prompt):
    """Runtune's scoring extension: every continuation of one prompt, the prompt computed once;
    `best_only`: only the most likely one, found best first (`runtune.training.best_first`)."""

    continuations: list[str]
    best_only: bool = False


# Scoring is one forward pass with no token-by-token loop, so a batch may hold several times the rows
# of a generation batch for the same latency: one evaluation sample is a row per label.
SCORE_BATCH_FACTOR = 4


def batch_key(request: Prompt) -> tuple[Any, ...]:
    if isinstance(request, GenerateRequest):
        kind: tuple[Any, ...] = ("generate", request.sampling, request.top_logprobs is not None)
    elif isinstance(request, ScoreSetRequest):
        kind = ("score_set", request.best_only)
    else:
        kind = ("score",)
    return (id(request.runtime), bool(request.images), *kind)


def batch_limit(key: tuple[Any, ...], max_batch: int) -> int:
    # A score set is one prompt row (its continuations are a few tokens each, from its cache).
    return max_batch * SCORE_BATCH_FACTOR if key[2] == "score" else max_batch


class _RowStreamer:
    """transformers' streamer protocol for a whole batch: each step's new token goes to its row's sink."""

    def __init__(self, sinks: list[Sink], limits: list[int], stop_ids: list[int], *, hold: bool = False) -> None:
        self._sinks, self._limits, self._stop = sinks, limits, set(stop_ids)
        self._counts = [0] * len(sinks)
        self._done = [False] * len(sinks)
        self._prompt_seen = False
        # With log-probabilities asked for, every row's finish waits for them (the end of the batch).
        self._hold = hold
        self.produced: list[list[int]] = [[] for _ in sinks]  # every row's tokens, its stop token included
        self.reasons: list[str] = ["length"] * len(sinks)

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the first call carries the prompt ids
            self._prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self._done[row]:
                continue
            self.produced[row].append(token)
            if token in self._stop:
                self._finish(row, "stop")
                continue
            self._counts[row] += 1
            self._sinks[row].put("token", token)
            if self._counts[row] >= self._limits[row]:
                self._finish(row, "length")

    def _finish(self, row: int, reason: str) -> None:
        self._done[row] = True
        self.reasons[row] = reason
        if not self._hold:
            self._sinks[row].put("finish", reason)

    def end(self) -> None:
        for row, done in enumerate(self._done):
            if not done:
                self._finish(row, "length")


def run_batch(batch: Sequence[Work]) -> None:
    requests = [work.payload for work in batch]
    runtime: ModelRuntime = requests[0].runtime
    with runtime.lock, torch.inference_mode():
        inputs = runtime.encode([r.text for r in requests], [r.images for r in requests])
        lengths = inputs["attention_mask"].sum(dim=1).tolist()
        for work, length in zip(batch, lengths, strict=True):
            work.sink.put("prompt_tokens", int(length))
        adapters = runtime.adapter_kwargs([r.adapter for r in requests])
        if isinstance(requests[0], GenerateRequest):
            _generate(runtime, batch, inputs, adapters)
        elif isinstance(requests[0], ScoreSetRequest):
            _score_sets(runtime, batch, inputs, adapters)
        else:
            _score(runtime, batch, inputs, adapters)


def _generate(runtime: ModelRuntime, batch: Sequence[Work], inputs: dict[str, Any], adapters: dict[str, Any]) -> None:
    from transformers import GenerationConfig

    requests: list[GenerateRequest] = [work.payload for work in batch]
    sampling = requests[0].sampling
    seeds = [r.seed for r in requests if r.seed is not None]
    if seeds:
        torch.manual_seed(seeds[0])
    limits = [r.max_tokens for r in requests]
    config = GenerationConfig(
        do_sample=not sampling.greedy,
        temperature=sampling.temperature if not sampling.greedy else None,
        top_p=sampling.top_p if not sampling.greedy else None,
        top_k=None,
        max_new_tokens=max(limits),
        eos_token_id=runtime.stop_ids,
        pad_token_id=runtime.tokenizer.pad_token_id,
        use_cache=True,
    )
    top = requests[0].top_logprobs  # the same for the whole batch (`batch_key`)
    if top is not None:  # the raw logits of every step, as vLLM's log-probabilities are
        config.output_logits, config.return_dict_in_generate = True, True
    streamer = _RowStreamer([work.sink for work in batch], limits, runtime.stop_ids, hold=top is not None)
    output = runtime.model.generate(**inputs, generation_config=config, streamer=streamer, **adapters)
    if top is None:
        return
    for row, work in enumerate(batch):
        content = []
        for step, token in enumerate(streamer.produced[row]):
            logprobs = output.logits[step][row].float().log_softmax(-1)
            best = logprobs.topk(top) if top else None
            alternatives = zip(best.indices.tolist(), best.values.tolist(), strict=True) if best is not None else []
            content.append(
                {
                    **_logprob_entry(runtime, token, float(logprobs[token]), requests[row].token_ids),
                    "top_logprobs": [
                        _logprob_entry(runtime, other, value, requests[row].token_ids) for other, value in alternatives
                    ],
                }
            )
        work.sink.put("logprobs", content)
        work.sink.put("finish", streamer.reasons[row])


def _logprob_entry(runtime: ModelRuntime, token: int, logprob: float, as_id: bool) -> dict[str, Any]:
    piece = runtime.piece(token)
    return {"token": f"token_id:{token}" if as_id else piece, "logprob": logprob, "bytes": list(piece.encode())}


def _gemma3_vision_masks(runtime: ModelRuntime, inputs: dict[str, Any]) -> dict[str, Any]:
    """Gemma 3 with images: its attention masks built here with plain tensor ops, the ones transformers
    would build (causal, image tokens bidirectional within their image, padding masked). transformers
    makes the sliding-window one through `vmap`, two thirds of a small model's forward pass on the CPU
    (profiled); when the prompt fits in the window both masks are the same, which is all scoring needs."""
    types = inputs.get("token_type_ids")
    window = getattr(runtime.model.config.get_text_config(), "sliding_window", None)
    if runtime.spec.family.name != "gemma3" or types is None or window is None or types.shape[1] > window:
        return inputs
    length = types.shape[1]
    is_image = types == 1
    starts = is_image & ~torch.nn.functional.pad(is_image, (1, 0))[:, :-1]
    blocks = torch.where(is_image, starts.cumsum(dim=1), 0)  # 0: text; 1, 2, ...: the image's number
    positions = torch.arange(length)
    causal = positions[None, :] <= positions[:, None]
    same_image = (blocks[:, :, None] == blocks[:, None, :]) & (blocks[:, :, None] > 0)
    mask = (causal[None] | same_image) & inputs["attention_mask"].bool()[:, None, :]
    # A padding position attends to itself only: never a row with no key (NaN), never read by real rows.
    mask |= torch.eye(length, dtype=torch.bool)[None]
    masks = {"full_attention": mask[:, None], "sliding_attention": mask[:, None]}
    return {**inputs, "attention_mask": masks}


def _score(runtime: ModelRuntime, batch: Sequence[Work], inputs: dict[str, Any], adapters: dict[str, Any]) -> None:
    """vLLM's `prompt_logprobs`: for every prompt token after the first, its log-probability given
    the tokens before it, and its rank."""
    logits = runtime.model(**_gemma3_vision_masks(runtime, inputs), **adapters).logits.float()
    logprobs = logits.log_softmax(-1)
    ids = inputs["input_ids"]
    mask = inputs["attention_mask"]
    for row, work in enumerate(batch):
        start = int((mask[row] == 0).sum())  # left padding
        tokens = ids[row, start:]
        predicted = logprobs[row, start:-1]  # position t predicts token t+1
        chosen = predicted.gather(-1, tokens[1:, None]).squeeze(-1)
        ranks = (predicted > chosen[:, None]).sum(-1) + 1
        entries: list[dict[str, Any] | None] = [None]
        for token, logprob, rank in zip(tokens[1:].tolist(), chosen.tolist(), ranks.tolist(), strict=True):
            entries.append({str(token): {"logprob": logprob, "rank": rank, "decoded_token": runtime.piece(token)}})
        work.sink.put("prompt_logprobs", entries)


def _score_sets(runtime: ModelRuntime, batch: Sequence[Work], inputs: dict[str, Any], adapters: dict[str, Any]) -> None:
    """Every continuation of every prompt, each prompt computed once (the trainer's label scoring:
    one prefill, then all continuations from copies of its cache). A set's scores are what
    `tail_scores` makes of each continuation's `prompt_logprobs`: the tokens after the prefix the
    whole set shares (the prompt, and any leading tokens every continuation has in common). A batch of
    `best_only` sets gets each set's most likely continuation instead, by a best-first search."""
    from runtune.training.best_first import best_continuations
    from runtune.training.evaluation import continuation_logprobs

    requests: list[ScoreSetRequest] = [work.payload for work in batch]
    tokenizer = runtime.tokenizer
    candidates: list[list[list[int]]] = []
    shared: list[int] = []
    for request in requests:
        texts = [request.text, *(request.text + continuation for continuation in request.continuations)]
        head, *full = tokenizer(texts, add_special_tokens=False)["input_ids"]
        if any(ids[: len(head)] != head or len(ids) == len(head) for ids in full):
            raise ValueError("A continuation changed the tokens of the prompt before it")
        tails = [ids[len(head) :] for ids in full]
        candidates.append(tails)
        common, shortest = 0, min(len(t) for t in tails)
        while common < shortest and len({t[common] for t in tails}) == 1:
            common += 1
        shared.append(common)

    def scored(scoring: Callable[..., Any]) -> Any:
        return scoring(
            runtime.model,
            inputs,
            candidates,
            tokenizer.pad_token_id,
            prefill_batch=_gemma3_vision_masks(runtime, inputs),
            adapter_names=adapters.get("adapter_names"),
        )

    if requests[0].best_only:  # a batch is of one kind (`batch_key`)
        for work, (index, _) in zip(batch, scored(best_continuations), strict=True):
            work.sink.put("best", index)
        return
    for work, rows, common in zip(batch, scored(continuation_logprobs), shared, strict=True):
        work.sink.put("scores", [sum(row[common:]) for row in rows])
