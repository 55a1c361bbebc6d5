"""The task's deadline: Cloud Run kills a task at its timeout and the retry resumes from the newest
checkpoint, so one is taken just before the deadline instead of losing the work since the last one.

Cloud Run exposes no variable carrying the task timeout, so the launcher passes it in the job's
non-secret environment as `RUNTUNE_TASK_DEADLINE_S` (the task timeout in seconds, counted from the
task's start). Absent or not a positive number: no deadline (local runs)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from runtune.ports.launcher import DEADLINE_ENV

# Time kept beyond the estimated checkpoint: the document write, the stop signal's grace, jitter.
MARGIN_S = 60.0
# Before the first checkpoint is timed, saving one is assumed to take this long.
FIRST_CHECKPOINT_GUESS_S = 60.0


@dataclass
class Deadline:
    """When the task ends (monotonic seconds) and how long a checkpoint was seen to take."""

    ends_at: float | None
    margin_s: float = MARGIN_S
    checkpoint_s: float = FIRST_CHECKPOINT_GUESS_S
    saved_for_deadline: bool = field(default=False)

    @classmethod
    def from_env(cls, started: float, environ: dict[str, str] | None = None) -> Deadline:
        raw = (environ if environ is not None else os.environ).get(DEADLINE_ENV, "")
        try:
            seconds = float(raw)
        except ValueError:
            return cls(None)
        return cls(started + seconds if seconds > 0 else None)

    def checkpointed(self, seconds: float) -> None:
        """Record how long a checkpoint took: the next estimate."""
        self.checkpoint_s = max(seconds, 0.0)

    def checkpoint_due(self, step_s: float, now: float | None = None) -> bool:
        """True once (per task) when the time left would no longer hold another step, a checkpoint and
        the margin: the checkpoint must be taken now."""
        if self.ends_at is None or self.saved_for_deadline:
            return False
        left = self.ends_at - (time.monotonic() if now is None else now)
        if left < step_s + self.checkpoint_s + self.margin_s:
            self.saved_for_deadline = True
            return True
        return False
