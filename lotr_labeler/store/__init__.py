"""The project store: SQLite manifest + image files (see core)."""

from lotr_labeler.store.core import (
    CANDIDATE_STATES,
    DB_NAME,
    SPLITS,
    TMP_GRACE_SECONDS,
    AddResult,
    CandidateIn,
    CandidateRow,
    ClassRow,
    Event,
    ImageRow,
    Store,
    migrate,
    now,
    split_for,
)

__all__ = [
    "CANDIDATE_STATES",
    "DB_NAME",
    "SPLITS",
    "TMP_GRACE_SECONDS",
    "AddResult",
    "CandidateIn",
    "CandidateRow",
    "ClassRow",
    "Event",
    "ImageRow",
    "Store",
    "migrate",
    "now",
    "split_for",
]
