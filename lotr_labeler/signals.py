"""Ctrl-C (SIGINT) and SIGTERM on a CLI command: stop within 2 s, as the README promises, then say
"interrupted" and exit 130 (SIGINT) or 143 (SIGTERM).

A command that runs a background job (``JobRun``: download, search, score, train) stops the way
the page's Cancel button stops it: the signal sets the job's cancel event, the work ends at its
next check (a download leaves the unfinished candidates accepted, training ends its run as
cancelled) and records its end state. Anything else (an import) gets a ``KeyboardInterrupt``
at once; what its batches committed is in its history event. Should the cooperative stop take
longer than ``GRACE_S`` (a call that never looks at the flag), the main thread is interrupted;
at ``HARD_S`` the process ends as a ``kill -9`` would, which the store is built to survive, after
marking the job cancelled. Threads still blocked in the network never hold the exit.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)

GRACE_S = 1.4  # cooperative stop (a training run ends its batch and cleans up), then KeyboardInterrupt
HARD_S = 1.8  # then the process ends: the whole stop stays under 2 s
SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: int | None = None
_cancels: list[threading.Event] = []
_last_words: list[Callable[[], None]] = []
_timers: list[threading.Timer] = []


def received() -> int | None:
    """The signal that interrupted this command, if one did."""
    return _received


def exit_code(signum: int) -> int:
    return 128 + signum


def message(signum: int) -> str:
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    return f"error: interrupted ({name}); what was done is kept, run the command again to resume."


@contextmanager
def cooperative(cancel: threading.Event, last_words: Callable[[], None] | None = None) -> Iterator[None]:
    """While inside, a signal sets ``cancel`` instead of raising; ``last_words`` runs before a hard exit."""
    _cancels.append(cancel)
    if last_words is not None:
        _last_words.append(last_words)
    if _received is not None:  # the signal came before the work started
        cancel.set()
    try:
        yield
    finally:
        _cancels.remove(cancel)
        if last_words is not None:
            _last_words.remove(last_words)


def _hard_exit(signum: int) -> None:
    for words in list(_last_words):
        try:
            words()
        except Exception as exc:  # the exit goes on: the next look marks the job failed instead
            log.warning("could not record the interrupted job (%s)", exc)
    try:
        print(message(signum), file=sys.stderr, flush=True)
        sys.stdout.flush()
    finally:
        os._exit(exit_code(signum))


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    first = _received is None
    _received = signum
    if not first:
        raise KeyboardInterrupt  # a second Ctrl-C (or the grace timer): stop now
    _start(HARD_S, _hard_exit, signum)
    if _cancels:
        for cancel in _cancels:
            cancel.set()
        _start(GRACE_S, _interrupt_main, signum)
        return
    raise KeyboardInterrupt


def _interrupt_main(signum: int) -> None:
    _thread.interrupt_main(signal.Signals(signum))  # runs our handler again in the main thread: KeyboardInterrupt there


def _start(delay: float, fn: Callable[[int], None], signum: int) -> None:
    timer = threading.Timer(delay, fn, args=(signum,))
    timer.daemon = True
    _timers.append(timer)
    timer.start()


@contextmanager
def handled() -> Iterator[None]:
    """Install the handlers for the span of one command (main thread only); restore them after."""
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in SIGNALS}
    _received = None
    for s in SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for timer in _timers:  # the command ended in time: no forced stop
            timer.cancel()
        _timers.clear()
        for s, old in before.items():
            signal.signal(s, old)
