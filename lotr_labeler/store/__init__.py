"""The project store: a SQLite manifest plus the image files, kept in agreement.

``Store`` composes one mixin per table over ``Database`` (``db``: connection, transactions,
the file journal, migrations, meta). Each SQL table has exactly one owner module, the only
one that writes it (``TABLE_OWNERS``, pinned by tests/base/test_layering.py); code outside this
package and ``jobs/table.py`` never touches ``Store.conn``.
"""

from __future__ import annotations

from typing import Any

from lotr_labeler.store import reviews, runs
from lotr_labeler.store.candidates import CANDIDATE_STATES, CandidatesMixin
from lotr_labeler.store.db import DB_NAME, TMP_GRACE_SECONDS, Database, migrate, now
from lotr_labeler.store.history import UNDO, undoes
from lotr_labeler.store.images import SPLITS, split_for
from lotr_labeler.store.rows import AddResult, CandidateIn, CandidateRow, ClassRow, Event, ImageRow

__all__ = [
    "CANDIDATE_STATES",
    "DB_NAME",
    "SPLITS",
    "TABLE_OWNERS",
    "TMP_GRACE_SECONDS",
    "UNDO",
    "AddResult",
    "CandidateIn",
    "CandidateRow",
    "ClassRow",
    "Database",
    "Event",
    "ImageRow",
    "Store",
    "migrate",
    "now",
    "reviews",
    "runs",
    "split_for",
    "undoes",
]

# Who writes each table of store/schema.py: every INSERT/UPDATE/DELETE on it lives in that module.
TABLE_OWNERS: dict[str, str] = {
    "file_ops": "lotr_labeler/store/db.py",
    "meta": "lotr_labeler/store/db.py",
    "events": "lotr_labeler/store/history.py",
    "settings": "lotr_labeler/store/settings.py",
    "classes": "lotr_labeler/store/classes.py",
    "images": "lotr_labeler/store/images.py",
    "candidates": "lotr_labeler/store/candidates.py",
    "runs": "lotr_labeler/store/runs.py",
    "predictions": "lotr_labeler/store/runs.py",
    "review_marks": "lotr_labeler/store/reviews.py",
    "review_scores": "lotr_labeler/store/reviews.py",
    "jobs": "lotr_labeler/jobs/table.py",
    "candidate_scores": "lotr_labeler/store/candidate_scores.py",
    "data_version": "lotr_labeler/store/version.py",  # written only by the triggers of migration 007
}


class Store(CandidatesMixin):
    """One project: its database connection and its folder.

    The methods come from one module per table: history (events, undo), settings, classes,
    images, candidates; ``Database`` below them all.
    """

    def status(self) -> list[dict[str, Any]]:
        """Per-class counts: candidates by state, active/valid/flagged/deleted images."""
        rows: list[dict[str, Any]] = []
        for c in self.classes():
            counts: dict[str, Any] = {"id": c.id, "class": c.name}
            counts.update(self._state_counts(c.id))
            counts.update(self._image_counts(c.id))
            rows.append(counts)
        return rows
