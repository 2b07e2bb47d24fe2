"""What commands print: one JSON document or a table on stdout, progress bars on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from lotr_labeler.jobs.worker import JobRun


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


class Progress:
    """A console bar on stderr fed ``(done, total)``, also writing the job's progress row when
    there is a job: the one progress callback of every command.

    Used as a context manager, the bar is closed on the way out.
    """

    def __init__(self, desc: str, unit: str = "file", job: JobRun | None = None) -> None:
        self.desc = desc
        self.unit = unit
        self.job = job
        self._bar: Any = None

    def __call__(
        self,
        done: int,
        total: int,
        progress: Any = None,
        message: str = "",
        *,
        postfix: str = "",
        force: bool = False,
    ) -> None:
        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr, leave=False, disable=None)
        self._bar.n = done
        if postfix:
            self._bar.set_postfix_str(postfix)
        self._bar.refresh()
        if self.job is not None and progress is not None:
            self.job.update(progress, message, force=force)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
