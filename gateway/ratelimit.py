"""Per-user token buckets (per gateway instance; Cloud Run's max instances bound the total)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict


class RateLimiter:
    def __init__(self, per_minute: int, burst: int, *, max_users: int = 100_000) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_users = max_users

    def acquire(self, key: str, now: float | None = None) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._buckets.move_to_end(key)
            self._evict()
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self._rate

    def _evict(self) -> None:
        # A full bucket carries no state, so forgetting the oldest users is safe.
        while len(self._buckets) > self._max_users:
            self._buckets.popitem(last=False)


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
