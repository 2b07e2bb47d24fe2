"""The ``classes`` table: the labels of a project, each with its folder under ``images/``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from lotr_labeler import project as proj
from lotr_labeler.errors import Conflict, NotFound
from lotr_labeler.store.db import now
from lotr_labeler.store.history import Payload, undoes
from lotr_labeler.store.rows import ClassRow, class_row
from lotr_labeler.store.settings import SettingsMixin


class ClassesMixin(SettingsMixin):
    # Provided by ImagesMixin (images owns their rows); declared so the class methods type-check.
    def _active_image_ids(self, class_id: int) -> list[int]:
        raise NotImplementedError

    def _set_deleted(self, ids: Sequence[int], deleted: bool) -> None:
        raise NotImplementedError

    # Provided by CandidatesMixin.
    def _candidates_in_class(self, class_id: int) -> int:
        raise NotImplementedError

    def classes(self) -> list[ClassRow]:
        rows = self.conn.execute("SELECT * FROM classes WHERE deleted = 0 ORDER BY position, id").fetchall()
        return [class_row(r) for r in rows]

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

    def _set_class_deleted(self, class_id: int, deleted: bool) -> None:
        self.conn.execute("UPDATE classes SET deleted = ? WHERE id = ?", (int(deleted), class_id))

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
        return None if row is None else class_row(row)

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
        return class_row(self._class_by_id(class_id))

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
            ids = self._active_image_ids(cls.id)
            if ids and not force:
                raise Conflict(
                    f"Class {cls.name!r} has {len(ids)} image(s). Confirm (--force) to move them to the trash "
                    "with the class; undo brings both back."
                )
            self._set_deleted(ids, True)
            self._set_class_deleted(cls.id, True)
            self._plan_move(f"images/{cls.name}", f"trash/class-{cls.id}")
            self._event(
                "delete_class", f"deleted class {cls.name} ({len(ids)} images)", {"class_id": cls.id, "image_ids": ids}
            )
        return len(ids)


@undoes("rename_class")
def _undo_rename(store: ClassesMixin, payload: Payload) -> None:
    store._rename(payload["class_id"], payload["new"], payload["old"])


@undoes("delete_class")
def _undo_delete_class(store: ClassesMixin, payload: Payload) -> None:
    cls = store._class_by_id(payload["class_id"])
    store._check_free(cls["name"], except_id=cls["id"])
    store._set_class_deleted(cls["id"], False)
    store._plan_move(f"trash/class-{cls['id']}", f"images/{cls['name']}")
    store._set_deleted(payload["image_ids"], False)


@undoes("add_class")
def _undo_add_class(store: ClassesMixin, payload: Payload) -> None:
    cls = store._class_by_id(payload["class_id"])
    used = len(store._active_image_ids(cls["id"])) + store._candidates_in_class(cls["id"])
    if used:
        raise Conflict(
            f"Cannot undo adding class {cls['name']!r}: it has {used} image(s)/candidate(s). Delete the class instead."
        )
    store._set_class_deleted(cls["id"], True)
    store._plan_move(f"images/{cls['name']}", f"trash/class-{cls['id']}")
