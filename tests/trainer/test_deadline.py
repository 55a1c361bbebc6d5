"""The checkpoint before the task's deadline: due once, when the time left would not hold another
step, a checkpoint (as long as the last one took) and the margin."""

from __future__ import annotations

from runtune.training.deadline import DEADLINE_ENV, Deadline


def test_no_deadline_variable_means_no_deadline_checkpoint() -> None:
    for environ in ({}, {DEADLINE_ENV: ""}, {DEADLINE_ENV: "soon"}, {DEADLINE_ENV: "0"}):
        assert not Deadline.from_env(0.0, environ).checkpoint_due(1.0, now=1e9)


def test_due_once_when_the_time_left_gets_short() -> None:
    deadline = Deadline.from_env(100.0, {DEADLINE_ENV: "3600"})  # ends at 3700
    deadline.checkpointed(30.0)  # a checkpoint takes 30 s; margin 60 s; a step 10 s: due below 100 s left
    assert not deadline.checkpoint_due(10.0, now=3599.0)
    assert deadline.checkpoint_due(10.0, now=3601.0)
    assert not deadline.checkpoint_due(10.0, now=3650.0)  # taken already: not one per step till the end


def test_a_slow_checkpoint_moves_the_deadline_checkpoint_earlier() -> None:
    deadline = Deadline.from_env(0.0, {DEADLINE_ENV: "1000"})
    deadline.checkpointed(300.0)
    assert deadline.checkpoint_due(10.0, now=631.0)
