"""The trainer's stop: SIGTERM/SIGINT received off the main thread, turned into `Stopped` at the
training loop's safe points, and a watchdog that ends the attempt itself when the main thread does
not get there in time. Kept free of torch, so its tests start in a blink."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

log = logging.getLogger("runtune.trainer")


class Stopped(BaseException):
    """SIGTERM (or SIGINT) arrived: Cloud Run stops a task this way at its timeout, at maintenance, and
    when the jobs API cancels the execution. Raised at the trainer's safe points (`StopSignals.check`),
    never asynchronously. A BaseException, so no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """SIGTERM/SIGINT, received by a thread of their own, so the stop never waits for the main thread.

    Python runs a signal's handler in the main thread only, between two bytecodes: while the main
    thread is inside a long C call (a torch op, a model load, a blocking Firestore read) the handler
    itself waits, and anything it would start waits with it. So no handler does the work here: the
    interpreter's C-level handler writes the signal's number to a pipe (`signal.set_wakeup_fd`) in
    whichever thread the kernel interrupts, and the `stop-listener` thread, blocked reading that
    pipe, wakes at once. It sets `signum`, which the main thread turns into `Stopped` at its next safe
    point (`check`, after each step and between phases), and it arms a watchdog: if the attempt has
    not ended `grace_s` after the signal, the watchdog records the stop itself (`record`, at most
    `record_s`) and ends the process with `os._exit` (Cloud Run kills it 10 s after SIGTERM).

    `Stopped` is never raised asynchronously (as a handler raising it would): an exception landing
    inside gRPC's channel code or between a lock's acquire and its `try` leaves the client or the
    lock broken, and the stop's own writes (the cancel, the message) would then hang on them."""

    def __init__(self, grace_s: float = 5.0, record_s: float = 3.0) -> None:
        self.signum: int | None = None
        self.grace_s, self.record_s = grace_s, record_s
        self.recorder: Callable[[Stopped], int] | None = None  # set by `run`: records the stop, says the exit
        self._recording = threading.Lock()  # the main thread and the watchdog never both record
        self._exit_code: int | None = None

    def install(self) -> None:
        """From the main thread, before anything long starts."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # the C handler must never block on a full pipe
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT):
            # A Python-level handler is what makes the interpreter catch the signal (and write it to
            # the pipe); it does nothing itself, the listener does.
            signal.signal(signum, _ignore_signal)
        threading.Thread(target=self._listen, args=(read_fd,), name="stop-listener", daemon=True).start()

    def _listen(self, read_fd: int) -> None:
        while True:
            received = os.read(read_fd, 64)
            stop = next((n for n in received if n in (signal.SIGTERM, signal.SIGINT)), None)
            if stop is not None:
                self.signum = stop
                # Its own thread, and every log line after it: a write to a stalled stdout must not
                # hold back the exit.
                threading.Thread(target=self._watchdog, args=(stop,), name="stop-watchdog", daemon=True).start()
                log.warning("stop signal received", extra={"signal": signal.Signals(stop).name})
                return

    def _watchdog(self, signum: int) -> None:
        time.sleep(self.grace_s)

        def record() -> None:
            main = sys._current_frames().get(threading.main_thread().ident or 0)
            log.warning(
                f"still running {self.grace_s:g}s after {signal.Signals(signum).name}; the watchdog ends the attempt",
                extra={"main_thread_at": "".join(traceback.format_stack(main, limit=4)) if main else "?"},
            )
            self.record(Stopped(signum))

        recording = threading.Thread(target=record, name="stop-record", daemon=True)
        recording.start()
        recording.join(self.record_s)  # a write that hangs must not outlive the grace
        # What the record said (the watchdog's or the main thread's), if one finished in time.
        os._exit(self._exit_code if self._exit_code is not None else 128 + signum)

    def record(self, stopped: Stopped) -> int:
        """Record the stop once (the main thread at a safe point, or the watchdog) and return the exit
        status: what `recorder` says, 128 + the signal's number without one or when it fails."""
        with self._recording:
            if self._exit_code is None:
                code = 128 + stopped.signum
                if self.recorder is not None:
                    try:
                        code = self.recorder(stopped)
                    except Exception:
                        log.exception("could not record the stop")
                self._exit_code = code
            return self._exit_code

    def check(self) -> None:
        """A safe point: raise `Stopped` if a stop signal came."""
        if self.signum is not None:
            raise Stopped(self.signum)


def _ignore_signal(_signum: int, _frame: Any) -> None:
    """See `StopSignals.install`."""
