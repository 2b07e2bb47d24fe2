"""The ``runs`` and ``predictions`` tables (their meaning: ``lotr_labeler.model.runs``).

Rows come back as ``sqlite3.Row``; ``model.runs`` turns them into ``Run`` records.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from lotr_labeler.store.db import Database, now

CURRENT_KEY = "current_run"  # meta key: the run the user picked


def current_id(db: Database) -> str | None:
    """The picked run while it is done, else the newest done one."""
    picked = db.meta_get(CURRENT_KEY)
    if picked is not None:
        ok = db.conn.execute("SELECT 1 FROM runs WHERE id = ? AND state = 'done'", (picked,)).fetchone()
        if ok:
            return picked
    latest = db.conn.execute("SELECT id FROM runs WHERE state = 'done' ORDER BY rowid DESC LIMIT 1").fetchone()
    return str(latest[0]) if latest else None


def running(db: Database) -> list[sqlite3.Row]:
    return db.conn.execute("SELECT id, pid, pid_started, job_id FROM runs WHERE state = 'running'").fetchall()


def fail_if_running(db: Database, run_id: str, message: str) -> bool:
    """Mark the run failed only if it is still running (a live process may have just finished it)."""
    with db.transaction():
        cur = db.conn.execute(
            "UPDATE runs SET state = 'failed', message = ?, finished_at = ? WHERE id = ? AND state = 'running'",
            (message, now(), run_id),
        )
    return bool(cur.rowcount)


def all_rows(db: Database) -> list[sqlite3.Row]:
    return db.conn.execute("SELECT * FROM runs ORDER BY rowid DESC").fetchall()


def get_row(db: Database, run_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = db.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    return row


def insert(
    db: Database,
    run_id: str,
    *,
    source: str,
    params: dict[str, Any],
    job_id: int | None,
    pid: int,
    pid_started: float | None,
) -> None:
    with db.transaction():
        db.conn.execute(
            "INSERT INTO runs(id, source, params, job_id, pid, pid_started, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, source, json.dumps(params), job_id, pid, pid_started, now()),
        )


def finish(
    db: Database,
    run_id: str,
    state: str,
    *,
    vocab: Sequence[str] | None,
    metrics: dict[str, Any] | None,
    message: str,
) -> None:
    """Record the end state; ``vocab``/``metrics`` left as they were when None."""
    with db.transaction():
        db.conn.execute(
            "UPDATE runs SET state = ?, vocab = coalesce(?, vocab), metrics = coalesce(?, metrics), "
            "message = ?, finished_at = ? WHERE id = ?",
            (
                state,
                json.dumps(list(vocab)) if vocab is not None else None,
                json.dumps(metrics) if metrics is not None else None,
                message,
                now(),
                run_id,
            ),
        )


def set_current(db: Database, run_id: str) -> None:
    db.meta_set(CURRENT_KEY, run_id)


def delete(db: Database, run_id: str) -> None:
    """Drop the run, its predictions and, if it was the picked one, the pick."""
    with db.transaction():
        db.conn.execute("DELETE FROM predictions WHERE run_id = ?", (run_id,))
        db.conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        db.meta_delete(CURRENT_KEY, only_if=run_id)


def replace_predictions(db: Database, run_id: str, rows: Iterable[tuple[int, str, str, float]]) -> int:
    """Replace a run's predictions with ``(image_id, probs_json, predicted, confidence)`` rows.

    ``rows`` is consumed inside the transaction: an exception it raises rolls everything back.
    """
    n = 0
    with db.transaction():
        db.conn.execute("DELETE FROM predictions WHERE run_id = ?", (run_id,))
        for image_id, probs, predicted, confidence in rows:
            db.conn.execute(
                "INSERT INTO predictions(run_id, image_id, probs, predicted, confidence) VALUES (?, ?, ?, ?, ?)",
                (run_id, image_id, probs, predicted, confidence),
            )
            n += 1
    return n


def prediction_rows(db: Database, run_id: str) -> list[sqlite3.Row]:
    return db.conn.execute(
        "SELECT image_id, probs, predicted, confidence FROM predictions WHERE run_id = ?", (run_id,)
    ).fetchall()
