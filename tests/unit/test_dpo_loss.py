"""The DPO loss (runtune/training/preference.py) on numbers worked by hand: the sigmoid loss and the
implicit rewards, a tie counting as chance, the answer tokens alone scored, and a batch's chosen and
rejected rows paired in order."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from runtune.training.chat import IGNORE_INDEX, Encoded
from runtune.training.data import EncodedPair, collate_pairs
from runtune.training.preference import dpo_loss, reward_sums, sequence_logps


def test_the_sigmoid_loss_and_rewards_match_the_hand_computed_values() -> None:
    # Pair 1: the policy raised the chosen answer by 1 nat and lowered the rejected by 1 (beta 0.5):
    # rewards +0.5 and -0.5, margin 1, loss -log(sigmoid(1)) = log(1 + e^-1).
    # Pair 2: the policy moved the wrong way: rewards -1 and +0.5, margin -1.5, loss log(1 + e^1.5).
    scores = dpo_loss(
        policy_chosen=torch.tensor([-1.0, -6.0]),
        policy_rejected=torch.tensor([-3.0, -3.0]),
        reference_chosen=torch.tensor([-2.0, -4.0]),
        reference_rejected=torch.tensor([-2.0, -4.0]),
        beta=0.5,
    )
    assert scores.chosen_rewards.tolist() == [0.5, -1.0]
    assert scores.rejected_rewards.tolist() == [-0.5, 0.5]
    assert scores.losses.tolist() == pytest.approx([math.log(1 + math.exp(-1)), math.log(1 + math.exp(1.5))])
    sums = reward_sums(scores)
    assert sums == pytest.approx(
        {"reward_accuracy": 1.0, "reward_margin": 1.0 - 1.5, "chosen_reward": -0.5, "rejected_reward": 0.0}
    )


def test_at_the_start_policy_and_reference_agree_so_the_loss_is_log_2_and_accuracy_chance() -> None:
    same = torch.tensor([-2.0, -5.0, -1.0])
    scores = dpo_loss(same, same - 1, same, same - 1, beta=0.1)
    assert scores.losses.tolist() == pytest.approx([math.log(2)] * 3)
    assert reward_sums(scores)["reward_accuracy"] == 1.5  # three ties, each half right


def test_beta_scales_the_rewards_not_which_answer_wins() -> None:
    args = (torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]))
    small, large = dpo_loss(*args, beta=0.1), dpo_loss(*args, beta=1.0)
    assert float(large.chosen_rewards) == pytest.approx(10 * float(small.chosen_rewards))
    assert float(large.losses) < float(small.losses)  # the same right preference, more confidently
    assert float(small.losses) == pytest.approx(math.log(1 + math.exp(-0.2)))


class FixedLogits(torch.nn.Module):
    """A stand-in causal LM whose next-token distribution is the same everywhere:
    probabilities 1/4, 1/2, 1/4 over a 3-token vocabulary."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.log(torch.tensor([0.25, 0.5, 0.25])))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: torch.Tensor
    ) -> SimpleNamespace:
        rows = input_ids.shape[0]
        return SimpleNamespace(logits=self.logits.expand(rows, len(logits_to_keep), 3))


def test_only_the_answer_tokens_are_scored() -> None:
    # Prompt tokens 0 0, answer tokens 1 2 (labelled): log(1/2) + log(1/4); the prompt adds nothing.
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 1, 2], [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 1]])
    batch = {"input_ids": torch.zeros((2, 4), dtype=torch.long), "attention_mask": torch.ones(2, 4), "labels": labels}
    logps = sequence_logps(FixedLogits(), batch)
    assert logps.tolist() == pytest.approx([math.log(0.5) + math.log(0.25), math.log(0.5)])
    assert "labels" in batch  # the caller's batch is left as it was (the reference pass reads it too)


def test_a_batch_of_pairs_puts_the_chosen_rows_first_then_the_rejected_in_the_same_order() -> None:
    def encoded(ids: list[int]) -> Encoded:
        return Encoded(input_ids=ids, labels=[IGNORE_INDEX, *ids[1:]], extras={})

    pairs = [EncodedPair(encoded([5, 1]), encoded([5, 2, 2])), EncodedPair(encoded([6, 1, 1, 1]), encoded([6, 2]))]
    batch = collate_pairs(pairs, pad_id=0, multiple=4)
    assert batch["input_ids"].tolist() == [[5, 1, 0, 0], [6, 1, 1, 1], [5, 2, 2, 0], [6, 2, 0, 0]]
    assert len(pairs[0]) == 3 and len(pairs[1]) == 4  # a pair is as long as its longer chat
