"""The review head's math, pure: ``(features, labels) → out-of-fold probabilities → label scores``.

No store, no files: arrays in, arrays out (as ``cleanlab/rank.py`` keeps ``(labels, pred_probs) →
scores``), so the ranking, the backbone choice, candidate scoring, the embedding map and the instant
model share one head and a test needs no project.

The head is logistic regression on L2-normalised embeddings (standardised inside the pipeline),
scored by stratified K-fold: each row's probabilities come from the fold whose head did **not**
train on it. Scores, lower = more suspicious: ``self_confidence`` = p(given label), ``margin`` =
p(given) − max p(other).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lotr_labeler.errors import Conflict, InvalidInput

FloatArray = npt.NDArray[np.float64]

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


@contextmanager
def one_thread() -> Iterator[None]:
    """How every head is fitted and applied: one BLAS thread, convergence warnings quiet. These matrices
    are small, and on a 2-core laptop threading made the fits 20-50x slower (measured; the instant
    model's fit and scoring of 1,000 images took 1.3-3.4 s with threads, 0.17-0.20 s on one), worse
    still while a training job runs."""
    from sklearn.exceptions import ConvergenceWarning  # type: ignore[import-untyped]
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        yield


def fit_head(X: npt.ArrayLike, y: Sequence[int] | npt.NDArray[np.int64]) -> Classifier:
    """The default head fitted on the rows of ``X`` (L2-normalised here) with labels ``y``."""
    model = default_head()
    with one_thread():
        model.fit(normalize_rows(X), np.asarray(y, dtype=np.int64))
    return model


def head_probabilities(model: Classifier, X: npt.ArrayLike) -> FloatArray:
    """``model``'s probabilities for the rows of ``X`` (L2-normalised here), a column per ``model.classes_``."""
    with one_thread():
        return np.asarray(model.predict_proba(normalize_rows(X)), dtype=np.float64)


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
    from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

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
    with one_thread():
        # A class with fewer members than K (e.g. a single image) is fine: it is scored by
        # heads that never saw it, which is what an out-of-sample score means.
        warnings.filterwarnings("ignore", message=".*least populated class.*")
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


def cv_accuracy(X: npt.ArrayLike, y: Sequence[int] | npt.NDArray[np.int64], n_classes: int) -> float:
    """Share of images whose out-of-sample (K-fold) prediction is their given label."""
    labels = np.asarray(y, dtype=np.int64)
    probs = oof_probabilities(X, labels, n_classes)
    return float(np.mean(probs.argmax(axis=1) == labels))
