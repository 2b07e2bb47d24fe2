"""The ``images`` table: stored pictures, their class, split, flags and file (``images/<class>/<id>.jpg``)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lotr_labeler.errors import Conflict, InvalidInput, NotFound
from lotr_labeler.imaging import Normalized, hamming, write_atomic
from lotr_labeler.store.classes import ClassesMixin
from lotr_labeler.store.db import now
from lotr_labeler.store.history import Payload, undoes
from lotr_labeler.store.rows import AddResult, ImageRow, image_row

if TYPE_CHECKING:
    from lotr_labeler.store import Store

SPLITS = ("train", "valid")

_IMAGE_SELECT = """
    SELECT i.*, c.name AS label FROM images i JOIN classes c ON c.id = i.class_id
"""


def split_for(sha256: str, valid_pct: int) -> str:
    """Stable split from the content hash: the same file is always in the same split."""
    return "valid" if int(sha256[:8], 16) % 100 < valid_pct else "train"


class ImagesMixin(ClassesMixin):
    # Provided by CandidatesMixin (candidates own their rows).
    def finish_candidate(
        self, candidate_id: int, *, image_id: int | None = None, error: str | None = None, state: str | None = None
    ) -> None:
        raise NotImplementedError

    def path(self, image: ImageRow) -> Path:
        return self.root / image.relpath

    def add_image(
        self,
        img: Normalized,
        label: str,
        *,
        source: str,
        source_url: str | None = None,
        page_url: str | None = None,
        title: str | None = None,
        query: str | None = None,
        original_name: str | None = None,
        candidate_id: int | None = None,
    ) -> AddResult:
        """Store a normalized image under ``label`` unless its exact bytes are stored already.

        Near duplicates (phash within ``near_dup_distance``, any class) are stored but flagged.
        """
        existing = self._by_sha(img.sha256)  # fast path; decided again under the lock below
        if existing is not None:
            return AddResult(existing, duplicate=True)
        settings = self.settings()
        near = self._nearest(img.phash, settings.near_dup_distance)
        # Unique per process and call: never another writer's file, so ours is the only one we delete.
        tmp = self.root / "tmp" / f"{img.sha256[:16]}-{os.getpid()}-{secrets.token_hex(4)}.jpg"
        write_atomic(tmp, img.jpeg)  # written before the lock: the lock is held only for the row
        committed = False
        try:
            with self.transaction():
                existing = self._by_sha(img.sha256)  # another process may have stored these bytes meanwhile
                if existing is not None:
                    return AddResult(existing, duplicate=True)
                cls = self.get_class(label)  # and may have deleted or renamed the class
                if not tmp.exists():  # swept as stale by another process's open: write it again
                    write_atomic(tmp, img.jpeg)
                cur = self.conn.execute(
                    "INSERT INTO images(sha256, class_id, split, width, height, nbytes, phash, dup_of, flags,"
                    " source, source_url, page_url, title, query, original_name, candidate_id, added_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        img.sha256,
                        cls.id,
                        split_for(img.sha256, settings.valid_pct),
                        img.width,
                        img.height,
                        len(img.jpeg),
                        img.phash,
                        near,
                        "near-duplicate" if near else "",
                        source,
                        source_url,
                        page_url,
                        title,
                        query,
                        original_name,
                        candidate_id,
                        now(),
                    ),
                )
                image_id = int(cur.lastrowid or 0)
                if near:
                    self.conn.execute(
                        "UPDATE images SET flags = trim(flags || ' near-duplicate') "
                        "WHERE id = ? AND instr(flags, 'near-duplicate') = 0",
                        (near,),
                    )
                self._plan_move(f"tmp/{tmp.name}", f"images/{cls.name}/{image_id}.jpg")
                if candidate_id is not None:
                    self.finish_candidate(candidate_id, image_id=image_id)
                committed = True  # set last: the exit below commits, then moves the file
        finally:
            # Once committed the temp file is the image: the journaled move owns it.
            if not committed:
                tmp.unlink(missing_ok=True)
        return AddResult(self.get_image(image_id), duplicate=False, near_duplicate_of=near)

    def _by_sha(self, sha256: str) -> ImageRow | None:
        row = self.conn.execute(_IMAGE_SELECT + " WHERE i.sha256 = ?", (sha256,)).fetchone()
        return None if row is None else image_row(row)

    def _nearest(self, phash: str, max_distance: int) -> int | None:
        best: tuple[int, int] | None = None
        for row in self.conn.execute("SELECT id, phash FROM images WHERE deleted = 0"):
            d = hamming(phash, row["phash"])
            if d <= max_distance and (best is None or d < best[0]):
                best = (d, row["id"])
        return best[1] if best else None

    def record_import(self, image_ids: Sequence[int], summary: str) -> None:
        """One undoable event for a batch of added images (undo moves them to the trash)."""
        if image_ids:
            with self.transaction():
                self._event("import", summary, {"ids": list(image_ids)})

    def get_image(self, image_id: int) -> ImageRow:
        row = self.conn.execute(_IMAGE_SELECT + " WHERE i.id = ?", (image_id,)).fetchone()
        if row is None:
            raise NotFound(f"No image with id {image_id} in project {self.name!r}.")
        return image_row(row)

    def _image_filter(
        self,
        label: str | None,
        split: str | None,
        source: str | None,
        deleted: bool,
        flagged: bool | None,
    ) -> tuple[str, list[Any]]:
        where = ["i.deleted = ?"]
        args: list[Any] = [int(deleted)]
        if label:
            where.append("i.class_id = ?")
            args.append(self.get_class(label).id)
        if split:
            if split not in SPLITS:
                raise InvalidInput(f"Split {split!r} is not valid. Must be one of: {', '.join(SPLITS)}.")
            where.append("i.split = ?")
            args.append(split)
        if source:
            where.append("i.source = ?")
            args.append(source)
        if flagged is not None:
            where.append("i.flags != ''" if flagged else "i.flags = ''")
        return " WHERE " + " AND ".join(where), args

    def images(
        self,
        label: str | None = None,
        *,
        split: str | None = None,
        source: str | None = None,
        deleted: bool = False,
        flagged: bool | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ImageRow]:
        where, args = self._image_filter(label, split, source, deleted, flagged)
        sql = _IMAGE_SELECT + where + " ORDER BY i.id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return [image_row(r) for r in self.conn.execute(sql, args)]

    def count(
        self,
        label: str | None = None,
        *,
        split: str | None = None,
        source: str | None = None,
        deleted: bool = False,
        flagged: bool | None = None,
    ) -> int:
        where, args = self._image_filter(label, split, source, deleted, flagged)
        sql = "SELECT count(*) FROM images i" + where
        return int(self.conn.execute(sql, args).fetchone()[0])

    def sources(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT source FROM images ORDER BY source")]

    def _existing_images(self, ids: Iterable[int]) -> list[ImageRow]:
        rows = [self.get_image(int(i)) for i in dict.fromkeys(ids)]
        if not rows:
            raise InvalidInput("No image ids given. Pass one or more ids.")
        return rows

    def relabel(self, ids: Iterable[int], label: str) -> int:
        """Move images to class ``label`` (file and row together). Returns how many changed."""
        wanted = list(ids)
        with self.transaction():  # decide from a fresh read under the lock: another process may relabel too
            target = self.get_class(label)
            rows = [r for r in self._existing_images(wanted) if r.class_id != target.id]
            deleted = [r.id for r in rows if r.deleted]
            if deleted:
                raise Conflict(f"Image(s) {deleted} are deleted. Restore them (undo) before relabeling.")
            if not rows:
                return 0
            self._set_class([(r.id, target.id) for r in rows])
            self._event(
                "relabel",
                f"relabeled {len(rows)} image(s) to {target.name}",
                {"items": [[r.id, r.class_id] for r in rows], "to": target.id},
            )
        return len(rows)

    def _set_class(self, moves: Sequence[tuple[int, int]]) -> None:
        for image_id, class_id in moves:
            old = self.get_image(image_id)
            new_label = self._class_by_id(class_id)["name"]
            self.conn.execute("UPDATE images SET class_id = ? WHERE id = ?", (class_id, image_id))
            if not old.deleted:
                self._plan_move(old.relpath, f"images/{new_label}/{image_id}.jpg")

    def delete_images(self, ids: Iterable[int]) -> int:
        """Soft delete: the file goes to the trash, the row stays; undo restores both."""
        wanted = list(ids)
        with self.transaction():  # fresh read under the lock: a concurrent delete is not counted twice
            rows = [r for r in self._existing_images(wanted) if not r.deleted]
            if not rows:
                return 0
            self._set_deleted([r.id for r in rows], True)
            self._event("delete", f"deleted {len(rows)} image(s)", {"ids": [r.id for r in rows]})
        return len(rows)

    def restore_images(self, ids: Iterable[int]) -> int:
        wanted = list(ids)
        with self.transaction():
            rows = [r for r in self._existing_images(wanted) if r.deleted]
            if not rows:
                return 0
            gone = sorted({r.label for r in rows if self._class_by_id(r.class_id)["deleted"]})
            if gone:
                raise Conflict(
                    f"Class(es) {', '.join(gone)} were deleted. Undo the class deletion first, then restore the images."
                )
            self._set_deleted([r.id for r in rows], False)
            self._event("restore", f"restored {len(rows)} image(s)", {"ids": [r.id for r in rows]})
        return len(rows)

    def _set_deleted(self, ids: Sequence[int], deleted: bool) -> None:
        for image_id in ids:
            old = self.get_image(image_id)
            if old.deleted == deleted:
                continue
            self.conn.execute("UPDATE images SET deleted = ? WHERE id = ?", (int(deleted), image_id))
            new = f"trash/{image_id}.jpg" if deleted else f"images/{old.label}/{image_id}.jpg"
            self._plan_move(old.relpath, new)

    def _active_image_ids(self, class_id: int) -> list[int]:
        return [
            r[0] for r in self.conn.execute("SELECT id FROM images WHERE class_id = ? AND deleted = 0", (class_id,))
        ]

    def _known_source_url(self, url: str) -> bool:
        return self.conn.execute("SELECT 1 FROM images WHERE source_url = ?", (url,)).fetchone() is not None

    def _image_counts(self, class_id: int) -> dict[str, int]:
        img = self.conn.execute(
            "SELECT sum(deleted = 0), sum(deleted = 0 AND split = 'valid'), "
            "sum(deleted = 0 AND flags != ''), sum(deleted = 1) FROM images WHERE class_id = ?",
            (class_id,),
        ).fetchone()
        return {"images": img[0] or 0, "valid": img[1] or 0, "flagged": img[2] or 0, "deleted": img[3] or 0}


@undoes("relabel")
def _undo_relabel(store: Store, payload: Payload) -> None:
    store._set_class([(image_id, from_id) for image_id, from_id in payload["items"]])


@undoes("delete")
def _undo_delete(store: Store, payload: Payload) -> None:
    store._set_deleted(payload["ids"], False)


@undoes("import", "restore")
def _undo_import_or_restore(store: Store, payload: Payload) -> None:
    store._set_deleted(payload["ids"], True)  # to the trash
