"""The worker side of a background job: one ``JobRun`` per command run.

The page starts ``python -m lotr_labeler … <command> --job ID`` (a job spec's ``launch``);
the command wraps its work in ``JobRun``, which takes the row over (or registers a CLI run
as a job), writes throttled progress, turns a cancel request into an Event and always
records an end state. The table and liveness live in ``jobs.table``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import asdict, is_dataclass
from typing import Any

from lotr_labeler import signals as interrupt
from lotr_labeler.explain import explain
from lotr_labeler.jobs import table
from lotr_labeler.jobs.table import attach, finish
from lotr_labeler.store import Store


def _as_dict(progress: Any) -> dict[str, Any]:
    """A progress dataclass (or a plain dict) as the JSON object stored on the row."""
    if is_dataclass(progress) and not isinstance(progress, type):
        return asdict(progress)
    return dict(progress)


class Reporter:
    """Worker-side progress writer, throttled so the DB sees a few writes a second at most."""

    def __init__(self, store: Store, job_id: int, interval_s: float = 0.3) -> None:
        self.store = store
        self.job_id = job_id
        self.interval_s = interval_s
        self._last_write = 0.0

    def update(self, progress: Any, message: str, *, force: bool = False) -> None:
        """Store ``progress`` (a progress dataclass or a dict) unless a write was just made."""
        t = time.monotonic()
        if not force and t - self._last_write < self.interval_s:
            return
        self._last_write = t
        table.write_progress(self.store, self.job_id, _as_dict(progress), message)

    def finish(self, state: str, message: str, result: dict[str, Any] | None = None) -> None:
        finish(self.store, self.job_id, state, message, result)

    def watch_cancel(self, event: threading.Event, interval_s: float = 0.3) -> threading.Event:
        """Set ``event`` when a cancel is requested, polled by a thread of its own: the work may
        sit in a blocking call with no progress to report. Returns the event that stops the watcher."""
        stop = threading.Event()
        db = self.store.root / "project.sqlite"

        def watch() -> None:
            conn = sqlite3.connect(db, timeout=10)  # sqlite connections stay in their thread
            try:
                while not stop.wait(interval_s):
                    if table.cancel_requested(conn, self.job_id):
                        event.set()
                        return
            finally:
                conn.close()

        threading.Thread(target=watch, name=f"cancel-watch-{self.job_id}", daemon=True).start()
        return stop


class JobRun:
    """The worker side of a job for the span of one command.

    Registers (or takes over) the job row, writes throttled progress, turns a cancel request
    into ``cancel`` (an Event, set by a watcher thread even while the work blocks), and always
    records an end state: what ``finish`` said, else ``failed``/``cancelled`` on an exception
    or Ctrl-C, else ``done``.
    """

    def __init__(self, store: Store, kind: str, args: dict[str, Any], job_id: int | None = None) -> None:
        self.store = store
        self.kind = kind
        self.args = args
        self.job_id = job_id
        self.cancel = threading.Event()
        self._finished = False

    def __enter__(self) -> JobRun:
        self.job = attach(self.store, self.kind, self.args, self.job_id)
        self.reporter = Reporter(self.store, self.job.id)
        self._stop_watch = self.reporter.watch_cancel(self.cancel)
        # Ctrl-C / SIGTERM on the CLI set ``cancel`` as the page's Cancel does (lotr_labeler.signals).
        self._signals = interrupt.cooperative(self.cancel, self._last_words)
        self._signals.__enter__()
        return self

    def _last_words(self) -> None:
        """Before a forced exit (the work ignored the cancel for too long): end the row as cancelled."""
        db = self.store.root / "project.sqlite"
        table.finish_from_thread(db, self.job.id, "cancelled", "Interrupted; run the command again to resume.")

    def update(self, progress: Any, message: str, *, force: bool = False) -> None:
        self.reporter.update(progress, message, force=force)

    def finish(self, state: str, message: str, result: dict[str, Any] | None = None) -> None:
        self.reporter.finish(state, message, result)
        self._finished = True

    def finish_if(self, cancelled: bool, message: str, result: dict[str, Any] | None = None) -> None:
        """End as ``cancelled`` or ``done`` with ``message`` and ``result``."""
        self.finish("cancelled" if cancelled else "done", message, result)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._stop_watch.set()
        self._signals.__exit__(None, None, None)
        if self._finished:
            return
        if exc_type is None:
            self.finish("done", "")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("cancelled", "Interrupted; run the command again to resume.")
        else:
            self.finish("failed", explain(exc) if exc is not None else exc_type.__name__)
