"""Evaluation on a held-out split.

Classification: label scoring (the log-likelihood of each label, as the model would write it after
the serving prompt), and optionally free greedy generation mapped to labels for comparison.
Generation tasks: loss/perplexity under teacher forcing, and exact match, token F1 and ROUGE-L of
greedy answers. Greedy decoding is forced whatever the checkpoint's generation config says, so two
evaluations of one model agree.

Label scoring is batched two ways: the prompts of several examples run as one left-padded forward
(the prefill, images included), and every label of every example then continues from that prefill's
key/value cache in one more forward. The prompt, by far the longest part, is computed once per
example instead of once per label, so scoring K labels costs about one generation step, not K
prompts.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch

from runtune.datasets.canonical import Example
from runtune.metrics.classification import classification_report, map_to_label
from runtune.metrics.text import generation_report, perplexity
from runtune.training.chat import ChatFormat, decode_images, text_of
from runtune.training.data import collate

MAX_NEW_TOKENS = 32
# Label scoring: examples per prefill, and how many prompt tokens the (example, label) rows of one
# continuation forward may carry in their copies of the cache (~140 KiB per token for Gemma 3 4B in
# bfloat16, so 16k tokens are ~2.2 GiB).
SCORING_BATCH = 16
SCORING_CACHE_TOKENS = 16_384


def prompt_and_answer(example: Example) -> tuple[list[dict[str, Any]], str]:
    """The conversation up to the last assistant turn, and that turn's text (the reference)."""
    last = max(i for i, m in enumerate(example.messages) if m["role"] == "assistant")
    return example.messages[:last], text_of(example.messages[last]).strip()


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def cache_argument(model: Any) -> str:
    """The name the model's forward takes its key/value cache by (`cache` in newer transformers,
    `past_key_values` before)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def returned_cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _images(fmt: ChatFormat, example: Example) -> list[Any]:
    return decode_images(example) if fmt.spec.modality == "vision" else []


def left_pad(prompts: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Model inputs of several prompts (each as `ChatFormat.encode_prompt` returns it) as one batch,
    padded on the left so every prompt ends at the last position."""
    width = max(p["input_ids"].shape[1] for p in prompts)
    batch: dict[str, Any] = {}
    for key in prompts[0]:
        values = [p[key] for p in prompts]
        if key == "input_ids" or key == "attention_mask" or key.endswith("token_type_ids"):
            fill = pad_id if key == "input_ids" else 0
            rows = torch.full((len(values), width), fill, dtype=values[0].dtype)
            for row, value in enumerate(values):
                rows[row, width - value.shape[1] :] = value[0]
            batch[key] = rows
        else:  # per image: stacked along the image axis
            batch[key] = torch.cat(values, dim=0)
    return batch


def label_continuations(fmt: ChatFormat, prompt_text: str, labels: Sequence[str]) -> list[list[int]]:
    """Each label's tokens (with the end-of-turn) as they follow the prompt in training: tokenized in
    context, not alone, so a tokenizer that merges across the boundary is caught at encode time."""
    base = fmt.raw_ids(prompt_text)
    return [fmt.raw_ids(prompt_text + label + fmt.end_of_turn)[len(base) :] for label in labels]


@torch.no_grad()
def score_examples(
    model: Any, fmt: ChatFormat, examples: Sequence[Example], labels: Sequence[str]
) -> list[list[float]]:
    """For each example, the summed log-probability of each `label + end-of-turn` after its serving
    prompt. One prefill for the prompts, one forward for all (example, label) continuations."""
    conversations = [prompt_and_answer(example)[0] for example in examples]
    prompts = [
        fmt.encode_prompt(messages, _images(fmt, example))
        for messages, example in zip(conversations, examples, strict=True)
    ]
    candidates = [label_continuations(fmt, fmt.prompt_text(messages), labels) for messages in conversations]
    batch = _to(left_pad(prompts, fmt.tokenizer.pad_token_id), _device(model))
    per_token = continuation_logprobs(model, batch, candidates, fmt.tokenizer.pad_token_id)
    return [[sum(tokens) for tokens in per_example] for per_example in per_token]


@torch.no_grad()
def prefill_prompts(
    model: Any, batch: dict[str, Any], adapter_names: Sequence[str] | None = None, cache: Any = None
) -> tuple[torch.Tensor, Any]:
    """One forward of the left-padded prompts: every prompt's next-token log-probabilities (on the
    CPU, float32) and the key/value cache (`cache`, if given, is the one to fill)."""
    per_prompt = {"adapter_names": list(adapter_names)} if adapter_names is not None else {}
    given = {cache_argument(model): cache} if cache is not None else {}
    # Only the last position's logits are needed: the vocabulary is 262k wide for the real models.
    prefill = model(**batch, **per_prompt, **given, use_cache=True, logits_to_keep=1)
    return prefill.logits[:, -1].float().log_softmax(-1).cpu(), returned_cache(prefill)


@torch.no_grad()
def continuation_logprobs(
    model: Any,
    batch: dict[str, Any],
    candidates: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
    *,
    prefill_batch: dict[str, Any] | None = None,
    adapter_names: Sequence[str] | None = None,
) -> list[list[list[float]]]:
    """The log-probability of every token of every candidate continuation of every prompt: one prefill
    of the left-padded prompts (`batch`; `prefill_batch`, the same inputs with precomputed attention
    masks, if given), then every (prompt, candidate) row continues from a copy of its prompt's cache in
    one more forward (in chunks of at most SCORING_CACHE_TOKENS cached tokens). `adapter_names`: one
    per prompt (peft's mixed-adapter batches)."""
    device = _device(model)
    per_prompt = {"adapter_names": list(adapter_names)} if adapter_names is not None else {}
    first, cache = prefill_prompts(model, prefill_batch or batch, adapter_names)
    cache_kwarg = cache_argument(model)
    scores = [[[float(first[e, tokens[0]])] for tokens in per_example] for e, per_example in enumerate(candidates)]
    tries = [_label_trie(per_example) for per_example in candidates]
    queries = max(len(trie[0]) for trie in tries)
    if not queries:
        return scores  # single-token candidates: the prefill alone scores them
    width = batch["input_ids"].shape[1]
    depths = torch.zeros((len(tries), queries), dtype=torch.long)
    for row, (_, _, row_depths, _) in enumerate(tries):
        depths[row, : len(row_depths)] = torch.tensor(row_depths, dtype=torch.long)
    masks = _tree_masks(model, cache, batch["attention_mask"], [trie[1] for trie in tries], depths.to(device))
    if masks is not None:
        # One row per prompt: every candidate's tokens as a trie after the prompt's own cache (no
        # copies), each node seeing its ancestors only, at the position it has in its candidates.
        ids = torch.full((len(tries), queries), pad_id, dtype=torch.long)
        for row, (row_tokens, _, _, _) in enumerate(tries):
            ids[row, : len(row_tokens)] = torch.tensor(row_tokens, dtype=torch.long)
        inputs: dict[str, Any] = {
            "input_ids": ids.to(device),
            "attention_mask": masks,
            "position_ids": (width + depths).to(device),
            cache_kwarg: cache,
            "use_cache": True,
            **per_prompt,
        }
        for key in batch:
            if key.endswith("token_type_ids"):
                inputs[key] = torch.zeros_like(inputs["input_ids"])  # label tokens are text
        logits = model(**inputs).logits
        for e, per_example in enumerate(candidates):
            node_of = tries[e][3]
            if not node_of:
                continue
            # Row by row in float32: never a float copy of the whole (rows x nodes x vocabulary) block.
            row_logits = logits[e, : len(node_of)].float()
            normaliser = row_logits.logsumexp(-1)
            for k, tokens in enumerate(per_example):
                if len(tokens) < 2:
                    continue
                nodes = torch.tensor([node_of[tuple(tokens[:end])] for end in range(1, len(tokens))])
                nodes = nodes.to(logits.device)
                targets = torch.tensor(tokens[1:], device=logits.device)
                picked = row_logits[nodes, targets] - normaliser[nodes]
                scores[e][k] += picked.tolist()
        del logits
        return scores
    rows = [
        (e, k) for e, per_example in enumerate(candidates) for k, tokens in enumerate(per_example) if len(tokens) > 1
    ]
    per_chunk = max(1, SCORING_CACHE_TOKENS // batch["input_ids"].shape[1])
    for start in range(0, len(rows), per_chunk):
        chunk = rows[start : start + per_chunk]
        # Each row continues its example's prompt: a copy of the cache, one row per (example, label).
        rows_cache = copy.deepcopy(cache) if start + per_chunk < len(rows) else cache
        rows_cache.batch_select_indices(torch.tensor([e for e, _ in chunk], device=device))
        width = max(len(candidates[e][k]) for e, k in chunk) - 1
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (e, k) in enumerate(chunk):
            tokens = candidates[e][k][:-1]  # the inputs: every label token but the last
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        prompt_mask = batch["attention_mask"][torch.tensor([e for e, _ in chunk], device=device)]
        inputs: dict[str, Any] = {
            "input_ids": ids.to(device),
            "attention_mask": torch.cat([prompt_mask, mask.to(device)], dim=1),
            cache_kwarg: rows_cache,
            "use_cache": True,
        }
        if adapter_names is not None:
            inputs["adapter_names"] = [adapter_names[e] for e, _ in chunk]
        for key in batch:
            if key.endswith("token_type_ids"):
                inputs[key] = torch.zeros_like(inputs["input_ids"])  # label tokens are text
        logits = model(**inputs).logits
        for row, (e, k) in enumerate(chunk):
            # Row by row in float32: never a float copy of the whole (rows x length x vocabulary) block.
            targets = torch.tensor(candidates[e][k][1:], device=logits.device)
            row_logits = logits[row, : len(targets)].float()
            picked = row_logits.gather(1, targets[:, None])[:, 0] - row_logits.logsumexp(-1)
            scores[e][k] += picked.tolist()
        del logits
    return scores


def _label_trie(
    per_example: Sequence[Sequence[int]],
) -> tuple[list[int], list[int], list[int], dict[tuple[int, ...], int]]:
    """The proper prefixes of one prompt's candidates as a trie, flattened: each node's token, its
    parent's index (-1 under the prompt) and its depth, and the node of each prefix. A node's logits
    give the next token of every candidate through it, so candidates sharing tokens share nodes."""
    tokens: list[int] = []
    parents: list[int] = []
    depths: list[int] = []
    node_of: dict[tuple[int, ...], int] = {}
    for candidate in per_example:
        for end in range(1, len(candidate)):
            prefix = tuple(candidate[:end])
            if prefix not in node_of:
                node_of[prefix] = len(tokens)
                tokens.append(prefix[-1])
                parents.append(node_of[prefix[:-1]] if end > 1 else -1)
                depths.append(end - 1)
    return tokens, parents, depths, node_of


def _tree_masks(
    model: Any, cache: Any, prompt_mask: torch.Tensor, parents: list[list[int]], depths: torch.Tensor
) -> dict[str, torch.Tensor] | None:
    """The attention masks of a trie pass after the cached prompts, per layer type (`full_attention`,
    `sliding_attention`), as transformers' sdpa/eager attention reads a precomputed mask: each node
    sees its prompt (within the sliding window, over the tokens a sliding layer keeps) and its own
    ancestors, never a sibling. None where the model's cache or attention is not of that kind."""
    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    implementation = getattr(model.config, "_attn_implementation", None)
    layers = getattr(cache, "layers", None)
    if (
        implementation not in ("sdpa", "eager")
        or not layers
        or any(getattr(layer, "keys", None) is None for layer in layers)
    ):
        return None
    batch, queries = depths.shape
    device = prompt_mask.device
    ancestry: dict[tuple[int, ...], torch.Tensor] = {}  # a batch's prompts mostly share one trie
    for row_parents in map(tuple, parents):
        if row_parents not in ancestry:
            # Padding nodes see themselves only: never a row with no key. Parents precede children.
            seen = torch.eye(queries, dtype=torch.bool)
            for node, parent in enumerate(row_parents):
                if parent >= 0:
                    seen[node] |= seen[parent]
            ancestry[row_parents] = seen
    tree = torch.stack([ancestry[tuple(row_parents)] for row_parents in parents]).to(device)
    masks: dict[str, torch.Tensor] = {}
    width = prompt_mask.shape[1]
    window = getattr(text, "sliding_window", None)
    for layer in layers:
        kind = "sliding_attention" if getattr(layer, "is_sliding", False) else "full_attention"
        if kind in masks:
            continue
        kept = layer.keys.shape[-2]
        if kind == "sliding_attention":
            if window is None or kept > width or depths.max().item() + 1 >= window:
                return None
            # The last `kept` prompt positions; a node at depth d (position width + d) sees those within
            # the window: position p with width + d - p < window.
            positions = torch.arange(width - kept, width, device=device)
            seen = (width + depths[:, :, None] - positions[None, None, :]) < window
            past = prompt_mask[:, None, width - kept :].bool() & seen
        else:
            if kept != width:
                return None
            past = prompt_mask[:, None, :].bool().expand(batch, queries, width)
        mask = torch.cat([past, tree], dim=2)[:, None]
        if implementation == "eager":  # an additive mask
            dtype = next(model.parameters()).dtype
            mask = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, torch.finfo(dtype).min)
        masks[kind] = mask
    masks.setdefault("sliding_attention", masks["full_attention"])
    masks.setdefault("full_attention", masks["sliding_attention"])
    return masks


@torch.no_grad()
def generate(
    model: Any, fmt: ChatFormat, examples: Sequence[Example], max_new_tokens: int = MAX_NEW_TOKENS
) -> list[str]:
    """Greedy answers of a batch of examples (left-padded prompts, stopping at the end-of-turn)."""
    from transformers import GenerationConfig

    prompts = [fmt.encode_prompt(prompt_and_answer(e)[0], _images(fmt, e)) for e in examples]
    batch = _to(left_pad(prompts, fmt.tokenizer.pad_token_id), _device(model))
    tokenizer = fmt.tokenizer
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(fmt.end_of_turn)],
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )
    output = model.generate(**batch, generation_config=config)
    new = output[:, batch["input_ids"].shape[1] :]
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def evaluate_classification(
    model: Any,
    fmt: ChatFormat,
    examples: Sequence[Example],
    labels: Sequence[str],
    *,
    with_generation: bool,
    batch_size: int = SCORING_BATCH,
) -> dict[str, Any]:
    model.eval()
    truth = [example.label or prompt_and_answer(example)[1] for example in examples]
    scored: list[str] = []
    for group in _batches(examples, batch_size):
        for scores in score_examples(model, fmt, group, labels):
            scored.append(labels[max(range(len(labels)), key=scores.__getitem__)])
    result: dict[str, Any] = {"label_scoring": classification_report(truth, scored, labels)}
    if with_generation:
        # A label answer is short: room for the longest label and a little chatter, not a paragraph.
        budget = max(len(fmt.raw_ids(label)) for label in labels) + 4
        answers = [a for group in _batches(examples, batch_size) for a in generate(model, fmt, group, budget)]
        mapped = [map_to_label(answer, labels) for answer in answers]
        result["generation"] = classification_report(truth, mapped, labels)
        result["generation"]["examples"] = [
            {"answer": a, "label": t} for a, t in list(zip(answers, truth, strict=True))[:20]
        ]
    return result


@torch.no_grad()
def evaluate_generation(
    model: Any, fmt: ChatFormat, examples: Sequence[Example], *, with_generation: bool, batch_size: int = SCORING_BATCH
) -> dict[str, Any]:
    """Teacher-forced loss and perplexity of the reference answers (as trained: answer tokens and
    end-of-turn), and the text metrics of greedy answers."""
    from runtune.training.chat import IGNORE_INDEX, FormatError
    from runtune.training.loop import answer_loss

    model.eval()
    encoded = []
    for example in examples:
        try:
            encoded.append(fmt.encode_for_training(example))
        except FormatError:
            continue  # no reference answer to score
    nll, tokens = 0.0, 0
    for group in _batches(encoded, batch_size):
        batch = _to(collate(list(group), fmt.tokenizer.pad_token_id), _device(model))
        tokens += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        nll += float(answer_loss(model, batch))
    result: dict[str, Any] = {"loss": nll / tokens if tokens else math.nan, "perplexity": perplexity(nll, tokens)}
    if with_generation:
        predictions = [a for group in _batches(examples, batch_size) for a in generate(model, fmt, group)]
        references = [prompt_and_answer(example)[1] for example in examples]
        result.update(generation_report(predictions, references))
    return result
