"""Training on a tiny generated dataset: 3 classes of drawn shapes, 64 px, no pretrained weights, 1 epoch."""

from __future__ import annotations

import json
import threading
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import SHAPES, fill, wait_for
from streamlit.testing.v1 import AppTest

from lotr_labeler.cli import main
from lotr_labeler.errors import TrainingError, WeightsUnavailable
from lotr_labeler.jobs import table as jobs
from lotr_labeler.jobs.specs import TrainJob
from lotr_labeler.jobs.worker import Reporter
from lotr_labeler.model import runs
from lotr_labeler.model.dataset import check_dataset
from lotr_labeler.model.learner import TrainParams
from lotr_labeler.model.train import TrainProgress, train_run
from lotr_labeler.progress import Progress
from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project

# Speed only: resnet18 from random init (tests that judge quality use the bundled pretrained network).
TINY = TrainParams(arch="resnet18", epochs=1, size=64, batch_size=8, pretrained=False)
TRAIN_PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "4_Train.py")


pytestmark = pytest.mark.slow  # trains models


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, runs.Run, int, list[TrainProgress]]]:
    """One real training run, shared: (store, run, id of the corrupted image, progress events)."""
    root = tmp_path_factory.mktemp("trained")
    store = create_project(root, "shapes", "empty")
    fill(store)
    broken = store.images("square")[0]
    store.path(broken).write_bytes(b"\xff\xd8 this is not a jpeg any more")
    truncated = store.path(store.images("triangle")[0])
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])  # header fine, data cut
    events: list[TrainProgress] = []
    run = train_run(store, TINY, progress=events.append)
    yield store, run, broken.id, events
    store.close()


def test_run_finishes_with_a_stock_loadable_model(trained: tuple[Store, runs.Run, int, Any]) -> None:
    from fastai.vision.all import PILImage, load_learner

    store, run, _, _ = trained
    assert run.state == "done" and run.vocab == sorted(SHAPES)
    learn = load_learner(run.model_path, cpu=True)
    label, _, probs = learn.predict(PILImage.create(store.path(store.images("circle")[0])))
    assert label in SHAPES and abs(float(probs.sum()) - 1) < 1e-5
    assert runs.current_run(store) == run


def test_metrics_json_has_the_documented_fields(trained: tuple[Store, runs.Run, int, Any]) -> None:
    store, run, broken, _ = trained
    m = json.loads(run.metrics_path.read_text())
    assert m["params"]["arch"] == "resnet18" and m["params"]["pretrained"] is False
    counts = {s: store.count(s) - (s != "circle") for s in SHAPES}  # minus the corrupt and truncated files
    assert m["dataset"]["class_counts"] == counts and m["dataset"]["images"] == sum(counts.values())
    assert len(m["dataset"]["snapshot"]) == 16
    assert [h["epoch"] for h in m["history"]] == [1, 2]  # 1 frozen + 1 fine-tune epoch
    assert {"train_loss", "valid_loss", "error_rate", "seconds"} <= set(m["history"][-1])
    assert set(m["per_class"]) == set(SHAPES)
    assert {"precision", "recall", "support"} <= set(m["per_class"]["circle"])
    cm = m["confusion_matrix"]
    assert len(cm) == 3 and sum(map(sum, cm)) == sum(v["support"] for v in m["per_class"].values())
    assert m["device"] == "cpu" and m["duration_s"] > 0
    # The corrupt and the truncated file were skipped and reported, not fatal.
    truncated = store.images("triangle")[0].id
    assert sorted(s["id"] for s in m["dataset"]["skipped"]) == sorted([broken, truncated])


def test_predictions_stored_for_every_readable_image(trained: tuple[Store, runs.Run, int, Any]) -> None:
    store, run, broken, _ = trained
    preds = runs.predictions(store, run.id)
    assert set(preds) == {i.id for i in store.images()} - {broken, store.images("triangle")[0].id}
    p = next(iter(preds.values()))
    assert len(p.probs) == 3 and p.predicted in SHAPES and abs(sum(p.probs) - 1) < 1e-4


def test_progress_reports_batches_epochs_and_eta(trained: tuple[Store, runs.Run, int, Any]) -> None:
    _, _, _, events = trained
    assert events and events[-1].fraction == 1.0 and events[-1].done == events[-1].total
    assert [e.done for e in events] == sorted(e.done for e in events)  # batches over the whole run
    assert events[-1].message.endswith(f"batch {events[-1].batches}/{events[-1].batches}")
    assert {e.phase for e in events} == {"head", "fine-tune"}
    assert all(e.epochs == 2 and e.batches >= 1 for e in events)
    assert any(e.eta_s for e in events[:-1])
    assert len(events[-1].history) == 2


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda s: fill(s, classes=("circle",)), "at least 2 classes"),
        (lambda s: (fill(s), s.set_setting("min_images_per_class", 20)), "at least 20 images"),
        (lambda s: (fill(s), s.delete_images([i.id for i in s.images("square", split="valid")])), "no validation"),
    ],
)
def test_refuses_to_start_with_a_message(empty_store: Store, setup: Any, message: str) -> None:
    setup(empty_store)
    with pytest.raises(TrainingError, match=message):
        check_dataset(empty_store)
    with pytest.raises(TrainingError, match=message):
        train_run(empty_store, TINY)
    assert runs.list_runs(empty_store) == []


def test_offline_weights_give_a_clear_message(empty_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models._api as api

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    fill(empty_store)
    with pytest.raises(WeightsUnavailable) as exc:
        train_run(empty_store, TrainParams(arch="resnet18", epochs=1, size=64, batch_size=8, pretrained=True))
    assert "--no-pretrained" in str(exc.value) and "--weights" in str(exc.value)
    assert [r.state for r in runs.list_runs(empty_store)] == ["failed"]


def test_local_weights_file_is_loaded_into_the_body(empty_store: Store, tmp_path: Path) -> None:
    import torch
    import torchvision

    fill(empty_store)
    reference = torchvision.models.resnet18(weights=None)
    weights = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), weights)
    with torch.no_grad():
        expected = reference.conv1.weight.clone()
    seen: list[Any] = []

    def grab(p: TrainProgress) -> None:
        seen.append(p)

    params = TrainParams(arch="resnet18", epochs=1, size=64, batch_size=8, weights=str(weights), augment=False, lr=1e-9)
    run = train_run(empty_store, params, progress=grab)
    assert run.state == "done"
    from fastai.vision.all import load_learner

    body_conv = load_learner(run.model_path, cpu=True).model[0][0].weight
    # lr ~ 0: the trained first conv still equals the file's, not a random init.
    assert torch.allclose(body_conv, expected, atol=1e-4)

    wrong = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), wrong)
    with pytest.raises(WeightsUnavailable, match=r"resnet34\.pth holds weights of another network"):
        train_run(empty_store, TrainParams(arch="resnet18", epochs=1, size=64, batch_size=8, weights=str(wrong)))


def test_cancel_stops_within_one_batch(empty_store: Store) -> None:
    fill(empty_store, per_class=16)
    events: list[Progress] = []
    stop_after = 2
    stop = threading.Event()

    def tell(p: Progress) -> None:
        events.append(p)
        if len(events) >= stop_after:
            stop.set()

    run = train_run(
        empty_store,
        TrainParams(arch="resnet18", epochs=3, size=64, batch_size=4, pretrained=False),
        progress=tell,
        cancel=stop,
    )
    assert run.state == "cancelled"
    assert len(events) == stop_after  # not one more batch once asked to stop
    assert not run.model_path.exists()
    assert runs.current_run(empty_store) is None


def test_cli_train_json_and_export_model(
    empty_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(empty_store)
    code = main(
        ["train", "--arch", "resnet18", "--no-pretrained", "--epochs", "1", "--size", "64", "--bs", "8", "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert Path(doc["path"]).is_file() and doc["id"] and "error_rate" in doc
    job = jobs.latest_job(empty_store, "train")
    assert job is not None and job.state == "done" and job.result and job.result["run_id"] == doc["id"]
    assert main(["export", "model", str(tmp_path / "m.pkl")]) == 0
    assert (tmp_path / "m.pkl").read_bytes() == Path(doc["path"]).read_bytes()
    assert main(["runs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])[0]["current"] is True


def test_cli_train_refusal_exit_status(empty_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--no-pretrained"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Training needs at least 2 classes") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        main(["train", "--arch", "vgg"])
    assert exc.value.code == 2


def test_import_model_registers_a_run_with_local_predictions(
    trained: tuple[Store, runs.Run, int, Any], empty_store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run, _, _ = trained
    fill(empty_store)
    assert main(["import-model", str(run.model_path)]) == 0
    out, err = capsys.readouterr()
    assert "pickle" in err and "Imported" in out
    imported = runs.current_run(empty_store)
    assert imported is not None and imported.source == "imported" and imported.vocab == sorted(SHAPES)
    assert set(runs.predictions(empty_store, imported.id)) == {i.id for i in empty_store.images()}
    assert main(["import-model", "/no/such/model.pkl"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_background_job_can_be_cancelled(empty_store: Store) -> None:
    fill(empty_store, per_class=24)
    params = TrainParams(arch="resnet18", epochs=20, size=64, batch_size=4, pretrained=False)
    job = jobs.launch(empty_store, "train", TrainJob.of(params).to_argv(), {})
    wait_for(lambda: jobs.get_job(empty_store, job.id).progress.get("batch", 0) >= 1, 90, "the first batch")
    jobs.request_cancel(empty_store, job.id)
    wait_for(lambda: not jobs.get_job(empty_store, job.id).running, 60, "the cancel")
    assert jobs.get_job(empty_store, job.id).state == "cancelled"
    assert [r.state for r in runs.list_runs(empty_store)] == ["cancelled"]


# -- the page ------------------------------------------------------------------------------


def page() -> AppTest:
    at = AppTest.from_file(TRAIN_PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_with_no_runs(empty_store: Store) -> None:
    fill(empty_store)
    at = page()
    assert any(f"Ready: {empty_store.count()} images in 3 classes" in s.value for s in at.success)
    assert any("No runs yet" in i.value for i in at.info)
    assert not next(b for b in at.button if b.label == "Start training").disabled


def test_page_with_a_running_job(empty_store: Store) -> None:
    fill(empty_store)
    job = jobs.attach(empty_store, "train", {}, None)  # this process: alive
    Reporter(empty_store, job.id).update(
        {
            "phase": "head",
            "epoch": 1,
            "epochs": 3,
            "batch": 2,
            "batches": 5,
            "done": 2,
            "total": 15,
            "device": "cpu",
            "elapsed_s": 4.0,
            "eta_s": 27.0,
            "history": [{"epoch": 1, "train_loss": 1.2, "valid_loss": 1.1}],
        },
        "epoch 1/3",
        force=True,
    )
    at = page()
    texts = [p.proto.text for p in at.get("progress")]
    assert any("head epoch" in t and "batch 2/5" in t and "ETA 27 s" in t for t in texts), texts  # epoch 1 of 1 + 2
    assert next(b for b in at.button if b.label == "Start training").disabled
    assert any(b.label == "Cancel train" for b in at.button)


def test_page_with_finished_runs(trained: tuple[Store, runs.Run, int, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    store, run, _, _ = trained
    monkeypatch.setenv("LOTR_LABELER_DATA", str(store.root.parent))
    at = page()
    table = at.dataframe[0].value
    assert list(table["run"]) == [run.id] and table["current"][0] == "★"
    assert any(m.label == "Error rate" for m in at.metric)
    assert len(at.dataframe) >= 3  # runs table, confusion matrix, per-class table


def test_remote_round_trip_train_on_a_bundle(
    trained: tuple[Store, runs.Run, int, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export dataset → `train --bundle` on another machine (another data dir) → model.pkl back."""
    from lotr_labeler.collect.export import export_dataset

    store, _, broken, _ = trained
    bundle = tmp_path / "bundle.zip"
    store.delete_images([broken])  # the corrupt file would be refused by the import anyway
    try:
        export_dataset(store, bundle)
    finally:
        store.undo()
    remote = tmp_path / "gpu-box"
    out = tmp_path / "model.pkl"
    assert main(["--data", str(remote), "--project", "bundle", "init", "--template", "empty"]) == 0
    assert main(["--data", str(remote), "settings", "set", "min_images_per_class", "3"]) == 0
    code = main(
        [
            "--data",
            str(remote),
            "train",
            "--bundle",
            str(bundle),
            "--no-pretrained",
            "--epochs",
            "1",
            "--size",
            "64",
            "--bs",
            "8",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert out.is_file() and "Bundle" in captured.err
    assert (remote / "bundle" / "project.sqlite").is_file()
    # Same files, same hashes, so the same stable split as at home.
    from lotr_labeler.workspace import open_project

    with open_project(remote, "bundle") as there:
        damaged = {broken, store.images("triangle")[0].id}  # refused by the import on the other side
        assert {(i.sha256, i.split) for i in there.images()} == {
            (i.sha256, i.split) for i in store.images() if i.id not in damaged
        }


def test_progress_epoch_and_phase_agree(trained: tuple[Store, runs.Run, int, Any]) -> None:
    _, _, _, events = trained
    # The frozen "head" epoch is epoch 1, the fine-tune epoch is epoch 2, never "epoch 2 (head)".
    assert {(e.epoch, e.phase) for e in events} == {(1, "head"), (2, "fine-tune")}


def test_edits_during_a_run_do_not_break_it(empty_store: Store) -> None:
    """Relabel, delete and rename while training: the run trains on its own snapshot of the files."""
    fill(empty_store)
    victims = [i.id for i in empty_store.images("circle")[:2]]
    edited: list[bool] = []

    def edit_on_first_batch(p: TrainProgress) -> None:
        if not edited:
            empty_store.relabel([victims[0]], "square")
            empty_store.delete_images([victims[1]])
            empty_store.rename_class("triangle", "Tri")
            edited.append(True)

    run = train_run(empty_store, TINY, progress=edit_on_first_batch)
    assert edited and run.state == "done"
    assert sorted(run.vocab) == sorted(SHAPES)  # it learned the labels it started with
    assert not (run.path / "data").exists()  # the snapshot links are gone
    assert (empty_store.root / "images" / "Tri").is_dir()
