"""The ``events`` table: the history of user actions, and undo through a registry keyed by kind.

Each module that records an undoable action registers its inverse next to it with
``@undoes("kind")`` (cleanvision's ``register_issue_manager`` idea), so adding an action
is one module, not an edit to a central if/elif.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from lotr_labeler.errors import NothingToUndo, StoreError
from lotr_labeler.store.db import Database, now
from lotr_labeler.store.rows import Event, event_row

if TYPE_CHECKING:
    from lotr_labeler.store import Store

Payload = dict[str, Any]
Inverse = Callable[["Store", Payload], None]
_F = TypeVar("_F", bound=Inverse)

UNDO: dict[str, Inverse] = {}


def undoes(*kinds: str) -> Callable[[_F], _F]:
    """Register the decorated ``fn(store, payload)`` as the inverse of events of ``kinds``.

    It runs inside the undo transaction, with the journal replayed.
    """

    def register(fn: _F) -> _F:
        for kind in kinds:  # all checked before any is registered
            if kind in UNDO:
                raise StoreError(f"Event kind {kind!r} has an inverse already ({UNDO[kind].__qualname__}).")
        UNDO.update(dict.fromkeys(kinds, fn))
        return fn

    return register


class HistoryMixin(Database):
    def _event(self, kind: str, summary: str, payload: Payload) -> None:
        self.conn.execute(
            "INSERT INTO events(at, kind, summary, payload) VALUES (?, ?, ?, ?)",
            (now(), kind, summary, json.dumps(payload)),
        )

    def history(self, limit: int = 50) -> list[Event]:
        rows = self.conn.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [event_row(r) for r in rows]

    def last_event_id(self) -> int:
        """Id of the newest event (0 when none): later events are changes made since."""
        return int(self.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])

    def count_events_after(self, event_id: int) -> int:
        return int(self.conn.execute("SELECT count(*) FROM events WHERE id > ?", (event_id,)).fetchone()[0])

    def undo(self) -> str:
        """Invert the newest action not yet undone, exactly: labels, files, deleted state."""
        with self.transaction():  # two tabs clicking Undo undo two actions, not one twice
            return self._undo_newest()

    def _undo_newest(self) -> str:
        row = self.conn.execute("SELECT * FROM events WHERE undone = 0 ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            raise NothingToUndo(f"Nothing to undo in project {self.name!r}.")
        kind = row["kind"]
        inverse = UNDO.get(kind)
        if inverse is None:
            raise StoreError(
                f"Event kind {kind!r} cannot be undone (unknown kind). Known kinds: {', '.join(sorted(UNDO))}."
            )
        with self.transaction():
            inverse(cast("Store", self), json.loads(row["payload"]))  # every Database here is the facade
            self.conn.execute("UPDATE events SET undone = 1 WHERE id = ?", (row["id"],))
        return f"Undid: {row['summary']}"
