"""Run records: current run selection, deletion, predictions."""

from __future__ import annotations

import pytest

from lotr_labeler.errors import Conflict, InvalidInput, NotFound
from lotr_labeler.model import runs
from lotr_labeler.store import Store


def test_current_run_is_picked_or_newest_done(store: Store) -> None:
    assert runs.current_run(store) is None
    a = runs.finish_run(store, runs.create_run(store, {}, run_id="20260101-000000-aaaa").id, "done", vocab=["x"])
    b = runs.finish_run(store, runs.create_run(store, {}, run_id="20260102-000000-bbbb").id, "done", vocab=["x"])
    runs.create_run(store, {}, run_id="20260103-000000-cccc")  # still running: never current
    assert runs.current_run(store).id == b.id  # type: ignore[union-attr]
    runs.set_current(store, a.id)
    assert runs.current_run(store).id == a.id  # type: ignore[union-attr]
    with pytest.raises(Conflict, match="running"):
        runs.set_current(store, "20260103-000000-cccc")
    with pytest.raises(Conflict, match="still running"):
        runs.delete_run(store, "20260103-000000-cccc")
    with pytest.raises(Conflict, match=r"current model.*cannot be undone.*--force"):
        runs.delete_run(store, a.id)  # the current one: only when said twice (the page's Confirm, --force)
    assert a.path.exists() and runs.current_run(store).id == a.id  # type: ignore[union-attr]
    runs.delete_run(store, a.id, force=True)
    assert not a.path.exists()
    assert runs.current_run(store).id == b.id  # type: ignore[union-attr]
    with pytest.raises(NotFound, match="20260102-000000-bbbb"):
        runs.get_run(store, "nope")


def test_runs_made_in_the_same_second_are_newest_first_by_creation(store: Store) -> None:
    # Run ids sort by time only to the second; the random suffix must not decide which is newest.
    first = runs.finish_run(store, runs.create_run(store, {}, run_id="20260101-000000-ffff").id, "done", vocab=["x"])
    second = runs.finish_run(store, runs.create_run(store, {}, run_id="20260101-000000-0000").id, "done", vocab=["x"])
    assert [r.id for r in runs.list_runs(store)] == [second.id, first.id]
    assert runs.current_run(store).id == second.id  # type: ignore[union-attr]


def test_predictions_round_trip_and_validation(store: Store) -> None:
    run = runs.create_run(store, {})
    ids = [i.id for i in store.images()[:3]]
    vocab = ["circle", "square", "triangle"]
    runs.save_predictions(store, run.id, vocab, [(ids[0], [0.1, 0.7, 0.2]), (ids[1], [0.8, 0.1, 0.1])])
    preds = runs.predictions(store, run.id)
    assert preds[ids[0]].predicted == "square" and preds[ids[0]].confidence == pytest.approx(0.7)
    assert preds[ids[1]].predicted == "circle"
    with pytest.raises(InvalidInput, match="2 probabilities for 3 classes"):
        runs.save_predictions(store, run.id, vocab, [(ids[2], [0.5, 0.5])])
    assert len(runs.predictions(store, run.id)) == 2  # the failed save changed nothing
