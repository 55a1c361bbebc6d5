"""Task queue port: one HTTP call per task, made by the queue, retried by it until it succeeds."""

from __future__ import annotations

from typing import Any, Protocol


class TaskQueue(Protocol):
    def enqueue(self, name: str, body: dict[str, Any]) -> None:
        """Add a task the queue POSTs (as JSON) to its target. `name` is unique per task: a second
        enqueue of the same name is a no-op where the backend de-duplicates (Cloud Tasks does)."""
