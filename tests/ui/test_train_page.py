"""AppTest: the Train page remembers its form per project, keeps the weight controls in sight, and tells
the epochs and the live chart the way the user asked for them."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from helpers import choice_view, pick
from streamlit.testing.v1 import AppTest

from lotr_labeler.errors import WeightsUnavailable
from lotr_labeler.jobs import table as jobs
from lotr_labeler.jobs.worker import Reporter
from lotr_labeler.model import learner, train_form
from lotr_labeler.model import train as tr
from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project, open_project

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "4_Train.py")


pytestmark = pytest.mark.slow  # AppTest runs of the Train page


def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def running_train(store: Store, progress: dict[str, Any]) -> None:
    """Report ``progress`` on the running train job, started here (this process: alive) on first use."""
    job = jobs.running_job(store, "train") or jobs.attach(store, "train", {}, None)
    base = {"done": 3, "total": 10, "batch": 2, "batches": 5, "device": "cpu", "elapsed_s": 4.0, "eta_s": 9.0}
    Reporter(store, job.id).update({**base, **progress}, "training", force=True)


def progress_texts(at: AppTest) -> list[str]:
    return [p.proto.text for p in at.get("progress")]


def charts(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def test_the_form_survives_a_new_session_per_project(store: Store, data_root: Path) -> None:
    at = page()
    assert at.checkbox(key="t_pretrained").value is True  # the Quick preset, nothing remembered yet
    assert at.number_input(key="t_lr").proto.format == "%g"  # the default 0 reads "0", not "0.00000"
    at.number_input(key="t_epochs").set_value(3).run()
    at.number_input(key="t_size").set_value(96).run()
    at.checkbox(key="t_pretrained").uncheck().run()
    at = pick(at, "t_arch", "resnet34")
    assert not at.exception

    again = page()  # a reload: a new session on the same data dir
    assert again.number_input(key="t_epochs").value == 3
    assert again.number_input(key="t_size").value == 96
    assert again.checkbox(key="t_pretrained").value is False
    assert choice_view(again, "t_arch").value == "resnet34"
    assert any("1 head epoch, then 3 epoch(s)" in c.value for c in again.caption)

    # A preset fills in its values but keeps the (offline) weight choice.
    again = pick(again, "t_preset", "standard")
    standard = learner.PRESETS["standard"]
    assert (again.number_input(key="t_epochs").value, again.number_input(key="t_size").value) == (
        standard.epochs,
        standard.size,
    )
    assert again.checkbox(key="t_pretrained").value is False
    with open_project(data_root, "demo") as s:
        remembered = train_form.load_form(s)
    assert (remembered.preset, remembered.epochs, remembered.pretrained) == ("standard", standard.epochs, False)

    # Another project has its own form.
    create_project(data_root, "other", "empty").close()
    again.run()
    again = pick(again, "project_picker", "other")
    assert again.checkbox(key="t_pretrained").value is True
    assert again.number_input(key="t_epochs").value == learner.PRESETS["quick"].epochs


def test_a_bad_remembered_form_falls_back_to_the_preset(store: Store) -> None:
    store.meta_set(train_form.FORM_KEY, json.dumps({"epochs": 9999, "pretrained": False}))
    assert train_form.load_form(store) == train_form.TrainForm()
    store.meta_set(train_form.FORM_KEY, json.dumps({"epochs": 5, "pretrained": "no", "weights": "/gone.pth"}))
    assert train_form.load_form(store) == train_form.TrainForm(
        epochs=5, weights="/gone.pth"
    )  # wrong type dropped, path kept
    store.meta_set(train_form.FORM_KEY, json.dumps({"lr": 0}))  # an int where the widget needs a float
    assert isinstance(train_form.load_form(store).lr, float)
    assert not page().exception


def test_the_weight_controls_are_in_sight_and_named_by_the_offline_error(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = page()
    inside = {w.key for e in at.expander for w in [*e.checkbox, *e.text_input]}
    assert "t_pretrained" not in inside and "t_weights" not in inside
    assert at.checkbox(key="t_pretrained").label == learner.PRETRAINED_LABEL
    assert at.text_input(key="t_weights").label == learner.WEIGHTS_LABEL

    import torchvision.models._api as api

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    store.set_setting("min_images_per_class", 3)
    with pytest.raises(WeightsUnavailable) as exc:
        tr.train_run(store, learner.TrainParams(arch="resnet18", epochs=1, size=64, batch_size=8, pretrained=True))
    assert f"untick '{learner.PRETRAINED_LABEL}'" in str(exc.value)
    assert f"'{learner.WEIGHTS_LABEL}'" in str(exc.value)


def test_epochs_read_as_asked_head_epoch_then_one_of_n(store: Store) -> None:
    running_train(store, {"phase": "head", "epoch": 1, "epochs": 4, "history": []})  # Epochs = 3
    texts = progress_texts(page())
    assert any("head epoch" in t for t in texts), texts
    assert not any("/4" in t for t in texts), texts

    running_train(store, {"phase": "fine-tune", "epoch": 2, "epochs": 4, "history": []})
    texts = progress_texts(page())
    assert any("epoch 1/3" in t and "batch 2/5" in t for t in texts), texts
    assert not any("/4" in t for t in texts), texts
    said = tr.TrainProgress(
        done=18,
        total=20,
        device="cpu",
        phase="fine-tune",
        epoch=4,
        epochs=4,
        batch=1,
        batches=5,
        elapsed_s=1.0,
        eta_s=0.1,
        history=[],
    )
    assert said.message == "epoch 3/3, batch 1/5" and said.fraction == 0.9


def test_the_live_chart_shows_the_first_epoch_as_points(store: Store) -> None:
    running_train(store, {"phase": "head", "epoch": 1, "epochs": 3, "history": []})
    at = page()
    assert charts(at) == []  # no empty chart (its axis would read 0.000000)
    assert any("appear here when the first epoch ends" in c.value for c in at.caption)

    row = {"epoch": 1, "phase": "head", "train_loss": 1.2, "valid_loss": 1.1, "error_rate": 0.5}
    running_train(store, {"phase": "fine-tune", "epoch": 2, "epochs": 3, "history": [row]})
    (spec,) = charts(page())
    assert spec["mark"]["type"] == "line" and spec["mark"]["point"], spec["mark"]
    assert spec["encoding"]["x"]["type"] == "ordinal"
    assert spec["encoding"]["x"]["sort"] == ["head"]


def test_a_new_run_is_the_one_shown_not_the_last_one_looked_at(store: Store) -> None:
    from lotr_labeler.model import runs

    first = runs.finish_run(store, runs.create_run(store, {}, run_id="20260101-000000-aaaa").id, "failed", message="x")
    at = page()
    assert choice_view(at, "t_run").value == first.id
    second = runs.create_run(store, {}, run_id="20260101-000100-bbbb")
    runs.finish_run(store, second.id, "failed", message="y")
    at.run()
    assert choice_view(at, "t_run").value == second.id
    at = pick(at, "t_run", first.id)  # the user's own choice then stays
    at.run()
    assert choice_view(at, "t_run").value == first.id


# -- what a finished run says about itself -------------------------------------------------------------


def _done(store: Store, error_rate: float | None, params: dict[str, Any], **kwargs: Any) -> Any:
    from lotr_labeler.model import runs

    run = runs.create_run(store, params, **kwargs)
    metrics = {} if error_rate is None else {"error_rate": error_rate, "duration_s": 24.2, "images": 18}
    return runs.finish_run(store, run.id, "done", vocab=store.class_names(), metrics=metrics)


def weak_warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if "is weak" in w.value]


def test_a_weak_run_says_so_and_how_to_improve_it(store: Store) -> None:
    """A run wrong 92 % of the time on 3 classes (worse than chance) was announced in a green box and made
    current without a word: the Train page now warns about it, with the levers that apply."""
    weak = _done(store, 0.917, {"arch": "resnet18", "epochs": 1, "size": 128, "pretrained": False})
    at = page()
    (warning,) = weak_warnings(at)
    assert weak.id in warning and "current" in warning and "wrong almost always" in warning
    assert "Pretrained ImageNet weights" in warning and "more epochs (this run had 1)" in warning
    assert "more images per class" in warning

    good = _done(store, 0.05, {"arch": "resnet18", "epochs": 4, "size": 128, "pretrained": True})
    at = page()
    assert choice_view(at, "t_run").value == good.id
    assert weak_warnings(at) == []  # the current one is fine
    at = pick(at, "t_run", weak.id)
    (warning,) = weak_warnings(at)  # the weak one, shown, still says so
    assert weak.id in warning and "not current" in warning


def test_tables_show_a_dash_not_none(store: Store) -> None:
    from lotr_labeler.model import runs

    failed = runs.create_run(store, {"arch": "resnet18", "epochs": 1, "size": 128})
    runs.finish_run(store, failed.id, "failed", message="Could not get the pretrained resnet18 weights")
    done = _done(store, 0.917, {"arch": "resnet18", "epochs": 1, "size": 128})
    vocab = store.class_names()
    per_class = {c: {"precision": None, "recall": 0.0, "support": 6} for c in vocab}
    per_class[vocab[0]] = {"precision": 1 / 12, "recall": 1.0, "support": 1}
    metrics = {"error_rate": 0.917, "confusion_matrix": [[1, 0, 0], [6, 0, 0], [5, 0, 0]], "per_class": per_class}
    done.metrics_path.write_text(json.dumps({**metrics, "vocab": vocab}), encoding="utf-8")
    at = page()
    table, _cm, classes = (d.value for d in at.dataframe)
    rows = {r["run"]: r for r in table.to_dict("records")}
    assert rows[failed.id]["error rate"] == "—" and rows[failed.id]["seconds"] == "—"
    assert rows[done.id]["error rate"] == "0.917" and rows[done.id]["seconds"] == "24.2"
    assert "None" not in table.astype(str).to_numpy().ravel().tolist()
    assert classes.loc[vocab[1], "precision"] == "—" and classes.loc[vocab[0], "precision"] == "0.0833"
    assert any("— : no validation image was predicted as that class" in c.value for c in at.caption)
    assert "None" not in classes.astype(str).to_numpy().ravel().tolist()


def test_an_instant_run_says_what_it_is_and_an_ended_run_has_no_curve_to_wait_for(store: Store) -> None:
    from lotr_labeler.model import embed, runs

    assert runs.INSTANT == embed.INSTANT_SOURCE
    failed = runs.create_run(store, {"arch": "resnet18", "epochs": 1, "size": 128})
    why = "Could not get the pretrained resnet18 weights: no internet. Untick 'Pretrained weights' and start again."
    runs.finish_run(store, failed.id, "failed", message=why)
    params = {"backbone_name": "random init", "size": 128, "head": "logistic regression"}
    instant = _done(store, 0.0, params, source=embed.INSTANT_SOURCE)
    at = page()
    rows = {r["run"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert rows[instant.id]["arch"] == "instant: head on random init embeddings"
    assert rows[instant.id]["epochs"] == "—"
    assert choice_view(at, "t_run").value == instant.id
    captions = [c.value for c in at.caption]
    assert any("Instant model: a logistic-regression head on random init embeddings" in c for c in captions)
    assert not any("appear here" in c for c in captions)  # it has no epochs: nothing will appear
    assert "instant" in [m.value for m in at.metric]

    at = pick(at, "t_run", failed.id)
    captions = [c.value for c in at.caption]
    assert any("No loss curve: the run failed before its first epoch ended." in c for c in captions)
    assert not any("appear here" in c for c in captions)
    assert f"Run {failed.id} failed: {why}" in [e.value for e in at.error]  # why, in full (the table cuts it)


def test_the_confusion_matrix_lists_the_classes_in_the_projects_order(store: Store) -> None:
    """fastai sorts its classes; the Train page's tables follow the project's order, as every other page,
    and say what "—" means only when one is shown."""
    from lotr_labeler.model.record import project_order

    assert project_order(["b", "a", "Gone", "c"], ["a", "B", "c"]) == [1, 0, 3, 2]  # case as class names
    run = _done(store, 0.5, {"arch": "resnet18", "epochs": 1, "size": 128})
    names = store.class_names()
    vocab = sorted(names, reverse=True)  # the model's own order, not the project's
    cm = [[3, 1, 0], [0, 4, 0], [2, 0, 2]]  # rows and columns in vocab order
    per_class = {c: {"precision": 0.5 + i / 10, "recall": 0.5, "support": 4} for i, c in enumerate(vocab)}
    run.metrics_path.write_text(
        json.dumps({"error_rate": 0.5, "confusion_matrix": cm, "per_class": per_class, "vocab": vocab}),
        encoding="utf-8",
    )
    at = page()
    _table, shown_cm, classes = (d.value for d in at.dataframe)
    matrix = shown_cm.data if hasattr(shown_cm, "data") else shown_cm  # a Styler shows its DataFrame
    assert list(matrix.index) == names and list(matrix.columns) == names and list(classes.index) == names
    where = {c: i for i, c in enumerate(vocab)}
    assert [[int(matrix.loc[r, c]) for c in names] for r in names] == [
        [cm[where[r]][where[c]] for c in names] for r in names
    ]
    assert classes.loc[vocab[0], "precision"] == "0.5"
    assert not any("precision undefined" in c.value for c in at.caption)  # no "—" in this table


def test_the_confirmed_delete_removes_even_the_current_run(store: Store) -> None:
    """The CLI asks for --force before deleting the current model; on the page "Confirm delete" is that."""
    from lotr_labeler.model import runs

    only = _done(store, 0.1, {"arch": "resnet18"})
    assert runs.current_run(store).id == only.id  # type: ignore[union-attr]
    at = page()
    assert next(b for b in at.button if b.label == "Delete run").disabled  # not before the checkbox
    at.checkbox(key=f"t_confirm_{only.id}").check().run()
    next(b for b in at.button if b.label == "Delete run").click().run()
    assert not at.exception and runs.list_runs(store) == []
    assert any(f"Deleted run {only.id}." in s.value for s in at.success)


def test_only_a_finished_run_offers_the_space_export(store: Store) -> None:
    """A cancelled run, shown after its cancel, offered "Deploy this run to a Hugging Face Space" (a folder
    field and a disabled button) although it has no model."""
    from lotr_labeler.model import runs

    done = _done(store, 0.1, {"arch": "resnet18"})
    cancelled = runs.finish_run(store, runs.create_run(store, {"arch": "resnet18"}).id, "cancelled")
    at = page()
    assert choice_view(at, "t_run").value == cancelled.id  # the newest: the one just acted on
    assert not [e for e in at.expander if e.label.startswith("Deploy this run")]
    at = pick(at, "t_run", done.id)
    assert [e.label for e in at.expander if e.label.startswith("Deploy this run")] == [
        "Deploy this run to a Hugging Face Space"
    ]


def test_the_last_training_box_says_when_its_run_was_deleted_since(store: Store) -> None:
    """The box above the runs said "Run X finished: error rate …" after X was deleted below it."""
    import os

    from lotr_labeler.model import runs
    from lotr_labeler.model import train as tr

    run = _done(store, 0.1, {"arch": "resnet18"})
    job = jobs.insert(store, "train", {}, os.getpid(), jobs.own_start())
    jobs.finish(store, job.id, "done", tr.outcome(run), {"run_id": run.id, **run.metrics})
    at = page()
    (box,) = [s.value for s in at.success if "Last train" in s.value]
    assert f"Run {run.id} finished" in box and "deleted" not in box
    runs.delete_run(store, run.id, force=True)
    at.run()
    (box,) = [s.value for s in at.success if "Last train" in s.value]
    assert box.endswith(f"Run {run.id} has been deleted since."), box
    assert not at.exception
