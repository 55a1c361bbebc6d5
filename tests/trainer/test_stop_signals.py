"""The trainer's stop path (jobs.trainer.stop) in a child process of its own: SIGTERM
ends the process whatever its main thread is doing, the stop is recorded exactly once, and a record
that hangs does not keep the process alive. Each child exits only through the path under test (its
main thread never returns by itself), so a pass does not depend on how fast the machine is."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

CHILD = """
import os, sys, threading, time
from pathlib import Path
from jobs.trainer.stop import Stopped, StopSignals

marks = Path(sys.argv[1])
signals = StopSignals(grace_s={grace_s}, record_s=0.5)

def recorder(stopped):
    with marks.open("a") as out:
        out.write(f"recorded {{stopped.signum}} in {{threading.current_thread().name}}\\n")
    {record_body}

signals.recorder = recorder
signals.install()
marks.with_suffix(".ready").write_text("ready")
{main_body}
"""

# The main thread blocked for good, never at a safe point (a long C call, a hung read).
BLOCKED = "threading.Event().wait()"
# The main thread at its safe points, as the training loop is.
AT_SAFE_POINTS = """
try:
    while True:
        signals.check()
        time.sleep(0.01)
except Stopped as stopped:
    code = signals.record(stopped)
    os._exit(code)
"""


def _child(tmp_path: Path, *, main_body: str, record_body: str = "return 0", grace_s: float = 0.2) -> tuple[int, str]:
    script = CHILD.format(grace_s=grace_s, record_body=record_body, main_body=textwrap.dedent(main_body))
    marks = tmp_path / "marks.txt"
    child = subprocess.Popen([sys.executable, "-c", script, str(marks)], cwd=Path(__file__).parents[2])
    try:
        ready = marks.with_suffix(".ready")
        while not ready.exists():
            assert child.poll() is None, "the child ended before it was ready"
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=120)
    finally:
        child.kill()
    return code, marks.read_text() if marks.exists() else ""


def test_a_blocked_main_thread_is_ended_by_the_watchdog_with_the_stop_recorded(tmp_path: Path) -> None:
    code, marks = _child(tmp_path, main_body=BLOCKED, record_body="return 128 + stopped.signum")
    assert code == 128 + signal.SIGTERM
    assert marks == f"recorded {int(signal.SIGTERM)} in stop-record\n"


def test_a_cancel_recorded_by_the_watchdog_exits_with_what_the_record_says(tmp_path: Path) -> None:
    code, marks = _child(tmp_path, main_body=BLOCKED, record_body="return 0")
    assert code == 0 and marks.count("recorded") == 1


def test_a_record_that_hangs_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    code, marks = _child(tmp_path, main_body=BLOCKED, record_body="threading.Event().wait()")
    assert code == 128 + signal.SIGTERM and marks.count("recorded") == 1


@pytest.mark.parametrize("record_body", ["return 0", "return 128 + stopped.signum"])
def test_the_main_thread_at_a_safe_point_records_the_stop_once(tmp_path: Path, record_body: str) -> None:
    # The watchdog's grace is far away: the main thread's own record is what ends the process.
    code, marks = _child(tmp_path, main_body=AT_SAFE_POINTS, record_body=record_body, grace_s=600)
    assert code == (0 if record_body == "return 0" else 128 + signal.SIGTERM)
    assert marks == f"recorded {int(signal.SIGTERM)} in MainThread\n"
