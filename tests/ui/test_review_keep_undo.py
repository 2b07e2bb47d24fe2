"""K / Shift+K / "Keep all" are steps of the history: Z (or `lotr-labeler undo`) puts the images back in the
Review queue, and a decision taken on them since stands."""

from __future__ import annotations

import subprocess
import sys

from lotr_labeler.review import decisions, duplicates
from lotr_labeler.store import Store
from lotr_labeler.ui import cards
from lotr_labeler.ui.cards import GridAction


def test_keep_is_one_undoable_step(store: Store) -> None:
    ids = [img.id for img in store.images()[:4]]
    decisions.keep(store, ids[:1])  # an earlier keep
    assert cards.review_action(store, GridAction("keep", tuple(ids))) == "Kept 4 images: the labels are right."
    assert decisions.reviewed_ids(store) == set(ids)
    assert store.history(1)[0].summary == "kept 4 image(s) as labeled"
    assert store.undo() == "Undid: kept 4 image(s) as labeled"
    assert decisions.reviewed_ids(store) == {ids[0]}  # the earlier keep stays: only this step is undone
    assert store.undo() == "Undid: kept 1 image(s) as labeled"
    assert decisions.reviewed_ids(store) == set()


def test_undoing_a_keep_leaves_a_later_decision_alone(store: Store) -> None:
    first, second = (img.id for img in store.images()[:2])
    decisions.keep(store, [first, second])
    other = "square" if store.get_image(first).label != "square" else "circle"
    decisions.relabel(store, [first], other)  # relabeled on review since: reviewed in its new class
    decisions.keep(store, [second])  # kept again since
    store.undo()  # the second keep
    assert decisions.reviewed_ids(store) == {first, second}  # the first keep of `second` holds again
    store.undo()  # the relabel: `first` goes back to its class and to the queue (its mark is the relabel's)
    assert decisions.reviewed_ids(store) == {second}
    store.undo()  # the first keep: `second` back too; `first`'s mark, written by the relabel since, is left
    assert decisions.reviewed_ids(store) == set()


def test_keep_all_of_a_duplicate_group_is_undone_by_the_cli(store: Store) -> None:
    ids = [img.id for img in store.images()[:3]]
    duplicates.keep_all(store, ids)
    assert decisions.reviewed_ids(store, "duplicate") == set(ids)
    out = subprocess.run(  # a fresh process: the inverse is registered when the store package loads
        [sys.executable, "-m", "lotr_labeler", "--data", str(store.root.parent), "undo"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "kept a near-duplicate group of 3 image(s)" in out.stdout + out.stderr
    assert decisions.reviewed_ids(store, "duplicate") == set()
