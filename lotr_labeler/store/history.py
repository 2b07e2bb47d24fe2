"""The ``events`` table: the history of user actions, and undo through a registry keyed by kind.

Each module that records an undoable action registers its inverse next to it with
``@undoes("kind")`` (cleanvision's ``register_issue_manager`` idea), so adding an action
is one module, not an edit to a central if/elif.

Every event records its author (``origin``): a browser session (``browser:<id>``, set by the
pages) or a terminal (``cli:<session id>``: every command typed in one shell shares it; a job a
page started carries its page's origin through ``LOTR_LABELER_ORIGIN``). Undo acts on its
author's newest change, so one window's Z never takes back another window's work, and an event
whose images, classes or candidates a later live event changed is refused, naming that change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from lotr_labeler.errors import Conflict, NotFound, NothingToUndo, StoreError
from lotr_labeler.store.db import Database, now
from lotr_labeler.store.rows import Event, event_row

if TYPE_CHECKING:
    import sqlite3


Payload = dict[str, Any]
# An inverse takes the store (typed as the mixin that owns its table: each sits below the facade) and the payload.
Inverse = Callable[[Any, Payload], None]
_F = TypeVar("_F", bound=Inverse)

UNDO: dict[str, Inverse] = {}
ORIGIN_ENV = "LOTR_LABELER_ORIGIN"
# Asked first for this thread's author (the UI registers one that names the browser session).
ORIGIN_PROVIDERS: list[Callable[[], str | None]] = []


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


def default_origin() -> str:
    """This process's author: ``$LOTR_LABELER_ORIGIN`` (a job started by a page), else the terminal
    session, so `delete` and a later `undo` typed in one shell are one author, another shell another."""
    for provider in ORIGIN_PROVIDERS:
        found = provider()
        if found:
            return found
    given = os.environ.get(ORIGIN_ENV, "").strip()
    if given:
        return given
    try:
        return f"cli:{os.getsid(0)}"
    except (AttributeError, OSError):  # no sessions (Windows): the parent process stands for the terminal
        return f"cli:{os.getppid()}"


def describe_origin(origin: str | None, mine: str) -> str:
    """Who made a change, as the user reads it."""
    if origin == mine:
        return "you"
    if origin is None:
        return "an earlier version"
    if origin.startswith("browser:"):
        return "another browser window"
    return "another terminal or script"


def touched(kind: str, payload: Payload) -> set[tuple[str, int]]:
    """What an event changed, as ``("image" | "class" | "candidate", id)`` keys (for undo's check)."""
    keys: set[tuple[str, int]] = set()
    if kind in ("relabel", "review_mark"):
        keys |= {("image", int(item[0])) for item in payload.get("items", [])}
    elif kind == "decide":
        keys |= {("candidate", int(item[0])) for item in payload.get("items", [])}
    keys |= {("image", int(i)) for i in payload.get("ids", [])}
    keys |= {("image", int(i)) for i in payload.get("image_ids", [])}
    if "class_id" in payload:
        keys.add(("class", int(payload["class_id"])))
    keys |= {("class", int(i)) for i in payload.get("classes", [])}
    return keys


def _names(keys: set[tuple[str, int]], limit: int = 3) -> str:
    shown = sorted(keys)[:limit]
    text = ", ".join(f"{what} {ident}" for what, ident in shown)
    return text + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


class HistoryMixin(Database):
    origin: str = ""  # set per Store (pages pass their browser session); empty: default_origin()

    def author(self) -> str:
        """Who this store writes as (``origin`` of its events)."""
        if not self.origin:
            self.origin = default_origin()
        return self.origin

    def _event(self, kind: str, summary: str, payload: Payload) -> int:
        cur = self.conn.execute(
            "INSERT INTO events(at, kind, summary, payload, origin) VALUES (?, ?, ?, ?, ?)",
            (now(), kind, summary, json.dumps(payload), self.author()),
        )
        return int(cur.lastrowid or 0)

    def _extend_event(self, event_id: int, summary: str, payload: Payload) -> None:
        """Rewrite a growing event (an import, batch by batch) inside the batch's transaction."""
        self.conn.execute(
            "UPDATE events SET summary = ?, payload = ?, at = ? WHERE id = ?",
            (summary, json.dumps(payload), now(), event_id),
        )

    def history(self, limit: int = 50) -> list[Event]:
        rows = self.conn.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [event_row(r) for r in rows]

    def last_event_id(self) -> int:
        """Id of the newest event (0 when none): later events are changes made since."""
        return int(self.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])

    def count_events_after(self, event_id: int) -> int:
        return int(self.conn.execute("SELECT count(*) FROM events WHERE id > ?", (event_id,)).fetchone()[0])

    def undo(self, event_id: int | None = None) -> str:
        """``undo_change`` as the sentence pages show: ``Undid: <summary>``."""
        return f"Undid: {self.undo_change(event_id).summary}"

    def undo_change(self, event_id: int | None = None) -> Event:
        """Invert this author's newest action not yet undone (or event ``event_id``), exactly;
        returns the event undone.

        Refused (Conflict, naming the later change) when a later live event changed any of its
        images, classes or candidates: undoing it would overwrite that newer change.
        """
        with self.transaction():  # two tabs clicking Undo undo two actions, not one twice
            row = self._undo_target(event_id)
            self._check_untouched_since(row)
            kind = row["kind"]
            inverse = UNDO.get(kind)
            if inverse is None:
                raise StoreError(
                    f"Event kind {kind!r} cannot be undone (unknown kind). Known kinds: {', '.join(sorted(UNDO))}."
                )
            inverse(self, json.loads(row["payload"]))
            self.conn.execute("UPDATE events SET undone = 1 WHERE id = ?", (row["id"],))
        return event_row(row)

    def _undo_target(self, event_id: int | None) -> sqlite3.Row:
        if event_id is not None:
            row = self.conn.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
            if row is None:
                raise NotFound(f"No change #{event_id} in project {self.name!r}. `lotr-labeler history` lists them.")
            if row["undone"]:
                raise NothingToUndo(f"Change #{event_id} ({row['summary']}) is undone already.")
            return cast("sqlite3.Row", row)
        mine = self.author()
        row = self.conn.execute(
            "SELECT * FROM events WHERE undone = 0 AND (origin = ? OR origin IS NULL) ORDER BY id DESC LIMIT 1",
            (mine,),
        ).fetchone()
        if row is not None:
            return cast("sqlite3.Row", row)
        other = self.conn.execute("SELECT * FROM events WHERE undone = 0 ORDER BY id DESC LIMIT 1").fetchone()
        if other is None:
            raise NothingToUndo(f"Nothing to undo in project {self.name!r}.")
        raise NothingToUndo(
            f"Nothing of yours to undo in project {self.name!r}. The last change, #{other['id']} "
            f"({other['summary']}), was made by {describe_origin(other['origin'], mine)}: undo it there, "
            f"or with `lotr-labeler undo --event {other['id']}`."
        )

    def _check_untouched_since(self, row: sqlite3.Row) -> None:
        keys = touched(row["kind"], json.loads(row["payload"]))
        if not keys:
            return
        for later in self._live_after(row["id"]):
            common = keys & touched(later["kind"], json.loads(later["payload"]))
            if common:
                who = describe_origin(later["origin"], self.author())
                raise Conflict(
                    f"Cannot undo #{row['id']} ({row['summary']}): {_names(common)} changed since in "
                    f"#{later['id']} ({later['summary']}, by {who}). Undo #{later['id']} first "
                    f"(`lotr-labeler undo --event {later['id']}`), or leave both."
                )

    def _live_after(self, event_id: int) -> Iterator[sqlite3.Row]:
        yield from self.conn.execute("SELECT * FROM events WHERE id > ? AND undone = 0 ORDER BY id", (event_id,))
