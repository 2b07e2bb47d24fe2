"""Store: migrations, stable split, undo, and crash consistency between files and DB."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path

import pytest
from helpers import files_under, image_bytes, shape_image

from lotr_labeler.errors import Conflict, InvalidInput, NotFound, NothingToUndo, StoreError
from lotr_labeler.imaging import Normalized, normalize
from lotr_labeler.store import DB_NAME, CandidateIn, Store, migrate, schema, split_for
from lotr_labeler.workspace import create_project, open_project


def snapshot(store: Store) -> tuple[list[tuple[int, str, bool, str]], set[str]]:
    """(id, label, deleted, split) for every image, and the image files on disk."""
    rows = [(r.id, r.label, r.deleted, r.split) for r in store.images() + store.images(deleted=True)]
    return sorted(rows), files_under(store.root / "images") | files_under(store.root / "trash")


def assert_consistent(store: Store) -> None:
    """Every row's file is where the row says, and no other image file exists."""
    rows = store.images() + store.images(deleted=True)
    expected = {r.relpath for r in rows}
    on_disk = {f"images/{p}" for p in files_under(store.root / "images")}
    on_disk |= {f"trash/{p}" for p in files_under(store.root / "trash") if "/" not in p}
    assert on_disk == expected


# -- migrations --------------------------------------------------------------------------


def test_migrations_on_empty_db(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    assert migrate(conn) == len(schema.MIGRATIONS)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(schema.MIGRATIONS)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"classes", "images", "candidates", "events", "file_ops", "settings"} <= tables


def test_migrations_on_existing_db_keep_data(store: Store) -> None:
    before = snapshot(store)
    root = store.root
    store.close()
    reopened = Store(root)  # migrate() runs again: must be a no-op
    assert snapshot(reopened) == before
    assert reopened.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


def test_new_migration_applies_to_existing_db(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    root = store.root
    store.close()
    extra = ("002_test_column", "ALTER TABLE images ADD COLUMN note TEXT;")
    monkeypatch.setattr("lotr_labeler.store.db.MIGRATIONS", (*schema.MIGRATIONS, extra))
    s = Store(root)
    cols = {r[1] for r in s.conn.execute("PRAGMA table_info(images)")}
    assert "note" in cols and len(s.images()) == 18
    assert s.conn.execute("PRAGMA user_version").fetchone()[0] == len(schema.MIGRATIONS) + 1
    s.close()


def test_failed_migration_leaves_db_unchanged(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    root = store.root
    store.close()
    bad = ("002_bad", "CREATE TABLE half_done(x); INSERT INTO no_such_table VALUES (1);")
    monkeypatch.setattr("lotr_labeler.store.db.MIGRATIONS", (*schema.MIGRATIONS, bad))
    with pytest.raises(StoreError, match="002_bad"):
        Store(root)
    conn = sqlite3.connect(root / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(schema.MIGRATIONS)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name='half_done'").fetchone()[0] == 0


def test_db_newer_than_code_is_refused(empty_store: Store) -> None:
    empty_store.conn.execute("PRAGMA user_version = 99")
    root = empty_store.root
    empty_store.close()
    with pytest.raises(StoreError, match="Upgrade"):
        Store(root)


# -- split -------------------------------------------------------------------------------


def test_split_is_about_20_percent_and_deterministic() -> None:
    import hashlib

    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5000)]
    valid = sum(split_for(h, 20) == "valid" for h in hashes) / len(hashes)
    assert 0.17 < valid < 0.23
    assert [split_for(h, 20) for h in hashes] == [split_for(h, 20) for h in hashes]


def test_split_never_changes_on_add_or_relabel(store: Store) -> None:
    before = {r.id: r.split for r in store.images()}
    assert {"train", "valid"} == set(before.values())
    for i in range(10):
        store.add_image(normalize(image_bytes(shape_image("circle", 500 + i))), "circle", source="upload")
    store.relabel(list(before)[:5], "square")
    store.set_setting("valid_pct", 50)  # only affects images added later
    after = {r.id: r.split for r in store.images()}
    assert {k: after[k] for k in before} == before


# -- classes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("..", "'..'"),
        ("a..b", "'..'"),
        ("a/b", "'/'"),
        ("a\\b", re.escape("'a\\b' contains '\\'.")),  # as typed: repr() doubled the backslash
        ("bell\x07", "control"),
        ("new\nline", "control"),
        ("x" * 65, "limit is 64"),
    ],
)
def test_bad_class_names_are_refused_and_nothing_written(empty_store: Store, name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        empty_store.add_class(name)
    assert empty_store.classes() == []
    assert list((empty_store.root / "images").iterdir()) == []
    assert empty_store.history() == []


def test_case_insensitive_duplicate_class_is_refused(empty_store: Store) -> None:
    empty_store.add_class("Elves")
    with pytest.raises(Conflict, match="already exists as 'Elves'"):
        empty_store.add_class("elves")
    empty_store.add_class("Dwarves")
    with pytest.raises(Conflict):
        empty_store.rename_class("Dwarves", "ELVES")
    assert empty_store.class_names() == ["Elves", "Dwarves"]


def test_unknown_class_error_lists_known(store: Store) -> None:
    with pytest.raises(NotFound, match="circle, square, triangle"):
        store.get_class("hexagon")


def test_template_validation(empty_store: Store) -> None:
    with pytest.raises(InvalidInput, match="placeholder"):
        empty_store.add_class("Ents", ["Treebeard"], "{nam} face")
    c = empty_store.add_class("Ents", ["Treebeard", " treebeard ", "Quickbeam"], "{name} ent")
    assert c.queries == ["Treebeard ent", "Quickbeam ent"]


# -- undo --------------------------------------------------------------------------------


def test_undo_relabel_restores_label_and_file(store: Store) -> None:
    before = snapshot(store)
    ids = [r.id for r in store.images("circle")][:3]
    assert store.relabel(ids, "square") == 3
    assert all(store.get_image(i).label == "square" for i in ids)
    assert all((store.root / f"images/square/{i}.jpg").exists() for i in ids)
    assert_consistent(store)
    store.undo()
    assert snapshot(store) == before
    assert_consistent(store)


def test_undo_delete_restores_file_and_state(store: Store) -> None:
    before = snapshot(store)
    img = store.images("triangle")[0]
    store.delete_images([img.id])
    assert store.get_image(img.id).deleted
    assert (store.root / f"trash/{img.id}.jpg").exists()
    assert not (store.root / img.relpath).exists()
    assert store.count("triangle") == 5
    store.undo()
    assert snapshot(store) == before
    assert_consistent(store)


def test_undo_rename_class_moves_folder_back(store: Store) -> None:
    before = snapshot(store)
    store.rename_class("circle", "Rounds")
    assert not (store.root / "images/circle").exists()
    assert len(files_under(store.root / "images/Rounds")) == 6
    assert_consistent(store)
    store.undo()
    assert snapshot(store) == before
    assert store.class_names() == ["circle", "square", "triangle"]


def test_delete_class_needs_force_and_undo_brings_it_back(store: Store) -> None:
    before = snapshot(store)
    with pytest.raises(Conflict, match="6 image"):
        store.delete_class("square")
    assert store.delete_class("square", force=True) == 6
    assert store.class_names() == ["circle", "triangle"]
    assert_consistent(store)
    store.add_class("Square")  # the name is free while the class is deleted
    store.undo()  # LIFO: first the new class goes...
    store.undo()  # ...then the deleted one comes back with its images
    assert snapshot(store) == before
    assert store.class_names() == ["circle", "square", "triangle"]
    assert_consistent(store)


def test_undo_sequence_is_lifo_and_exact(store: Store) -> None:
    before = snapshot(store)
    a, b = (r.id for r in store.images("circle")[:2])
    store.relabel([a], "square")
    store.delete_images([a, b])
    store.rename_class("square", "box")
    store.restore_images([a])
    for _ in range(4):
        store.undo()
        assert_consistent(store)
    assert snapshot(store) == before
    store.undo()  # the import, with the classes it created: one step
    assert store.count() == 0 and store.count(deleted=True) == 18
    assert_consistent(store)
    assert store.classes() == []
    with pytest.raises(NothingToUndo):
        store.undo()


def test_candidate_decisions_undo(store: Store) -> None:
    store.add_candidates([CandidateIn("circle", f"http://example.com/{i}.jpg") for i in range(4)])
    ids = [c.id for c in store.candidates()]
    assert store.decide(ids[:2], "accepted") == 2
    assert store.decide(ids[2:3], "rejected", label="square") == 1
    assert store.get_candidate(ids[2]).label == "square"
    store.undo()
    c = store.get_candidate(ids[2])
    assert (c.state, c.label) == ("pending", "circle")
    store.undo()
    assert {c.state for c in store.candidates()} == {"pending"}


def test_candidates_dedupe_by_url_and_against_images(store: Store) -> None:
    img = store.images()[0]
    store.conn.execute("UPDATE images SET source_url = 'http://x/known.jpg' WHERE id = ?", (img.id,))
    added, skipped = store.add_candidates(
        [
            CandidateIn("circle", "http://x/a.jpg"),
            CandidateIn("circle", "http://x/a.jpg"),
            CandidateIn("square", "http://x/known.jpg"),
        ]
    )
    assert (added, skipped) == (1, 2)


# -- crash consistency --------------------------------------------------------------------


class Crash(Exception):
    pass


def test_crash_after_commit_before_move_is_repaired_on_open(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    img = store.images("circle")[0]
    root = store.root

    def crash(self: Store) -> None:
        raise Crash

    monkeypatch.setattr(Store, "_apply_file_ops", crash)
    with pytest.raises(Crash):
        store.relabel([img.id], "triangle")
    # The DB committed, the file did not move yet: the journal holds the move.
    assert store.get_image(img.id).label == "triangle"
    assert (root / f"images/circle/{img.id}.jpg").exists()
    store.close()
    monkeypatch.undo()
    reopened = Store(root)
    assert (root / f"images/triangle/{img.id}.jpg").exists()
    assert reopened.conn.execute("SELECT count(*) FROM file_ops").fetchone()[0] == 0
    assert_consistent(reopened)
    reopened.close()


def test_crash_before_commit_changes_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(store)
    img = store.images("circle")[0]
    real = Store._plan_move

    def crash(self: Store, src: str, dst: str) -> None:
        real(self, src, dst)
        raise Crash

    monkeypatch.setattr(Store, "_plan_move", crash)
    with pytest.raises(Crash):
        store.delete_images([img.id])
    monkeypatch.undo()
    assert snapshot(store) == before
    assert store.conn.execute("SELECT count(*) FROM file_ops").fetchone()[0] == 0
    assert store.history()[0].kind == "import"


def test_crash_while_adding_leaves_no_image_and_temp_is_cleaned(
    empty_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_store.add_class("a")
    img = normalize(image_bytes(shape_image("circle", 1)))

    def crash(self: Store, src: str, dst: str) -> None:
        raise Crash

    monkeypatch.setattr(Store, "_plan_move", crash)
    with pytest.raises(Crash):
        empty_store.add_image(img, "a", source="upload")
    monkeypatch.undo()
    assert empty_store.count() == 0
    assert files_under(empty_store.root / "images") == set()
    assert list((empty_store.root / "tmp").iterdir()) == []


def test_stale_temp_files_are_removed_on_open(empty_store: Store) -> None:
    stale = empty_store.root / "tmp" / "orphan.jpg"
    fresh = empty_store.root / "tmp" / "writing.jpg"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    root = empty_store.root
    empty_store.close()
    Store(root).close()
    assert not stale.exists()
    assert fresh.exists()  # may belong to another process mid-write


# -- workspace ---------------------------------------------------------------------------


def test_workspace_open_rules(data_root: Path) -> None:
    with pytest.raises(NotFound, match="init"):
        open_project(data_root)
    create_project(data_root, "one", "empty").close()
    assert open_project(data_root).name == "one"
    create_project(data_root, "two", "lotr").close()
    assert open_project(data_root).name == "two"  # the last used
    (data_root / ".last_project").unlink()
    with pytest.raises(InvalidInput, match="one, two"):
        open_project(data_root)
    with pytest.raises(Conflict, match="exists already"):
        create_project(data_root, "one")
    with pytest.raises(InvalidInput):
        create_project(data_root, "../escape")
    assert not (data_root.parent / "escape").exists()


def test_lotr_template_has_seed_classes(data_root: Path) -> None:
    s = create_project(data_root)
    assert s.name == "lotr-races"
    assert s.class_names() == ["Ainur", "Elves", "Dwarves", "Hobbits", "Men", "Orcs", "no-middle-earth"]
    assert s.get_class("Hobbits").queries[0] == "Frodo lotr movie face"
    assert s.get_class("no-middle-earth").template == "{name} face"
    s.close()


def test_bulk_decisions_only_touch_pending(store: Store) -> None:
    store.add_candidates([CandidateIn("circle", f"http://example.com/{i}.jpg") for i in range(3)])
    ids = [c.id for c in store.candidates()]
    store.decide([ids[0]], "rejected")  # taken in another tab after the page was drawn
    assert store.decide(ids, "accepted", only_pending=True) == 2
    assert [store.get_candidate(i).state for i in ids] == ["rejected", "accepted", "accepted"]


def test_same_image_added_by_another_process_meanwhile_is_a_duplicate(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    img = normalize(image_bytes(shape_image("circle", 4242)))
    other = Store(store.root)  # a second connection, as another process would hold
    real_stage = Store.stage_image

    def race(self: Store, image: Normalized) -> Path:
        if self is store:  # after the fast-path check, before the write lock
            monkeypatch.setattr(Store, "stage_image", real_stage)
            other.add_image(img, "square", source="upload")  # lands between check and insert
        return real_stage(self, image)

    monkeypatch.setattr(Store, "stage_image", race)
    result = store.add_image(img, "circle", source="upload")
    assert result.duplicate and result.image.label == "square"
    assert store.count() == 19 and not list((store.root / "tmp").iterdir())
    other.close()


def test_file_move_failing_after_commit_keeps_the_image(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    img = normalize(image_bytes(shape_image("square", 5151)))
    real_move = Store._move

    def broken_disk(src: Path, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Store, "_move", staticmethod(broken_disk))
    # The row committed, so no error is reported (it would invite a second attempt): a warning is logged.
    row = store.add_image(img, "square", source="upload").image
    # Its only copy waits in tmp/ for the journaled move, not deleted.
    (waiting,) = (store.root / "tmp").iterdir()
    assert waiting.read_bytes() == img.jpeg
    assert store.conn.execute("SELECT count(*) FROM file_ops").fetchone()[0] == 1
    monkeypatch.setattr(Store, "_move", staticmethod(real_move))
    root = store.root
    store.close()
    reopened = Store(root)
    assert reopened.path(row).exists()
    assert_consistent(reopened)
    reopened.close()


def test_restore_into_a_deleted_class_is_refused(store: Store) -> None:
    img = store.images("circle")[0]
    store.delete_images([img.id])
    store.delete_class("circle", force=True)
    with pytest.raises(Conflict, match="Undo the class deletion first"):
        store.restore_images([img.id])
    assert store.get_image(img.id).deleted


def test_migration_raced_by_another_process_is_not_an_error(tmp_path: Path) -> None:
    """Two first starts at once: the one that loses the race sees the work done and goes on."""
    db = tmp_path / "x.sqlite"
    winner = sqlite3.connect(db, isolation_level=None)
    migrate(winner)

    class StaleFirstRead:
        """A connection whose first version read predates the winner's migrations."""

        def __init__(self) -> None:
            self.conn = sqlite3.connect(db, isolation_level=None)
            self.stale = True

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if self.stale and "user_version" in sql:
                self.stale = False
                return self.conn.execute("SELECT 0")
            return self.conn.execute(sql, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(self.conn, name)

    loser = StaleFirstRead()
    assert migrate(loser) == len(schema.MIGRATIONS)  # type: ignore[arg-type]
    assert loser.conn.execute("PRAGMA user_version").fetchone()[0] == len(schema.MIGRATIONS)


def test_ensure_class_returns_existing_or_creates_once(empty_store: Store) -> None:
    made = empty_store.add_class("Elves")
    events = len(empty_store.history())
    created: list[str] = []
    assert empty_store.ensure_class(" elves ", created=created) == made  # case-insensitive, no event
    assert created == [] and len(empty_store.history()) == events
    dwarves = empty_store.ensure_class("Dwarves", created=created)
    assert created == ["Dwarves"] and dwarves.name == "Dwarves"
    assert (empty_store.root / "images" / "Dwarves").is_dir()
    assert empty_store.history()[0].kind == "add_class"
    assert empty_store.ensure_class("DWARVES", created=created) == dwarves and created == ["Dwarves"]
    with pytest.raises(InvalidInput):
        empty_store.ensure_class("a/b")
