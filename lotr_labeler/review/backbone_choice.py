"""Choosing the backbone by cross-validation: the available network whose head is most accurate
on the project's labels.

Each candidate (the current run's body, the bundled EfficientNet-Lite0, ImageNet resnet18 when its
weights are here, a weights file) embeds the same stratified sample of valid-split images (cached,
so the winner's work is kept) and the K-fold head's accuracy on it decides. A weak run's body can
be worse than random features; this is how the choice notices. The CLI's ``--backbone best`` and
the Review page's "Best on your labels" run it; the default backbone (``last_fit.fit_backbone``
before any fit) does not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lotr_labeler.errors import Conflict, InvalidInput, NotFound, WeightsUnavailable
from lotr_labeler.model import backbones, embed, runs
from lotr_labeler.progress import Cancel, Progress, Report, stopped
from lotr_labeler.review.head import cv_accuracy
from lotr_labeler.store import ImageRow, Store

log = logging.getLogger(__name__)

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
    """The backbones ``choose_backbone`` may pick, in order of preference on a tie: the current run's body,
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


def choose_backbone(
    store: Store,
    *,
    weights: str | Path | None = None,
    size: int | None = None,
    sample: int = CHOICE_SAMPLE,
    progress: Report | None = None,
    cancel: Cancel | None = None,
) -> BackboneChoice | None:
    """``--backbone best``: the available backbone whose K-fold head is most accurate on the labels.

    Each candidate embeds the same stratified sample (cached, so the winner's work is kept) and
    the head's cross-validated accuracy on it decides. A weak run's body can be worse than
    random features; this is how the choice notices.

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
    progress
        Over the embeddings to compute (all candidates).
    cancel
        Set: stop (what was embedded stays cached).

    Returns
    -------
    BackboneChoice or None
        The winner, each candidate's accuracy (or why it was skipped), and ``reason``; None
        when ``cancel`` was set.

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
        step = _sample_steps(progress, base, total)
        try:
            embedded = embed.compute_embeddings(store, t.backbone, evaluation, progress=step, cancel=cancel)
        except WeightsUnavailable as exc:
            trials.append(BackboneTrial(None, t.name, None, str(exc).split(". ")[0]))
            continue
        base += todo.get(t.backbone.id, 0)
        if embedded.cancelled:
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
    log.info("backbone chosen by cross-validation: %s", choice.reason)
    return choice


def _sample_steps(progress: Report | None, offset: int, total: int) -> Report:
    """One candidate's embedding records as ``Progress`` over every candidate's sample."""

    def step(p: Progress) -> None:
        if progress is not None:
            n = offset + p.done
            progress(
                Progress(done=n, total=total, message=f"choosing the backbone: embedding {n}/{total} sample image(s)")
            )

    return step
