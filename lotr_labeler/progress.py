"""The one progress protocol and the one cancel protocol of every long piece of work.

A stage reports where it is by calling ``report(progress)`` with a ``Progress`` record: this base
record, or the stage's own subclass adding what its page and CLI show (``SearchProgress``,
``DownloadProgress``, ``ScoreProgress``, ``TrainProgress``, ...). Every consumer reads ``done``,
``total`` and ``message`` whatever the subclass (the CLI bar, the job's progress row, a page's
bar), so a new stage needs no new consumer.

A stage stops early when its ``cancel`` is set: a ``threading.Event`` (the job's cancel watcher,
Ctrl-C through ``signals``, a page's Stop) or anything with ``is_set()``. Work that blocks waits on
``cancel.wait(timeout)`` where it can, so a stop is seen within the wait, not after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class Progress:
    """Where a piece of work is: ``done`` of ``total`` steps (files, queries, batches), and one line
    for people. Stages extend it with their own fields (keyword-only, so the order never matters)."""

    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        """Share done, 0 to 1 (0 while the total is unknown)."""
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


Report = Callable[[Progress], None]
"""The one progress callback type: a stage calls it with its ``Progress`` (or subclass) record."""


class Cancel(Protocol):
    """What a stage needs of a stop request; ``threading.Event`` is the implementation everywhere."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def stopped(cancel: Cancel | None) -> bool:
    """True when ``cancel`` is given and set."""
    return cancel is not None and cancel.is_set()


def pause(cancel: Cancel | None, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``cancel`` is set meanwhile; True when it was (stop now)."""
    if cancel is None:
        threading.Event().wait(seconds)
        return False
    return cancel.wait(seconds)
