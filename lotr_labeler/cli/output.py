"""What commands print: one JSON document or a table on stdout, progress bars on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from lotr_labeler.jobs.worker import JobRun
from lotr_labeler.progress import Progress


def print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


def emit(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    """``rows`` as one JSON list (every key) or as a table of ``columns``."""
    if as_json:
        print_json(list(rows))
    else:
        table(rows, columns)


class ProgressBar:
    """The one progress callback of every command (a ``progress.Report``): a console bar on stderr fed
    ``Progress`` records of any stage, also writing the job's progress row when there is a job.

    ``postfix(record)`` adds a stage's own figures to the bar (``ok=… failed=…``); the record's ``message``
    goes to the job row. Used as a context manager, the bar is closed on the way out.
    """

    def __init__(
        self,
        desc: str,
        unit: str = "file",
        job: JobRun | None = None,
        postfix: Callable[[Progress], str] | None = None,
    ) -> None:
        self.desc = desc
        self.unit = unit
        self.job = job
        self.postfix = postfix
        self._bar: Any = None

    def __call__(self, p: Progress) -> None:
        if self._bar is None:
            self._bar = tqdm(total=p.total, desc=self.desc, unit=self.unit, file=sys.stderr, leave=False, disable=None)
        self._bar.total = p.total  # a stage may learn its total as it goes (embeddings after the choice)
        self._bar.n = p.done
        if self.postfix is not None:
            self._bar.set_postfix_str(self.postfix(p))
        self._bar.refresh()
        if self.job is not None:
            self.job.update(p, p.message, force=p.total > 0 and p.done >= p.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
