"""The ``review_scores`` and ``review_marks`` tables (their meaning: ``lotr_labeler.review.fitting``,
``review.queue`` and ``review.decisions``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from lotr_labeler.store.db import Database, now
from lotr_labeler.store.history import HistoryMixin, Payload, undoes


def replace_scores(db: Database, rows: Iterable[tuple[int, str, str]], *, fit_key: str, fit: str) -> None:
    """Replace every score with ``(image_id, probs_json, source)`` rows and record how they were made."""
    with db.transaction():
        db.conn.execute("DELETE FROM review_scores")
        db.conn.executemany("INSERT INTO review_scores(image_id, probs, source) VALUES (?, ?, ?)", rows)
        db.meta_set(fit_key, fit)


def scores(db: Database, ids: Sequence[int] | None = None) -> dict[int, tuple[list[float], str]]:
    """Stored probabilities and source per image id (all, or those of ``ids``)."""
    sql = "SELECT image_id, probs, source FROM review_scores"
    if ids is not None:
        if not ids:
            return {}
        sql += f" WHERE image_id IN ({','.join('?' * len(ids))})"
    rows = db.conn.execute(sql, list(ids or [])).fetchall()
    # One JSON document for all rows: 20,000 json.loads calls cost ~0.5 s, one parse a tenth of it.
    probs = json.loads("[" + ",".join(r[1] for r in rows) + "]")
    return {int(r[0]): (p, str(r[2])) for r, p in zip(rows, probs, strict=True)}


def mark(db: HistoryMixin, marks: Iterable[tuple[int, int]], kind: str, *, summary: str | None = None) -> None:
    """Record decisions of ``kind`` as ``(image_id, confirmed class_id)`` pairs.

    With ``summary`` the marking is its own step of the history (K, Shift+K, "Keep all"): one event
    whose undo puts back each image's mark as it was. Without, it rides on the caller's event (a
    relabel marks what it moved; undoing the relabel already puts those images back in the queue).
    """
    pairs = [(int(i), int(c)) for i, c in marks]
    stamp = now()
    with db.transaction():
        before: dict[int, tuple[int, str]] = {}
        if summary is not None and pairs:
            marks_sql = "SELECT image_id, class_id, at FROM review_marks WHERE kind = ? AND image_id IN "
            rows = db.conn.execute(marks_sql + f"({','.join('?' * len(pairs))})", [kind, *(i for i, _ in pairs)])
            before = {int(r[0]): (int(r[1]), str(r[2])) for r in rows}
        db.conn.executemany(
            "INSERT INTO review_marks(image_id, kind, class_id, at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(image_id, kind) DO UPDATE SET class_id = excluded.class_id, at = excluded.at",
            [(image_id, kind, class_id, stamp) for image_id, class_id in pairs],
        )
        if summary is not None and pairs:
            items = [[i, c, *(before.get(i) or (None, None))] for i, c in pairs]
            db._event("review_mark", summary, {"kind": kind, "at": stamp, "items": items})


@undoes("review_mark")
def _undo_review_mark(store: Database, payload: Payload) -> None:
    kind, at = payload["kind"], payload["at"]
    for image_id, class_id, prev_class, prev_at in payload["items"]:
        now_row = store.conn.execute(
            "SELECT class_id, at FROM review_marks WHERE image_id = ? AND kind = ?", (image_id, kind)
        ).fetchone()
        if now_row is None or (int(now_row[0]), str(now_row[1])) != (class_id, at):
            continue  # marked again (or unmarked) since: that newer decision stands
        if prev_class is None:
            store.conn.execute("DELETE FROM review_marks WHERE image_id = ? AND kind = ?", (image_id, kind))
        else:
            store.conn.execute(
                "UPDATE review_marks SET class_id = ?, at = ? WHERE image_id = ? AND kind = ?",
                (prev_class, prev_at, image_id, kind),
            )


def unmark_labels(db: Database, ids: Sequence[int]) -> None:
    with db.transaction():
        db.conn.executemany("DELETE FROM review_marks WHERE image_id = ? AND kind = 'label'", [(i,) for i in ids])


def marked_ids(db: Database, kind: str) -> set[int]:
    """Images whose ``kind`` decision still holds (for labels: their class is the one confirmed)."""
    sql = "SELECT m.image_id FROM review_marks m JOIN images i ON i.id = m.image_id WHERE m.kind = ?"
    if kind == "label":
        sql += " AND m.class_id = i.class_id"
    return {int(r[0]) for r in db.conn.execute(sql, (kind,))}
