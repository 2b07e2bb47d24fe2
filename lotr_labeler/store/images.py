"""The ``images`` table: stored pictures, their class, split, flags and file (``images/<class>/<id>.jpg``)."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from lotr_labeler.errors import Conflict, InvalidInput, NotFound, check_choice
from lotr_labeler.imaging import Normalized, hamming, write_atomic
from lotr_labeler.project import validate_name
from lotr_labeler.store import version
from lotr_labeler.store.classes import ClassesMixin
from lotr_labeler.store.db import now
from lotr_labeler.store.history import Payload, undoes
from lotr_labeler.store.rows import AddResult, ImageRow, image_row
from lotr_labeler.urls import clean_url

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from lotr_labeler.store.phash import PhashIndex

SPLITS = ("train", "valid")

_IMAGE_SELECT = """
    SELECT i.*, c.name AS label FROM images i JOIN classes c ON c.id = i.class_id
"""


@dataclass(frozen=True)
class ImageIn:
    """One image for ``add_images``: the picture, its class and provenance."""

    img: Normalized
    label: str
    source: str
    source_url: str | None = None
    page_url: str | None = None
    title: str | None = None
    query: str | None = None
    original_name: str | None = None
    candidate_id: int | None = None
    staged: Path | None = None  # from ``stage_image``; None: written by ``add_images``
    create_class: bool = False  # an import: make the class when missing, in the batch's transaction


@dataclass
class ImportRecord:
    """The one history event of a long import or download, written by each batch's own commit.

    The first batch that stores an image creates the event; later ones extend it in their
    transaction. Whatever a killed run committed is therefore one undoable step (undo moves its
    images to the trash and drops the classes it created, if nothing else uses them).
    """

    summary: str  # "{n}" is replaced by the number of images, e.g. "imported {n} image(s) from folder"
    event_id: int | None = None
    ids: list[int] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)  # classes this run created

    def payload(self, ids: Sequence[int], classes: Sequence[int]) -> Payload:
        return {"ids": list(ids), "classes": list(classes)}


def _settle(record: ImportRecord, written: tuple[int, list[int], list[int]]) -> None:
    """The batch committed: ``record`` now describes its event as stored."""
    record.event_id, record.ids, record.classes = written


def split_for(sha256: str, valid_pct: int) -> str:
    """Stable split from the content hash: the same file is always in the same split."""
    return "valid" if int(sha256[:8], 16) % 100 < valid_pct else "train"


@dataclass(frozen=True)
class Relabeled:
    """What a relabel changed, and which images it left alone as moved or deleted elsewhere meanwhile."""

    changed: int
    stale: tuple[int, ...] = ()

    def stale_message(self) -> str | None:
        """One sentence for the user when another window moved or deleted some of the images, else None."""
        n = len(self.stale)
        if not n:
            return None
        were, them = ("was", "it") if n == 1 else ("were", "them")
        return (
            f"{n} image{'s' if n != 1 else ''} {were} moved or deleted in another window meanwhile and kept that "
            f"change; reload to see {them}."
        )


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
        item = ImageIn(img, label, source, source_url, page_url, title, query, original_name, candidate_id)
        existing = self._by_sha(img.sha256)  # fast path; decided again under the lock
        if existing is not None and not self._revivable(existing):
            return AddResult(existing, duplicate=True)
        result = self.add_images([item])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def stage_image(self, img: Normalized) -> Path:
        """Write ``img`` durably (fsync) to a temp file of its own for ``ImageIn.staged``.

        Touches no database, so download worker threads stage their images in parallel and
        the writer thread only commits. Unique per process and call: never another writer's
        file, so the one we delete is ours; an uncommitted one left by a crash is swept on open.
        """
        tmp = self.root / "tmp" / f"{img.sha256[:16]}-{os.getpid()}-{secrets.token_hex(4)}.jpg"
        write_atomic(tmp, img.jpeg)
        return tmp

    def add_images(
        self, items: Sequence[ImageIn], record: ImportRecord | None = None
    ) -> list[AddResult | NotFound | InvalidInput]:
        """Store several images in one transaction (one commit, one journaled move each).

        Per item, in order: an ``AddResult`` (stored, or the existing row of the same bytes),
        or the ``NotFound`` raised because its class was deleted or renamed meanwhile (the
        other items are stored), or the ``InvalidInput`` of a class it may not create. Anything
        else aborts the whole batch: nothing is stored and every staged file is deleted. Staged
        files (``stage_image``) are used as they are; the others are written here, before the
        lock. With ``record``, the images stored and the classes created (``ImageIn.create_class``)
        join its history event in the same commit, so a run killed after it is one undoable step.
        """
        staged = [item.staged or self.stage_image(item.img) for item in items]
        settings = self.settings()
        results: list[AddResult | NotFound | InvalidInput | tuple[int, int | None]] = []  # tuple: (id, near dup)
        made: list[int] = []  # classes created by this batch
        committed: set[int] = set()  # indexes of items whose staged file the journal now owns
        written: tuple[int, list[int], list[int]] | None = None  # the record's event as this batch wrote it
        nested = bool(self._tx_depth)
        try:
            with self.transaction():
                index = self._phash_index_fresh(settings.near_dup_distance)
                for k, (item, tmp) in enumerate(zip(items, staged, strict=True)):
                    existing = self._by_sha(item.img.sha256)  # another process may have stored these bytes
                    if existing is not None and not self._revivable(existing):
                        results.append(AddResult(existing, duplicate=True))
                        continue
                    try:
                        cls = self.get_class(item.label)  # and may have deleted or renamed the class
                    except NotFound as exc:
                        if not item.create_class:
                            results.append(exc)
                            continue
                        try:
                            cls = self._insert_class(validate_name(item.label), (), "{name}", record=False)
                        except InvalidInput as bad:
                            results.append(bad)
                            continue
                        made.append(cls.id)
                    if existing is not None:  # back from the trash, into this class, as part of this import
                        self.conn.execute(
                            "UPDATE images SET deleted = 0, class_id = ? WHERE id = ?", (cls.id, existing.id)
                        )
                        self._plan_move(existing.relpath, f"images/{cls.name}/{existing.id}.jpg")
                        if item.candidate_id is not None:  # a download: its candidate ends as a stored one does
                            self.finish_candidate(item.candidate_id, image_id=existing.id)
                        results.append((existing.id, None))
                        continue
                    if not tmp.exists():  # swept as stale by another process's open: write it again
                        write_atomic(tmp, item.img.jpeg)
                    near = self._nearest(index, item.img.phash)
                    image_id = self._insert_image(item, cls.id, near, settings.valid_pct)
                    self._refresh_phash_index(index)  # this row is a near-duplicate candidate for the next
                    self._plan_move(f"tmp/{tmp.name}", f"images/{cls.name}/{image_id}.jpg")
                    if item.candidate_id is not None:
                        self.finish_candidate(item.candidate_id, image_id=image_id)
                    committed.add(k)
                    results.append((image_id, near))
                if record is not None:
                    written = self._write_record(record, [r[0] for r in results if isinstance(r, tuple)], made)
        except BaseException:
            self._phash_index = None  # it may hold rows that were rolled back: rebuilt on next use
            # Rolled back: no row refers to a staged file. But an interrupt after the commit (during
            # the file moves) leaves the rows stored and their files journaled: keep those.
            try:
                stored = [k for k in committed if self._by_sha(items[k].img.sha256) is not None]
                if record is not None and written is not None and stored:
                    _settle(record, written)  # the event was committed with the rows
            except Exception as exc:  # cannot tell: keep them all (the sweep on open drops unreferenced ones)
                log.warning("project %s: keeping %d staged file(s) after an error (%s)", self.name, len(committed), exc)
                stored = list(committed)
            committed.intersection_update(stored)
            raise
        finally:
            for k, tmp in enumerate(staged):
                if k not in committed:
                    tmp.unlink(missing_ok=True)
        if record is not None and written is not None and not nested:
            _settle(record, written)
        if nested:
            self._phash_index = None  # the outer transaction may still roll our rows back
        return [AddResult(self.get_image(r[0]), False, r[1]) if isinstance(r, tuple) else r for r in results]

    def _write_record(
        self, record: ImportRecord, new_ids: list[int], made: list[int]
    ) -> tuple[int, list[int], list[int]] | None:
        """Create or extend ``record``'s event with this batch (inside its transaction)."""
        if not new_ids and not made:
            return None
        ids, classes = record.ids + new_ids, record.classes + made
        summary = record.summary.format(n=len(ids))
        if record.event_id is None:
            return self._event("import", summary, record.payload(ids, classes)), ids, classes
        self._extend_event(record.event_id, summary, record.payload(ids, classes))
        return record.event_id, ids, classes

    def _insert_image(self, item: ImageIn, class_id: int, near: int | None, valid_pct: int) -> int:
        img = item.img
        cur = self.conn.execute(
            "INSERT INTO images(sha256, class_id, split, width, height, nbytes, phash, dup_of, flags,"
            " source, source_url, page_url, title, query, original_name, candidate_id, added_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                img.sha256,
                class_id,
                split_for(img.sha256, valid_pct),
                img.width,
                img.height,
                len(img.jpeg),
                img.phash,
                near,
                "near-duplicate" if near else "",
                item.source,
                clean_url(item.source_url),  # the one sanitiser, whatever the source (lotr_labeler.urls)
                clean_url(item.page_url),
                item.title,
                item.query,
                item.original_name,
                item.candidate_id,
                now(),
            ),
        )
        if near:
            self.conn.execute(
                "UPDATE images SET flags = trim(flags || ' near-duplicate') "
                "WHERE id = ? AND instr(flags, 'near-duplicate') = 0",
                (near,),
            )
        return int(cur.lastrowid or 0)

    def _revivable(self, existing: ImageRow) -> bool:
        """Whether an image of the same bytes as one being added comes back instead of being a duplicate: it
        is in the trash and its class is deleted (an import undone, a class deleted). Its own restore is
        refused then ("undo the class deletion first"), and an import of the same folder again skipped every
        file as a duplicate of the trash: no way back. An image deleted on its own, its class alive, stays a
        duplicate in the trash (the Trash view restores it): a folder imported again must not bring back
        what the user threw out of it."""
        return existing.deleted and bool(self._class_by_id(existing.class_id)["deleted"])

    def _by_sha(self, sha256: str) -> ImageRow | None:
        row = self.conn.execute(_IMAGE_SELECT + " WHERE i.sha256 = ?", (sha256,)).fetchone()
        return None if row is None else image_row(row)

    # -- the near-duplicate index ---------------------------------------------------------
    # Every stored phash (deleted images too: a restore must not need a rebuild) in a
    # multi-index hash table kept per Store, so an insert compares a few bucket mates instead
    # of every row. Rows are appended by id under the write lock, so rows another process
    # committed are seen before each lookup; what the index proposes is re-read from the
    # table (deleted = 0, the stored phash), so it can never name a deleted or changed row.

    _phash_index: PhashIndex | None = None
    _phash_seen: int = 0  # the largest image id in the index

    def _phash_index_fresh(self, max_distance: int) -> PhashIndex:
        """The index with every row up to now (call under the write lock)."""
        from lotr_labeler.store.phash import PhashIndex  # lazy: numpy, never needed to read a project

        index = self._phash_index
        if index is None or index.max_distance != max_distance:
            index = self._phash_index = PhashIndex(max_distance)
            self._phash_seen = 0
        self._refresh_phash_index(index)
        return index

    def _refresh_phash_index(self, index: PhashIndex) -> None:
        rows = self.conn.execute(
            "SELECT id, phash FROM images WHERE id > ? ORDER BY id", (self._phash_seen,)
        ).fetchall()
        for image_id, phash in rows:
            index.add(int(image_id), str(phash))
        if rows:
            self._phash_seen = int(rows[-1][0])

    def _nearest(self, index: PhashIndex, phash: str) -> int | None:
        """The closest active image within the index's distance (ties: the lowest id).

        Proposals come nearest first, so only as many are read back as it takes to meet an
        active one (a few, unless the nearest ones were deleted), however many match.
        """
        dist, keys = index.near_arrays(phash)
        for start in range(0, len(keys), 32):
            part = [int(k) for k in keys[start : start + 32]]
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                f"SELECT id, phash FROM images WHERE deleted = 0 AND id IN ({marks})", part
            ).fetchall()
            active = {int(r["id"]): str(r["phash"]) for r in rows}
            for d, key in zip(dist[start : start + 32].tolist(), part, strict=True):
                # The stored phash never changes, so this holds; checked all the same (cheap).
                if key in active and hamming(phash, active[key]) == d:
                    return key
        return None

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
            check_choice(split, SPLITS, "Split")
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
        """Images in id order. Whole listings are memoized per data version (``store.version``):
        a page rerun at 20,000 images asks for them several times and they rarely change."""

        def query() -> list[ImageRow]:
            where, args = self._image_filter(label, split, source, deleted, flagged)
            sql = _IMAGE_SELECT + where + " ORDER BY i.id"
            if limit is not None:
                sql += " LIMIT ? OFFSET ?"
                args += [limit, offset]
            return [image_row(r) for r in self.conn.execute(sql, args)]

        if limit is not None:
            return query()
        return list(version.memo(self, ("images", label, split, source, deleted, flagged), query))

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

    def labels_by_id(self) -> Mapping[int, str]:
        """Every active image's class by id, in one query (memoized per data version, as ``images``): what
        counting images by class needs, without a row object per image (20,000 of them)."""

        def query() -> Mapping[int, str]:
            sql = "SELECT i.id, c.name FROM images i JOIN classes c ON c.id = i.class_id WHERE i.deleted = 0"
            return MappingProxyType({int(i): str(name) for i, name in self.conn.execute(sql)})

        return version.memo(self, ("labels_by_id",), query)

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

    def relabel_each(self, moves: Mapping[int, str]) -> int:
        """Move each image to its own class (``{id: class}``, e.g. every card to its prediction) in one
        transaction and one history event, so one undo puts every image back. Returns how many changed."""
        wanted = {int(i): label for i, label in moves.items()}
        with self.transaction():
            targets = {label: self.get_class(label).id for label in sorted(set(wanted.values()))}
            rows = [r for r in self._existing_images(list(wanted)) if r.class_id != targets[wanted[r.id]]]
            deleted = [r.id for r in rows if r.deleted]
            if deleted:
                raise Conflict(f"Image(s) {deleted} are deleted. Restore them (undo) before relabeling.")
            if not rows:
                return 0
            self._set_class([(r.id, targets[wanted[r.id]]) for r in rows])
            names = sorted({wanted[r.id] for r in rows})
            self._event(
                "relabel",
                f"relabeled {len(rows)} image(s) to {', '.join(names)}",
                {"items": [[r.id, r.class_id] for r in rows], "to": [targets[wanted[r.id]] for r in rows]},
            )
        return len(rows)

    def relabel_seen(self, moves: Mapping[int, str], seen: Mapping[int, str]) -> Relabeled:
        """``relabel_each(moves)`` for images still as the user saw them (``seen``: id -> the label on the
        card). An image another window moved or deleted since keeps that change rather than being silently
        overwritten, unless it already has the class asked for; it comes back in ``Relabeled.stale``.
        One transaction, one undoable event. Ids missing from ``seen`` are moved whatever their label."""
        wanted = {int(i): label for i, label in moves.items()}
        with self.transaction():  # read and write under one lock: another tab may be moving them too
            rows = self._existing_images(wanted)
            stale = tuple(
                r.id for r in rows if r.id in seen and (r.deleted or r.label != seen[r.id]) and r.label != wanted[r.id]
            )
            left = {i: label for i, label in wanted.items() if i not in stale}
            return Relabeled(self.relabel_each(left) if left else 0, stale)

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
def _undo_relabel(store: ImagesMixin, payload: Payload) -> None:
    store._set_class([(image_id, from_id) for image_id, from_id in payload["items"]])


@undoes("delete")
def _undo_delete(store: ImagesMixin, payload: Payload) -> None:
    store._set_deleted(payload["ids"], False)


@undoes("import", "restore")
def _undo_import_or_restore(store: ImagesMixin, payload: Payload) -> None:
    store._set_deleted(payload["ids"], True)  # to the trash
    for class_id in payload.get("classes", []):  # the classes an import created, unless used since
        cls = store._class_by_id(class_id)
        if cls["deleted"] or store._active_image_ids(class_id) or store._candidates_in_class(class_id):
            continue
        store._set_class_deleted(class_id, True)
        store._plan_move(f"images/{cls['name']}", f"trash/class-{class_id}")
