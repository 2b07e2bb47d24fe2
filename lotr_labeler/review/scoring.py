"""Review: rank the images the model disagrees with, record decisions, find near duplicates.

How an image gets its score:

1. its backbone embedding (``embed``), cached by content hash;
2. a light head — logistic regression on L2-normalised embeddings — trained with
   stratified K-fold cross-validation: each image is scored by the head of the one fold that
   did **not** train on it, so every image (not only the validation split) gets an
   out-of-sample probability for each class;
3. for validation-split images, the current run's own probabilities (``runs.predictions``;
   also out-of-sample, since the run trained on the train split only) are **averaged** with
   the head's when the run knows the same classes and agrees with the given valid labels at
   least as often as the head does: two out-of-sample opinions, one from the fully
   fine-tuned network. A weaker run (e.g. barely trained) is left out: averaging it in would
   only blur the ranking. Train-split images get the head's alone (the run saw their labels).
   Caveat: with the run's body as backbone, train images' embeddings were shaped by their
   (possibly wrong) labels; the ImageNet backbone has no such bias.

Scores, lower = more suspicious: ``self_confidence`` = p(given label), ``margin`` =
p(given) − max p(other). The probabilities do not depend on the image's own label, so a
relabel updates its scores at once, without refitting.

Decisions live in the project DB (``review_marks``): *Keep* confirms the current label; a
relabel through review confirms the new one; a later label change (undo, another page)
puts the image back in the queue. Relabel and delete go through the store: one transaction
and one undoable event per action, however many images.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, overload

import numpy as np
import numpy.typing as npt

from lotr_labeler import project as proj
from lotr_labeler.errors import Conflict, InvalidInput, NotFound, WeightsUnavailable, check_choice
from lotr_labeler.model import backbones, embed, runs
from lotr_labeler.model.network import Network
from lotr_labeler.progress import Cancel, Report, stopped
from lotr_labeler.progress import Progress as BaseProgress
from lotr_labeler.review import dedupe, quality
from lotr_labeler.store import SPLITS, ImageRow, Store, now, reviews, version
from lotr_labeler.store.images import Relabeled

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def _counted(progress: Progress | None) -> Report | None:
    """``progress`` fed by ``embed``'s progress records (done of total)."""
    if progress is None:
        return None
    count = progress
    return lambda p: count(p.done, p.total)


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SORTS = ("self_confidence", "margin")
STATUSES = ("unreviewed", "reviewed", "all")
FOLDS = 5
# Inverse regularisation of the head, which sees standardised features (scaler fitted on the
# training folds only). Measured on random-init resnet features of digits and colour classes:
# C=0.01 ranks flipped labels as well as any C in 0.001-1 and converges in ~0.1 s per fold.
HEAD_C = 0.01
HEAD_MAX_ITER = 300
# Optimiser tolerance: 1e-3 halves the fit time against the default 1e-4 with the same
# ranking (measured on 1,000 digits embeddings: recall@k 0.94 both, AUROC 0.9955 vs 0.9954).
HEAD_TOL = 1e-3
SEED = 0
# Quality flags of more unmeasured images than this are left to the embedding job, not a page run.
PAGE_QUALITY_LIMIT = 400
_META_KEY = "review_fit"
STORE_FLAGS = ("near-duplicate",)


class Classifier(Protocol):
    """The part of a scikit-learn classifier the head uses."""

    classes_: Any

    def fit(self, X: Any, y: Any) -> Any: ...

    def predict_proba(self, X: Any) -> Any: ...


ModelFactory = Callable[[], Classifier]


def default_head() -> Classifier:
    """Standardise, then multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
    from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

    model: Classifier = make_pipeline(
        StandardScaler(), LogisticRegression(C=HEAD_C, max_iter=HEAD_MAX_ITER, tol=HEAD_TOL)
    )
    return model


def warm_up() -> None:
    """Import scikit-learn in a background thread (~3 s), so the first 'Retrain head' is fast."""
    import importlib
    import threading

    def load() -> None:
        for name in ("sklearn.linear_model", "sklearn.model_selection", "sklearn.pipeline", "threadpoolctl"):
            importlib.import_module(name)

    threading.Thread(target=load, name="sklearn-warm-up", daemon=True).start()


def normalize_rows(X: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """L2-normalise each row (a zero row stays zero). float32: half the work of the fits."""
    arr = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    out: npt.NDArray[np.float32] = np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0)
    return out


def n_folds(y: Sequence[int] | npt.NDArray[np.int64], folds: int = FOLDS) -> int:
    """K for stratified K-fold: ``folds``, fewer when the smallest class is smaller, at least 2."""
    counts = np.bincount(np.asarray(y, dtype=np.int64))
    smallest = int(counts[counts > 0].min()) if counts.any() else 0
    return max(2, min(folds, smallest))


def oof_probabilities(
    X: npt.ArrayLike,
    y: Sequence[int] | npt.NDArray[np.int64],
    n_classes: int,
    *,
    folds: int = FOLDS,
    seed: int = SEED,
    make_model: ModelFactory | None = None,
) -> FloatArray:
    """Out-of-sample class probabilities, shape (N, n_classes), by stratified K-fold.

    Row i comes from a head fitted on the other folds only: its own label never trains
    the model that scores it. A class missing from a fold's training part gets probability
    0 in that fold.
    """
    from sklearn.exceptions import ConvergenceWarning  # type: ignore[import-untyped]
    from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    feats = normalize_rows(X)
    labels = np.asarray(y, dtype=np.int64)
    if feats.shape[0] != labels.shape[0]:
        raise InvalidInput(f"{feats.shape[0]} embeddings for {labels.shape[0]} labels.")
    present = np.unique(labels)
    if len(present) < 2:
        raise Conflict(
            f"Review needs images of at least 2 classes; found {len(present)}. Import or download more images."
        )
    if labels.min() < 0 or labels.max() >= n_classes:
        raise InvalidInput(f"Labels must be in 0..{n_classes - 1}; got {labels.min()}..{labels.max()}.")
    k = n_folds(labels, folds)
    factory = make_model or default_head
    out = np.zeros((feats.shape[0], n_classes), dtype=np.float64)
    # One BLAS thread: these matrices are small, and on a 2-core laptop threading made the
    # fits 20-50x slower (measured), worse still while a training job runs.
    with warnings.catch_warnings(), threadpool_limits(1):
        # A class with fewer members than K (e.g. a single image) is fine: it is scored by
        # heads that never saw it, which is what an out-of-sample score means.
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        for train_idx, test_idx in splitter.split(feats, labels):
            seen = np.unique(labels[train_idx])
            if len(seen) == 1:  # nothing to learn: everything looks like the one class seen
                out[test_idx, int(seen[0])] = 1.0
                continue
            model = factory()
            model.fit(feats[train_idx], labels[train_idx])
            cols = np.asarray(model.classes_, dtype=np.int64)
            out[np.ix_(test_idx, cols)] = np.asarray(model.predict_proba(feats[test_idx]), dtype=np.float64)
    return out


def label_scores(probs: npt.ArrayLike, given: Sequence[int]) -> tuple[FloatArray, FloatArray]:
    """(self_confidence, normalized margin) per row; ``given`` < 0 means a class the head never saw."""
    p = np.asarray(probs, dtype=np.float64)
    g = np.asarray(given, dtype=np.int64)
    rows = np.arange(p.shape[0])
    known = g >= 0
    self_conf = np.where(known, p[rows, np.clip(g, 0, None)], 0.0)
    others = p.copy()
    others[rows[known], g[known]] = -np.inf
    margin = self_conf - others.max(axis=1)
    return self_conf, margin


# -- fitting and storing scores ----------------------------------------------------------------


@dataclass(frozen=True)
class FitInfo:
    """How the stored scores were made (meta ``review_fit``)."""

    backbone: dict[str, Any]
    class_ids: list[int]
    computed_at: str
    seconds: float
    folds: int
    scored: int
    blended: int
    run_id: str | None
    event_id: int  # newest history event when fitted: later ones are corrections since
    # Agreement with the given labels on the valid split (both out-of-sample), when a run has predictions.
    head_valid_accuracy: float | None = None
    run_valid_accuracy: float | None = None
    backbone_reason: str | None = None  # why ``choose_backbone`` picked it, when it did
    compared_run_id: str | None = None  # the run whose valid accuracy is ``run_valid_accuracy``

    @property
    def backbone_spec(self) -> embed.Backbone:
        return embed.Backbone.from_dict(self.backbone)


@dataclass(frozen=True)
class FitReport:
    info: FitInfo
    unscored: int  # active images without a cached embedding

    def summary(self) -> str:
        i = self.info
        text = f"Scored {i.scored} image(s) in {i.seconds:.2f} s ({i.folds}-fold head on {i.backbone_spec.describe()}"
        if i.blended:
            text += f"; {i.blended} validation image(s) averaged with run {i.run_id})"
        elif i.run_valid_accuracy is not None:
            text += (
                f"; the current model agrees less with the valid labels ({i.run_valid_accuracy:.0%}) "
                f"than the head ({i.head_valid_accuracy or 0:.0%}): not averaged in)"
            )
        else:
            text += ")"
        if self.unscored:
            text += f". {self.unscored} image(s) have no embedding yet: compute embeddings to score them."
        return text


def fit_info(store: Store) -> FitInfo | None:
    value = store.meta_get(_META_KEY)
    if value is None:
        return None
    data = json.loads(value)
    fields = set(FitInfo.__dataclass_fields__)
    return FitInfo(**{k: v for k, v in data.items() if k in fields})


def corrections_since_fit(store: Store) -> int:
    """History events (relabels, deletes, undos…) recorded after the stored scores were fitted."""
    info = fit_info(store)
    if info is None:
        return 0
    return store.count_events_after(info.event_id)


def _run_probs(store: Store, class_ids: Sequence[int]) -> tuple[str | None, dict[int, FloatArray]]:
    """The current run's probabilities of valid-split images, aligned with ``class_ids``.

    Empty when there is no run or its classes are not exactly the head's (renamed/added classes).
    """
    run = runs.current_run(store)
    if run is None:
        return None, {}
    names = {c.id: proj.name_key(c.name) for c in store.classes()}
    head_keys = [names.get(cid, "") for cid in class_ids]
    run_keys = [proj.name_key(v) for v in run.vocab]
    if sorted(head_keys) != sorted(run_keys):
        log.info("run %s classes %s differ from the head's %s: not blended", run.id, run_keys, head_keys)
        return run.id, {}
    order = [run_keys.index(k) for k in head_keys]
    preds = runs.predictions(store, run.id)
    return run.id, {image_id: np.asarray(p.probs, dtype=np.float64)[order] for image_id, p in preds.items()}


def fit_scores(
    store: Store,
    backbone: embed.Backbone | None = None,
    *,
    folds: int = FOLDS,
    make_model: ModelFactory | None = None,
    blend_run: bool = True,
    reason: str | None = None,
) -> FitReport:
    """Refit the head on the cached embeddings and store fresh scores for every embedded image.

    ``backbone`` defaults to the one of the previous fit, else ``embed.resolve_backbone``.
    Seconds for a thousand images: nothing is embedded here.
    """
    started = time.monotonic()
    if backbone is None:
        info = fit_info(store)
        backbone = info.backbone_spec if info else embed.resolve_backbone(store)
        if info is not None and reason is None:
            reason = info.backbone_reason
    images = store.images()
    have, X = embed.embeddings(store, backbone, images)
    if not have:
        raise Conflict(
            f"No image of project {store.name!r} has an embedding for {backbone.describe()}. "
            "Compute embeddings first (`lotr-labeler review --compute`, or 'Compute' on the Review page)."
        )
    order = {c.id: i for i, c in enumerate(store.classes())}
    class_ids = sorted({img.class_id for img in have}, key=lambda cid: order.get(cid, len(order)))
    index = {cid: i for i, cid in enumerate(class_ids)}
    y = np.array([index[img.class_id] for img in have], dtype=np.int64)
    k = n_folds(y, folds)
    probs = oof_probabilities(X, y, len(class_ids), folds=folds, make_model=make_model)
    run_id, run_probs = _run_probs(store, class_ids) if blend_run else (None, {})
    both = [i for i, img in enumerate(have) if img.split == "valid" and img.id in run_probs]
    head_acc = run_acc = None
    if both:
        # Both opinions are out-of-sample on the valid split, so their agreement with the given
        # labels there is a fair comparison. A run worse than the head (e.g. barely trained)
        # would only blur the head's ranking: then it is left out.
        head_acc = float(np.mean([probs[i].argmax() == y[i] for i in both]))
        run_acc = float(np.mean([run_probs[have[i].id].argmax() == y[i] for i in both]))
    sources = ["head"] * len(have)
    blended = 0
    if run_acc is not None and head_acc is not None and run_acc >= head_acc:
        for i in both:
            probs[i] = (probs[i] + run_probs[have[i].id]) / 2.0
            sources[i] = "head+model"
            blended += 1
    elif both:
        log.info("run %s is less accurate on valid (%.3f) than the head (%.3f): not blended", run_id, run_acc, head_acc)
    info = FitInfo(
        backbone=backbone.as_dict(),
        class_ids=class_ids,
        computed_at=now(),
        seconds=round(time.monotonic() - started, 3),
        folds=k,
        scored=len(have),
        blended=blended,
        run_id=run_id if blended else None,
        event_id=store.last_event_id(),
        head_valid_accuracy=head_acc,
        run_valid_accuracy=run_acc,
        backbone_reason=reason,
        compared_run_id=run_id if run_acc is not None else None,
    )
    reviews.replace_scores(
        store,
        [(img.id, json.dumps([round(float(v), 6) for v in probs[i]]), sources[i]) for i, img in enumerate(have)],
        fit_key=_META_KEY,
        fit=json.dumps(info.__dict__),
    )
    prepare_page(store, backbone)
    return FitReport(info, unscored=len(images) - len(have))


def refresh(
    store: Store,
    backbone: embed.Backbone,
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    batch_size: int = 32,
    reason: str | None = None,
) -> tuple[embed.EmbedReport, FitReport | None]:
    """Embed what is missing (progress over the images to compute), measure quality, refit the head.

    Parameters
    ----------
    store
        The project.
    backbone
        What to embed with, from ``resolve_backbone``.
    progress
        Called as embeddings are computed.
    cancel
        Looked at between batches; once set, the work stops.
    batch_size
        Images per forward pass.
    reason
        Why this backbone (``BackboneChoice.reason``), kept with the scores.

    Returns
    -------
    tuple[EmbedReport, FitReport or None]
        What was embedded, and the new scores (None when cancelled).

    Raises
    ------
    Conflict
        The project has no images.
    """
    images = store.images()
    if not images:
        raise Conflict(f"Project {store.name!r} has no images to review yet. Import or download some first.")
    report = embed.compute_embeddings(
        store, backbone, images, batch_size=batch_size, progress=_counted(progress), cancel=cancel
    )
    if report.cancelled:
        return report, None
    quality.quality_stats(store, images)
    return report, fit_scores(store, backbone, reason=reason)


# -- choosing the backbone ---------------------------------------------------------------------

# Images the choice embeds per candidate backbone (stratified by class): enough to rank the
# backbones, few enough that trying three costs a minute on a CPU. They stay cached.
CHOICE_SAMPLE = 300
# Below this many valid-split images the choice evaluates on every image (and says so).
CHOICE_MIN_VALID = 30


@dataclass(frozen=True)
class BackboneTrial:
    """One candidate of ``choose_backbone``: its K-fold accuracy, or why it was skipped."""

    backbone: embed.Backbone | None
    name: str
    accuracy: float | None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone.id if self.backbone else None,
            "name": self.name,
            "accuracy": None if self.accuracy is None else round(self.accuracy, 4),
            "note": self.note,
        }


@dataclass(frozen=True)
class BackboneChoice:
    """The backbone ``choose_backbone`` picked and the evidence."""

    backbone: embed.Backbone
    trials: tuple[BackboneTrial, ...]
    evaluated_on: str  # e.g. "240 valid-split images"

    @property
    def reason(self) -> str:
        """E.g. 'run 2024… body: CV accuracy 0.91 vs random init 0.62 (5-fold head on 240 valid-split images)'."""
        scored = sorted((t for t in self.trials if t.accuracy is not None), key=lambda t: -(t.accuracy or 0.0))
        # Not tried or not usable; the winner itself is unscored when it was the only one (nothing to compare).
        skipped = [t for t in self.trials if t.accuracy is None and t.backbone != self.backbone]
        best = next((t for t in scored if t.backbone == self.backbone), None)
        if best is None:
            text = f"{self.backbone.short}: the only backbone available"
        else:
            others = [f"{t.name} {t.accuracy:.2f}" for t in scored if t is not best]
            text = f"{best.name}: CV accuracy {best.accuracy:.2f}"
            text += f" vs {', '.join(others)}" if others else " (the only one that could be tried)"
            text += f" (K-fold head on {self.evaluated_on})"
        if skipped:
            text += "; skipped: " + "; ".join(f"{t.name} ({t.note})" for t in skipped)
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone.id,
            "reason": self.reason,
            "evaluated_on": self.evaluated_on,
            "trials": [t.as_dict() for t in self.trials],
        }


def backbone_candidates(
    store: Store, *, weights: str | Path | None = None, size: int | None = None
) -> list[BackboneTrial]:
    """The backbones ``auto`` may pick, in order of preference on a tie: the current run's body,
    the bundled EfficientNet-Lite0, ImageNet resnet18 (when its weights are on this machine), a weights
    file; random init only when no pretrained network is there (it never wins against one).
    A candidate that cannot be used carries ``backbone=None`` and the reason."""
    out: list[BackboneTrial] = []
    run = runs.current_run(store)
    if run is not None:
        try:
            body = embed.resolve_backbone(store, "run", size=size)
            out.append(BackboneTrial(body, body.short, None))
        except (NotFound, InvalidInput) as exc:
            out.append(BackboneTrial(None, f"run {run.id} body", None, str(exc)))
    size_px = size or store.settings().embed_size
    try:
        backbones.bundled_weights_file()
        bundled: embed.Backbone | None = embed.Backbone(backbones.BUNDLED, size_px, pretrained=True)
        out.append(BackboneTrial(bundled, "EfficientNet-Lite0 (bundled)", None))
    except WeightsUnavailable as exc:
        bundled = None
        out.append(BackboneTrial(None, "EfficientNet-Lite0 (bundled)", None, str(exc).split(". ")[0]))
    user_file = backbones.user_weights_file("resnet18")
    if embed.imagenet_weights_cached() or user_file is not None:
        imagenet = embed.resolve_backbone(store, "imagenet", size=size)
        out.append(BackboneTrial(imagenet, "ImageNet resnet18", None))
    else:
        out.append(
            BackboneTrial(None, "ImageNet resnet18", None, f"weights {embed.IMAGENET_WEIGHTS_FILE} not downloaded")
        )
    if weights:
        file = embed.resolve_backbone(store, "imagenet", weights=weights, size=size)
        out.append(BackboneTrial(file, file.short, None))
    if bundled is None:
        out.append(BackboneTrial(embed.Backbone("resnet18", size_px, pretrained=False), "random init", None))
    # An instant run's body is one of the others: try each network once.
    seen: set[str] = set()
    unique: list[BackboneTrial] = []
    for t in out:
        if t.backbone is None or t.backbone.id not in seen:
            unique.append(t)
            seen.add(t.backbone.id if t.backbone else "")
    return unique


def _evaluation_set(store: Store, sample: int) -> tuple[list[ImageRow], str]:
    """Images to compare backbones on: valid-split ones (no run trained on their labels, so a run's
    body gets no unfair help), stratified by class, at most ``sample``; all images when too few."""
    images = store.images()
    valid = [img for img in images if img.split == "valid"]
    pool, where = (
        (valid, "valid-split")
        if len(valid) >= CHOICE_MIN_VALID and len({i.class_id for i in valid}) >= 2
        else (images, "")
    )
    by_class: dict[int, list[ImageRow]] = {}
    for img in pool:
        by_class.setdefault(img.class_id, []).append(img)
    picked: list[ImageRow] = []
    per_class = max(1, sample // max(1, len(by_class)))
    for members in by_class.values():
        step = max(1, len(members) // per_class)
        picked += members[::step][:per_class]
    what = f"{len(picked)} {where + ' ' if where else ''}images"
    if not where:
        what += " (too few valid-split images: a run's body saw some of these labels)"
    return picked, what


def cv_accuracy(X: npt.ArrayLike, y: Sequence[int] | npt.NDArray[np.int64], n_classes: int) -> float:
    """Share of images whose out-of-sample (K-fold) prediction is their given label."""
    labels = np.asarray(y, dtype=np.int64)
    probs = oof_probabilities(X, labels, n_classes)
    return float(np.mean(probs.argmax(axis=1) == labels))


def choose_backbone(
    store: Store,
    *,
    weights: str | Path | None = None,
    size: int | None = None,
    sample: int = CHOICE_SAMPLE,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> BackboneChoice | None:
    """``--backbone auto``: the available backbone whose K-fold head is most accurate on the labels.

    Each candidate embeds the same stratified sample (cached, so the winner's work is kept) and
    the head's cross-validated accuracy on it decides. A weak run's body can be worse than
    random features; this is how auto notices.

    Parameters
    ----------
    store
        The project.
    weights
        A resnet18 weights file to try as well.
    size
        Input size; None: the run's size for its body, ``embed_size`` for the others.
    sample
        Images per candidate.
    progress, cancel
        Over the embeddings to compute (all candidates); ``cancel``, once set, stops the choice.

    Returns
    -------
    BackboneChoice or None
        The winner, each candidate's accuracy (or why it was skipped), and ``reason``; None
        when ``cancel`` stopped it.

    Raises
    ------
    Conflict
        Fewer than 2 classes with images, or no backbone could be evaluated.
    """
    candidates = backbone_candidates(store, weights=weights, size=size)
    usable = [t for t in candidates if t.backbone is not None]
    evaluation, what = _evaluation_set(store, sample)
    order = {c.id: i for i, c in enumerate(store.classes())}
    class_ids = sorted({img.class_id for img in evaluation}, key=lambda cid: order.get(cid, len(order)))
    if len(class_ids) < 2:
        raise Conflict(
            f"Choosing a backbone needs images of at least 2 classes; found {len(class_ids)}. Import or download more."
        )
    if len(usable) == 1:
        only = usable[0].backbone
        assert only is not None
        return BackboneChoice(only, tuple(candidates), what)
    todo = {t.backbone.id: len(embed.missing(store, t.backbone, evaluation)) for t in usable if t.backbone}
    total, base = sum(todo.values()), 0
    index = {cid: i for i, cid in enumerate(class_ids)}
    trials: list[BackboneTrial] = []
    for t in candidates:
        if t.backbone is None:
            trials.append(t)
            continue
        if stopped(cancel):
            return None
        offset = base

        def step(p: BaseProgress, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + p.done, total)

        try:
            report = embed.compute_embeddings(store, t.backbone, evaluation, progress=step, cancel=cancel)
        except WeightsUnavailable as exc:
            trials.append(BackboneTrial(None, t.name, None, str(exc).split(". ")[0]))
            continue
        base += todo.get(t.backbone.id, 0)
        if report.cancelled:
            return None
        have, X = embed.embeddings(store, t.backbone, evaluation)
        y = np.array([index[img.class_id] for img in have], dtype=np.int64)
        acc = cv_accuracy(X, y, len(class_ids)) if len(np.unique(y)) >= 2 else None
        trials.append(BackboneTrial(t.backbone, t.name, acc, "" if acc is not None else "too few images embedded"))
    scored = [t for t in trials if t.backbone is not None and t.accuracy is not None]
    if not scored:
        raise Conflict("No backbone could be evaluated: " + "; ".join(f"{t.name}: {t.note}" for t in trials))
    best = max(scored, key=lambda t: t.accuracy or 0.0)  # first of the best: the preferred on a tie
    assert best.backbone is not None
    choice = BackboneChoice(best.backbone, tuple(trials), what)
    log.info("backbone auto: %s", choice.reason)
    return choice


# -- scoring while images arrive ---------------------------------------------------------------


def live_backbone(store: Store) -> embed.Backbone | None:
    """The backbone new images are scored with while they download: the one of the stored scores
    (what the Review queue shows), else ``resolve_backbone``'s auto: a pretrained run's body, else the
    bundled EfficientNet-Lite0; None: nothing to score with."""
    info = fit_info(store)
    if info is not None:
        return info.backbone_spec
    try:
        return embed.resolve_backbone(store, "auto")
    except (NotFound, InvalidInput):
        return None


class LiveScorer:
    """Embeds and scores the images another job adds, in a thread, so the Review queue fills
    while a download runs. Each pass embeds what is new (one network load for the whole job)
    and refits the head (a fraction of a second for a thousand images)."""

    def __init__(self, root: Path, backbone: embed.Backbone, *, interval: float = 2.0) -> None:
        self.root = root
        self.backbone = backbone
        self.interval = interval
        self.embedded = 0
        self.scored = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._network: Network | None = None

    @property
    def status(self) -> str:
        if self.error:
            return f"scoring stopped: {self.error}"
        return f"scored {self.scored} (embedded {self.embedded} new)"

    def start(self) -> LiveScorer:
        self._thread = threading.Thread(target=self._loop, name="live-scoring", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Score what arrived last, then end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        with Store(self.root) as store:  # sqlite connections belong to one thread
            while not self.error:
                stopping = self._stop.wait(self.interval)
                self.score_new(store)
                if stopping:
                    return

    def score_new(self, store: Store) -> int:
        """One pass: embed the images without a vector, refit, store the scores; images embedded."""
        try:
            new = embed.missing(store, self.backbone)
            if not new:
                return 0
            if self._network is None:
                self._network = embed.load_network(self.backbone)
            report = embed.compute_embeddings(store, self.backbone, new, network=self._network)
            self.embedded += report.computed
            self.scored = fit_scores(store, self.backbone).info.scored
            return report.computed
        except Conflict as exc:  # e.g. a single class so far: wait for more images
            log.info("live scoring waits: %s", exc)
            return 0
        except (WeightsUnavailable, NotFound, InvalidInput) as exc:
            self.error = str(exc)
            log.warning("live scoring stopped: %s", exc)
            return 0


# -- decisions -------------------------------------------------------------------------------


def _mark(store: Store, ids: Iterable[int], kind: str, summary: Callable[[int], str] | None = None) -> int:
    """Mark images reviewed; with ``summary`` (n -> text) as its own undoable step."""
    rows = [store.get_image(int(i)) for i in dict.fromkeys(ids)]
    if not rows:
        raise InvalidInput("No image ids given. Pass one or more ids.")
    text = summary(len(rows)) if summary else None
    reviews.mark(store, [(r.id, r.class_id) for r in rows], kind, summary=text)
    return len(rows)


def keep(store: Store, ids: Iterable[int]) -> int:
    """The label is right: mark the images reviewed (out of the queue while the label stays); one undoable step."""
    return _mark(store, ids, "label", lambda n: f"kept {n} image(s) as labeled")


def unreview(store: Store, ids: Iterable[int]) -> int:
    """Put images back in the queue."""
    id_list = [int(i) for i in dict.fromkeys(ids)]
    reviews.unmark_labels(store, id_list)
    return len(id_list)


def relabel(store: Store, ids: Iterable[int], label: str) -> int:
    """Move images to ``label`` and mark them reviewed: one transaction, one undoable event."""
    id_list = [int(i) for i in dict.fromkeys(ids)]
    with store.transaction():
        changed = store.relabel(id_list, label)
        _mark(store, id_list, "label")
    return changed


def relabel_seen(store: Store, moves: Mapping[int, str], seen: Mapping[int, str]) -> Relabeled:
    """``relabel_each`` from a grid: only images still as the user saw them (``seen``: id -> label on the
    card) move; those moved or deleted in another window meanwhile keep that change, come back in
    ``stale`` and stay in the queue. The rest are marked reviewed. One transaction, one undoable event."""
    with store.transaction():
        done = store.relabel_seen(moves, seen)
        _mark(store, [i for i in moves if int(i) not in done.stale], "label")
    return done


def delete(store: Store, ids: Iterable[int]) -> int:
    """Soft delete (to the trash; undo restores): one transaction, one undoable event."""
    return store.delete_images(int(i) for i in ids)


def reviewed_ids(store: Store, kind: str = "label") -> set[int]:
    """Images whose decision still holds (their class is the one confirmed)."""
    return reviews.marked_ids(store, kind)


# -- the ranked list -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewItem:
    image: ImageRow
    root: Path  # the project folder; ``path`` is built on use (20,000 Path joins cost a second)
    given: str
    predicted: str | None
    confidence: float | None  # probability of ``predicted``
    self_confidence: float | None
    margin: float | None
    probs: dict[str, float]
    source: str | None  # head | head+model; None when not scored yet
    flags: tuple[str, ...]
    reviewed: bool

    @property
    def id(self) -> int:
        return self.image.id

    @property
    def path(self) -> Path:
        return self.root / self.image.relpath

    @property
    def scored(self) -> bool:
        return self.self_confidence is not None

    @property
    def disagrees(self) -> bool:
        return self.predicted is not None and self.predicted != self.given

    def score(self, sort: str = "self_confidence") -> float | None:
        return self.margin if sort == "margin" else self.self_confidence

    def as_dict(self, sort: str = "self_confidence", root: Path | None = None) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 4)

        return {
            "id": self.id,
            "path": str(self.path),
            "given": self.given,
            "predicted": self.predicted,
            "confidence": r(self.confidence),
            "score": r(self.score(sort)),
            "self_confidence": r(self.self_confidence),
            "margin": r(self.margin),
            "split": self.image.split,
            "flags": list(self.flags),
            "reviewed": self.reviewed,
            "source": self.source,
        }


def _scores(store: Store, ids: Sequence[int] | None = None) -> dict[int, tuple[list[float], str]]:
    return reviews.scores(store, ids)


_T = TypeVar("_T")


class _Lazy(Sequence[_T]):
    """A read-only sequence whose elements are built only when asked for (``_at``, given an index in
    0..len-1): a page shows 48 of 20,000."""

    def _at(self, index: int) -> _T:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> _T: ...

    @overload
    def __getitem__(self, index: slice) -> list[_T]: ...

    def __getitem__(self, index: int | slice) -> _T | list[_T]:
        positions = range(len(self))
        if isinstance(index, slice):
            return [self._at(i) for i in positions[index]]
        return self._at(positions[index])  # negative from the end; IndexError past it, as a list


class Ranking(_Lazy[ReviewItem]):
    """Images in review order, as arrays; a ``ReviewItem`` is built only when asked for.

    A page shows 48 of 20,000: building every item (a probability dict each) cost about a second
    on the first load after a server start. Immutable, so one value is shared through the memo.
    """

    def __init__(self, root: Path, images: Sequence[ImageRow], base: version.Arrays, order: IntArray) -> None:
        # ``base`` (``_base``) is aligned with ``images``; ``order``: positions in ``images``.
        self._root = root
        self._images = images
        self._order = order
        self._vocab = [str(v) for v in base["vocab"]]
        self._probs = base["probs"]
        self._row = base["row"]
        self._self_conf = base["self_conf"]
        self._margin = base["margin"]
        self._sources = base["sources"]
        self._flags = base["flags"]
        self._reviewed = base["reviewed"]
        self._ids = base["ids"]

    def __len__(self) -> int:
        return len(self._order)

    def _at(self, index: int) -> ReviewItem:
        return self._item(int(self._order[index]))

    def __iter__(self) -> Iterator[ReviewItem]:
        return (self._item(int(k)) for k in self._order)

    @property
    def ids(self) -> list[int]:
        """Image ids in review order (no item built)."""
        return [int(i) for i in self._ids[self._order]]

    def _item(self, k: int) -> ReviewItem:
        img = self._images[k]
        flags = str(self._flags[k])
        all_flags = tuple(flags.split("\t")) if flags else ()
        reviewed = bool(self._reviewed[k])
        r = int(self._row[k])
        if r < 0:
            return ReviewItem(img, self._root, img.label, None, None, None, None, {}, None, all_flags, reviewed)
        p = self._probs[r]
        b = int(p.argmax())
        return ReviewItem(
            image=img,
            root=self._root,
            given=img.label,
            predicted=self._vocab[b],
            confidence=float(p[b]),
            self_confidence=float(self._self_conf[k]),
            margin=float(self._margin[k]),
            probs=dict(zip(self._vocab, p.tolist(), strict=True)),
            source=str(self._sources[k]),
            flags=all_flags,
            reviewed=reviewed,
        )


def _base(
    store: Store, images: Sequence[ImageRow], flags: Mapping[int, Sequence[str]], reviewed: set[int]
) -> version.Arrays:
    """What ranking ``images`` needs besides the rows, as arrays aligned with them (kept on disk by
    ``version.persisted``): ``probs[row[k]]`` are image k's probabilities (row -1: not scored)."""
    info = fit_info(store)
    scores = _scores(store, None if len(images) > 500 else [i.id for i in images])
    names = {c.id: c.name for c in store.classes()}
    class_ids = info.class_ids if info else []
    vocab = [names.get(cid, f"class {cid}") for cid in class_ids]
    col = {cid: j for j, cid in enumerate(class_ids)}
    n = len(images)
    got = [scores.get(img.id) for img in images]
    scored = [k for k, s in enumerate(got) if s is not None and len(s[0]) == len(vocab) > 0]
    probs = np.array([scores[images[k].id][0] for k in scored], dtype=np.float64).reshape(len(scored), len(vocab))
    row = np.full(n, -1, dtype=np.int64)
    row[scored] = np.arange(len(scored))
    self_conf = np.full(n, np.nan)
    margin = np.full(n, np.nan)
    best = np.full(n, -1, dtype=np.int64)
    sources = [""] * n  # "" when not scored
    if scored:
        self_conf[scored], margin[scored] = label_scores(probs, [col.get(images[k].class_id, -1) for k in scored])
        best[scored] = probs.argmax(axis=1)
        for k in scored:
            sources[k] = scores[images[k].id][1]
    all_flags = []
    for img in images:
        f = tuple(flags.get(img.id, ()))
        if img.flags:
            f += tuple(x for x in img.flags if x in STORE_FLAGS)
        all_flags.append("\t".join(f))
    rows = json.dumps([[getattr(img, f) for f in _ROW_FIELDS] for img in images]).encode()
    return {
        "rows": np.frombuffer(rows, dtype=np.uint8),
        "ids": np.fromiter((img.id for img in images), dtype=np.int64, count=n),
        "vocab": np.array(vocab, dtype=np.str_).reshape(len(vocab)),
        "probs": probs,
        "row": row,
        "self_conf": self_conf,
        "margin": margin,
        "best": best,
        "sources": np.array(sources, dtype=np.str_).reshape(n),
        "flags": np.array(all_flags, dtype=np.str_).reshape(n),
        "reviewed": np.fromiter((img.id in reviewed for img in images), dtype=np.bool_, count=n),
    }


_ROW_FIELDS = tuple(ImageRow.__dataclass_fields__)
_BASE_FORMAT = 1
"""Of the arrays ``_base`` returns: bump it when they change (a new array, another meaning)."""


def _stored_layout() -> list[object]:
    """What a kept base's layout depends on in the code, for its ``version.persisted`` key: a file
    written before an ``ImageRow`` field was added, removed, renamed or retyped, or before
    ``_BASE_FORMAT`` changed, is recomputed instead of read back (``_StoredRows._row`` needs every
    field in order)."""
    return [_BASE_FORMAT, *(f"{f}: {ImageRow.__dataclass_fields__[f].type}" for f in _ROW_FIELDS)]


class _StoredRows(_Lazy[ImageRow]):
    """The listing a base was made from, kept in it as JSON: a row is built when asked for (a new
    process lists no 20,000 rows to show 48)."""

    def __init__(self, data: npt.NDArray[np.generic]) -> None:
        self._rows: list[list[Any]] = json.loads(data.tobytes())

    def __len__(self) -> int:
        return len(self._rows)

    def _at(self, index: int) -> ImageRow:
        return self._row(self._rows[index])

    @staticmethod
    def _row(values: list[Any]) -> ImageRow:
        fields = dict(zip(_ROW_FIELDS, values, strict=True))
        return ImageRow(**{**fields, "flags": tuple(fields["flags"])})


def _ordered(
    root: Path,
    images: Sequence[ImageRow],
    base: version.Arrays,
    *,
    sort: str = "self_confidence",
    predicted: str | None = None,
    flag: str | None = None,
    status: str = "all",
) -> Ranking:
    """``images`` filtered by ``status``, ``predicted`` and ``flag``; worst first by ``sort``, the
    unscored last, ties by id. On arrays: one Python object per image is what costs at 20,000."""
    n = len(images)
    vocab = [str(v) for v in base["vocab"]]
    keep = np.ones(n, dtype=np.bool_)
    if status != "all":
        keep &= base["reviewed"] == (status == "reviewed")
    if predicted is not None:
        keep &= base["best"] == (vocab.index(predicted) if predicted in vocab else -2)
    if flag == "any":
        keep &= base["flags"] != ""
    elif flag is not None:
        keep &= np.array([flag in str(f).split("\t") for f in base["flags"]], dtype=np.bool_).reshape(n)
    chosen = np.flatnonzero(keep)
    score = (base["margin"] if sort == "margin" else base["self_conf"])[chosen]
    unscored = np.isnan(score)
    order = chosen[np.lexsort((base["ids"][chosen], np.where(unscored, 0.0, score), unscored))]
    return Ranking(root, images, base, order)


def ranking(
    store: Store,
    *,
    sort: str = "self_confidence",
    label: str | None = None,
    predicted: str | None = None,
    split: str | None = None,
    flag: str | None = None,
    status: str = "unreviewed",
    compute_quality: bool = True,
) -> list[ReviewItem]:
    """Active images, worst first by ``sort``; images not scored yet come last (by id).

    Filters: given ``label``, ``predicted`` class, ``split``, ``flag`` (a quality flag,
    ``near-duplicate``, or ``any``), ``status`` (unreviewed | reviewed | all).

    Parameters
    ----------
    store
        The project.
    sort
        ``self_confidence`` or ``margin`` (low first: likely label issues).
    label, predicted, split, flag, status
        The filters above; None: no filter.
    compute_quality
        Measure the quality of images not measured yet (else they show no flags).

    Returns
    -------
    list[ReviewItem]
        The images to review, worst first.

    Raises
    ------
    InvalidInput
        An unknown sort, status, split or flag.
    NotFound
        ``predicted`` or ``label`` is not a class.
    """
    return list(
        queue(
            store,
            sort=sort,
            label=label,
            predicted=predicted,
            split=split,
            flag=flag,
            status=status,
            compute_quality=compute_quality,
        )
    )


def queue(
    store: Store,
    *,
    sort: str = "self_confidence",
    label: str | None = None,
    predicted: str | None = None,
    split: str | None = None,
    flag: str | None = None,
    status: str = "unreviewed",
    compute_quality: bool = True,
) -> Ranking:
    """``ranking`` as a lazy sequence: its length and the items of one page cost no more than the
    page (same arguments, same order, same errors). Shared between callers: read-only."""
    check_choice(sort, SORTS, "Sort")
    check_choice(status, STATUSES, "Review status")
    if split is not None:
        check_choice(split, SPLITS, "Split")
    if flag is not None:
        check_choice(flag, ("any", *quality.FLAGS, *STORE_FLAGS), "Flag")
    if predicted is not None:
        predicted = store.get_class(predicted).name
    # First, so the quality cache the key names is the one the items read; only when some image
    # lacks figures (unmeasured is kept on disk: a new process does not list every image for nothing).
    if compute_quality and unmeasured(store):
        quality.quality_stats(store, store.images(label, split=split))
    # Memoized per data version and quality-cache state: a page rerun that changed nothing
    # (most of them) skips re-deriving 20,000 items.
    key = ("review.ranking", sort, label, predicted, split, flag, status, compute_quality, quality.cache_state(store))
    return version.memo(store, key, lambda: _rank(store, sort, label, predicted, split, flag, status, compute_quality))


def _rank(
    store: Store,
    sort: str,
    label: str | None,
    predicted: str | None,
    split: str | None,
    flag: str | None,
    status: str,
    compute_quality: bool,
) -> Ranking:
    def base() -> version.Arrays:
        images = store.images(label, split=split)
        flags = quality.quality_flags(store, images, compute_missing=compute_quality)
        return _base(store, images, flags, reviewed_ids(store))

    # On disk per data version, rows included: the first load after a server start reads it instead
    # of listing every image and parsing every stored score (the filters and the sort take milliseconds).
    key = json.dumps(["review.ranking", _stored_layout(), label, split, compute_quality, quality.cache_state(store)])
    arrays = version.persisted(store, key, base)
    return _ordered(
        store.root, _StoredRows(arrays["rows"]), arrays, sort=sort, predicted=predicted, flag=flag, status=status
    )


def unmeasured(store: Store) -> int:
    """Active images without quality figures yet; kept on disk per data version and quality-cache state."""

    def count() -> version.Arrays:
        return {"n": np.array(len(quality.missing(store, store.images())), dtype=np.int64)}

    return int(version.persisted(store, json.dumps(["quality.unmeasured", quality.cache_state(store)]), count)["n"])


def prepare_page(store: Store, backbone: embed.Backbone) -> None:
    """Compute what the Review page's first load reads, so it is on disk (``version.persisted``) for
    the next page, in whatever process: the default queue, the images ``backbone`` has not embedded
    and those without quality figures.
    Called when scores are written; any later write makes the page compute them again."""
    queue(store, compute_quality=unmeasured(store) <= PAGE_QUALITY_LIMIT)
    embed.missing(store, backbone)


def item(store: Store, image_id: int, flags: Sequence[str] | None = None) -> ReviewItem:
    """One image's current review state (label, scores, decision), e.g. for a card that reruns alone."""
    img = store.get_image(image_id)
    if flags is None:
        flags = quality.quality_flags(store, [img]).get(img.id, ())
    return _ordered(store.root, [img], _base(store, [img], {img.id: tuple(flags)}, reviewed_ids(store)))[0]


# -- near duplicates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DuplicateGroup:
    images: tuple[ImageRow, ...]
    max_distance: int  # largest phash distance between linked members
    reviewed: bool  # every member was confirmed with "keep all"

    @property
    def ids(self) -> list[int]:
        return [img.id for img in self.images]

    @property
    def labels(self) -> list[str]:
        return sorted({img.label for img in self.images})

    @property
    def conflict(self) -> bool:
        """Near-identical pictures with different labels: at least one label is wrong."""
        return len(self.labels) > 1

    @property
    def majority_label(self) -> str:
        """The label most members carry; on a tie, the one of the largest picture (likely the original)."""
        counts = Counter(img.label for img in self.images)
        return max(self.images, key=lambda img: (counts[img.label], img.width * img.height)).label


def duplicate_groups(
    store: Store, max_distance: int | None = None, *, include_reviewed: bool = False
) -> list[DuplicateGroup]:
    """Groups of active images linked by phash distance ≤ ``max_distance`` (setting
    ``near_dup_distance``): cross-class conflicts first, then larger groups."""
    distance = store.settings().near_dup_distance if max_distance is None else max_distance
    # Regrouping 20,000 phashes on every page rerun took most of a second: memoized per data version.
    key = ("review.duplicate_groups", distance, include_reviewed)
    return list(version.memo(store, key, lambda: _duplicate_groups(store, distance, include_reviewed)))


def _duplicate_groups(store: Store, distance: int, include_reviewed: bool) -> list[DuplicateGroup]:
    images = store.images()
    found = dedupe.find_groups([img.phash for img in images], distance)
    confirmed = reviewed_ids(store, "duplicate")
    groups = [
        DuplicateGroup(tuple(images[i] for i in members), widest, all(images[i].id in confirmed for i in members))
        for members, widest in zip(found.groups, found.widest, strict=True)
    ]
    if not include_reviewed:
        groups = [g for g in groups if not g.reviewed]
    return sorted(groups, key=lambda g: (not g.conflict, -len(g.images), g.images[0].id))


def keep_all(store: Store, ids: Iterable[int]) -> int:
    """These near duplicates are fine together: hide the group (until a new member joins); one undoable step."""
    return _mark(store, ids, "duplicate", lambda n: f"kept a near-duplicate group of {n} image(s)")


def keep_one(store: Store, keep_id: int, ids: Iterable[int]) -> int:
    """Keep ``keep_id``, soft-delete the rest of the group in one undoable action."""
    others = [int(i) for i in dict.fromkeys(ids) if int(i) != int(keep_id)]
    if not others:
        return 0
    return store.delete_images(others)
