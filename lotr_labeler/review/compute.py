"""Review's two buttons as library functions: Compute (pick the backbone, embed, refit) and Retrain
head (refit, then the instant model).

``review --compute`` (the job the page's Compute starts) and ``review --retrain-head`` call these, and
so does the Review page, so a notebook calling the library gets what the CLI and the page do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lotr_labeler.model import embed
from lotr_labeler.progress import Cancel, Progress, Report
from lotr_labeler.review import instant
from lotr_labeler.review.backbone_choice import choose_backbone
from lotr_labeler.review.fitting import FitReport, fit_scores, refresh
from lotr_labeler.store import Store

BEST = "best"
"""``source`` of ``compute``: choose the backbone by cross-validation (``choose_backbone``)."""
CHOOSING = "choosing the backbone"


@dataclass(frozen=True, kw_only=True)
class ComputeProgress(Progress):
    """Embeddings computed: while choosing the backbone (``phase="choose"``, samples of each candidate)
    or for every image (``phase="embed"``); ``backbone``: the one embedding, or ``CHOOSING``."""

    phase: str
    backbone: str


@dataclass(frozen=True)
class Computed:
    """What Compute did: the backbone and why (None: as asked), the embedding and the new scores.
    ``embedded`` is None when the choice was cancelled, ``fit`` None when anything was."""

    backbone: embed.Backbone | None
    reason: str | None
    embedded: embed.EmbedReport | None
    fit: FitReport | None

    @property
    def cancelled(self) -> bool:
        return self.fit is None

    def summary(self) -> str:
        """The new scores' line; when cancelled, what was embedded (or that the choice was stopped)."""
        if self.fit is not None:
            return self.fit.summary()
        return self.embedded.summary() if self.embedded is not None else "Backbone choice cancelled."

    def as_dict(self) -> dict[str, Any]:
        """What the job row keeps: images embedded and scored (none when cancelled)."""
        if self.fit is None or self.embedded is None:
            return {}
        return {"embedded": self.embedded.computed, "scored": self.fit.info.scored}


def pick_backbone(
    store: Store,
    source: str = BEST,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    size: int | None = None,
    progress: Report | None = None,
    cancel: Cancel | None = None,
) -> tuple[embed.Backbone, str | None] | None:
    """The backbone ``source`` names, and why when it was chosen: ``best`` tries each available one
    (``choose_backbone``; with ``pretrained=False``: resnet18's random init, as asked), the others are
    ``embed.resolve_backbone``'s. None when ``cancel`` stopped the choice."""
    if source == BEST and not pretrained:  # --no-pretrained: random features, as asked
        return embed.resolve_backbone(store, "imagenet", pretrained=False, size=size), None
    if source == BEST:
        choice = choose_backbone(store, weights=weights, size=size, progress=progress, cancel=cancel)
        return None if choice is None else (choice.backbone, choice.reason)
    return embed.resolve_backbone(store, source, pretrained=pretrained, weights=weights, size=size), None


def compute(
    store: Store,
    source: str = BEST,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    size: int | None = None,
    progress: Report | None = None,
    cancel: Cancel | None = None,
) -> Computed:
    """Review's Compute: pick the backbone, embed the images it has not embedded yet, measure their
    quality and refit the head on every embedding (``fitting.refresh``).

    Parameters
    ----------
    store
        The project.
    source
        ``best`` (default: the most accurate on the labels, cross-validated), ``run``, ``bundled`` or
        ``imagenet`` (``embed.resolve_backbone``).
    pretrained, weights, size
        As ``embed.resolve_backbone`` takes them (``weights`` is also tried by ``best``).
    progress
        Called with ``ComputeProgress`` records over the embeddings (the choice's samples, then the rest).
    cancel
        Set: stop between batches; what was embedded stays cached.

    Returns
    -------
    Computed
        The backbone, why it was chosen, the embedding and the new scores (``cancelled`` when stopped).

    Raises
    ------
    Conflict
        No images, fewer than 2 classes, or no backbone could be evaluated.
    InvalidInput, NotFound
        A bad size or weights file; ``run`` without a trained model.
    """

    def choosing(p: Progress) -> None:
        if progress is not None:
            progress(ComputeProgress(done=p.done, total=p.total, message=p.message, phase="choose", backbone=CHOOSING))

    picked = pick_backbone(
        store, source, pretrained=pretrained, weights=weights, size=size, progress=choosing, cancel=cancel
    )
    if picked is None:
        return Computed(None, None, None, None)
    backbone, reason = picked
    what = backbone.describe()

    def embedding(p: Progress) -> None:
        if progress is not None:
            progress(ComputeProgress(done=p.done, total=p.total, message=p.message, phase="embed", backbone=what))

    embedded, fit = refresh(store, backbone, progress=embedding, cancel=cancel, reason=reason)
    return Computed(backbone, reason, embedded, fit)


@dataclass(frozen=True)
class Retrained:
    """What Retrain head did: the new scores, and the instant model judged (``check``) or built (``made``)."""

    fit: FitReport
    check: instant.HeadCheck | None
    made: instant.InstantReport | None


def retrain_head(store: Store, *, build: bool = False) -> Retrained:
    """Review's "Retrain head": refit the head on the cached embeddings of the last fit's backbone
    (every score refreshed, seconds), then the instant model on the same embeddings.

    ``build=False`` only judges it: its valid accuracy, no files; the current model stays current (the
    deployed model changes only when asked). ``build=True`` (the page's "Make it current", the CLI's
    ``--make-current``) exports it as a run and makes it current.

    Parameters
    ----------
    store
        The project; its last fit names the backbone whose cached embeddings are refitted.
    build
        Export the instant model as a run and make it the current model (else judge it only).

    Returns
    -------
    Retrained
        The new scores' report, and the instant model judged (``check``) or built (``made``).

    Raises
    ------
    Conflict
        No cached embeddings, or fewer than 2 classes in the train split.
    """
    fit = fit_scores(store)
    backbone = fit.info.backbone_spec
    if build:
        return Retrained(fit, None, instant.export_instant(store, backbone))
    return Retrained(fit, instant.check_head(store, backbone), None)
