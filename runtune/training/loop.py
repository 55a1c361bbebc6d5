"""One optimizer step of the recipe: forward and backward over a group of batches (gradient
accumulation), loss on the answer tokens only, clipping, optimizer and scheduler.

Two choices make it cheaper than a generic trainer's step:
- logits are computed only where a label is (`logits_to_keep`): a Gemma vocabulary is 262k wide, so
  the full `batch x length x vocab` float32 logits of a generic causal-LM loss are often the largest
  tensor of the step, and a classification answer is a handful of tokens;
- the loss is summed over the whole accumulation group's answer tokens and divided once, so every
  answer token weighs the same however the group's batches differ in length.

Data-parallel (runtune/training/distributed.py): every rank is given the whole group, runs its share
of it, divides by the whole group's answer tokens and sums the gradients over the ranks once, after
its last micro-batch (no per-micro-batch synchronisation to skip): exactly one process's gradient.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from runtune.training.chat import IGNORE_INDEX, Encoded
from runtune.training.data import collate
from runtune.training.distributed import SINGLE, World


@dataclass
class StepStats:
    loss: float  # mean over the group's answer tokens
    token_accuracy: float  # the share of answer tokens the model predicted right (argmax), before the update
    grad_norm: float
    lr: float
    tokens: int  # non-padding tokens seen
    samples: int
    seconds: float


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
) -> StepStats:
    """One optimizer step over `group`, a list of batches (the accumulation steps); under data
    parallelism this rank runs its share (`world.share`, by the plan's `accumulation`) and the
    gradients and statistics are summed over the ranks."""
    started = time.monotonic()
    model.train()
    device = next(model.parameters()).device
    answer_tokens = sum(sum(label != IGNORE_INDEX for label in e.labels) for batch in group for e in batch)
    loss_sum, tokens, correct = 0.0, 0, 0
    for items in world.share(group, accumulation):
        batch = {k: v.to(device) for k, v in collate(items, pad_id, pad_to_multiple_of).items()}
        tokens += int(batch["attention_mask"].sum())
        loss, hits = answer_scores(model, batch)
        (loss / max(answer_tokens, 1)).backward()
        loss_sum += float(loss.detach())
        correct += hits
    trainable = [p for p in model.parameters() if p.requires_grad]
    world.sum_gradients(trainable)
    loss_sum, summed_tokens, summed_correct = world.sum([loss_sum, tokens, correct])
    tokens, correct = int(summed_tokens), int(summed_correct)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm))
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return StepStats(
        loss=loss_sum / max(answer_tokens, 1),
        token_accuracy=correct / max(answer_tokens, 1),
        grad_norm=grad_norm,
        lr=lr,
        tokens=tokens,
        samples=sum(len(items) for items in group),
        seconds=time.monotonic() - started,
    )
