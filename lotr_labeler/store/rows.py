"""The frozen rows the store hands out, and the functions that build them from SQLite rows."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from lotr_labeler import project as proj


@dataclass(frozen=True)
class ClassRow:
    id: int
    name: str
    names: tuple[str, ...]
    template: str
    position: int

    @property
    def queries(self) -> list[str]:
        return proj.queries_for(self.name, self.names, self.template)


@dataclass(frozen=True)
class ImageRow:
    id: int
    sha256: str
    class_id: int
    label: str
    split: str
    deleted: bool
    width: int
    height: int
    nbytes: int
    phash: str
    dup_of: int | None
    flags: tuple[str, ...]
    source: str
    source_url: str | None
    page_url: str | None
    title: str | None
    query: str | None
    original_name: str | None
    added_at: str

    @property
    def relpath(self) -> str:
        return f"trash/{self.id}.jpg" if self.deleted else f"images/{self.label}/{self.id}.jpg"


@dataclass(frozen=True)
class CandidateRow:
    id: int
    class_id: int
    label: str
    image_url: str
    thumbnail_url: str | None
    page_url: str | None
    title: str | None
    query: str | None
    width: int | None
    height: int | None
    source: str
    state: str
    error: str | None
    image_id: int | None
    attempts: int
    created_at: str


@dataclass(frozen=True)
class CandidateIn:
    """A search or list result to add as a candidate."""

    label: str
    image_url: str
    thumbnail_url: str | None = None
    page_url: str | None = None
    title: str | None = None
    query: str | None = None
    width: int | None = None
    height: int | None = None
    source: str = "ddg"


@dataclass(frozen=True)
class AddResult:
    """What ``add_image`` did: the stored row, or the existing row it duplicates."""

    image: ImageRow
    duplicate: bool
    near_duplicate_of: int | None = None


@dataclass(frozen=True)
class Event:
    id: int
    at: str
    kind: str
    summary: str
    undone: bool
    origin: str | None = None  # who made it: "cli:<session>" or "browser:<session>" (None: before migration 009)


def class_row(row: sqlite3.Row) -> ClassRow:
    return ClassRow(row["id"], row["name"], tuple(json.loads(row["names"])), row["template"], row["position"])


def image_row(row: sqlite3.Row) -> ImageRow:
    """From a row of ``images`` joined with its class name as ``label``."""
    return ImageRow(
        id=row["id"],
        sha256=row["sha256"],
        class_id=row["class_id"],
        label=row["label"],
        split=row["split"],
        deleted=bool(row["deleted"]),
        width=row["width"],
        height=row["height"],
        nbytes=row["nbytes"],
        phash=row["phash"],
        dup_of=row["dup_of"],
        flags=tuple(row["flags"].split()),
        source=row["source"],
        source_url=row["source_url"],
        page_url=row["page_url"],
        title=row["title"],
        query=row["query"],
        original_name=row["original_name"],
        added_at=row["added_at"],
    )


def candidate_row(row: sqlite3.Row) -> CandidateRow:
    """From a row of ``candidates`` joined with its class name as ``label``."""
    return CandidateRow(**{k: row[k] for k in CandidateRow.__dataclass_fields__ if k != "label"}, label=row["label"])


def event_row(row: sqlite3.Row) -> Event:
    return Event(row["id"], row["at"], row["kind"], row["summary"], bool(row["undone"]), row["origin"])
