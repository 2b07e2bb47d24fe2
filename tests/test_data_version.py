"""The data version and the per-process memo keyed on it (store/version.py, issue 14).

Every memoized value must follow a write made through another connection (another tab, the CLI,
a background job) on the very next call, and nothing computed inside a transaction that may
still roll back may be kept.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lotr_labeler.store import Store, version
from lotr_labeler.workspace import create_project


@pytest.fixture(autouse=True)
def _fresh_memo() -> Iterator[None]:
    version.clear()
    yield
    version.clear()


def test_every_memoized_table_bumps_the_version(store: Store) -> None:
    before = version.data_version(store)
    img = store.images()[0]
    other = next(c.name for c in store.classes() if c.id != img.class_id)
    store.relabel([img.id], other)
    after_relabel = version.data_version(store)
    store.set_setting("near_dup_distance", 5)
    after_setting = version.data_version(store)
    store.delete_images([img.id])
    after_delete = version.data_version(store)
    assert before[0] == after_delete[0]  # same database, same token
    assert before[1] < after_relabel[1] < after_setting[1] < after_delete[1]


def test_a_relabel_by_another_connection_shows_on_the_next_call(store: Store) -> None:
    first = store.images()
    assert store.images() == first  # memoized: same rows
    img = first[0]
    other = next(c.name for c in store.classes() if c.id != img.class_id)
    with Store(store.root) as second:  # another process' connection
        second.relabel([img.id], other)
    again = {r.id: r for r in store.images()}
    assert again[img.id].label == other
    assert store.images(other)[-1].id == img.id or img.id in {r.id for r in store.images(other)}


def test_a_delete_by_another_connection_leaves_the_listing(store: Store) -> None:
    ids = [r.id for r in store.images()]
    with Store(store.root) as second:
        second.delete_images(ids[:2])
    assert [r.id for r in store.images()] == ids[2:]
    assert store.count() == len(ids) - 2


def test_memo_returns_the_stored_value_until_a_write(store: Store) -> None:
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert version.memo(store, "k", compute) == 1
    assert version.memo(store, "k", compute) == 1
    assert version.memo(store, "other key", compute) == 2
    with Store(store.root) as second:
        second.set_setting("page_size", 24)
    assert version.memo(store, "k", compute) == 3


def test_nothing_is_memoized_inside_a_transaction_that_rolls_back(store: Store) -> None:
    ids = [r.id for r in store.images()]

    class Abort(Exception):
        pass

    with pytest.raises(Abort), store.transaction():
        store.set_setting("page_size", 24)
        assert version.memo(store, "k", lambda: "inside") == "inside"
        assert [r.id for r in store.images()] == ids
        raise Abort
    # The same write committed now brings the counter to the value it had inside.
    store.set_setting("page_size", 24)
    assert version.memo(store, "k", lambda: "after") == "after"


def test_a_project_created_again_at_the_same_path_is_not_served_old_values(data_root: Path) -> None:
    first = create_project(data_root, "again", "empty")
    root, counter = first.root, version.data_version(first)[1]
    assert version.memo(first, "k", lambda: "old project") == "old project"
    first.close()
    shutil.rmtree(root)
    second = create_project(data_root, "again", "empty")
    try:
        assert version.data_version(second)[1] == counter  # the same writes: the same counter
        assert version.memo(second, "k", lambda: "new project") == "new project"
    finally:
        second.close()


def test_the_memo_is_bounded_least_recently_used_first(store: Store) -> None:
    def value(v: object) -> Callable[[], object]:
        return lambda: v

    for k in range(version.MAX_ENTRIES):
        version.memo(store, k, value(k))
    version.memo(store, 0, value("recomputed"))  # a hit: 0 becomes the most recently used
    version.memo(store, "one more", value(0))  # drops the least recently used: 1
    assert version.memo(store, 0, value("recomputed")) == 0
    assert version.memo(store, 1, value("recomputed")) == "recomputed"
