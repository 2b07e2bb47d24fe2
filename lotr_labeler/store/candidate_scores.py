"""The ``candidate_scores`` table: the model's opinion of each search candidate before download.

What the numbers mean and how they are made: ``lotr_labeler.review.candidates``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lotr_labeler.store.db import Database, now


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's stored score: class probabilities keyed by class id (empty when ``error``)."""

    candidate_id: int
    probs: dict[int, float]
    dup_image_id: int | None
    dup_distance: int | None
    error: str | None
    backbone: str
    scored_at: str


def save(db: Database, rows: Iterable[CandidateScore]) -> int:
    """Insert or replace the scores of these candidates (one transaction); returns how many."""
    params = [
        (
            r.candidate_id,
            json.dumps({str(k): round(float(v), 6) for k, v in r.probs.items()}),
            r.dup_image_id,
            r.dup_distance,
            r.error,
            r.backbone,
            r.scored_at or now(),
        )
        for r in rows
    ]
    with db.transaction():
        db.conn.executemany(
            "INSERT INTO candidate_scores(candidate_id, probs, dup_image_id, dup_distance, error, backbone, scored_at)"
            " VALUES (?,?,?,?,?,?,?) ON CONFLICT(candidate_id) DO UPDATE SET probs = excluded.probs,"
            " dup_image_id = excluded.dup_image_id, dup_distance = excluded.dup_distance, error = excluded.error,"
            " backbone = excluded.backbone, scored_at = excluded.scored_at",
            params,
        )
    return len(params)


def load(db: Database, ids: Sequence[int] | None = None) -> dict[int, CandidateScore]:
    """Stored scores by candidate id (all, or those of ``ids``)."""
    sql = "SELECT candidate_id, probs, dup_image_id, dup_distance, error, backbone, scored_at FROM candidate_scores"
    args: list[int] = []
    if ids is not None:
        if not ids:
            return {}
        sql += f" WHERE candidate_id IN ({','.join('?' * len(ids))})"
        args = [int(i) for i in ids]
    out: dict[int, CandidateScore] = {}
    for r in db.conn.execute(sql, args):
        probs = {int(k): float(v) for k, v in json.loads(r[1]).items()}
        out[int(r[0])] = CandidateScore(int(r[0]), probs, r[2], r[3], r[4], str(r[5]), str(r[6]))
    return out


def clear(db: Database) -> None:
    """Forget every score (e.g. before a full rescore with another backbone)."""
    with db.transaction():
        db.conn.execute("DELETE FROM candidate_scores")
