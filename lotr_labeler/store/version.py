"""The data version, and a per-process memo keyed on it.

A Streamlit page reruns its whole script on every click. At 20,000 images, re-reading every row
and re-deriving what depends on them (duplicate groups, the review ranking, what is not embedded
yet) costs seconds per rerun although nothing changed. Migration 007 keeps one counter that every
write to those tables bumps, by trigger, inside the writer's own transaction and whatever process
it is (another tab, the CLI, a background job). ``memo`` keeps the last value computed for a key
while that counter (and the database's random token, so a project deleted and created again
never matches an old entry) is unchanged.

Meta keys that only remember a page's state (``UI_META_KEYS``, and any key starting
``UI_META_PREFIX``) are the exception (migration 008): the Train page saves its form on every edit,
and nothing memoized reads it, so those writes leave the counter alone. A new key of that kind takes
the prefix; a key any memoized value reads must not.

Values handed out are shared between callers: treat them as read-only (the wrappers that return
lists return copies).

``persisted`` keeps arrays on disk under the same rule, for what a new process (a server restart)
would otherwise recompute on its first page load: a file is used only while the version it was
written at is still the database's, and only if it was written in this code's ``FORMAT`` (a caller
whose arrays follow a code layout, such as the rows of a dataclass, names that layout in its key).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from lotr_labeler.store.db import Database

if TYPE_CHECKING:  # numpy loads on first use: the home page imports the store without it
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_ENTRIES = 64
"""Memo entries kept in this process (all projects together), least recently used dropped first."""
PERSIST_DIR = "memo"
"""Under the project's cache folder: one npz file per ``persisted`` key."""
MAX_FILES = 16
"""``persisted`` files kept per project, least recently written removed first."""
_VERSION = "__version__"  # the member of a persisted file holding its format, key and data version
FORMAT = 2
"""Of ``persisted`` files, part of their stamp: bump it when what this module writes changes meaning,
and every file an older version wrote is recomputed instead of read (1: stamps before it was added)."""

UI_META_KEYS: tuple[str, ...] = ("train_form",)
"""``meta`` keys whose writes do not bump the data version (migration 008's triggers name them):
they only remember a page's state (``model.train_form.FORM_KEY``) and no memoized value reads them."""
UI_META_PREFIX = "ui."
"""Any ``meta`` key starting with it is page state too: name a new one so and no migration is needed."""

_memo: OrderedDict[tuple[str, Hashable], tuple[tuple[str, int], object]] = OrderedDict()
_lock = threading.Lock()


def data_version(db: Database) -> tuple[str, int]:
    """(token, counter): equal on two calls only if no memoized table changed in between."""
    row = db.conn.execute("SELECT token, n FROM data_version WHERE id = 1").fetchone()
    return str(row[0]), int(row[1])


def bumps_version(meta_key: str) -> bool:
    """Whether a write to this ``meta`` key bumps the data version (what migration 008's triggers do)."""
    return meta_key not in UI_META_KEYS and not meta_key.startswith(UI_META_PREFIX)


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


Arrays = dict[str, "npt.NDArray[np.generic]"]


def persisted_path(db: Database, key: str) -> Path:
    return db.cache_dir / PERSIST_DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


def persisted(db: Database, key: str, compute: Callable[[], Arrays]) -> Arrays:
    """``compute()``'s arrays, or those it gave for ``key`` in this project at the same data version,
    read back from the project's cache folder: a new process skips the computation too.

    ``key`` must name everything else the arrays depend on (arguments, a cache file's stat, the layout
    of what the arrays encode when code may change it). A file written at another version, in another
    ``FORMAT``, unreadable or for another key is recomputed and replaced; any write to a memoized
    table (any process) bumps the version, so nothing stale is ever read. npz without pickle: numeric
    and string arrays only. Inside a transaction nothing is read or written.
    """
    import numpy as np

    from lotr_labeler.imaging import write_atomic

    if db.conn.in_transaction:
        return compute()
    version = data_version(db)
    stamp = json.dumps([FORMAT, key, *version])
    path = persisted_path(db, key)
    try:
        with np.load(path, allow_pickle=False) as data:
            if _VERSION in data.files and str(data[_VERSION]) == stamp:
                return {name: data[name] for name in data.files if name != _VERSION}
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # torn or foreign: recompute
        log.warning("ignoring unreadable cache file %s: %s", path, exc)
    arrays = compute()
    if _VERSION in arrays:
        raise ValueError(f"{_VERSION!r} is reserved in persisted arrays; rename that array.")
    buf = io.BytesIO()
    members = {**arrays, _VERSION: np.array(stamp)}
    np.savez(buf, allow_pickle=False, **members)
    try:
        write_atomic(path, buf.getvalue())
        _prune(path.parent)
    except OSError as exc:  # a read-only or full disk: the value is still right, only not kept
        log.warning("could not keep %s: %s", path, exc)
    return arrays


def _prune(folder: Path) -> None:
    files = sorted(folder.glob("*.npz"), key=lambda f: file_state(f) or (0, 0, 0))
    for old in files[: max(0, len(files) - MAX_FILES)]:
        old.unlink(missing_ok=True)


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
