"""Fitting and storing scores: the head on the cached embeddings, every embedded image scored.

How an image gets its score:

1. its backbone embedding (``embed``), cached by content hash;
2. the head (``head``: logistic regression on L2-normalised embeddings) trained with stratified
   K-fold cross-validation: each image is scored by the head of the one fold that did **not**
   train on it, so every image (not only the validation split) gets an out-of-sample probability
   for each class;
3. for validation-split images, the current run's own probabilities (``runs.predictions``;
   also out-of-sample, since the run trained on the train split only) are **averaged** with
   the head's when the run knows the same classes and agrees with the given valid labels at
   least as often as the head does: two out-of-sample opinions, one from the fully
   fine-tuned network. A weaker run (e.g. barely trained) is left out: averaging it in would
   only blur the ranking. Train-split images get the head's alone (the run saw their labels).
   Caveat: with the run's body as backbone, train images' embeddings were shaped by their
   (possibly wrong) labels; the ImageNet backbone has no such bias.

The probabilities are stored per image (``review_scores``) with a ``FitInfo`` record (``last_fit``);
the queue (``queue``) ranks by them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lotr_labeler import project as proj
from lotr_labeler.errors import Conflict
from lotr_labeler.model import embed, runs
from lotr_labeler.progress import Cancel, Progress, Report
from lotr_labeler.review import quality
from lotr_labeler.review.head import FOLDS, FloatArray, ModelFactory, n_folds, oof_probabilities
from lotr_labeler.review.last_fit import META_KEY, FitInfo, fit_backbone, fit_info
from lotr_labeler.review.queue import prepare_page
from lotr_labeler.store import Store, now, reviews

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitReport:
    info: FitInfo
    unscored: int  # active images without a cached embedding

    def summary(self, compute: str = "`lotr-labeler review --compute`") -> str:
        """One line; ``compute`` names the way to embed the images left unscored in this front end."""
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
        text += "."  # a sentence: pages and the CLI append the next one
        if self.unscored:
            text += f" {self.unscored} image(s) have no embedding yet: {compute} scores them."
        return text


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

    ``backbone`` defaults to ``fit_backbone``: the one of the previous fit, else the default one.
    Seconds for a thousand images: nothing is embedded here.
    """
    started = time.monotonic()
    if backbone is None:
        info = fit_info(store)
        backbone = fit_backbone(store)
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
        fit_key=META_KEY,
        fit=json.dumps(info.__dict__),
    )
    prepare_page(store, backbone)
    return FitReport(info, unscored=len(images) - len(have))


def refresh(
    store: Store,
    backbone: embed.Backbone,
    *,
    progress: Report | None = None,
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
        Called as embeddings are computed (``done`` of ``total`` images to embed).
    cancel
        Checked between batches; set: stop (what was embedded stays cached).
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
    embedded = embed.compute_embeddings(
        store,
        backbone,
        images,
        batch_size=batch_size,
        progress=_embedding_steps(progress),
        cancel=cancel,
    )
    if embedded.cancelled:
        return embedded, None
    quality.quality_stats(store, images)
    return embedded, fit_scores(store, backbone, reason=reason)


def _embedding_steps(progress: Report | None) -> Report:
    """``embed.compute_embeddings``' records, told as the Review compute's step ("embedding d/t image(s)")."""

    def step(p: Progress) -> None:
        if progress is not None:
            progress(Progress(done=p.done, total=p.total, message=f"embedding {p.done}/{p.total} image(s)"))

    return step
