"""Review: out-of-sample ranking finds flipped labels, decisions persist, undo is exact,
quality flags come from pixels, near-duplicate groups, the CLI and the Review page."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import choice_view, files_under, grid_send, image_bytes, pick, shape_image, wait_for
from PIL import Image, ImageDraw, ImageFilter
from streamlit.testing.v1 import AppTest

from lotr_labeler.cli import main
from lotr_labeler.collect.importers import import_folder
from lotr_labeler.errors import Conflict, InvalidInput
from lotr_labeler.model import embed, runs
from lotr_labeler.progress import Progress
from lotr_labeler.review import compute, decisions, duplicates, fitting, head, last_fit, quality, queue
from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project, open_project

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "5_Review.py")
COLOURS = {"red": (210, 40, 40), "green": (40, 190, 60), "blue": (40, 60, 215)}
# The random-init backbone at this size: honest features (no ImageNet download here) that
# still separate classes differing strongly in colour.
SIZE = 48


def colour_image(name: str, seed: int, size: int = SIZE) -> Image.Image:
    """A noisy field of the class colour with a few random blobs of any colour on it."""
    rng = np.random.default_rng(seed)
    base = np.array(COLOURS[name]) + rng.integers(-25, 25, 3)
    arr = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(3, size // 5))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


@pytest.fixture(scope="session")
def colours_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 colour classes x 30 images, generated once."""
    root = tmp_path_factory.mktemp("colours")
    for ci, name in enumerate(COLOURS):
        (root / name).mkdir()
        for i in range(30):
            colour_image(name, 1000 * ci + i).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def colours(data_root: Path, colours_dir: Path) -> Iterator[Store]:
    s = create_project(data_root, "demo", "empty")
    import_folder(s, colours_dir)
    yield s
    s.close()


def random_backbone(store: Store) -> embed.Backbone:
    return embed.resolve_backbone(store, "imagenet", pretrained=False, size=SIZE)


def flip_labels(store: Store, fraction: float, seed: int) -> set[int]:
    """Relabel ``fraction`` of the images to another class (store.relabel); returns their ids."""
    rng = np.random.default_rng(seed)
    images = store.images()
    classes = store.class_names()
    flipped = rng.choice([i.id for i in images], round(fraction * len(images)), replace=False)
    for image_id in flipped:
        img = store.get_image(int(image_id))
        others = [c for c in classes if c != img.label]
        store.relabel([int(image_id)], others[int(rng.integers(len(others)))])
    return {int(i) for i in flipped}


def clusters(n_per_class: int, n_classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Separable embeddings: one Gaussian blob per class, non-negative like pooled ReLU features."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = np.maximum(centres[y] + rng.normal(0, 0.25, (len(y), dim)), 0)
    return X, y


def flip(y: np.ndarray, fraction: float, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(y), round(fraction * len(y)), replace=False)
    noisy = y.copy()
    noisy[idx] = (noisy[idx] + rng.integers(1, n_classes, len(idx))) % n_classes
    return noisy, idx


# -- the head and the ranking ------------------------------------------------------------------


def test_head_ranks_flipped_labels_first() -> None:
    X, y = clusters(60, 5, 64, seed=0)
    noisy, flipped = flip(y, 0.1, 5, seed=1)
    probs = head.oof_probabilities(X, noisy, 5)
    assert probs.shape == (300, 5) and np.allclose(probs.sum(axis=1), 1)
    self_conf, margin = head.label_scores(probs, noisy)
    k = len(flipped)
    for scores in (self_conf, margin):
        top = set(np.argsort(scores)[:k].tolist())
        assert len(top & set(flipped.tolist())) / k >= 0.8
    # margin = p(given) - max p(other): negative exactly when another class is preferred
    assert np.array_equal(margin < 0, probs.argmax(1) != noisy)


def test_kfold_never_scores_an_image_with_a_head_that_saw_its_label() -> None:
    """Instrumented fit: every head records the rows it trained on and the rows it scored."""
    from sklearn.linear_model import LogisticRegression

    X, y = clusters(12, 3, 8, seed=2)
    fits: list[tuple[set[bytes], set[bytes]]] = []

    class Recording:
        def __init__(self) -> None:
            self.model = LogisticRegression()
            self.trained: set[bytes] = set()

        @property
        def classes_(self) -> Any:
            return self.model.classes_

        def fit(self, Xf: Any, yf: Any) -> Recording:
            self.trained = {row.tobytes() for row in np.asarray(Xf)}
            self.model.fit(Xf, yf)
            return self

        def predict_proba(self, Xs: Any) -> Any:
            fits.append((self.trained, {row.tobytes() for row in np.asarray(Xs)}))
            return self.model.predict_proba(Xs)

    probs = head.oof_probabilities(X, y, 3, make_model=Recording)
    assert len(fits) == 5
    scored_total = 0
    for trained, scored in fits:
        assert not trained & scored  # out-of-sample: no scored row was in that head's training rows
        scored_total += len(scored)
    assert scored_total == len(y)  # and every image is scored exactly once
    assert probs.shape == (36, 3)


def test_out_of_sample_score_exposes_what_an_in_sample_fit_hides() -> None:
    """A mislabeled point: the head fitted on it vouches for its wrong label more than the OOS head."""
    from sklearn.linear_model import LogisticRegression

    X, y = clusters(20, 3, 16, seed=3)
    noisy = y.copy()
    noisy[0] = 1  # truly class 0
    oos = head.oof_probabilities(X, noisy, 3)[0, 1]
    feats = head.normalize_rows(X)
    in_sample = LogisticRegression(C=1e4, max_iter=2000).fit(feats, noisy).predict_proba(feats[:1])[0, 1]
    assert oos < 1 / 3 < 0.9 < in_sample, (oos, in_sample)


def test_small_classes_get_fewer_folds_and_unseen_classes_zero() -> None:
    X, y = clusters(6, 3, 8, seed=4)
    X = np.vstack([X, X[:1] + 5])
    y = np.append(y, 3)  # a class with a single image
    assert head.n_folds(y) == 2
    probs = head.oof_probabilities(X, y, 4)
    assert probs[-1, 3] == 0.0  # scored by a head that never saw its class
    with pytest.raises(Conflict, match="at least 2 classes"):
        head.oof_probabilities(X[:6], np.zeros(6, dtype=int), 1)


@pytest.mark.slow
def test_flipped_labels_top_the_ranking_through_the_real_backbone(colours: Store) -> None:
    flipped = flip_labels(colours, 0.1, seed=5)
    embedded, fit = fitting.refresh(colours, random_backbone(colours))
    assert embedded.computed == 90 and fit is not None and fit.info.scored == 90
    items = queue.ranking(colours)
    assert len(items) == 90 and all(it.scored for it in items)
    top = {it.id for it in items[: len(flipped)]}
    assert len(top & flipped) / len(flipped) >= 0.8, [(it.id, it.given, it.predicted) for it in items[:12]]
    by_margin = {it.id for it in queue.ranking(colours, sort="margin")[: len(flipped)]}
    assert len(by_margin & flipped) / len(flipped) >= 0.8
    # Worst first, and each row says what the model thinks.
    scores = [it.self_confidence for it in items]
    assert scores == sorted(scores)  # type: ignore[type-var]
    worst = items[0]
    assert worst.predicted != worst.given and worst.confidence is not None and worst.confidence > 0.5

    # A fix needs no refit: the probabilities do not depend on the image's own label.
    target = next(it for it in items if it.id in flipped)
    assert target.predicted is not None
    decisions.relabel(colours, [target.id], target.predicted)
    after = queue.item(colours, target.id)
    assert after.given == target.predicted and after.reviewed
    assert after.self_confidence == pytest.approx(target.confidence)
    assert target.id not in {it.id for it in queue.ranking(colours)}  # reviewed: out of the queue


@pytest.mark.slow
def test_refit_is_cached_and_follows_corrections(colours: Store) -> None:
    backbone = random_backbone(colours)
    fitting.refresh(colours, backbone)
    embedded, fit = fitting.refresh(colours, backbone)
    assert embedded.computed == 0 and embedded.cached == 90  # embeddings cached by content
    assert fit is not None and last_fit.corrections_since_fit(colours) == 0
    img = colours.images()[0]
    colours.relabel([img.id], next(c for c in colours.class_names() if c != img.label))
    assert last_fit.corrections_since_fit(colours) == 1
    report = fitting.fit_scores(colours)  # defaults to the previous fit's backbone
    assert report.info.backbone == backbone.as_dict() and last_fit.corrections_since_fit(colours) == 0


@pytest.mark.slow
def test_valid_images_average_the_runs_own_probabilities(colours: Store) -> None:
    backbone = random_backbone(colours)
    fitting.refresh(colours, backbone)
    head_only = {it.id: it.probs for it in queue.ranking(colours, status="all")}
    vocab = list(reversed(colours.class_names()))  # the run's own class order
    images = colours.images()
    valid = [img for img in images if img.split == "valid"]
    assert valid

    # A run that agrees with every given label: at least as accurate as the head, averaged in.
    run = runs.create_run(colours, {"size": SIZE})
    runs.save_predictions(colours, run.id, vocab, [(img.id, [float(img.label == c) for c in vocab]) for img in images])
    runs.finish_run(colours, run.id, "done", vocab=vocab)
    report = fitting.fit_scores(colours, backbone)
    assert report.info.blended == len(valid) and report.info.run_id == run.id
    assert report.info.run_valid_accuracy == 1.0
    blended = {it.id: it for it in queue.ranking(colours, status="all")}
    for img in images:
        it = blended[img.id]
        for cls, p in head_only[img.id].items():
            expected = (p + float(cls == img.label)) / 2 if img.split == "valid" else p
            assert it.probs[cls] == pytest.approx(expected, abs=1e-5)
        assert it.source == ("head+model" if img.split == "valid" else "head")

    # A barely trained run (one class for everything) would only blur the ranking: left out.
    weak = runs.create_run(colours, {"size": SIZE})
    runs.save_predictions(colours, weak.id, vocab, [(img.id, [1.0, 0.0, 0.0]) for img in images])
    runs.finish_run(colours, weak.id, "done", vocab=vocab)
    runs.set_current(colours, weak.id)
    report = fitting.fit_scores(colours, backbone)
    assert report.info.blended == 0 and report.info.run_id is None
    assert report.info.run_valid_accuracy is not None and report.info.head_valid_accuracy is not None
    assert report.info.run_valid_accuracy < report.info.head_valid_accuracy
    assert report.summary().endswith(": not averaged in).")  # a sentence: the page appends the next one
    ranked = queue.ranking(colours, status="all")
    assert len(ranked) == len(images) and all(it.probs == pytest.approx(head_only[it.id]) for it in ranked)


def test_fit_needs_embeddings_and_images(store: Store, data_root: Path) -> None:
    with pytest.raises(Conflict, match="Compute embeddings first"):
        fitting.fit_scores(store, random_backbone(store))
    with pytest.raises(InvalidInput, match="Must be one of"):
        queue.ranking(store, sort="loss")
    with create_project(data_root, "empty", "empty") as empty, pytest.raises(Conflict, match="no images"):
        fitting.refresh(empty, random_backbone(empty))


@pytest.mark.slow
def test_compute_and_retrain_head_as_library_calls(colours: Store) -> None:
    """What ``review --compute`` and the page's Retrain head run, called as a notebook would."""
    stop = threading.Event()
    stop.set()
    cancelled = compute.compute(colours, pretrained=False, size=SIZE, cancel=stop)
    assert cancelled.cancelled and cancelled.embedded is not None and cancelled.embedded.computed == 0
    seen: list[Progress] = []
    done = compute.compute(colours, pretrained=False, size=SIZE, progress=seen.append)  # best, --no-pretrained
    assert done.backbone == random_backbone(colours) and done.reason is None
    assert done.fit is not None and done.fit.info.scored == 90 and done.embedded is not None
    assert done.embedded.computed == 90 and seen[-1].done == seen[-1].total == 90
    assert {(p.phase, p.backbone) for p in seen if isinstance(p, compute.ComputeProgress)} == {
        ("embed", done.backbone.describe())
    }
    again = compute.retrain_head(colours)  # the page's: judged, nothing exported, the current model stays
    assert again.made is None and again.check is not None and again.check.valid_images > 0
    assert again.fit.info.backbone == done.backbone.as_dict() and runs.list_runs(colours) == []


# -- decisions and undo --------------------------------------------------------------------------


def test_keep_removes_from_queue_until_the_label_changes(store: Store) -> None:
    ids = [img.id for img in store.images()[:3]]
    assert decisions.keep(store, ids) == 3
    unreviewed = {it.id for it in queue.ranking(store)}
    assert not unreviewed & set(ids)
    assert {it.id for it in queue.ranking(store, status="reviewed")} == set(ids)
    with open_project(store.root.parent, store.name) as again:  # persisted, not session state
        assert decisions.reviewed_ids(again) == set(ids)
    # A later label change (here on another page) puts the image back in the queue.
    store.relabel([ids[0]], "square" if store.get_image(ids[0]).label != "square" else "circle")
    assert ids[0] in {it.id for it in queue.ranking(store)}
    decisions.unreview(store, ids[1:2])
    assert decisions.reviewed_ids(store) == {ids[2]}


def test_bulk_relabel_is_one_event_and_undo_restores_db_and_files(store: Store) -> None:
    before_files = files_under(store.root)
    circles = [img.id for img in store.images("circle")[:3]]
    events = len(store.history())
    assert decisions.relabel(store, circles, "square") == 3
    assert len(store.history()) == events + 1 and store.history()[0].kind == "relabel"
    assert all(store.get_image(i).label == "square" for i in circles)
    assert all((store.root / f"images/square/{i}.jpg").exists() for i in circles)
    assert decisions.reviewed_ids(store) == set(circles)
    store.undo()
    assert all(store.get_image(i).label == "circle" for i in circles)
    assert files_under(store.root) == before_files
    assert decisions.reviewed_ids(store) == set()  # the confirmed label is gone: back in the queue


def test_bulk_delete_is_one_event_and_undo_restores(store: Store) -> None:
    before_files = files_under(store.root)
    ids = [img.id for img in store.images()[:4]]
    assert decisions.delete(store, ids) == 4
    assert len([e for e in store.history() if e.kind == "delete"]) == 1
    assert not {it.id for it in queue.ranking(store, status="all")} & set(ids)
    assert all((store.root / f"trash/{i}.jpg").exists() for i in ids)
    store.undo()
    assert files_under(store.root) == before_files
    assert {it.id for it in queue.ranking(store)} >= set(ids)


def test_relabel_failure_changes_nothing(store: Store) -> None:
    ids = [img.id for img in store.images()[:2]]
    with pytest.raises(Exception, match="No class"):
        decisions.relabel(store, ids, "hexagon")
    assert decisions.reviewed_ids(store) == set() and store.history()[0].kind != "relabel"


# -- quality flags ------------------------------------------------------------------------------


def _textured(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(40, 220, (h, w, 3), dtype=np.uint8)
    arr[..., 0] = np.clip(arr[..., 0].astype(int) + 30, 0, 255)  # some colour
    return Image.fromarray(arr, "RGB")


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("normal", lambda: shape_image("circle", 7, size=96), set()),
        ("tiny", lambda: _textured((40, 40), 1), {"tiny"}),
        ("wide", lambda: _textured((640, 64), 2), {"aspect"}),
        ("grey", lambda: _textured((96, 96), 3).convert("L").convert("RGB"), {"grey"}),
        ("black", lambda: Image.new("RGB", (96, 96), (0, 0, 0)), {"dark", "grey", "blurry"}),
        ("white", lambda: Image.new("RGB", (96, 96), (250, 250, 250)), {"light", "grey", "blurry"}),
        ("blurred", lambda: shape_image("square", 8, size=96).filter(ImageFilter.GaussianBlur(4)), {"blurry"}),
    ],
)
def test_quality_flags_from_pixels(tmp_path: Path, name: str, make: Any, expected: set[str]) -> None:
    path = tmp_path / f"{name}.jpg"
    path.write_bytes(image_bytes(make(), "JPEG", quality=92))
    stats = quality.measure(path)
    assert set(quality.flags_for(stats)) == expected, stats


def test_quality_flags_are_cached_by_content_and_follow_the_setting(store: Store, monkeypatch: Any) -> None:
    images = store.images()
    flags = quality.quality_flags(store, images)
    assert set(flags) == {img.id for img in images} and not any(flags.values())  # 64 px shapes: fine
    calls: list[Path] = []
    monkeypatch.setattr(quality, "measure", lambda p: calls.append(p))
    store.set_setting("tiny_side", 100)
    flags = quality.quality_flags(store, images)  # thresholds change, nothing is measured again
    assert not calls and all("tiny" in f for f in flags.values())
    assert {it.id for it in queue.ranking(store, flag="tiny")} == {img.id for img in images}
    assert queue.ranking(store, flag="blurry") == []


# -- near duplicates ------------------------------------------------------------------------------


@pytest.fixture
def dups(data_root: Path, tmp_path: Path) -> Iterator[Store]:
    """Pictures a, b, c (distinct), a smaller re-encoded copy of a under another label and one of b
    under the same label."""
    src = tmp_path / "src"
    pictures = {
        n: shape_image(s, seed, size=128)
        for n, s, seed in (("a", "circle", 1), ("b", "square", 2), ("c", "triangle", 3))
    }
    for label, files in {
        "circle": {"a": "a"},
        "square": {"b": "b", "b2": "b", "c": "c"},
        "triangle": {"a2": "a"},
    }.items():
        (src / label).mkdir(parents=True)
        for fname, pic in files.items():
            img = pictures[pic] if not fname.endswith("2") else pictures[pic].resize((120, 120))
            (src / label / f"{fname}.jpg").write_bytes(
                image_bytes(img, "JPEG", quality=70 if fname.endswith("2") else 95)
            )
    s = create_project(data_root, "demo", "empty")
    import_folder(s, src)
    yield s
    s.close()


def test_duplicate_groups_conflicts_first_and_actions(dups: Store) -> None:
    groups = duplicates.duplicate_groups(dups)
    assert len(groups) == 2
    first, second = groups
    assert first.conflict and first.labels == ["circle", "triangle"]
    assert not second.conflict and second.labels == ["square"]
    assert len(first.images) == 2 and not first.reviewed

    keep = first.ids[0]
    events = len(dups.history())
    assert duplicates.keep_one(dups, keep, first.ids) == 1
    assert len(dups.history()) == events + 1
    assert [g.ids for g in duplicates.duplicate_groups(dups)] == [second.ids]

    duplicates.keep_all(dups, second.ids)
    assert duplicates.duplicate_groups(dups) == []
    assert [g.ids for g in duplicates.duplicate_groups(dups, include_reviewed=True)] == [second.ids]
    dups.undo()  # "Keep all" is a step of the history too: the group is back
    assert [g.ids for g in duplicates.duplicate_groups(dups)] == [second.ids]
    dups.undo()  # the keep_one delete
    assert {tuple(g.ids) for g in duplicates.duplicate_groups(dups)} == {tuple(first.ids), tuple(second.ids)}
    assert duplicates.duplicate_groups(dups, max_distance=0) == [] or all(
        g.max_distance == 0 for g in duplicates.duplicate_groups(dups, max_distance=0)
    )


# -- CLI -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_review_json_and_table(colours: Store, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flipped = flip_labels(colours, 0.1, seed=6)
    base = ["--data", str(data_root), "--project", "demo", "review"]
    assert main([*base, "--no-pretrained", "--size", str(SIZE), "--top", "9", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 9
    assert {"id", "path", "given", "predicted", "confidence", "score", "flags"} <= set(rows[0])
    assert all(Path(r["path"]).is_file() for r in rows)
    assert len({r["id"] for r in rows} & flipped) >= 7
    assert [r["score"] for r in rows] == sorted(r["score"] for r in rows)

    assert main([*base, "--cached", "--sort", "margin", "--top", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["id", "given", "predicted", "confidence", "score"] and len(out) == 4

    assert main([*base, "--cached", "--flag", "sideways"]) == 1
    assert "Flag 'sideways' is not valid" in capsys.readouterr().err
    assert main([*base, "--backbone", "run"]) == 1
    assert "no trained model" in capsys.readouterr().err


def test_cli_review_compute_registers_a_job(store: Store, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lotr_labeler.jobs import table as jobs

    base = ["--data", str(data_root), "--project", "demo", "review"]
    assert main([*base, "--compute", "--no-pretrained", "--size", "32"]) == 0
    assert capsys.readouterr().out == ""  # compute only: no listing
    job = jobs.latest_job(store, "review")
    assert job is not None and job.state == "done" and job.result == {"embedded": 18, "scored": 18}
    assert job.progress["done"] == job.progress["total"] == 18
    info = last_fit.fit_info(store)
    assert info is not None and info.scored == 18 and info.backbone["size"] == 32


# -- the Review page --------------------------------------------------------------------------------


def grid_data(at: AppTest, key: str) -> dict[str, Any]:
    """The payload of the card grid ``key`` (its clicks and keys: tests/ui/test_cards.py and e2e)."""
    found = [el for el in at.get("bidi_component") if getattr(el, "key", None) == key]
    assert found, f"no card grid {key!r}"
    data: dict[str, Any] = json.loads(found[0].proto.json)
    return data


def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def click(at: AppTest, key: str) -> None:
    at.button(key=key).click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_page_without_images(empty_store: Store) -> None:
    at = page()
    assert any("No images to review" in i.value for i in at.info)
    assert not at.error


def test_page_without_scores_offers_compute_and_quality_filters(store: Store) -> None:
    at = page()
    assert not at.error
    labels = [b.label for b in at.button]
    assert "Compute (18 new)" in labels and "⚡ Retrain head" in labels and "🏋️ Full retrain" in labels
    retrain = next(b for b in at.button if b.label == "⚡ Retrain head")
    assert retrain.disabled  # nothing to refit yet
    # Without a run there is no "current model" backbone to pick.
    assert "Current model's body" not in choice_view(at, "r_source").options
    # Cards show (unscored) images and their actions work already (the grid: tests/ui/test_cards.py, e2e).
    grid = grid_data(at, "r_grid")
    assert len(grid["cards"]) == 18 and "keep" in grid["actions"] and "predict" in grid["actions"]
    assert not any(c["predicted"] for c in grid["cards"])  # nothing scored: no prediction to accept


def _scored(store: Store) -> None:
    fitting.refresh(store, embed.resolve_backbone(store, "imagenet", pretrained=False, size=32))


def test_page_with_scores_keep_relabel_delete_update_the_store(store: Store) -> None:
    _scored(store)
    at = page()
    assert not at.error
    assert any("Scores" in m.value for m in at.markdown)
    # The controls start on the backbone of the stored scores: nothing new to compute.
    assert choice_view(at, "r_source").value == "random" and at.number_input(key="r_size").value == 32
    assert "Compute scores" in [b.label for b in at.button]
    # The grid shows the queue worst first, each disagreeing card with the prediction P accepts.
    grid = grid_data(at, "r_grid")
    ranked = queue.ranking(store)
    assert [c["id"] for c in grid["cards"]] == [it.id for it in ranked]
    assert [c["predicted"] for c in grid["cards"]] == [it.predicted if it.disagrees else None for it in ranked]
    assert not grid["hint_only"]  # no trained model to distrust


@pytest.mark.slow
def test_page_with_a_run_offers_its_body_and_retrain_head(store: Store) -> None:
    _scored(store)
    run = runs.create_run(store, {"size": 32})
    runs.finish_run(store, run.id, "done", vocab=store.class_names())
    run.model_path.write_bytes(b"not really a model")
    at = page()
    assert not at.error
    assert "Current model's body" in choice_view(at, "r_source").options
    assert any(f"run {run.id}" in c.value for c in at.caption)  # "compute with its body" hint
    retrain = next(b for b in at.button if b.label == "⚡ Retrain head")
    before = last_fit.fit_info(store)
    retrain.click().run()
    after = last_fit.fit_info(store)
    assert before is not None and after is not None and after.computed_at >= before.computed_at
    assert any("Scored 18 image(s)" in s.value for s in at.success)


def test_images_added_after_the_scores_are_named_with_the_way_to_embed_them(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A newcomer imported 6 images after the scores: Retrain head said "compute embeddings to score them"
    while Compute sat folded in the ⚙ Backbone popover. The popover now counts them, and each front end's
    message names its own way: the popover's Compute on the page, ``review --compute`` in a terminal."""
    _scored(store)
    new = tmp_path / "more" / "circle"
    new.mkdir(parents=True)
    shape_image("circle", 999, 64).save(new / "late.png")
    assert len(import_folder(store, new.parent).added) == 1
    at = page()
    assert [p.proto.popover.label for p in at.get("popover") if "Backbone" in p.proto.popover.label] == [
        "⚙ Backbone · 1 new"
    ]
    assert at.button(key="r_compute").label == "Compute (1 new)"
    click(at, "r_retrain_head")
    said = " ".join(s.value for s in at.success)
    assert "1 image(s) have no embedding yet: **⚙ Backbone → Compute** scores them." in said, said
    assert main(["--data", str(store.root.parent), "--project", store.name, "review", "--retrain-head"]) == 0
    assert "1 image(s) have no embedding yet: `lotr-labeler review --compute` scores them." in capsys.readouterr().err


def test_backbone_choice_follows_the_project_and_a_bad_one_is_said_in_its_box(
    store: Store, data_root: Path, shapes_dir: Path
) -> None:
    """The choice is kept across pages per session (``BACKBONE``); another project starts from its own last
    fit, and a backbone that cannot be resolved says why inside the ⚙ Backbone box, not over the page."""
    _scored(store)  # random init, 32 px
    with create_project(data_root, "other", "empty") as other:
        import_folder(other, shapes_dir)
        fitting.refresh(other, embed.resolve_backbone(other, "imagenet", pretrained=False, size=64))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["_project"] = "demo"
    at.run()
    assert at.number_input(key="r_size").value == 32
    at.session_state["_project"] = "other"  # the sidebar's project picker
    at.run()
    assert at.number_input(key="r_size").value == 64 and choice_view(at, "r_source").value == "random"
    at = pick(at, "r_source", "file")  # no weights file given yet
    assert not at.exception
    (box,) = [p for p in at.get("popover") if p.proto.popover.label.startswith("⚙ Backbone")]
    assert [e.value for e in box.error] == ["Give the path of a torchvision resnet18 weights file (.pth)."]
    assert [e.value for e in at.error] == [e.value for e in box.error]  # only there


def test_page_duplicates_tab(dups: Store) -> None:
    at = page()
    assert not at.error
    assert not any("labels disagree" in m.value for m in at.markdown)  # closed: not built (issue 14)
    at.session_state["r_tab"] = "Duplicates"
    at.run()
    assert any("labels disagree" in m.value for m in at.markdown)
    group = duplicates.duplicate_groups(dups)[0]
    click(at, f"r_dup_one_{group.ids[0]}_{group.ids[0]}")
    assert dups.get_image(group.ids[1]).deleted and not dups.get_image(group.ids[0]).deleted


@pytest.mark.slow
def test_page_compute_runs_the_embedding_job_in_the_background(store: Store) -> None:
    from lotr_labeler.jobs import table as jobs

    at = page()
    at = pick(at, "r_source", "random")
    at.number_input(key="r_size").set_value(32).run()
    next(b for b in at.button if b.label == "Compute (18 new)").click().run()
    assert not at.exception
    assert any("Computing embeddings" in s.value for s in at.success)

    def finished() -> bool:
        job = jobs.latest_job(store, "review")
        return job is not None and not job.running

    wait_for(finished, timeout=180, what="the embedding job")
    job = jobs.latest_job(store, "review")
    assert job is not None and job.state == "done", job.message
    at.run()
    assert not at.exception and not at.error
    assert any("Scores** of 18 image(s)" in m.value for m in at.markdown)
    info = last_fit.fit_info(store)
    assert info is not None and info.backbone_spec == embed.Backbone("resnet18", 32, pretrained=False)


@pytest.mark.slow
def test_page_full_retrain_reuses_the_current_runs_settings(store: Store) -> None:
    """Full retrain starts the training job with the current run's settings, not the CLI defaults
    (which would ask for pretrained weights: offline, that fails)."""
    from lotr_labeler.jobs import table as jobs

    at = page()
    next(b for b in at.button if b.label == "🏋️ Full retrain").click().run()
    assert any("at least 10 images" in e.value for e in at.error)  # refused before any job starts
    assert jobs.latest_job(store, "train") is None

    store.set_setting("min_images_per_class", 2)
    params = {"arch": "resnet18", "epochs": 1, "size": 32, "batch_size": 4, "pretrained": False, "augment": False}
    run = runs.create_run(store, params)
    runs.finish_run(store, run.id, "done", vocab=store.class_names())
    at = page()
    next(b for b in at.button if b.label == "🏋️ Full retrain").click().run()
    job = jobs.latest_job(store, "train")
    assert job is not None, [e.value for e in at.error]
    assert {k: job.args[k] for k in params} == params
    jobs.request_cancel(store, job.id)  # the worker itself is train's business (tests/model/test_train.py)


@pytest.mark.slow
def test_a_page_action_clears_the_grids_older_message(store: Store) -> None:
    """After the page's ↩ Undo the top said "Undid: relabeled…" while the grid's line still said the
    previous grid action's outcome: a page-level action's outcome now replaces it (the line empties)."""
    at = page()
    first = grid_data(at, "r_grid")["cards"][0]["id"]
    at = grid_send(at, "r_grid", {"action": "delete", "ids": [first]})
    assert not at.exception, [e.value for e in at.exception]
    assert store.get_image(first).deleted
    assert grid_data(at, "r_grid")["message"] == ["success", "Deleted 1 image (Z or Undo restores)."]
    at.run()  # a rerun that does nothing keeps the grid's line
    assert grid_data(at, "r_grid")["message"] == ["success", "Deleted 1 image (Z or Undo restores)."]

    click(at, "undo")  # the page's button, above the tabs
    assert not store.get_image(first).deleted
    assert [s.value for s in at.success if s.value.startswith("Undid")], [s.value for s in at.success]
    assert grid_data(at, "r_grid")["message"] is None

    at = grid_send(at, "r_grid", {"action": "delete", "ids": [first]})  # a grid action speaks there again
    assert grid_data(at, "r_grid")["message"] == ["success", "Deleted 1 image (Z or Undo restores)."]
