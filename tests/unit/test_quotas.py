"""The quota module's pure parts: whose turn an ingestion slot is, the GPU-hour sum, stream slots."""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime

import pytest

from runtune.errors import RateLimited
from runtune.quotas import StreamSlots, fair_turns, gpu_hours_this_month, month_start
from runtune.schemas.common import OwnedResource


def item(owner: str, n: int) -> OwnedResource:
    return OwnedResource(id=f"{owner}{n}", owner=owner, created_at=n)


def test_each_turn_goes_to_the_owner_with_the_fewest_running_then_the_longest_waiting() -> None:
    waiting = [item("a", 1), item("a", 2), item("a", 3), item("b", 4), item("c", 5)]
    # Nothing running: one of each owner, oldest first, before anyone's second.
    assert [i.id for i in fair_turns(waiting, [], 4, lambda i: i.created_at)] == ["a1", "b4", "c5", "a2"]
    # `a` already runs two: the others come first however long a's queue has waited.
    running = [item("a", 0), item("a", 0)]
    assert [i.id for i in fair_turns(waiting, running, 2, lambda i: i.created_at)] == ["b4", "c5"]
    assert fair_turns(waiting, running, 0, lambda i: i.created_at) == []


def test_the_month_sum_counts_estimates_of_jobs_that_launched() -> None:
    jobs = [
        {"status": "succeeded", "execution_name": "x", "estimated_gpu_seconds": 3600},
        {"status": "queued", "execution_name": None, "estimated_gpu_seconds": 1800},
        # Failed or cancelled before a trainer started: no GPU was used.
        {"status": "failed", "execution_name": None, "estimated_gpu_seconds": 7200},
        {"status": "cancelled", "execution_name": None, "estimated_gpu_seconds": 7200},
        {"status": "validating_files", "execution_name": None, "estimated_gpu_seconds": None},
    ]
    assert gpu_hours_this_month(jobs) == 1.5
    assert month_start(datetime(2026, 3, 17, 8, 30, tzinfo=UTC)) == int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())


async def _chunks():
    yield b"a"
    yield b"b"


def test_a_stream_slot_is_held_while_the_stream_lives_and_freed_however_it_ends() -> None:
    slots = StreamSlots(1)

    async def scenario() -> None:
        held = slots.hold("u", _chunks())
        with pytest.raises(RateLimited) as refused:
            slots.hold("u", _chunks())
        assert refused.value.param == "quota_open_streams" and "quota_open_streams = 1" in refused.value.message
        slots.hold("v", _chunks())  # another user's slots are their own (dropped unread below)
        assert [chunk async for chunk in held] == [b"a", b"b"]
        assert slots.open_count("u") == 0  # ended: freed
        never_read = slots.hold("u", _chunks())
        del never_read  # a response dropped before its body was read
        gc.collect()
        assert slots.open_count("u") == 0 and slots.open_count("v") == 0
        slots.check("u")

    asyncio.run(scenario())
