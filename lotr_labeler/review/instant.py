"""An instant model: the Review head on its backbone, exported as a run like any other.

"Retrain head" fits a logistic regression on cached backbone embeddings in well under a
second. Put back on the backbone that made those embeddings, that head is a whole image
classifier: ``body -> average pool -> L2 normalise -> linear``, the scaler folded into the
linear layer. It is exported with ``learn.export`` (a plain fastai ``Learner`` of torch and
fastai modules only: stock ``load_learner`` opens it without this package) plus ``model.onnx``
beside it (``onnx_export``), and recorded as a finished run (``source="instant"``), so
Predict, the API and the CLI use it like a trained one.

The head is fitted on the train split only and its accuracy measured on the valid split, as a
full fine-tune is, so the two figures compare. The newest ``INSTANT_KEEP`` instant runs are
kept; older ones are removed (each is a model file of ~45 MB, one per click).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lotr_labeler.errors import Conflict
from lotr_labeler.imaging import write_atomic
from lotr_labeler.model import embed, runs
from lotr_labeler.review.head import fit_head, head_probabilities
from lotr_labeler.review.last_fit import fit_backbone, fit_info
from lotr_labeler.store import Store

log = logging.getLogger(__name__)

INSTANT_KEEP = 3


@dataclass(frozen=True)
class InstantReport:
    run: runs.Run
    valid_accuracy: float | None
    seconds: float
    onnx: bool

    def summary(self) -> str:
        acc = "n/a" if self.valid_accuracy is None else f"{self.valid_accuracy:.0%}"
        return (
            f"Instant model: run {self.run.id} ({self.run.params['backbone_name']} + head, "
            f"valid accuracy {acc}) in {self.seconds:.1f} s — try it on Predict."
        )


def fold_head(model: Any, n_classes: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[int]]:
    """(weight, bias, class columns) of one linear layer equal to ``StandardScaler`` + logistic
    regression: softmax(weight @ x + bias) is its ``predict_proba`` on an L2-normalised ``x``."""
    scaler, lr = model.steps[0][1], model.steps[-1][1]
    coef = np.asarray(lr.coef_, dtype=np.float64) / scaler.scale_[None, :]
    bias = np.asarray(lr.intercept_, dtype=np.float64) - coef @ scaler.mean_
    if coef.shape[0] == 1:  # binary: p(class 1) = sigmoid(z) = softmax([0, z])
        coef = np.vstack([np.zeros_like(coef), coef])
        bias = np.concatenate([[0.0], bias])
    return coef, bias, [int(c) for c in lr.classes_]


def build_learner(store: Store, backbone: embed.Backbone, head: Any, vocab: list[str], df: Any) -> Any:
    """A fastai Learner: the backbone's body, then pool, normalise and the folded head."""
    import fastai.vision.all as fv
    import torch
    import torch.nn.functional as F
    from torch import nn

    network = embed.load_network(backbone)
    weight, bias, _ = fold_head(head, len(vocab))
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight).float())
        linear.bias.copy_(torch.from_numpy(bias).float())
    # model[0] = body, model[1] = head, as vision_learner builds it (the body can embed again).
    model = nn.Sequential(
        network.body, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), fv.Lambda(F.normalize), linear)
    ).eval()
    batch_tfms = [fv.Normalize.from_stats(network.mean, network.std)] if network.mean is not None else []
    block = fv.DataBlock(
        blocks=(fv.ImageBlock, fv.CategoryBlock(vocab=vocab, sort=False)),
        get_x=fv.ColReader("path"),
        get_y=fv.ColReader("label"),
        splitter=fv.ColSplitter("is_valid"),
        # Squashed to a square, as the embeddings were made (embed.prepare): nothing cropped.
        item_tfms=fv.Resize(backbone.size, method=fv.ResizeMethod.Squish),
        batch_tfms=batch_tfms,
    )
    dls = block.dataloaders(df, path=store.root.absolute(), bs=16, num_workers=0, device=torch.device("cpu"))
    return fv.Learner(dls, model, loss_func=fv.CrossEntropyLossFlat(), metrics=fv.accuracy)


@dataclass(frozen=True)
class HeadCheck:
    """The instant model judged before it is built: the head fitted on the train split's cached
    embeddings, its accuracy on the valid split (the figure a run's valid error compares with)."""

    backbone: str
    valid_accuracy: float | None
    valid_images: int
    seconds: float

    @property
    def valid_error(self) -> float | None:
        return None if self.valid_accuracy is None else 1 - self.valid_accuracy

    def beside(self, run: runs.Run | None, strong: Callable[[str], str] = str) -> str:
        """The instant model's valid error beside the current run's, as the page and the CLI say it
        (``strong`` marks the two figures, e.g. bold on the page)."""

        def pct(err: float | None) -> str:
            return strong("n/a" if err is None else f"{err:.1%}")

        mine = f"Instant model (head on the {self.backbone}): valid error {pct(self.valid_error)} "
        mine += f"on {self.valid_images} image(s)"
        if run is None:
            return f"{mine} · no current model"
        return f"{mine} · current model (run {run.id}): valid error {pct((run.metrics or {}).get('error_rate'))}"


@dataclass(frozen=True)
class _Fit:
    have: list[Any]
    train: list[int]
    vocab: list[str]
    index: dict[int, int]
    head: Any
    probs: np.ndarray[Any, Any]
    accuracy: float | None
    valid: int


def _fit(store: Store, backbone: embed.Backbone) -> _Fit:
    """The head on the train split's cached embeddings, scored on the valid split."""
    have, X = embed.embeddings(store, backbone, store.images())
    train = [i for i, img in enumerate(have) if img.split == "train"]
    if len({have[i].class_id for i in train}) < 2:
        raise Conflict(
            f"An instant model needs train-split images of at least 2 classes with {backbone.describe()} "
            "embeddings. Compute embeddings first."
        )
    names = {c.id: c.name for c in store.classes()}
    order = {c.id: i for i, c in enumerate(store.classes())}
    class_ids = sorted({have[i].class_id for i in train}, key=lambda cid: order.get(cid, len(order)))
    index = {cid: i for i, cid in enumerate(class_ids)}
    vocab = [names[cid] for cid in class_ids]
    head = fit_head(X[train], [index[have[i].class_id] for i in train])
    probs = np.zeros((len(have), len(vocab)))
    probs[:, [int(c) for c in head.classes_]] = head_probabilities(head, X)
    valid = [i for i, img in enumerate(have) if img.split == "valid" and img.class_id in index]
    accuracy = float(np.mean([probs[i].argmax() == index[have[i].class_id] for i in valid])) if valid else None
    return _Fit(have, train, vocab, index, head, probs, accuracy, len(valid))


def _backbone_of_scores(store: Store) -> embed.Backbone:
    """``fit_backbone``, once there are scores: the instant model is the Review head, fitted on them."""
    if fit_info(store) is None:
        raise Conflict("No scores yet: compute embeddings on the Review page (or `review --compute`) first.")
    return fit_backbone(store)


def check_head(store: Store, backbone: embed.Backbone | None = None) -> HeadCheck:
    """The instant model's valid accuracy without building it (a fraction of a second, no files): what
    Review shows beside the current run's before the user makes it current.

    Raises
    ------
    Conflict
        No cached embeddings, or fewer than 2 classes in the train split.
    """
    started = time.monotonic()
    backbone = backbone or _backbone_of_scores(store)
    fit = _fit(store, backbone)
    return HeadCheck(backbone.describe(), fit.accuracy, fit.valid, time.monotonic() - started)


def export_instant(
    store: Store, backbone: embed.Backbone | None = None, *, with_onnx: bool = True, make_current: bool = True
) -> InstantReport:
    """Fit the head on the train split's cached embeddings and export it with its backbone as a run.

    Parameters
    ----------
    store
        The project.
    backbone
        Whose embeddings; None: the one of the stored scores (what "Retrain head" refits).
    with_onnx
        Also write ``model.onnx`` (fast predictions; a failure only logs).
    make_current
        Make it the current run (Predict, serve, export use it). False keeps the current one current.

    Returns
    -------
    InstantReport
        The finished run (current when ``make_current``), its valid accuracy, seconds.

    Raises
    ------
    Conflict
        No cached embeddings, or fewer than 2 classes in the train split.
    """
    import pandas as pd

    started = time.monotonic()
    backbone = backbone or _backbone_of_scores(store)
    fit = _fit(store, backbone)
    have, train, vocab, index, head, probs, accuracy = (
        fit.have,
        fit.train,
        fit.vocab,
        fit.index,
        fit.head,
        fit.probs,
        fit.accuracy,
    )
    before = runs.current_run(store)

    known = [img for img in have if img.class_id in index]
    df = pd.DataFrame(
        {
            "path": [str(store.path(img).absolute()) for img in known],
            "label": [img.label for img in known],
            "is_valid": [img.split == "valid" for img in known],
        }
    )
    params = {
        "backbone": backbone.as_dict(),
        "backbone_name": backbone.short,
        "size": backbone.size,
        "head": "logistic regression on L2-normalised pooled features",
        "fit_on": "train split",
    }
    run = runs.create_run(store, params, source=embed.INSTANT_SOURCE)
    try:
        learn = build_learner(store, backbone, head, vocab, df)
        partial = run.path.absolute() / f"{runs.PARTIAL_PREFIX}{os.getpid()}-{runs.MODEL_FILE}"
        learn.export(partial)
        partial.replace(run.model_path)
        onnx = False
        if with_onnx:
            from lotr_labeler.model.onnx_export import export_quietly

            onnx = export_quietly(learn, run.model_path) is not None
        runs.save_predictions(store, run.id, vocab, ((img.id, probs[i].tolist()) for i, img in enumerate(have)))
        seconds = round(time.monotonic() - started, 2)
        summary = {
            "accuracy": accuracy,
            "error_rate": None if accuracy is None else 1 - accuracy,
            "images": len(have),
            "train_images": len(train),
            "duration_s": seconds,
        }
        metrics = {"run_id": run.id, "source": embed.INSTANT_SOURCE, "params": params, "vocab": vocab, **summary}
        write_atomic(run.metrics_path, json.dumps(metrics, indent=2).encode())
        done = runs.finish_run(store, run.id, "done", vocab=vocab, metrics=summary)
        if make_current:
            done = runs.set_current(store, done.id)
        elif before is not None:  # the newest finished run would become current by itself: keep the old one
            runs.set_current(store, before.id)
            done = runs.get_run(store, done.id)
    except BaseException as exc:
        runs.finish_run(store, run.id, "failed", message=str(exc) or type(exc).__name__)
        runs.remove_leftovers(run.path)
        raise
    prune(store, keep=done.id)
    return InstantReport(done, accuracy, time.monotonic() - started, onnx)


def prune(store: Store, keep: str, n: int = INSTANT_KEEP) -> list[str]:
    """Delete instant runs beyond the newest ``n`` (never ``keep`` nor the current run); their ids."""
    current = runs.current_run(store)
    instant = [r for r in runs.list_runs(store) if r.source == embed.INSTANT_SOURCE and r.state != "running"]
    removed: list[str] = []
    for r in instant[n:]:
        if r.id not in (keep, current.id if current else None):
            runs.delete_run(store, r.id)
            removed.append(r.id)
    return removed
