"""One optimizer step of the recipe: forward and backward over a group of batches (gradient
accumulation), loss on the answer tokens only, clipping, optimizer and scheduler.

Two choices make it cheaper than a generic trainer's step:
- logits are computed only where a label is (`logits_to_keep`): a Gemma vocabulary is 262k wide, so
  the full `batch x length x vocab` float32 logits of a generic causal-LM loss are often the largest
  tensor of the step, and a classification answer is a handful of tokens;
- the loss is summed over the whole accumulation group's answer tokens and divided once, so every
  answer token weighs the same however the group's batches differ in length.

What the step minimises is its `Objective`: `SUPERVISED`, the answers' cross-entropy averaged over
their tokens, or DPO's loss on preference pairs averaged over the pairs (runtune/training/preference.py);
everything else (accumulation, clipping, data parallelism, the loop and its checkpoints) is shared.

Data-parallel (runtune/training/distributed.py): every rank is given the whole group, runs its share
of it, divides by the whole group's answer tokens and sums the gradients over the ranks once, after
its last micro-batch (no per-micro-batch synchronisation to skip): exactly one process's gradient.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch

from runtune.training.chat import IGNORE_INDEX, Encoded
from runtune.training.data import collate
from runtune.training.distributed import SINGLE, World


@dataclass
class StepStats:
    loss: float  # mean over what the objective averages (the group's answer tokens, or its pairs)
    grad_norm: float
    lr: float
    tokens: int  # non-padding tokens seen
    samples: int
    seconds: float
    # The objective's own figures, means like `loss`, before the update: `token_accuracy` (the share
    # of answer tokens the model's argmax got right), or DPO's rewards and reward accuracy.
    metrics: dict[str, float] = field(default_factory=dict)


class Objective(Protocol):
    """What a training step minimises, over batches of the items the data encoded."""

    # The figures `scores` sums (every rank sums the same list, even one without a micro-batch).
    metric_names: tuple[str, ...]

    def weight(self, items: Sequence[Any]) -> int:
        """What the loss of `items` is a sum over (answer tokens, pairs): the group's mean divides by it."""
        ...

    def scores(self, model: Any, items: Sequence[Any], device: Any) -> tuple[torch.Tensor, int, dict[str, float]]:
        """The summed loss of one micro-batch (with its graph), its non-padding tokens, and the sums of
        the figures `StepStats.metrics` reports."""
        ...


@dataclass(frozen=True)
class Supervised:
    """The answers' cross-entropy (the `supervised` method)."""

    pad_id: int
    pad_to_multiple_of: int = 8
    metric_names: ClassVar[tuple[str, ...]] = ("token_accuracy",)

    def weight(self, items: Sequence[Encoded]) -> int:
        return sum(sum(label != IGNORE_INDEX for label in e.labels) for e in items)

    def scores(self, model: Any, items: Sequence[Encoded], device: Any) -> tuple[torch.Tensor, int, dict[str, float]]:
        batch = {k: v.to(device) for k, v in collate(list(items), self.pad_id, self.pad_to_multiple_of).items()}
        tokens = int(batch["attention_mask"].sum())
        loss, hits = answer_scores(model, batch)
        return loss, tokens, {"token_accuracy": float(hits)}


def answer_loss(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """Summed cross-entropy of the next-token predictions at the positions whose target is labelled."""
    return answer_scores(model, batch)[0]


def answer_scores(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """`answer_loss` and how many labelled next tokens the model's argmax gets right (OpenAI's token
    accuracy), from the same logits."""
    labels = batch.pop("labels")
    targets = labels[:, 1:]
    # Positions (shared by the batch's rows) whose next token carries loss for at least one row.
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
    logits = model(**batch, logits_to_keep=keep).logits
    kept = targets[:, keep]
    loss = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), kept.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    correct = int(((logits.detach().argmax(dim=-1) == kept) & (kept != IGNORE_INDEX)).sum())
    return loss, correct


def train_step(
    model: Any,
    group: list[list[Encoded]],
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    pad_id: int,
    pad_to_multiple_of: int,
    max_grad_norm: float,
    world: World = SINGLE,
    accumulation: int = 1,
    objective: Objective | None = None,
) -> StepStats:
    """One optimizer step over `group`, a list of batches (the accumulation steps), minimising
    `objective` (the answers' cross-entropy unless given); under data parallelism this rank runs its
    share (`world.share`, by the plan's `accumulation`) and the gradients and statistics are summed
    over the ranks."""
    started = time.monotonic()
    objective = objective or Supervised(pad_id, pad_to_multiple_of)
    model.train()
    device = next(model.parameters()).device
    weight = max(sum(objective.weight(batch) for batch in group), 1)
    loss_sum, tokens = 0.0, 0
    sums: dict[str, float] = {}
    for items in world.share(group, accumulation):
        loss, seen, figures = objective.scores(model, items, device)
        (loss / weight).backward()
        loss_sum += float(loss.detach())
        tokens += seen
        for name, value in figures.items():
            sums[name] = sums.get(name, 0.0) + value
    trainable = [p for p in model.parameters() if p.requires_grad]
    world.sum_gradients(trainable)
    names = objective.metric_names
    loss_sum, summed_tokens, *summed = world.sum([loss_sum, tokens, *(sums.get(name, 0.0) for name in names)])
    tokens = int(summed_tokens)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm))
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return StepStats(
        loss=loss_sum / weight,
        grad_norm=grad_norm,
        lr=lr,
        tokens=tokens,
        samples=sum(len(items) for items in group),
        seconds=time.monotonic() - started,
        metrics={name: value / weight for name, value in zip(names, summed, strict=True)},
    )
