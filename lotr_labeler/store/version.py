"""The data version, and a per-process memo keyed on it.

A Streamlit page reruns its whole script on every click. At 20,000 images, re-reading every row
and re-deriving what depends on them (duplicate groups, the review ranking, what is not embedded
yet) costs seconds per rerun although nothing changed. Migration 007 keeps one counter that every
write to those tables bumps, by trigger, inside the writer's own transaction and whatever process
it is (another tab, the CLI, a background job). ``memo`` keeps the last value computed for a key
while that counter (and the database's random token, so a project deleted and created again
never matches an old entry) is unchanged.

Values handed out are shared between callers: treat them as read-only (the wrappers that return
lists return copies).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TypeVar

from lotr_labeler.store.db import Database

T = TypeVar("T")

MAX_ENTRIES = 64
"""Memo entries kept in this process (all projects together), least recently used dropped first."""

_memo: OrderedDict[tuple[str, Hashable], tuple[tuple[str, int], object]] = OrderedDict()
_lock = threading.Lock()


def data_version(db: Database) -> tuple[str, int]:
    """(token, counter): equal on two calls only if no memoized table changed in between."""
    row = db.conn.execute("SELECT token, n FROM data_version WHERE id = 1").fetchone()
    return str(row[0]), int(row[1])


def memo(db: Database, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, or the value it gave for ``key`` in this project at the same data version.

    ``key`` must name everything else the value depends on (arguments, a cache file's stat).
    Inside a transaction nothing is memoized: its writes may still roll back, and a later
    commit could then reach the same counter with other data.
    """
    if db.conn.in_transaction:
        return compute()
    version = data_version(db)
    slot = (str(db.root), key)
    with _lock:
        hit = _memo.get(slot)
        if hit is not None and hit[0] == version:
            _memo.move_to_end(slot)
            return hit[1]  # type: ignore[return-value]  # stored by compute() for this key
    value = compute()
    with _lock:
        _memo[slot] = (version, value)
        _memo.move_to_end(slot)
        while len(_memo) > MAX_ENTRIES:
            _memo.popitem(last=False)
    return value


def file_state(path: Path) -> tuple[int, int, int] | None:
    """(mtime_ns, size, inode) of ``path``, None when it is absent: the part of a memo key for a
    cache file the value was read from (a write here or by another process changes it)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def clear() -> None:
    """Forget every memoized value (tests; memory)."""
    with _lock:
        _memo.clear()
