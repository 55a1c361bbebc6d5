"""Direct Preference Optimization (Rafailov et al., 2023), the `dpo` method: the sigmoid loss on
preference pairs, its rewards, and the evaluation of held-out pairs.

A pair's score under a model is the sum of the log-probabilities of its answer's tokens (the labelled
tokens, exactly those the supervised loss trains: the prompt is context only). With the policy's and
the reference's scores of the chosen (c) and rejected (r) chats, the implicit rewards are
`beta * (policy - reference)` of each, and the loss is `-log sigmoid(reward_c - reward_r)`.

The reference is the model the job starts from, under no_grad: for a new adapter the same weights with
the adapter switched off (`model.disable_adapter()`), for a job that continues an `ft:` model its
parent's adapter, loaded a second time frozen (`parent_adapter`; runtune/training/model.py): no
second copy of the weights either way. A new adapter starts at zero (LoRA's B matrices) and a
continued one as the parent's, so at step 0 the policy is the reference, every reward is 0 and the
loss is log 2. Both chats of a batch's
pairs go through the model as one batch (chosen rows, then rejected rows), once with the adapter and
once without.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from runtune.training.chat import IGNORE_INDEX
from runtune.training.data import EncodedPair, collate_pairs
from runtune.training.model import REFERENCE_ADAPTER

# What a step's metrics event carries besides the loss (means over the step's pairs), and what an
# evaluation of held-out pairs reports.
METRICS = ("reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward")
EVAL_BATCH = 8

Reference = Callable[[Any], AbstractContextManager[Any]]


def adapter_disabled(model: Any) -> AbstractContextManager[Any]:
    """The reference model: the trained model with its adapter off (peft's `disable_adapter`)."""
    return model.disable_adapter()


@contextmanager
def parent_adapter(model: Any) -> Iterator[None]:
    """The reference model of a continued job: its frozen copy of the parent's adapter active, without
    dropout; then the trained adapter again (peft's `set_adapter` also leaves it the trainable one)."""
    was_training = model.training
    model.eval()
    model.set_adapter(REFERENCE_ADAPTER, inference_mode=True)
    try:
        yield
    finally:
        model.set_adapter("default")
        model.train(was_training)


def sequence_logps(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """Per row, the summed log-probability of its labelled next tokens (its answer)."""
    targets = batch["labels"][:, 1:]
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    # Logits only where some row has an answer token next (Gemma's vocabulary is 262k wide).
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
    logits = model(**inputs, logits_to_keep=keep).logits.float()
    kept = targets[:, keep]
    mask = kept != IGNORE_INDEX
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, kept.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_logps * mask).sum(dim=-1)


@dataclass(frozen=True)
class PairScores:
    losses: torch.Tensor  # one a pair, with the policy's graph
    chosen_rewards: torch.Tensor  # detached
    rejected_rewards: torch.Tensor


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> PairScores:
    """The sigmoid DPO loss of each pair and the implicit rewards."""
    chosen = beta * (policy_chosen - reference_chosen)
    rejected = beta * (policy_rejected - reference_rejected)
    losses = -torch.nn.functional.logsigmoid(chosen - rejected)
    return PairScores(losses, chosen.detach(), rejected.detach())


def reward_sums(scores: PairScores) -> dict[str, float]:
    """The sums of `METRICS` over the pairs (divided by the pairs later). A tie (no preference, as at
    the start, when policy and reference are one model) counts as half right: chance."""
    margin = scores.chosen_rewards - scores.rejected_rewards
    right = (margin > 0).float() + 0.5 * (margin == 0).float()
    return {
        "reward_accuracy": float(right.sum()),
        "reward_margin": float(margin.sum()),
        "chosen_reward": float(scores.chosen_rewards.sum()),
        "rejected_reward": float(scores.rejected_rewards.sum()),
    }


def pair_scores(
    model: Any,
    pairs: Sequence[EncodedPair],
    device: Any,
    *,
    beta: float,
    pad_id: int,
    pad_to_multiple_of: int,
    reference: Reference,
) -> tuple[PairScores, int]:
    """The DPO scores of one batch of pairs, and its non-padding tokens."""
    batch = {k: v.to(device) for k, v in collate_pairs(list(pairs), pad_id, pad_to_multiple_of).items()}
    with torch.no_grad(), reference(model):
        reference_logps = sequence_logps(model, batch)
    policy_logps = sequence_logps(model, batch)
    n = len(pairs)
    scores = dpo_loss(policy_logps[:n], policy_logps[n:], reference_logps[:n], reference_logps[n:], beta)
    return scores, int(batch["attention_mask"].sum())


@dataclass(frozen=True)
class Dpo:
    """The `dpo` method's objective for `loop.train_step`: the loss averaged over the group's pairs."""

    beta: float
    pad_id: int
    pad_to_multiple_of: int = 8
    reference: Reference = adapter_disabled
    metric_names: ClassVar[tuple[str, ...]] = METRICS

    def weight(self, items: Sequence[EncodedPair]) -> int:
        return len(items)

    def scores(
        self, model: Any, items: Sequence[EncodedPair], device: Any
    ) -> tuple[torch.Tensor, int, dict[str, float]]:
        scores, tokens = pair_scores(
            model,
            items,
            device,
            beta=self.beta,
            pad_id=self.pad_id,
            pad_to_multiple_of=self.pad_to_multiple_of,
            reference=self.reference,
        )
        return scores.losses.sum(), tokens, reward_sums(scores)


@torch.no_grad()
def evaluate_pairs(model: Any, pairs: Sequence[EncodedPair], objective: Dpo) -> dict[str, Any]:
    """The DPO loss and `METRICS` of held-out pairs (means), as the model stands, without dropout."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, sums = 0.0, dict.fromkeys(METRICS, 0.0)
    try:
        for start in range(0, len(pairs), EVAL_BATCH):
            loss, _, figures = objective.scores(model, pairs[start : start + EVAL_BATCH], device)
            loss_sum += float(loss)
            for name, value in figures.items():
                sums[name] += value
    finally:
        model.train(was_training)
    count = max(len(pairs), 1)
    return {"samples": len(pairs), "loss": loss_sum / count, **{name: value / count for name, value in sums.items()}}
