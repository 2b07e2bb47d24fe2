"""The undo registry and the one meta get/set of the store."""

from __future__ import annotations

import json
import sqlite3

import pytest

from lotr_labeler.errors import Conflict, NothingToUndo, StoreError
from lotr_labeler.store import DB_NAME, UNDO, Store, undoes


def test_unknown_event_kind_raises_naming_it_and_stays_undoable(empty_store: Store) -> None:
    with empty_store.transaction():
        empty_store._event("teleport", "teleported 3 images", {"ids": [1, 2, 3]})
    with pytest.raises(StoreError, match=r"'teleport' cannot be undone.*Known kinds: .*relabel"):
        empty_store.undo()
    assert not empty_store.history()[0].undone  # the failed undo changed nothing


def test_registering_a_second_inverse_for_a_kind_is_refused() -> None:
    before = dict(UNDO)
    with pytest.raises(StoreError, match="'relabel' has an inverse already"):

        @undoes("relabel")
        def _again(store: Store, payload: dict[str, object]) -> None: ...

    assert before == UNDO


def test_undo_runs_the_registered_inverse_with_the_payload(empty_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, object]] = []
    monkeypatch.setitem(UNDO, "test_kind", lambda store, payload: seen.append(payload))
    with empty_store.transaction():
        empty_store._event("test_kind", "a test action", {"x": 1})
    assert empty_store.undo() == "Undid: a test action"
    assert seen == [{"x": 1}]
    with pytest.raises(NothingToUndo):
        empty_store.undo()


def test_meta_get_set_delete(empty_store: Store) -> None:
    assert empty_store.meta_get("k") is None
    empty_store.meta_set("k", "one")
    empty_store.meta_set("k", json.dumps({"two": 2}))
    assert json.loads(empty_store.meta_get("k") or "") == {"two": 2}
    empty_store.meta_delete("k", only_if="one")  # holds another value: kept
    assert empty_store.meta_get("k") is not None
    empty_store.meta_delete("k")
    assert empty_store.meta_get("k") is None


def test_events_since(empty_store: Store) -> None:
    start = empty_store.last_event_id()
    empty_store.add_class("elves")
    empty_store.add_class("dwarves")
    assert empty_store.last_event_id() == start + 2
    assert empty_store.count_events_after(start) == 2


def test_moves_replayed_before_a_failing_change_are_not_replayed_again(empty_store: Store) -> None:
    """Journaled moves left by a killed process are replayed at the start of the next write. If that
    write then fails, the moves stay done: replaying them a second time would carry the file a later
    move put in place (images/A/9.jpg) off with the folder an earlier move took away."""
    root = empty_store.root
    (root / "images" / "A").mkdir(parents=True)
    (root / "images" / "A" / "1.jpg").write_bytes(b"one")
    (root / "tmp" / "x.jpg").write_bytes(b"nine")
    raw = sqlite3.connect(root / DB_NAME, isolation_level=None)  # the killed process's committed journal
    raw.executemany(
        "INSERT INTO file_ops(src, dst) VALUES (?, ?)",
        [("images/A", "trash/class-7"), ("tmp/x.jpg", "images/A/9.jpg")],
    )
    raw.close()
    with pytest.raises(Conflict), empty_store.transaction():
        raise Conflict("this change fails after the replay")
    empty_store.set_setting("page_size", 24)  # the next write: nothing left to replay
    assert (root / "images" / "A" / "9.jpg").read_bytes() == b"nine"
    assert (root / "trash" / "class-7" / "1.jpg").read_bytes() == b"one"
    assert empty_store.conn.execute("SELECT count(*) FROM file_ops").fetchone()[0] == 0
