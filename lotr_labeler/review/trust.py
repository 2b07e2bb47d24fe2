"""How far the current model's predictions can be trusted, so the UI can show them as a hint.

A model is *weak* when its validation error rate is above the project's ``weak_model_error_rate``
setting, or when it agrees less with the valid-split labels than the K-fold head on the cached
embeddings (the comparison ``review.scoring.fit_scores`` records; both are out-of-sample there).
A weak model's prediction is still shown, but as a hint rather than the primary action.
"""

from __future__ import annotations

from dataclasses import dataclass

from lotr_labeler.model import runs
from lotr_labeler.review import scoring
from lotr_labeler.store import Store

HINT = "treat its predictions as a hint"


@dataclass(frozen=True)
class ModelTrust:
    """The verdict on the current model: ``weak`` and why (``reason`` is one or two sentences)."""

    weak: bool
    error_rate: float | None
    reason: str
    run_id: str | None = None


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
    info = scoring.fit_info(store)
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
