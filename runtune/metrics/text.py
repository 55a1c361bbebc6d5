"""Generation metrics: exact match, token F1 (SQuAD-style), ROUGE-L (LCS F-measure), perplexity."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from runtune.metrics.classification import normalise


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised texts are equal, else 0.0."""
    return float(normalise(prediction) == normalise(reference))


def token_f1(prediction: str, reference: str) -> float:
    """F1 of the normalised words in common (bag of words), as SQuAD scores answers."""
    predicted, expected = normalise(prediction).split(), normalise(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure: the longest common subsequence of normalised words."""
    predicted, expected = normalise(prediction).split(), normalise(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    lcs = _lcs(predicted, expected)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(predicted), lcs / len(expected)
    return 2 * precision * recall / (precision + recall)


def perplexity(total_nll: float, tokens: int) -> float:
    """exp(mean negative log-likelihood per token); NaN without tokens."""
    return math.exp(total_nll / tokens) if tokens else float("nan")


def generation_report(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Means of exact match, token F1 and ROUGE-L over the pairs, and `samples`."""
    n = len(predictions)
    if n == 0:
        return {"exact_match": 0.0, "token_f1": 0.0, "rouge_l": 0.0, "samples": 0}
    pairs = list(zip(predictions, references, strict=True))
    return {
        "exact_match": sum(exact_match(p, r) for p, r in pairs) / n,
        "token_f1": sum(token_f1(p, r) for p, r in pairs) / n,
        "rouge_l": sum(rouge_l(p, r) for p, r in pairs) / n,
        "samples": n,
    }
