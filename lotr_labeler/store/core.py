"""The project store: classes, images, candidates, settings and history over ``Database``.

The connection, transactions, file journal and migrations live in ``db``; the rows in ``rows``.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lotr_labeler import project as proj
from lotr_labeler.errors import Conflict, InvalidInput, NotFound, NothingToUndo, StoreError
from lotr_labeler.imaging import Normalized, hamming, write_atomic
from lotr_labeler.store.db import DB_NAME, TMP_GRACE_SECONDS, Database, migrate, now
from lotr_labeler.store.rows import AddResult, CandidateIn, CandidateRow, ClassRow, Event, ImageRow
from lotr_labeler.store.rows import candidate_row as _candidate
from lotr_labeler.store.rows import class_row as _class
from lotr_labeler.store.rows import image_row as _image

__all__ = [
    "DB_NAME",
    "TMP_GRACE_SECONDS",
    "AddResult",
    "CandidateIn",
    "CandidateRow",
    "ClassRow",
    "Event",
    "ImageRow",
    "migrate",
    "now",
]

CANDIDATE_STATES = ("pending", "accepted", "rejected", "downloaded", "failed")
SPLITS = ("train", "valid")


def split_for(sha256: str, valid_pct: int) -> str:
    """Stable split from the content hash: the same file is always in the same split."""
    return "valid" if int(sha256[:8], 16) % 100 < valid_pct else "train"


_IMAGE_SELECT = """
    SELECT i.*, c.name AS label FROM images i JOIN classes c ON c.id = i.class_id
"""
_CANDIDATE_SELECT = """
    SELECT k.*, c.name AS label FROM candidates k JOIN classes c ON c.id = k.class_id
"""


class Store(Database):
    """One project: its database connection and its folder."""

    def path(self, image: ImageRow) -> Path:
        return self.root / image.relpath

    def _event(self, kind: str, summary: str, payload: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO events(at, kind, summary, payload) VALUES (?, ?, ?, ?)",
            (now(), kind, summary, json.dumps(payload)),
        )

    # -- settings --------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        values: dict[str, Any] = {s.key: s.default for s in proj.SETTINGS}
        for row in self.conn.execute("SELECT key, value FROM settings"):
            if row["key"] in values:
                values[row["key"]] = json.loads(row["value"])
        return values

    def get_setting(self, key: str) -> Any:
        proj.setting(key)
        return self.settings()[key]

    def set_setting(self, key: str, value: Any) -> Any:
        parsed = proj.setting(key).parse(value)
        with self.transaction():
            self.conn.execute(
                "INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(parsed)),
            )
        return parsed

    # -- classes ---------------------------------------------------------------------

    def classes(self) -> list[ClassRow]:
        rows = self.conn.execute("SELECT * FROM classes WHERE deleted = 0 ORDER BY position, id").fetchall()
        return [_class(r) for r in rows]

    def class_names(self) -> list[str]:
        return [c.name for c in self.classes()]

    def get_class(self, name: str) -> ClassRow:
        key = proj.name_key(name.strip())
        for c in self.classes():
            if proj.name_key(c.name) == key:
                return c
        known = ", ".join(self.class_names()) or "none yet"
        raise NotFound(f"No class {name!r} in project {self.name!r}. Classes: {known}.")

    def _class_by_id(self, class_id: int) -> sqlite3.Row:
        row: sqlite3.Row | None = self.conn.execute("SELECT * FROM classes WHERE id = ?", (class_id,)).fetchone()
        if row is None:
            raise NotFound(f"No class with id {class_id}.")
        return row

    def _check_free(self, name: str, except_id: int | None = None) -> None:
        key = proj.name_key(name)
        row = self.conn.execute("SELECT id, name FROM classes WHERE name_key = ? AND deleted = 0", (key,)).fetchone()
        if row is not None and row["id"] != except_id:
            raise Conflict(
                f"Class {name!r} already exists as {row['name']!r} (names are case-insensitive). Pick another name."
            )

    def add_class(
        self, name: str, names: Sequence[str] = (), template: str = "{name}", *, record: bool = True
    ) -> ClassRow:
        name = proj.validate_name(name)
        template = proj.validate_template(template)
        clean = proj.clean_search_names(list(names))
        with self.transaction():
            self._check_free(name)
            return self._insert_class(name, clean, template, record=record)

    def ensure_class(self, name: str, *, created: list[str] | None = None) -> ClassRow:
        """The class named ``name`` (case-insensitive), created when missing, race-free.

        Two processes importing the same folder both get the one class; only the one that
        created it records the ``add_class`` event and appends the name to ``created``.
        """
        key = proj.name_key(name.strip())
        found = self._class_by_key(key)
        if found is not None:
            return found
        valid = proj.validate_name(name)  # only a new name must pass today's rules
        with self.transaction():  # re-check under the write lock: another process may have made it
            found = self._class_by_key(proj.name_key(valid))
            if found is not None:
                return found
            row = self._insert_class(valid, (), "{name}", record=True)
        if created is not None:
            created.append(valid)
        return row

    def _class_by_key(self, key: str) -> ClassRow | None:
        row = self.conn.execute("SELECT * FROM classes WHERE name_key = ? AND deleted = 0", (key,)).fetchone()
        return None if row is None else _class(row)

    def _insert_class(self, name: str, names: Sequence[str], template: str, *, record: bool) -> ClassRow:
        position = self.conn.execute("SELECT coalesce(max(position), 0) + 1 FROM classes").fetchone()[0]
        cur = self.conn.execute(
            "INSERT INTO classes(name, name_key, names, template, position, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (name, proj.name_key(name), json.dumps(list(names)), template, position, now()),
        )
        class_id = int(cur.lastrowid or 0)
        if record:
            self._event("add_class", f"added class {name}", {"class_id": class_id})
        # Under the lock with the journal replayed: no pending move can still target this folder.
        (self.root / "images" / name).mkdir(parents=True, exist_ok=True)
        return _class(self._class_by_id(class_id))

    def update_class(self, name: str, *, names: Sequence[str] | None = None, template: str | None = None) -> ClassRow:
        """Edit search names and/or query template (not undoable: they are settings)."""
        cls = self.get_class(name)
        new_names = proj.clean_search_names(list(names)) if names is not None else cls.names
        new_template = proj.validate_template(template) if template is not None else cls.template
        with self.transaction():
            self.conn.execute(
                "UPDATE classes SET names = ?, template = ? WHERE id = ?",
                (json.dumps(list(new_names)), new_template, cls.id),
            )
        return self.get_class(cls.name)

    def rename_class(self, old: str, new: str) -> ClassRow:
        new = proj.validate_name(new)
        with self.transaction():
            cls = self.get_class(old)
            if new == cls.name:
                return cls
            self._rename(cls.id, cls.name, new)
            self._event(
                "rename_class", f"renamed class {cls.name} to {new}", {"class_id": cls.id, "old": cls.name, "new": new}
            )
        return self.get_class(new)

    def _rename(self, class_id: int, old: str, new: str) -> None:
        self._check_free(new, except_id=class_id)
        self.conn.execute("UPDATE classes SET name = ?, name_key = ? WHERE id = ?", (new, proj.name_key(new), class_id))
        self._plan_move(f"images/{old}", f"images/{new}")

    def delete_class(self, name: str, *, force: bool = False) -> int:
        """Remove a class; its images go to the trash. Returns how many images moved.

        Refuses when the class has images unless ``force``: a guard against a slip.
        """
        with self.transaction():
            cls = self.get_class(name)
            ids = [
                r[0] for r in self.conn.execute("SELECT id FROM images WHERE class_id = ? AND deleted = 0", (cls.id,))
            ]
            if ids and not force:
                raise Conflict(
                    f"Class {cls.name!r} has {len(ids)} image(s). Confirm (--force) to move them to the trash "
                    "with the class; undo brings both back."
                )
            self._set_deleted(ids, True)
            self.conn.execute("UPDATE classes SET deleted = 1 WHERE id = ?", (cls.id,))
            self._plan_move(f"images/{cls.name}", f"trash/class-{cls.id}")
            self._event(
                "delete_class", f"deleted class {cls.name} ({len(ids)} images)", {"class_id": cls.id, "image_ids": ids}
            )
        return len(ids)

    # -- images ----------------------------------------------------------------------

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
        near = self._nearest(img.phash, int(settings["near_dup_distance"]))
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
                        split_for(img.sha256, int(settings["valid_pct"])),
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
        return None if row is None else _image(row)

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
        return _image(row)

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
        return [_image(r) for r in self.conn.execute(sql, args)]

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

    # -- candidates ------------------------------------------------------------------

    def add_candidates(self, items: Iterable[CandidateIn]) -> tuple[int, int]:
        """Add search results; returns (added, skipped as known URL or image already stored)."""
        added = skipped = 0
        with self.transaction():
            class_ids = {proj.name_key(c.name): c.id for c in self.classes()}
            for item in items:
                class_id = class_ids.get(proj.name_key(item.label))
                if class_id is None:
                    raise NotFound(f"No class {item.label!r}. Add it first, or fix the label.")
                known = self.conn.execute(
                    "SELECT 1 FROM candidates WHERE image_url = ? UNION SELECT 1 FROM images WHERE source_url = ?",
                    (item.image_url, item.image_url),
                ).fetchone()
                if known:
                    skipped += 1
                    continue
                stamp = now()
                self.conn.execute(
                    "INSERT INTO candidates(class_id, image_url, thumbnail_url, page_url, title, query,"
                    " width, height, source, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        class_id,
                        item.image_url,
                        item.thumbnail_url,
                        item.page_url,
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
            if state not in CANDIDATE_STATES:
                raise InvalidInput(
                    f"Candidate state {state!r} is not valid. Must be one of: {', '.join(CANDIDATE_STATES)}."
                )
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
        return [_candidate(r) for r in self.conn.execute(sql, args)]

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
        return _candidate(row)

    def finish_candidate(
        self, candidate_id: int, *, image_id: int | None = None, error: str | None = None, state: str | None = None
    ) -> None:
        """Record a download attempt: ``downloaded`` with its image, or ``failed`` with a reason.

        ``state`` overrides the resulting state (e.g. ``rejected`` for a previously deleted picture).
        """
        new_state = state or ("downloaded" if image_id is not None and error is None else "failed")
        if new_state not in CANDIDATE_STATES:
            raise InvalidInput(f"Candidate state {new_state!r} is not valid. Must be one of: {CANDIDATE_STATES}.")
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
        if state not in ("pending", "accepted", "rejected"):
            raise InvalidInput(f"Decision {state!r} is not valid. Must be one of: pending, accepted, rejected.")
        target = self.get_class(label).id if label else None
        with self.transaction():  # read and write under one lock: another tab may be deciding too
            return self._decide(ids, state, label, target, only_pending)

    def _decide(self, ids: Iterable[int], state: str, label: str | None, target: int | None, only_pending: bool) -> int:
        rows = [self.get_candidate(int(i)) for i in dict.fromkeys(ids)]
        changed = [
            r
            for r in rows
            if r.state != "downloaded"
            and (r.state == "pending" or not only_pending)
            and (r.state != state or (target is not None and r.class_id != target))
        ]
        if not changed:
            return 0
        with self.transaction():
            for r in changed:
                self.conn.execute(
                    "UPDATE candidates SET state = ?, class_id = ?, updated_at = ? WHERE id = ?",
                    (state, target or r.class_id, now(), r.id),
                )
            moved = f" to {label}" if label else ""
            self._event(
                "decide",
                f"{state} {len(changed)} candidate(s){moved}",
                {"items": [[r.id, r.state, r.class_id, r.error] for r in changed]},
            )
        return len(changed)

    # -- history and undo -------------------------------------------------------------

    def history(self, limit: int = 50) -> list[Event]:
        rows = self.conn.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [Event(r["id"], r["at"], r["kind"], r["summary"], bool(r["undone"])) for r in rows]

    def undo(self) -> str:
        """Invert the newest action not yet undone, exactly: labels, files, deleted state."""
        with self.transaction():  # two tabs clicking Undo undo two actions, not one twice
            return self._undo_newest()

    def _undo_newest(self) -> str:
        row = self.conn.execute("SELECT * FROM events WHERE undone = 0 ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            raise NothingToUndo(f"Nothing to undo in project {self.name!r}.")
        payload = json.loads(row["payload"])
        kind = row["kind"]
        with self.transaction():
            if kind == "relabel":
                self._set_class([(image_id, from_id) for image_id, from_id in payload["items"]])
            elif kind in ("delete", "import"):
                # undo of a delete restores; undo of an import moves the images to the trash
                self._set_deleted(payload["ids"], kind == "import")
            elif kind == "restore":
                self._set_deleted(payload["ids"], True)
            elif kind == "rename_class":
                self._rename(payload["class_id"], payload["new"], payload["old"])
            elif kind == "delete_class":
                cls = self._class_by_id(payload["class_id"])
                self._check_free(cls["name"], except_id=cls["id"])
                self.conn.execute("UPDATE classes SET deleted = 0 WHERE id = ?", (cls["id"],))
                self._plan_move(f"trash/class-{cls['id']}", f"images/{cls['name']}")
                self._set_deleted(payload["image_ids"], False)
            elif kind == "add_class":
                cls = self._class_by_id(payload["class_id"])
                used = self.conn.execute(
                    "SELECT (SELECT count(*) FROM images WHERE class_id = ? AND deleted = 0) + "
                    "(SELECT count(*) FROM candidates WHERE class_id = ?)",
                    (cls["id"], cls["id"]),
                ).fetchone()[0]
                if used:
                    raise Conflict(
                        f"Cannot undo adding class {cls['name']!r}: it has {used} image(s)/candidate(s). "
                        "Delete the class instead."
                    )
                self.conn.execute("UPDATE classes SET deleted = 1 WHERE id = ?", (cls["id"],))
                self._plan_move(f"images/{cls['name']}", f"trash/class-{cls['id']}")
            elif kind == "decide":
                for cid, state, class_id, error in payload["items"]:
                    self.conn.execute(
                        "UPDATE candidates SET state = ?, class_id = ?, error = ?, updated_at = ? WHERE id = ?",
                        (state, class_id, error, now(), cid),
                    )
            else:
                raise StoreError(f"Event kind {kind!r} cannot be undone (unknown kind).")
            self.conn.execute("UPDATE events SET undone = 1 WHERE id = ?", (row["id"],))
        return f"Undid: {row['summary']}"

    # -- overview --------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Per-class counts: candidates by state, active/valid/flagged/deleted images."""
        rows: list[dict[str, Any]] = []
        for c in self.classes():
            counts: dict[str, Any] = {"id": c.id, "class": c.name}
            for state in CANDIDATE_STATES:
                counts[state] = 0
            for r in self.conn.execute(
                "SELECT state, count(*) FROM candidates WHERE class_id = ? GROUP BY state", (c.id,)
            ):
                counts[r[0]] = r[1]
            img = self.conn.execute(
                "SELECT sum(deleted = 0), sum(deleted = 0 AND split = 'valid'), "
                "sum(deleted = 0 AND flags != ''), sum(deleted = 1) FROM images WHERE class_id = ?",
                (c.id,),
            ).fetchone()
            counts["images"] = img[0] or 0
            counts["valid"] = img[1] or 0
            counts["flagged"] = img[2] or 0
            counts["deleted"] = img[3] or 0
            rows.append(counts)
        return rows
