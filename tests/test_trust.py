"""Model trust: a run is weak above the error-rate setting or when the K-fold head beats it on valid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from lotr_labeler.collect.importers import import_folder
from lotr_labeler.model import embed, runs
from lotr_labeler.review import scoring
from lotr_labeler.review.trust import model_trust
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.workspace import create_project

COLOURS = {"red": (210, 40, 40), "green": (40, 190, 60), "blue": (40, 60, 215)}
SIZE = 48


@pytest.fixture(scope="session")
def colours_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 strongly coloured classes x 15 noisy images: the random-init head separates them."""
    root = tmp_path_factory.mktemp("trust-colours")
    for ci, (name, rgb) in enumerate(COLOURS.items()):
        (root / name).mkdir()
        for i in range(15):
            rng = np.random.default_rng(100 * ci + i)
            arr = np.clip(np.array(rgb) + rng.normal(0, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr, "RGB").save(root / name / f"{i}.png")
    return root


@pytest.fixture
def colours(data_root: Path, colours_dir: Path) -> Iterator[Store]:
    s = create_project(data_root, "trust", "empty")
    import_folder(s, colours_dir)
    yield s
    s.close()


def _finished_run(store: Store, error_rate: float | None) -> runs.Run:
    run = runs.create_run(store, {"arch": "resnet18"})
    metrics = {} if error_rate is None else {"error_rate": error_rate}
    return runs.finish_run(store, run.id, "done", vocab=store.class_names(), metrics=metrics)


def test_no_model_is_not_weak(empty_store: Store) -> None:
    trust = model_trust(empty_store)
    assert not trust.weak and trust.error_rate is None and "No trained model" in trust.reason


def test_error_rate_above_the_setting_is_weak(empty_store: Store) -> None:
    empty_store.add_class("a")
    empty_store.add_class("b")
    run = _finished_run(empty_store, 0.57)
    trust = model_trust(empty_store)
    assert trust.weak and trust.error_rate == pytest.approx(0.57) and trust.run_id == run.id
    assert "wrong about half the time" in trust.reason and "hint" in trust.reason
    assert "weak_model_error_rate" in trust.reason  # names the knob

    # The threshold is the project's setting: raised above the rate, the same model is trusted.
    empty_store.set_setting("weak_model_error_rate", 0.6)
    assert not model_trust(empty_store).weak
    # A good newer run is current: trusted at the default threshold too.
    empty_store.set_setting("weak_model_error_rate", 0.3)
    _finished_run(empty_store, 0.1)
    assert not model_trust(empty_store).weak


def test_a_run_worse_than_the_kfold_head_is_weak(colours: Store) -> None:
    backbone = embed.resolve_backbone(colours, "imagenet", pretrained=False, size=SIZE)
    scoring.refresh(colours, backbone)
    vocab = colours.class_names()
    images = colours.images()
    # It claims a low error rate, but on the valid split it names a wrong class for every image.
    run = _finished_run(colours, 0.05)
    wrong = [(img.id, [float(c == vocab[(vocab.index(img.label) + 1) % 3]) for c in vocab]) for img in images]
    runs.save_predictions(colours, run.id, vocab, wrong)
    assert not model_trust(colours).weak  # no comparison made yet for this run
    info = scoring.fit_scores(colours, backbone).info
    assert info.compared_run_id == run.id
    assert info.run_valid_accuracy == 0.0 and (info.head_valid_accuracy or 0) > 0
    trust = model_trust(colours)
    assert trust.weak and "K-fold head" in trust.reason and "hint" in trust.reason

    # The comparison is about that run only: a newer run is judged on its own.
    _finished_run(colours, 0.05)
    assert not model_trust(colours).weak


# -- the banners on the pages ------------------------------------------------------------------------------

PAGES = Path(__file__).resolve().parent.parent / "pages"
WEAK = "wrong about half the time"


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def banners(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if WEAK in w.value]


def test_review_header_warns_about_a_weak_model_above_every_tab(store: Store) -> None:
    assert banners(page("5_Review.py")) == []  # no model: no warning
    _finished_run(store, 0.57)
    at = page("5_Review.py")
    assert len(banners(at)) == 1  # once, in the header: not repeated inside a tab
    top = [(node.type, str(getattr(node, "value", ""))) for node in at.main.children.values()]
    warned = next(i for i, (kind, value) in enumerate(top) if kind == "warning" and WEAK in value)
    assert warned < [kind for kind, _ in top].index("tab_container")  # a page-level banner, before the tabs


def test_predict_warns_about_the_picked_run_only_when_weak(store: Store) -> None:
    weak = _finished_run(store, 0.57)
    good = _finished_run(store, 0.1)  # current (newest)
    at = page("6_Predict.py")
    assert banners(at) == []
    at.selectbox(key="predict_run").select(weak.id).run()
    assert not at.exception
    assert banners(at) and "treat its predictions as a hint" in banners(at)[0]
    at.selectbox(key="predict_run").select(good.id).run()
    assert banners(at) == []


def test_search_triage_warns_when_the_ranking_model_is_weak(store: Store) -> None:
    store.add_candidates([CandidateIn("circle", "http://img.test/1.jpg", "http://thumb.test/1.jpg")])
    run = _finished_run(store, 0.57)
    run.model_path.write_bytes(b"a model")  # the triage panel scores with the run's body
    at = page("2_Search.py")
    assert len(banners(at)) == 1
    store.set_setting("weak_model_error_rate", 0.9)
    assert banners(page("2_Search.py")) == []
