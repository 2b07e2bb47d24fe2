"""The instant model: Review's head on its backbone, exported as a run that predicts like any other."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import choice_view
from starlette.testclient import TestClient

from lotr_labeler.api import create_app
from lotr_labeler.model import embed, predict, runs
from lotr_labeler.review import fitting, instant
from lotr_labeler.store import Store

SIZE = 64


pytestmark = pytest.mark.slow  # fits, exports and loads instant models


def scored(store: Store) -> embed.Backbone:
    backbone = embed.resolve_backbone(store, "imagenet", pretrained=False, size=SIZE)
    embed.compute_embeddings(store, backbone)
    fitting.fit_scores(store, backbone)
    return backbone


def test_instant_run_loads_with_stock_load_learner_and_matches_the_head(store: Store) -> None:
    backbone = scored(store)
    report = instant.export_instant(store)
    run = report.run
    assert run.state == "done" and run.source == "instant" and run.is_current
    assert run.params["backbone"] == backbone.as_dict()
    assert report.valid_accuracy == run.metrics["accuracy"]
    expected = runs.predictions(store, run.id)
    img = store.images()[0]
    # A plain Python without this package: torch and fastai modules only in the pickle.
    code = (
        "import json, sys; from fastai.learner import load_learner; from fastai.vision.core import PILImage\n"
        f"learn = load_learner({str(run.model_path)!r}, cpu=True)\n"
        f"_, _, p = learn.predict(PILImage.create({str(store.path(img))!r}))\n"
        "assert not any(m.startswith('lotr_labeler') for m in sys.modules)\n"
        "print(json.dumps([list(map(str, learn.dls.vocab)), [float(v) for v in p]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    vocab, probs = json.loads(out.stdout.strip().splitlines()[-1])
    assert vocab == run.vocab
    assert max(abs(a - b) for a, b in zip(probs, expected[img.id].probs, strict=True)) < 1e-3


def test_instant_run_predicts_through_predict_and_the_api(store: Store, data_root: Path) -> None:
    scored(store)
    run = instant.export_instant(store).run
    assert (run.path / "model.onnx").is_file()
    predictor = predict.load_predictor(predict.resolve_model(store).path)
    assert predictor.engine == "onnx" and predictor.vocab == run.vocab
    img = store.images()[1]
    payload = {"image": base64.b64encode(store.path(img).read_bytes()).decode()}
    with TestClient(create_app(data_root, "demo")) as client:
        got = client.post("/predict", json=payload)
    assert got.status_code == 200, got.text
    doc = got.json()
    want = runs.predictions(store, run.id)[img.id]
    assert doc["model"] == run.id
    assert doc["top"] == want.predicted
    assert abs(doc["predictions"][want.predicted] - want.confidence) < 1e-3


def test_review_keeps_its_backbone_after_an_instant_run(store: Store) -> None:
    """The instant run becomes current; its body is the backbone: no re-embedding."""
    backbone = scored(store)
    instant.export_instant(store, with_onnx=False)
    assert embed.resolve_backbone(store).id == backbone.id
    assert not embed.missing(store, embed.resolve_backbone(store))


def test_old_instant_runs_are_pruned(store: Store) -> None:
    scored(store)
    made = [instant.export_instant(store, with_onnx=False).run.id for _ in range(instant.INSTANT_KEEP + 1)]
    left = [r.id for r in runs.list_runs(store) if r.source == "instant"]
    assert sorted(left) == sorted(made[1:])


def test_cli_retrain_head_changes_the_deployed_model_only_when_asked(store: Store, data_root: Path) -> None:
    scored(store)
    deployed = instant.export_instant(store, with_onnx=False).run
    cmd = [sys.executable, "-m", "lotr_labeler", "--data", str(data_root), "--project", "demo"]
    out = subprocess.run([*cmd, "review", "--retrain-head"], capture_output=True, text=True, check=True)
    assert "Instant model (head on the" in out.stdout and f"current model (run {deployed.id})" in out.stdout
    assert "add --make-current" in out.stdout
    assert [r.id for r in runs.list_runs(store)] == [deployed.id] and runs.current_run(store).id == deployed.id  # type: ignore[union-attr]

    out = subprocess.run(
        [*cmd, "review", "--retrain-head", "--make-current", "--json"], capture_output=True, text=True, check=True
    )
    doc = json.loads(out.stdout)
    run = runs.get_run(store, doc["run"])
    assert run.source == "instant" and run.model_path.is_file() and doc["scored"] == 18 and doc["current"] is True
    assert runs.current_run(store).id == run.id != deployed.id  # type: ignore[union-attr]
    assert "Instant model: run" in out.stderr

    alone = subprocess.run([*cmd, "review", "--make-current"], capture_output=True, text=True)
    assert alone.returncode == 1 and "error: --make-current deploys the instant model of --retrain-head" in alone.stderr


def test_review_page_retrain_head_leaves_the_deployed_model_until_asked(store: Store) -> None:
    """Retrain head refreshes the scores and shows the instant model's valid error beside the current
    run's; the current model changes only on "Make it current" (it used to switch silently)."""
    from streamlit.testing.v1 import AppTest

    scored(store)
    current = instant.export_instant(store, with_onnx=False).run  # a deployed model to keep
    at = AppTest.from_file(str(Path(__file__).parents[2] / "pages" / "5_Review.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    next(b for b in at.button if b.label == "⚡ Retrain head").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [r.id for r in runs.list_runs(store)] == [current.id] and runs.current_run(store).id == current.id  # type: ignore[union-attr]
    offer = next(m.value for m in at.markdown if m.value.startswith("Instant model"))
    check = instant.check_head(store)
    assert f"valid error **{check.valid_error:.1%}**" in offer and f"current model (run {current.id})" in offer
    next(b for b in at.button if b.label == "Make it current").click().run()
    assert not at.exception, [e.value for e in at.exception]
    made = runs.current_run(store)
    assert made is not None and made.id != current.id and made.source == "instant"
    assert any(f"Instant model: run {made.id}" in s.value and "now the current model" in s.value for s in at.success)


def test_an_instant_export_not_asked_to_be_current_keeps_the_current_one(store: Store) -> None:
    scored(store)
    first = instant.export_instant(store, with_onnx=False).run
    second = instant.export_instant(store, with_onnx=False, make_current=False).run
    assert runs.current_run(store).id == first.id != second.id  # type: ignore[union-attr]


def test_review_page_starts_on_best_and_launches_the_choice(store: Store) -> None:
    from streamlit.testing.v1 import AppTest

    from lotr_labeler.jobs import table as jobs

    at = AppTest.from_file(str(Path(__file__).parents[2] / "pages" / "5_Review.py"), default_timeout=60)
    at.run()
    assert choice_view(at, "r_source").value == "best"
    next(b for b in at.button if b.label.startswith("Compute")).click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = jobs.latest_job(store, "review")
    assert job is not None and job.args["backbone"] == "best"
    jobs.request_cancel(store, job.id)


def test_every_head_fits_and_predicts_on_one_blas_thread(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The instant model's head once fitted with every BLAS thread: 2.1 s on 1,000 images on 2 cores, against
    0.15 s for a fold of the K-fold head on one thread. The K-fold scores and the instant model fit alike now."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from threadpoolctl import threadpool_info, threadpool_limits  # type: ignore[import-untyped]

    seen: list[tuple[str, int]] = []
    fit, proba = LogisticRegression.fit, LogisticRegression.predict_proba

    def blas() -> int:
        return int(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))

    def spy_fit(self: LogisticRegression, *args: object, **kw: object) -> object:
        seen.append(("fit", blas()))
        return fit(self, *args, **kw)

    def spy_proba(self: LogisticRegression, *args: object, **kw: object) -> object:
        seen.append(("predict", blas()))
        return proba(self, *args, **kw)

    monkeypatch.setattr(LogisticRegression, "fit", spy_fit)
    monkeypatch.setattr(LogisticRegression, "predict_proba", spy_proba)
    with threadpool_limits(2):  # more than one thread by default, whatever this machine's cores
        scored(store)
        kfold = len(seen)
        instant.export_instant(store)
    assert kfold and len(seen) > kfold and {kind for kind, _ in seen[kfold:]} == {"fit", "predict"}
    assert all(n == 1 for _, n in seen), seen
