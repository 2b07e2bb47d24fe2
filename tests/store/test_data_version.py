"""The data version and the per-process memo keyed on it (store/version.py, issue 14).

Every memoized value must follow a write made through another connection (another tab, the CLI,
a background job) on the very next call, and nothing computed inside a transaction that may
still roll back may be kept.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import image_bytes, shape_image

from lotr_labeler.imaging import Normalized
from lotr_labeler.store import Store, version
from lotr_labeler.workspace import create_project

JPEG = image_bytes(shape_image("circle", 1), "JPEG")


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


# -- the memoized consumers follow writes by another connection ---------------------------------


def test_ranking_follows_a_keep_and_a_relabel_by_another_connection(store: Store) -> None:
    from lotr_labeler.review import decisions, queue

    ranked = queue.ranking(store)
    assert queue.ranking(store) == ranked
    first, second = ranked[0].id, ranked[1].id
    other = next(c.name for c in store.classes() if c.name != ranked[1].given)
    with Store(store.root) as tab:
        decisions.keep(tab, [first])
        tab.relabel([second], other)
    again = {it.id: it for it in queue.ranking(store)}
    assert first not in again
    assert again[second].given == other
    assert first in {it.id for it in queue.ranking(store, status="reviewed")}


def fake(phash: int, tag: str) -> Normalized:
    """A storable image with this phash (``tag`` makes its sha256 unique)."""
    return Normalized(JPEG, 64, 64, hashlib.sha256(tag.encode()).hexdigest(), f"{phash:016x}")


def test_duplicate_groups_follow_a_delete_by_another_connection(empty_store: Store) -> None:
    from lotr_labeler.review import duplicates
    from lotr_labeler.store.images import ImageIn

    empty_store.add_class("a")
    empty_store.add_class("b")
    empty_store.add_images([ImageIn(fake(0xF0F0, "x"), "a", "upload"), ImageIn(fake(0xF0F1, "y"), "b", "upload")])
    groups = duplicates.duplicate_groups(empty_store)
    assert [g.conflict for g in groups] == [True]
    with Store(empty_store.root) as tab:
        tab.delete_images([groups[0].ids[1]])
    assert duplicates.duplicate_groups(empty_store) == []


def test_embed_missing_follows_a_new_image_and_a_written_cache(store: Store) -> None:
    import numpy as np

    from lotr_labeler.model import embed

    backbone = embed.resolve_backbone(store, "imagenet", pretrained=False, size=32)
    rows = store.images()
    assert embed.missing(store, backbone) == rows
    cache = embed.cache_for(store, backbone)
    cache.add([r.sha256 for r in rows[:5]], np.ones((5, 4), np.float32))
    cache.save()  # as the embedding job does, in its own process
    assert embed.missing(store, backbone) == rows[5:]
    assert embed.missing(store, backbone, rows[:7]) == rows[5:7]
    with Store(store.root) as tab:
        tab.delete_images([rows[6].id])
    assert embed.missing(store, backbone) == [r for r in rows[5:] if r.id != rows[6].id]


def test_quality_flags_follow_a_cache_written_by_another_process(store: Store) -> None:
    from lotr_labeler.review import quality

    rows = store.images()
    assert quality.missing(store, rows) == rows
    quality.quality_flags(store, rows[:4])  # measures and saves 4
    assert quality.missing(store, rows) == rows[4:]
    (store.cache_dir / quality.CACHE_FILE).unlink()  # another process cleared it
    assert quality.missing(store, rows) == rows


def test_a_rerun_that_changed_nothing_derives_nothing_again(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a page rerun asks for at 20,000 images is computed once per data version."""
    from lotr_labeler.model import embed
    from lotr_labeler.review import decisions, duplicates, queue

    calls: list[str] = []

    def counting(name: str, f: Callable[..., object]) -> Callable[..., object]:
        def wrapper(*args: object) -> object:
            calls.append(name)
            return f(*args)

        return wrapper

    monkeypatch.setattr(queue, "_rank", counting("rank", queue._rank))
    monkeypatch.setattr(duplicates, "_duplicate_groups", counting("groups", duplicates._duplicate_groups))
    monkeypatch.setattr(embed, "_cached_keys", counting("keys", embed._cached_keys))
    backbone = embed.resolve_backbone(store, "imagenet", pretrained=False, size=32)

    def rerun() -> None:
        store.images()
        queue.ranking(store)
        duplicates.duplicate_groups(store)
        embed.missing(store, backbone)

    rerun()
    rerun()
    assert sorted(calls) == ["groups", "keys", "rank"]
    decisions.keep(store, [store.images()[0].id])
    rerun()
    assert sorted(calls) == ["groups", "groups", "keys", "keys", "rank", "rank"]


def test_candidate_triage_follows_a_decision_by_another_connection(
    empty_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lotr_labeler.review import candidates as triage
    from lotr_labeler.store import CandidateIn

    calls: list[int] = []
    real = triage._triage_all

    def counted(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(triage, "_triage_all", counted)
    empty_store.add_class("a")
    empty_store.add_candidates(CandidateIn("a", f"http://example.com/{k}.jpg") for k in range(3))
    pending = triage.triage(empty_store, state="pending")
    assert triage.triage(empty_store, state="pending") == pending and len(pending) == 3
    with Store(empty_store.root) as tab:
        tab.decide([pending[0].id], "accepted")
    assert [t.id for t in triage.triage(empty_store, state="pending")] == [t.id for t in pending[1:]]
    assert len(calls) == 2  # once per data version


# -- page state in meta: no bump (migration 008) --------------------------------------------------


def bumped(store: Store, write: Callable[[], object]) -> bool:
    before = version.data_version(store)
    write()
    return version.data_version(store) != before


def test_a_train_form_edit_keeps_the_memo_a_fit_or_run_change_does_not(store: Store) -> None:
    """The Train page saves its form on every edit: that must not throw away every memo."""
    from lotr_labeler.model import train_form

    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert version.memo(store, "k", compute) == 1
    with Store(store.root) as tab:  # the Train page, in another session
        train_form.save_form(tab, train_form.TrainForm(epochs=7))
        train_form.save_form(tab, train_form.TrainForm(epochs=8, pretrained=False))
        tab.meta_delete(train_form.FORM_KEY)
        train_form.save_form(tab, train_form.TrainForm())
    assert version.memo(store, "k", compute) == 1
    assert train_form.load_form(store) == train_form.TrainForm()  # written all the same
    # What memoized code reads still bumps: the review fit and the current run.
    with Store(store.root) as tab:
        tab.meta_set("review_fit", "{}")
    assert version.memo(store, "k", compute) == 2
    with Store(store.root) as tab:
        tab.meta_set("current_run", "1")
    assert version.memo(store, "k", compute) == 3


def test_the_triggers_agree_with_the_declared_page_state_keys(empty_store: Store) -> None:
    def writes(key: str) -> list[Callable[[], None]]:
        """Insert, update, delete."""
        return [
            lambda: empty_store.meta_set(key, "1"),
            lambda: empty_store.meta_set(key, "2"),
            lambda: empty_store.meta_delete(key),
        ]

    quiet = [*version.UI_META_KEYS, f"{version.UI_META_PREFIX}grid", version.UI_META_PREFIX]
    loud = ["review_fit", "current_run", "ui", "uix", "UI.grid", "train_form2", "xtrain_form", "k"]
    for key in quiet:
        assert not version.bumps_version(key), key
        for write in writes(key):
            assert not bumped(empty_store, write), key
    for key in loud:
        assert version.bumps_version(key), key
        for write in writes(key):
            assert bumped(empty_store, write), key
    # A row renamed from page state to a key that matters (or back) changes what memoized code reads.
    empty_store.meta_set("train_form", "{}")
    rename = "UPDATE meta SET key = ? WHERE key = ?"
    assert bumped(empty_store, lambda: empty_store.conn.execute(rename, ("review_fit", "train_form")))
    assert bumped(empty_store, lambda: empty_store.conn.execute(rename, ("ui.x", "review_fit")))
    assert not bumped(empty_store, lambda: empty_store.conn.execute(rename, ("train_form", "ui.x")))


def test_the_meta_keys_memoized_code_reads_bump_and_the_train_form_does_not() -> None:
    from lotr_labeler.model import train_form
    from lotr_labeler.review import last_fit
    from lotr_labeler.store import runs

    assert version.bumps_version(last_fit.META_KEY)  # the review ranking reads the fit
    assert version.bumps_version(runs.CURRENT_KEY)
    assert not version.bumps_version(train_form.FORM_KEY)  # renamed: declare it (or name it ui.…) again


def test_an_existing_database_gets_the_quiet_meta_triggers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project made before migration 008 (its meta triggers bump on every key) is upgraded on open."""
    from lotr_labeler.store import schema

    old = next(k for k, (name, _) in enumerate(schema.MIGRATIONS) if name.startswith("008"))
    with monkeypatch.context() as m:
        m.setattr("lotr_labeler.store.db.MIGRATIONS", schema.MIGRATIONS[:old])
        with Store.create(tmp_path / "p") as before:
            assert before.conn.execute("PRAGMA user_version").fetchone()[0] == old
            assert bumped(before, lambda: before.meta_set("train_form", "{}"))
    with Store(tmp_path / "p") as upgraded:
        assert upgraded.conn.execute("PRAGMA user_version").fetchone()[0] == len(schema.MIGRATIONS)
        assert not bumped(upgraded, lambda: upgraded.meta_set("train_form", "{}"))
        assert bumped(upgraded, lambda: upgraded.meta_set("review_fit", "{}"))


def test_labels_by_id_follows_a_relabel_a_delete_and_another_connection(store: Store) -> None:
    """Home counts flagged images by class from it (memoized per data version): a change made here or by
    another process shows at the next call, a deleted image is not counted, and the mapping is read-only."""
    rows = store.images()
    assert store.labels_by_id() == {r.id: r.label for r in rows}
    first, second = rows[0], rows[1]
    other = next(c for c in store.class_names() if c != first.label)
    store.relabel([first.id], other)
    assert store.labels_by_id()[first.id] == other
    with Store(store.root) as elsewhere:  # another process's connection
        elsewhere.delete_images([second.id])
    assert second.id not in store.labels_by_id()
    with pytest.raises(TypeError):
        store.labels_by_id()[first.id] = "x"  # type: ignore[index]
