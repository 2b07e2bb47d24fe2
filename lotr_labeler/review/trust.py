"""How far the current model's predictions can be trusted, so the UI can show them as a hint.

A model is *weak* when its validation error rate is above the project's ``weak_model_error_rate``
setting, or when it agrees less with the valid-split labels than the K-fold head on the cached
embeddings (the comparison ``review.fitting.fit_scores`` records; both are out-of-sample there).
A weak model's prediction is still shown, but as a hint rather than the primary action.

The Review cards' predictions are not the run's: they come from that K-fold head (averaged with the
run on valid images when ``fit_scores`` blended them). ``scores_trust`` judges what produced them,
so Review never calls a good head weak because of a weak run, nor the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lotr_labeler.errors import NotFound
from lotr_labeler.model import runs
from lotr_labeler.review import last_fit, queue
from lotr_labeler.store import Store, version

HINT = "treat its predictions as a hint"


@dataclass(frozen=True)
class ModelTrust:
    """The verdict on the current model: ``weak`` and why (``reason`` is one or two sentences)."""

    weak: bool
    error_rate: float | None
    reason: str
    run_id: str | None = None
    note: str = ""  # a remark beside the verdict (Review: the run averaged into the valid images is weak)


def _how_often(rate: float) -> str:
    """Words for an error rate a newcomer reads at a glance ("about half the time")."""
    if rate >= 0.9:
        return "almost always"
    if rate >= 0.65:
        return "most of the time"
    if rate >= 0.4:
        return "about half the time"
    if rate >= 0.28:
        return "about a third of the time"
    return f"{rate:.0%} of the time"


def model_trust(store: Store, run_id: str | None = None) -> ModelTrust:
    """Whether the current run (or ``run_id``) is weak (its predictions to be shown as a hint), and why.

    Parameters
    ----------
    store
        The project.
    run_id
        A finished run to judge instead of the current one (Predict lets the user pick any).

    Returns
    -------
    ModelTrust
        ``weak`` False with a neutral reason when there is no finished run; ``error_rate`` the run's
        validation error rate when it recorded one.

    Raises
    ------
    NotFound
        ``run_id`` names no run of the project.
    """
    run = runs.current_run(store) if run_id is None else runs.get_run(store, run_id)
    if run is None:
        return ModelTrust(False, None, "No trained model yet.")
    raw = run.metrics.get("error_rate")
    rate = float(raw) if isinstance(raw, int | float) else None
    threshold = store.settings().weak_model_error_rate
    if rate is not None and rate > threshold:
        return ModelTrust(
            True,
            rate,
            f"This model is wrong {_how_often(rate)} (validation error rate {rate:.2f}, above the "
            f"weak_model_error_rate setting {threshold:.2f}): {HINT}. Fix labels and retrain.",
            run.id,
        )
    info = last_fit.fit_info(store)
    if (
        info is not None
        and info.compared_run_id == run.id
        and info.run_valid_accuracy is not None
        and info.head_valid_accuracy is not None
        and info.run_valid_accuracy < info.head_valid_accuracy
    ):
        return ModelTrust(
            True,
            rate,
            f"This model agrees with the validation labels less often ({info.run_valid_accuracy:.0%}) than the "
            f"K-fold head on the cached embeddings ({info.head_valid_accuracy:.0%}): {HINT}. "
            "'Retrain head' on the Review page makes a better one in seconds.",
            run.id,
        )
    shown = "unknown" if rate is None else f"{rate:.2f}"
    return ModelTrust(False, rate, f"The current model's validation error rate is {shown}.", run.id)


def head_agreement(store: Store) -> tuple[int, int]:
    """(images whose stored out-of-sample prediction is their current label, images scored).

    Read off the review queue sorted by margin (worst first, the unscored last): a prediction is the
    label exactly when the margin is positive, so two binary searches count both without building
    the 20,000 items (the queue's arrays are the ones the Review page reads anyway, kept on disk).
    The two counts are kept on disk per data version too: Search, which shows no queue, reads them
    back instead of loading the queue of a 20,000-image project on its first load.
    """

    def count() -> version.Arrays:
        compute_quality = queue.unmeasured(store) <= queue.PAGE_QUALITY_LIMIT  # the page's, so its file
        ranked = queue.queue(store, sort="margin", status="all", compute_quality=compute_quality)

        def first(pred: Callable[[queue.ReviewItem], bool]) -> int:
            lo, hi = 0, len(ranked)
            while lo < hi:
                mid = (lo + hi) // 2
                if pred(ranked[mid]):
                    hi = mid
                else:
                    lo = mid + 1
            return lo

        scored = first(lambda it: it.margin is None)
        doubted = first(lambda it: it.margin is None or it.margin > 0)
        return {"counts": np.array([scored - doubted, scored], dtype=np.int64)}

    counts = version.persisted(store, "trust.head_agreement", count)["counts"]
    return int(counts[0]), int(counts[1])


def scores_trust(store: Store) -> ModelTrust:
    """How far the Review scores (the cards' predictions) can be trusted, and why.

    They come from the K-fold head on the cached embeddings: weak when its out-of-sample predictions
    disagree with the labels more often than the ``weak_model_error_rate`` setting allows. The current
    run is not judged here (its predictions are not the cards'), except when its probabilities were
    averaged into the valid images' scores: then ``note`` says so if that run is weak.

    Returns
    -------
    ModelTrust
        ``weak`` False when nothing is scored yet; ``error_rate`` the head's disagreement with the
        current labels; ``run_id`` the run averaged in, if any.
    """
    info = last_fit.fit_info(store)
    if info is None:
        return ModelTrust(False, None, "No scores yet.")
    agree, scored = head_agreement(store)
    if not scored:
        return ModelTrust(False, None, "No image is scored.")
    rate = 1 - agree / scored
    threshold = store.settings().weak_model_error_rate
    note = ""
    if info.blended and info.run_id:
        try:
            run = model_trust(store, info.run_id)
        except NotFound:  # deleted since: the scores still hold its share
            run = ModelTrust(False, None, "")
        if run.weak:
            note = f"The {info.blended} validation image(s) are averaged with run {info.run_id}. {run.reason}"
    if rate > threshold:
        return ModelTrust(
            True,
            rate,
            f"The K-fold head that scored these cards is wrong {_how_often(rate)} by your labels (out-of-sample "
            f"error rate {rate:.2f} on {scored} image(s), above the weak_model_error_rate setting "
            f"{threshold:.2f}): {HINT}. Fix labels and ⚡ Retrain head, or Compute with a stronger backbone.",
            info.run_id,
            note,
        )
    return ModelTrust(
        False,
        rate,
        f"The K-fold head agrees with your labels on {agree} of {scored} image(s) out-of-sample "
        f"(error rate {_rate(rate)}).",
        info.run_id,
        note,
    )


def _rate(rate: float) -> str:
    """An error rate to 2 decimals, 3 below 0.005: 1 wrong of 241 read "0.00", as if none were."""
    return f"{rate:.3f}" if 0 < rate < 0.005 else f"{rate:.2f}"


def run_body_worth_trying(info: last_fit.FitInfo | None, run: runs.Run | None) -> bool:
    """Whether Review should suggest embedding with ``run``'s body: a trained (not instant) run whose
    body made neither the stored scores nor was already tried and passed over by ``choose_backbone``."""
    if run is None or run.source == "instant":
        return False
    if info is None:
        return True
    if info.backbone_spec.run_id == run.id:
        return False
    return f"run {run.id} body" not in (info.backbone_reason or "")  # the choice compared it (or could not use it)


def how_to_improve(run: runs.Run) -> str:
    """What to do about a weak run, for the Train page: the levers that apply to how it was made."""
    if run.source == runs.INSTANT:
        return (
            "To improve it: fix labels on Review and ⚡ Retrain head, compute embeddings with a stronger "
            "backbone (ImageNet weights), or train a full model here."
        )
    steps = ["more images per class, and cleaner labels (Dataset, Review)"]
    if run.source != "imported":
        if not run.params.get("pretrained", True) and not run.params.get("weights"):
            steps.append("tick Pretrained ImageNet weights (this run started from random weights)")
        epochs = run.params.get("epochs")
        steps.append(f"more epochs (this run had {epochs})" if isinstance(epochs, int) else "more epochs")
    return "To improve it: " + "; ".join(steps) + "."


def triage_trust(store: Store) -> ModelTrust:
    """How far Search's candidate scores can be trusted: they come from a head fitted on the labelled
    images' embeddings, so its K-fold error on them (``scores_trust``) is the honest estimate; before any
    head fit, the current run (whose body embeds the thumbnails) is judged instead."""
    if last_fit.fit_info(store) is None:
        return model_trust(store)
    trust = scores_trust(store)
    if not trust.weak or trust.error_rate is None:
        return trust
    return ModelTrust(
        True,
        trust.error_rate,
        f"The head that scores these candidates is wrong {_how_often(trust.error_rate)} on your labelled images "
        f"(out-of-sample error rate {trust.error_rate:.2f}, above the weak_model_error_rate setting): {HINT}. "
        "Fix labels on Review and ⚡ Retrain head, or Compute with a stronger backbone.",
        trust.run_id,
    )
