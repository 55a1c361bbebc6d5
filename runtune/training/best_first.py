"""The most likely label of each prompt without scoring every label: a best-first search over the
labels' tokens, on the model's own key/value cache.

Scoring every label exactly (`evaluation.continuation_logprobs`) runs one query per node of the labels'
token trie: ~110 for the 37 Oxford Pets breeds, where a tuned model's greedy answer is ~5 decoding
steps. Only the winner is needed to evaluate a classifier, and log-probabilities only fall as tokens
are added, so the search keeps each prompt's open label prefixes in a heap by score and expands the
best ones a forward at a time (every prompt of the batch in the same forward, each new token seeing
its prompt and its own ancestors only, through a tree mask over the cache). When the best entry is a
finished label, no open prefix can overtake it: it is the exact winner (up to float rounding between
the two ways of computing the same logits, as between every pair of exact methods). A confident model
finishes in about a label's length of steps; a model that spreads its probability expands more, and an
evaluation then times the exhaustive pass as faster and runs that (`ScoringMethod`).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from typing import Any

import torch

# Open prefixes one prompt expands per forward: more queries per step, fewer sequential steps (each
# step is mostly fixed cost on a GPU and on a CPU alike), while a confident model needs one a step.
EXPANSIONS_PER_STEP = 2
# An expanded prefix is fed with the tokens that follow it while only one label continues it, up to
# this many tokens a prompt per step (the best prefix's chain first): a label's tail after its last
# branching point costs one step, not one step a token.
STEP_TOKENS = 16

Prefix = tuple[int, ...]


class _Trie:
    """A label set's tokens: each prefix's next tokens, and the labels each token sequence finishes
    (built once for the prompts of a batch that share their labels)."""

    def __init__(self, candidates: Sequence[Sequence[int]]) -> None:
        self.finished: dict[Prefix, list[int]] = {}
        self.nexts: dict[Prefix, list[int]] = {}
        for index, tokens in enumerate(candidates):
            self.finished.setdefault(tuple(tokens), []).append(index)
            for end in range(len(tokens)):
                following = self.nexts.setdefault(tuple(tokens[:end]), [])
                if tokens[end] not in following:
                    following.append(tokens[end])


class _Search:
    """One prompt's search: the heap of its open prefixes and finished labels by score, and the cache
    column of every prefix fed so far."""

    def __init__(self, trie: _Trie) -> None:
        self.trie = trie
        # (-score, 0 for a finished label (its index next) / 1 for an open prefix, order, prefix)
        self.heap: list[tuple[float, int, int, Prefix]] = []
        self.columns: dict[Prefix, int] = {}
        self.winner: tuple[int, float] | None = None
        self._order = itertools.count()

    def extend(
        self, prefix: Prefix, score: float, logprobs: Sequence[float], fed: dict[Prefix, float] | None = None
    ) -> None:
        """Push `prefix`'s children, each scored with its token's log-probability after `prefix`
        (`logprobs`, in the order of `trie.nexts[prefix]`); a child already fed in this step (a key of
        `fed`) is expanded with it, so its score goes there instead of on the heap."""
        for token, logprob in zip(self.trie.nexts[prefix], logprobs, strict=True):
            child, value = (*prefix, token), score + logprob
            for index in self.trie.finished.get(child, ()):
                heapq.heappush(self.heap, (-value, 0, index, child))
            if fed is not None and child in fed:
                fed[child] = value
            elif child in self.trie.nexts:
                heapq.heappush(self.heap, (-value, 1, next(self._order), child))

    def chain(self, prefix: Prefix, most: int) -> list[Prefix]:
        """`prefix` and the open prefixes after it while only one token continues it (`most` in all)."""
        chain = [prefix]
        while len(chain) < most and len(following := self.trie.nexts[chain[-1]]) == 1:
            child = (*chain[-1], following[0])
            if child not in self.trie.nexts:
                break
            chain.append(child)
        return chain

    def take(self, most: int) -> list[tuple[Prefix, float]]:
        """The best open prefixes to expand next (at most `most`), stopping at a finished label: one on
        top before anything is taken is the winner."""
        taken: list[tuple[Prefix, float]] = []
        while self.heap and len(taken) < most:
            negative, kind, index, prefix = self.heap[0]
            if kind == 0:
                if not taken:
                    self.winner = (index, -negative)
                break
            heapq.heappop(self.heap)
            taken.append((prefix, -negative))
        return taken

    def result(self) -> tuple[int, float]:
        if self.winner is None:
            raise RuntimeError("the search ended without a finished label")
        return self.winner


@torch.no_grad()
def best_continuations(
    model: Any,
    batch: dict[str, Any],
    candidates: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
    *,
    prefill_batch: dict[str, Any] | None = None,
    adapter_names: Sequence[str] | None = None,
) -> list[tuple[int, float]]:
    """The index and summed log-probability of each prompt's most likely candidate continuation (the
    first of equals), as `continuation_logprobs`'s sums would rank them: one prefill of the left-padded
    prompts (`batch`; `prefill_batch`, the same inputs with precomputed attention masks, if given),
    then best-first steps from its cache. Where the model's attention or cache does not allow a tree
    mask, every candidate is scored instead (the same answer, slower). `adapter_names`: one per prompt."""
    from transformers import DynamicCache

    from runtune.training.evaluation import cache_argument, continuation_logprobs, prefill_prompts

    device = next(model.parameters()).device
    per_prompt = {"adapter_names": list(adapter_names)} if adapter_names is not None else {}
    cache_kwarg = cache_argument(model)
    cache = None
    if getattr(model.config, "_attn_implementation", None) in ("sdpa", "eager"):
        # A full cache on every layer, sliding ones included: a sliding layer's cache drops its oldest
        # columns by count, and the columns this search appends are not in position order.
        first, cache = prefill_prompts(model, prefill_batch or batch, adapter_names, DynamicCache())
        layers = getattr(cache, "layers", None)
        if not layers or any(
            getattr(layer, "keys", None) is None or getattr(layer, "is_sliding", False) for layer in layers
        ):
            cache = None  # shared key/value layers, or a cache of another kind
    if cache is None:
        scored = continuation_logprobs(
            model, batch, candidates, pad_id, prefill_batch=prefill_batch, adapter_names=adapter_names
        )
        sums = [[sum(tokens) for tokens in rows] for rows in scored]
        return [max(enumerate(row), key=lambda pair: pair[1]) for row in sums]
    tries: dict[tuple[tuple[int, ...], ...], _Trie] = {}
    searches = []
    for row, per_prompt_candidates in enumerate(candidates):
        key = tuple(map(tuple, per_prompt_candidates))
        search = _Search(tries[key] if key in tries else tries.setdefault(key, _Trie(per_prompt_candidates)))
        search.extend((), 0.0, first[row, search.trie.nexts[()]].tolist())
        searches.append(search)
    prompt_mask = batch["attention_mask"]
    rows, width = prompt_mask.shape
    # Every cache column's position: the prompts' as the prefill counted them, a fed prefix's at its
    # last token's place in its label.
    positions = torch.arange(width, device=device).expand(rows, width)
    while True:
        # Per prompt: the prefixes fed this step (each taken one and its chain) and their scores,
        # the chains' filled in as their parents' logits come.
        fed: list[dict[Prefix, float]] = []
        for search in searches:
            step: dict[Prefix, float] = {}
            for prefix, score in search.take(EXPANSIONS_PER_STEP) if search.winner is None else []:
                step |= dict.fromkeys(search.chain(prefix, max(1, STEP_TOKENS - len(step))), float("nan"))
                step[prefix] = score
            fed.append(step)
        queries = max(map(len, fed))
        if not queries:
            break
        start = positions.shape[1]
        ids = torch.full((rows, queries), pad_id, dtype=torch.long)
        step_positions = torch.zeros((rows, queries), dtype=torch.long)
        for row, (search, step) in enumerate(zip(searches, fed, strict=True)):
            for slot, prefix in enumerate(step):
                search.columns[prefix] = start + slot
                ids[row, slot] = prefix[-1]
                step_positions[row, slot] = width + len(prefix) - 1
        positions = torch.cat([positions, step_positions.to(device)], dim=1)
        inputs: dict[str, Any] = {
            "input_ids": ids.to(device),
            "attention_mask": _step_masks(model, prompt_mask, searches, [list(step) for step in fed], positions),
            "position_ids": step_positions.to(device),
            cache_kwarg: cache,
            "use_cache": True,
            **per_prompt,
        }
        for key in batch:
            if key.endswith("token_type_ids"):
                inputs[key] = torch.zeros_like(inputs["input_ids"])  # label tokens are text
        logits = model(**inputs).logits
        # Every fed prefix's children in one gather, each over its row's normaliser (float32).
        at_row: list[int] = []
        at_slot: list[int] = []
        at_token: list[int] = []
        for row, (search, step) in enumerate(zip(searches, fed, strict=True)):
            for slot, prefix in enumerate(step):
                following = search.trie.nexts[prefix]
                at_row += [row] * len(following)
                at_slot += [slot] * len(following)
                at_token += following
        normaliser = logits.float().logsumexp(-1)
        values = (logits[at_row, at_slot, at_token].float() - normaliser[at_row, at_slot]).tolist()
        del logits, normaliser
        start = 0
        for search, step in zip(searches, fed, strict=True):
            for prefix in list(step):  # a chain's parents come before it: its score is known by then
                count = len(search.trie.nexts[prefix])
                search.extend(prefix, step[prefix], values[start : start + count], step)
                start += count
    return [search.result() for search in searches]


def _step_masks(
    model: Any,
    prompt_mask: torch.Tensor,
    searches: Sequence[_Search],
    fed: Sequence[Sequence[Prefix]],
    positions: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """One step's attention masks over the whole cache (the prompts, every column fed so far, this
    step's queries), per layer type, as transformers' sdpa/eager attention reads a precomputed mask:
    each query sees its prompt and its prefix's own columns (its ancestors and itself), a sliding
    layer's within its window by position; a padding query sees itself only."""
    rows, width = prompt_mask.shape
    queries = max(map(len, fed))
    total = positions.shape[1]
    device = prompt_mask.device
    row_index: list[int] = []
    query_index: list[int] = []
    column_index: list[int] = []
    real = torch.zeros((rows, queries), dtype=torch.bool)
    for row, (search, prefixes) in enumerate(zip(searches, fed, strict=True)):
        for slot in range(queries):
            if slot < len(prefixes):
                prefix = prefixes[slot]
                own = [search.columns[prefix[:end]] for end in range(1, len(prefix) + 1)]
                real[row, slot] = True
            else:
                own = [total - queries + slot]
            row_index += [row] * len(own)
            query_index += [slot] * len(own)
            column_index += own
    seen = torch.zeros((rows, queries, total), dtype=torch.bool)
    seen[row_index, query_index, column_index] = True
    seen = seen.to(device)
    seen[:, :, :width] = prompt_mask[:, None, :].bool() & real.to(device)[:, :, None]
    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    window = getattr(text, "sliding_window", None)
    masks = {"full_attention": seen, "sliding_attention": seen}
    if window is not None:
        at = positions[:, total - queries :]
        masks["sliding_attention"] = seen & ((at[:, :, None] - positions[:, None, :]) < window)
    if getattr(model.config, "_attn_implementation", None) == "eager":  # an additive mask
        dtype = next(model.parameters()).dtype
        floor = torch.finfo(dtype).min
        return {
            kind: torch.zeros(m.shape, dtype=dtype, device=device).masked_fill(~m, floor)[:, None]
            for kind, m in masks.items()
        }
    return {kind: mask[:, None] for kind, mask in masks.items()}
