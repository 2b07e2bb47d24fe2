"""The last fit: how the stored scores were made (meta ``review_fit``), and its backbone.

``fit_backbone`` is the one answer to "which backbone does review use now": the one the stored
scores were fitted on (what the Review queue shows), else the default backbone. Refits, the
live scorer, candidate scoring, the embedding map, the instant model and the Review page's count
of images to embed all ask it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lotr_labeler.model import embed
from lotr_labeler.store import Store

META_KEY = "review_fit"


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


def fit_info(store: Store) -> FitInfo | None:
    """The record of the stored scores; None before the first fit."""
    value = store.meta_get(META_KEY)
    if value is None:
        return None
    data = json.loads(value)
    fields = set(FitInfo.__dataclass_fields__)
    return FitInfo(**{k: v for k, v in data.items() if k in fields})


def fit_backbone(store: Store, *, size: int | None = None) -> embed.Backbone:
    """The backbone of the last fit; before any fit, the default backbone (``resolve_backbone``'s
    ``auto``: a pretrained run's body, else the bundled EfficientNet-Lite0) at ``size`` (None: the
    run's size, else the ``embed_size`` setting). A refit, the live scorer and candidate scoring keep
    to it, so a retrain never switches the embeddings under the queue."""
    info = fit_info(store)
    if info is not None:
        return info.backbone_spec
    return embed.resolve_backbone(store, "auto", size=size)


def corrections_since_fit(store: Store) -> int:
    """History events (relabels, deletes, undos…) recorded after the stored scores were fitted."""
    info = fit_info(store)
    if info is None:
        return 0
    return store.count_events_after(info.event_id)
