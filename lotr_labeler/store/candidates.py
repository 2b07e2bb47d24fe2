"""The ``candidates`` table: search and list results waiting for a decision, then a download."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lotr_labeler import project as proj
from lotr_labeler.errors import NotFound, check_choice
from lotr_labeler.store.db import now
from lotr_labeler.store.history import Payload, undoes
from lotr_labeler.store.images import ImagesMixin
from lotr_labeler.store.rows import CandidateIn, CandidateRow, candidate_row
from lotr_labeler.urls import clean_url

CANDIDATE_STATES = ("pending", "accepted", "rejected", "downloaded", "failed")


@dataclass(frozen=True)
class Decision:
    """One part of ``Store.decide_each``: the candidates as the user saw them (id -> state, None: any),
    the state to give them and, when they move, the class to move them to."""

    seen: Mapping[int, str | None]
    state: str
    label: str | None = None


@dataclass(frozen=True)
class Decided:
    """What a decision changed, and which candidates it left alone as decided elsewhere meanwhile."""

    changed: int
    stale: tuple[int, ...] = ()

    def stale_message(self) -> str | None:
        """One sentence for the user when some candidates were decided in another window, else None."""
        n = len(self.stale)
        if not n:
            return None
        were, them = ("was", "it") if n == 1 else ("were", "them")
        return (
            f"{n} candidate{'s' if n != 1 else ''} {were} decided in another window meanwhile and kept that "
            f"decision; reload to see {them}."
        )


_CANDIDATE_SELECT = """
    SELECT k.*, c.name AS label FROM candidates k JOIN classes c ON c.id = k.class_id
"""


class CandidatesMixin(ImagesMixin):
    def add_candidates(self, items: Iterable[CandidateIn]) -> tuple[int, int]:
        """Add search results; returns (added, skipped as known URL or image already stored)."""
        added = skipped = 0
        with self.transaction():
            class_ids = {proj.name_key(c.name): c.id for c in self.classes()}
            for item in items:
                # Whatever the source, a URL is stored without user:password@ (lotr_labeler.urls).
                image_url = clean_url(item.image_url) or item.image_url
                class_id = class_ids.get(proj.name_key(item.label))
                if class_id is None:
                    raise NotFound(f"No class {item.label!r}. Add it first, or fix the label.")
                known = self.conn.execute("SELECT 1 FROM candidates WHERE image_url = ?", (image_url,)).fetchone()
                if known or self._known_source_url(image_url):
                    skipped += 1
                    continue
                stamp = now()
                self.conn.execute(
                    "INSERT INTO candidates(class_id, image_url, thumbnail_url, page_url, title, query,"
                    " width, height, source, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        class_id,
                        image_url,
                        clean_url(item.thumbnail_url),
                        clean_url(item.page_url),
                        item.title,
                        item.query,
                        item.width,
                        item.height,
                        item.source,
                        stamp,
                        stamp,
                    ),
                )
                added += 1
        return added, skipped

    def _candidate_filter(self, label: str | None, state: str | None, query: str | None) -> tuple[str, list[Any]]:
        # Candidates of a deleted class stay in the DB (undo) but out of every listing.
        where: list[str] = ["k.class_id IN (SELECT id FROM classes WHERE deleted = 0)"]
        args: list[Any] = []
        if label:
            where.append("k.class_id = ?")
            args.append(self.get_class(label).id)
        if state:
            check_choice(state, CANDIDATE_STATES, "Candidate state")
            where.append("k.state = ?")
            args.append(state)
        if query:
            where.append("k.query = ?")
            args.append(query)
        return " WHERE " + " AND ".join(where), args

    def candidates(
        self,
        label: str | None = None,
        *,
        state: str | None = None,
        query: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        after_id: int | None = None,
    ) -> list[CandidateRow]:
        """Candidates in id order. ``after_id`` pages by position rather than offset, so a page
        does not shift when decisions move earlier candidates out of a state filter."""
        where, args = self._candidate_filter(label, state, query)
        if after_id is not None:
            where += " AND k.id > ?"
            args.append(after_id)
        sql = _CANDIDATE_SELECT + where + " ORDER BY k.id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return [candidate_row(r) for r in self.conn.execute(sql, args)]

    def count_candidates(self, label: str | None = None, *, state: str | None = None, query: str | None = None) -> int:
        where, args = self._candidate_filter(label, state, query)
        return int(self.conn.execute("SELECT count(*) FROM candidates k" + where, args).fetchone()[0])

    def candidate_queries(self, label: str | None = None) -> list[str]:
        where, args = self._candidate_filter(label, None, None)
        sql = f"SELECT DISTINCT k.query FROM candidates k{where} ORDER BY k.query"
        return [r[0] for r in self.conn.execute(sql, args) if r[0]]

    def get_candidate(self, candidate_id: int) -> CandidateRow:
        row = self.conn.execute(_CANDIDATE_SELECT + " WHERE k.id = ?", (candidate_id,)).fetchone()
        if row is None:
            raise NotFound(f"No candidate with id {candidate_id} in project {self.name!r}.")
        return candidate_row(row)

    def finish_candidate(
        self, candidate_id: int, *, image_id: int | None = None, error: str | None = None, state: str | None = None
    ) -> None:
        """Record a download attempt: ``downloaded`` with its image, or ``failed`` with a reason.

        ``state`` overrides the resulting state (e.g. ``rejected`` for a previously deleted picture).
        """
        new_state = state or ("downloaded" if image_id is not None and error is None else "failed")
        check_choice(new_state, CANDIDATE_STATES, "Candidate state")
        with self.transaction():
            self.conn.execute(
                "UPDATE candidates SET state = ?, image_id = ?, error = ?, attempts = attempts + 1, "
                "updated_at = ? WHERE id = ?",
                (new_state, image_id, error, now(), candidate_id),
            )

    def decide(self, ids: Iterable[int], state: str, *, label: str | None = None, only_pending: bool = False) -> int:
        """Set review decisions (accepted/rejected/pending), optionally moving to another class.

        Downloaded candidates are left alone: their image is managed on the Dataset page.
        ``only_pending`` (bulk actions) never overrides a decision already taken, even one
        taken in another tab after the page was drawn.
        """
        # Bulk actions saw these candidates pending: one decided meanwhile is left as it is.
        seen: dict[int, str | None] = dict.fromkeys((int(i) for i in ids), "pending" if only_pending else None)
        return self.decide_seen(seen, state, label=label).changed

    def decide_seen(self, seen: Mapping[int, str | None], state: str, *, label: str | None = None) -> Decided:
        """Decide the candidates ``seen`` maps to the state the user saw them in (None: any state).

        A candidate whose state changed since (another tab or the CLI decided it, a download
        finished) keeps that newer state rather than being silently overwritten; it comes back
        in ``Decided.stale`` so the page can say so. One undoable event for the whole change.
        """
        return self.decide_each([Decision(seen, state, label)])

    def decide_each(self, parts: Sequence[Decision]) -> Decided:
        """Several decisions (each its own candidates, state and class) in one transaction and one
        undoable event, so one Z puts every card of a mixed selection back (a move of pending and
        accepted cards keeps each one's decision; P takes cards to several classes).

        Raises
        ------
        InvalidInput
            A state that is not a decision; NotFound: a class that does not exist (nothing changed).
        """
        targets: list[int | None] = []
        for part in parts:
            check_choice(part.state, ("pending", "accepted", "rejected"), "Decision")
            targets.append(self.get_class(part.label).id if part.label else None)
        items: list[list[Any]] = []
        what: list[str] = []
        stale: list[int] = []
        with self.transaction():  # read and write under one lock: another tab may be deciding too
            for part, target in zip(parts, targets, strict=True):
                changed, left = self._decide({int(k): v for k, v in part.seen.items()}, part.state, target)
                stale += left
                if changed:
                    one = f"candidate #{changed[0].id}" if len(changed) == 1 else f"{len(changed)} candidate(s)"
                    # "accepted candidate #4"; a move: "moved candidate #4 to elves (pending)"
                    what.append(f"moved {one} to {part.label} ({part.state})" if part.label else f"{part.state} {one}")
                    # What each was before (to restore) and what it became (undo skips it once changed again).
                    items += [[r.id, r.state, r.class_id, r.error, part.state, target or r.class_id] for r in changed]
            if items:
                self._event("decide", "; ".join(what), {"items": items})
        return Decided(len(items), tuple(stale))

    def _decide(
        self, seen: Mapping[int, str | None], state: str, target: int | None
    ) -> tuple[list[CandidateRow], list[int]]:
        """Write one decision; (the rows it changed, as they were; the ids decided elsewhere meanwhile)."""
        rows = [self.get_candidate(int(i)) for i in seen]
        fresh = [r for r in rows if seen[r.id] in (None, r.state)]
        # Changed elsewhere into something other than what this decision asks for (another state, or the
        # same state in another class: accepted as elves there, P to dwarves here): a real conflict.
        stale = [
            r.id
            for r in rows
            if seen[r.id] not in (None, r.state) and (r.state != state or (target is not None and r.class_id != target))
        ]
        changed = [
            r
            for r in fresh
            if r.state != "downloaded" and (r.state != state or (target is not None and r.class_id != target))
        ]
        for r in changed:
            self.conn.execute(
                "UPDATE candidates SET state = ?, class_id = ?, updated_at = ? WHERE id = ?",
                (state, target or r.class_id, now(), r.id),
            )
        return changed, stale

    def _set_candidate(self, candidate_id: int, state: str, class_id: int, error: str | None) -> None:
        self.conn.execute(
            "UPDATE candidates SET state = ?, class_id = ?, error = ?, updated_at = ? WHERE id = ?",
            (state, class_id, error, now(), candidate_id),
        )

    def _candidates_in_class(self, class_id: int) -> int:
        return int(self.conn.execute("SELECT count(*) FROM candidates WHERE class_id = ?", (class_id,)).fetchone()[0])

    def _state_counts(self, class_id: int) -> dict[str, int]:
        counts = dict.fromkeys(CANDIDATE_STATES, 0)
        for r in self.conn.execute(
            "SELECT state, count(*) FROM candidates WHERE class_id = ? GROUP BY state", (class_id,)
        ):
            counts[r[0]] = r[1]
        return counts


@undoes("decide")
def _undo_decide(store: CandidatesMixin, payload: Payload) -> None:
    for cid, state, class_id, error, *after in payload["items"]:
        if after:  # events from before 'after' was recorded are restored as they were
            now_row = store.get_candidate(cid)
            if (now_row.state, now_row.class_id) != (after[0], after[1]):
                continue  # decided again or downloaded since: that newer change stands
        store._set_candidate(cid, state, class_id, error)
