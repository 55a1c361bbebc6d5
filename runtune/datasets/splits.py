"""A seeded, stratified train/validation/test split that works on a stream.

The data cannot be shuffled whole (it is never held whole), so each example is placed as it
arrives: within its label (its stratum), it goes to the split furthest below its target share,
ties broken by a seeded random jitter. Every label's examples end up within one example of the
target shares, the first examples of a label go to train (a rare class is never test-only), and
the same input order and seed always give the same split.
"""

from __future__ import annotations

import random
from collections import defaultdict

from runtune.datasets.canonical import SPLITS


class StratifiedSplitter:
    def __init__(self, validation: float, test: float, seed: int) -> None:
        if validation + test >= 1:
            raise ValueError("validation + test must leave something to train on")
        self._targets = {"train": 1.0 - validation - test, "validation": validation, "test": test}
        self._rng = random.Random(seed)
        self._counts: dict[str | None, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))

    def assign(self, stratum: str | None) -> str:
        counts = self._counts[stratum]
        seen = sum(counts.values()) + 1
        # Jitter below one example's worth of share, so it only reorders near-ties.
        deficits = {
            split: target * seen - counts[split] + self._rng.uniform(0, 0.25) * target
            for split, target in self._targets.items()
            if target > 0
        }
        split = max(deficits, key=lambda name: deficits[name])
        counts[split] += 1
        return split
