"""Figures measured during the browser run: kept here, printed and written to timings.json by conftest."""

from __future__ import annotations

from typing import Any

TIMINGS: list[dict[str, Any]] = []
TIMINGS_NOTES: list[str] = []


def record(name: str, ours: float, *, anchor: float | None = None, goal: str = "context", note: str = "") -> None:
    """Keep one measurement, in the bench scripts' JSON-line format (seconds)."""
    row: dict[str, Any] = {
        "name": name,
        "ours": round(ours, 3),
        "anchor": None if anchor is None else round(anchor, 3),
        "ratio": None if not anchor else round(ours / anchor, 3),
        "goal": goal,
        "unit": "s",
    }
    if note:
        row["note"] = note
    TIMINGS.append(row)
