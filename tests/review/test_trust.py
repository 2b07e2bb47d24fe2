"""Model trust: a run is weak above the error-rate setting or when the K-fold head beats it on valid;
Review judges the K-fold head that made its cards' predictions, not the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import pick
from PIL import Image
from streamlit.testing.v1 import AppTest

from lotr_labeler.collect.importers import import_folder
from lotr_labeler.model import embed, runs
from lotr_labeler.review import fitting, last_fit, queue
from lotr_labeler.review.trust import head_agreement, model_trust, run_body_worth_trying, scores_trust, triage_trust
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.ui.choice import element_key
from lotr_labeler.workspace import create_project

COLOURS = {"red": (210, 40, 40), "green": (40, 190, 60), "blue": (40, 60, 215)}
SIZE = 48


pytestmark = pytest.mark.slow  # fits heads and runs the Review page


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
    fitting.refresh(colours, backbone)
    vocab = colours.class_names()
    images = colours.images()
    # It claims a low error rate, but on the valid split it names a wrong class for every image.
    run = _finished_run(colours, 0.05)
    wrong = [(img.id, [float(c == vocab[(vocab.index(img.label) + 1) % 3]) for c in vocab]) for img in images]
    runs.save_predictions(colours, run.id, vocab, wrong)
    assert not model_trust(colours).weak  # no comparison made yet for this run
    info = fitting.fit_scores(colours, backbone).info
    assert info.compared_run_id == run.id
    assert info.run_valid_accuracy == 0.0 and (info.head_valid_accuracy or 0) > 0
    trust = model_trust(colours)
    assert trust.weak and "K-fold head" in trust.reason and "hint" in trust.reason

    # The comparison is about that run only: a newer run is judged on its own.
    _finished_run(colours, 0.05)
    assert not model_trust(colours).weak


# -- the banners on the pages ------------------------------------------------------------------------------

PAGES = Path(__file__).resolve().parents[2] / "pages"
WEAK = "wrong about half the time"


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def banners(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if WEAK in w.value]


def _misled(store: Store) -> None:
    """Every image moved to the next class after the fit: the head's stored predictions now disagree
    with every label (as a head fitted on a hopeless dataset would)."""
    vocab = store.class_names()
    for img in store.images():
        store.relabel([img.id], vocab[(vocab.index(img.label) + 1) % len(vocab)])


def test_review_header_warns_about_a_weak_head_above_every_tab(colours: Store) -> None:
    assert banners(page("5_Review.py")) == []  # nothing scored: no warning
    fitting.refresh(colours, embed.resolve_backbone(colours, "imagenet", pretrained=False, size=SIZE))
    _misled(colours)
    at = page("5_Review.py")
    (banner,) = [w.value for w in at.warning if "K-fold head" in w.value]  # once, in the header
    assert "wrong almost always" in banner and "hint" in banner
    top = [(node.type, str(getattr(node, "value", ""))) for node in at.main.children.values()]
    warned = next(i for i, (kind, value) in enumerate(top) if kind == "warning" and "K-fold head" in value)
    tabs = next(
        i for i, node in enumerate(at.main.children.values()) if getattr(node, "key", None) == element_key("r_tab")
    )
    assert warned < tabs  # a page-level banner, before the tabs


class _Grids:
    """Records what the Review page hands the card grid (``hint_only``: the weak-model look)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from lotr_labeler.ui import cards

        self.hint_only: list[bool] = []
        real = cards.grid

        def grid(*args: object, **kwargs: object) -> None:
            self.hint_only.append(bool(kwargs.get("hint_only")))
            real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(cards, "grid", grid)


def test_review_judges_the_head_that_made_the_cards_not_a_weak_run(
    colours: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run wrong 92 % of the time is current, but the cards' predictions come from the K-fold head on
    the embeddings, right on every image: Review must not call them weak, nor show them as hints."""
    fitting.refresh(colours, embed.resolve_backbone(colours, "imagenet", pretrained=False, size=SIZE))
    _finished_run(colours, 0.92)
    assert model_trust(colours).weak  # the run is (Predict says so)
    assert head_agreement(colours) == (45, 45)
    trust = scores_trust(colours)
    assert not trust.weak and trust.error_rate == 0 and "45 of 45" in trust.reason

    grids = _Grids(monkeypatch)
    at = page("5_Review.py")
    assert [w.value for w in at.warning if "wrong" in w.value or "hint" in w.value] == []
    assert any("agrees with your labels on 45 of 45" in c.value for c in at.caption)
    assert grids.hint_only == [False]

    # The same cards, once the labels say otherwise: now the head is weak, and the cards are hints.
    _misled(colours)
    grids.hint_only.clear()
    at = page("5_Review.py")
    assert [w.value for w in at.warning if "K-fold head" in w.value and "wrong almost always" in w.value]
    assert grids.hint_only == [True]
    assert head_agreement(colours) == (0, 45)


def test_a_weak_run_averaged_into_the_valid_scores_is_named_on_review(colours: Store) -> None:
    backbone = embed.resolve_backbone(colours, "imagenet", pretrained=False, size=SIZE)
    fitting.refresh(colours, backbone)
    vocab = colours.class_names()
    run = _finished_run(colours, 0.5)  # above the setting, but its valid predictions are right
    right = [(img.id, [float(c == img.label) for c in vocab]) for img in colours.images()]
    runs.save_predictions(colours, run.id, vocab, right)
    info = fitting.fit_scores(colours, backbone).info
    assert info.blended and info.run_id == run.id
    trust = scores_trust(colours)
    assert not trust.weak and run.id in trust.note and "validation error rate 0.50" in trust.note
    at = page("5_Review.py")
    assert [w.value for w in at.warning if run.id in w.value and "averaged" in w.value]


def test_review_suggests_the_run_body_only_when_auto_did_not_already_pass_it_over(colours: Store) -> None:
    backbone = embed.resolve_backbone(colours, "imagenet", pretrained=False, size=SIZE)
    run = _finished_run(colours, 0.92)
    suggestion = "compute embeddings with its body"
    fitting.refresh(colours, backbone)  # chosen by hand: the run's body was never tried
    assert run_body_worth_trying(last_fit.fit_info(colours), run)
    assert any(suggestion in c.value for c in page("5_Review.py").caption)

    reason = f"random init: CV accuracy 0.97 vs run {run.id} body 0.95 (K-fold head on 45 images)"
    fitting.fit_scores(colours, backbone, reason=reason)  # what an auto choice records
    assert not run_body_worth_trying(last_fit.fit_info(colours), run)
    at = page("5_Review.py")
    assert not any(suggestion in c.value for c in at.caption)
    assert any(f"run {run.id} body 0.95" in c.value for c in at.caption)  # the comparison itself stays


def test_predict_warns_about_the_picked_run_only_when_weak(store: Store) -> None:
    weak = _finished_run(store, 0.57)
    good = _finished_run(store, 0.1)  # current (newest)
    at = page("6_Predict.py")
    assert banners(at) == []
    at = pick(at, "predict_run", weak.id)
    assert not at.exception
    assert banners(at) and "treat its predictions as a hint" in banners(at)[0]
    at = pick(at, "predict_run", good.id)
    assert banners(at) == []


def test_search_triage_warns_when_the_ranking_model_is_weak(store: Store) -> None:
    store.add_candidates([CandidateIn("circle", "http://img.test/1.jpg", "http://thumb.test/1.jpg")])
    run = _finished_run(store, 0.57)
    run.model_path.write_bytes(b"a model")  # the triage panel scores with the run's body
    at = page("2_Search.py")
    assert len(banners(at)) == 1
    store.set_setting("weak_model_error_rate", 0.9)
    assert banners(page("2_Search.py")) == []


def test_search_triage_judges_the_head_that_scores_candidates_not_the_run(colours: Store) -> None:
    """Candidates are scored by a head on the labelled images' embeddings: a weak run with a good head says
    nothing on Search; the same head misled by its labels is named (the banner spoke of the run before)."""
    colours.add_candidates([CandidateIn("red", "http://img.test/1.jpg", "http://thumb.test/1.jpg")])
    fitting.refresh(colours, embed.resolve_backbone(colours, "imagenet", pretrained=False, size=SIZE))
    _finished_run(colours, 0.92)
    assert model_trust(colours).weak and not triage_trust(colours).weak
    at = page("2_Search.py")
    assert [w.value for w in at.warning if "wrong" in w.value] == []
    _misled(colours)
    at = page("2_Search.py")
    (banner,) = [w.value for w in at.warning if "wrong" in w.value]
    assert "head that scores these candidates" in banner and "wrong almost always" in banner


def test_head_agreement_is_kept_on_disk_per_data_version(colours: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Search shows no queue: a new process reads the two counts back instead of loading the Review queue of
    the whole project; any write (here a relabel) makes them be counted again."""
    from lotr_labeler.store import version

    fitting.refresh(colours, embed.resolve_backbone(colours, "imagenet", pretrained=False, size=SIZE))
    counted = head_agreement(colours)
    assert counted == (45, 45)
    version._memo.clear()  # as in a new process

    def no_queue(*args: object, **kwargs: object) -> None:
        raise AssertionError("the queue was loaded again")

    monkeypatch.setattr(queue, "queue", no_queue)
    assert head_agreement(colours) == counted
    _misled(colours)
    with pytest.raises(AssertionError, match="loaded again"):
        head_agreement(colours)


def test_one_wrong_in_hundreds_is_not_shown_as_an_error_rate_of_zero(
    colours: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newcomer read "agrees … on 240 of 241 image(s) (error rate 0.00)": as if none were wrong."""
    import lotr_labeler.review.trust as trust_module

    fitting.refresh(colours, embed.resolve_backbone(colours, "imagenet", pretrained=False, size=SIZE))
    monkeypatch.setattr(trust_module, "head_agreement", lambda store: (240, 241))
    assert scores_trust(colours).reason.endswith("on 240 of 241 image(s) out-of-sample (error rate 0.004).")
    monkeypatch.setattr(trust_module, "head_agreement", lambda store: (225, 241))
    assert scores_trust(colours).reason.endswith("(error rate 0.07).")
    monkeypatch.setattr(trust_module, "head_agreement", lambda store: (241, 241))
    assert scores_trust(colours).reason.endswith("(error rate 0.00).")
