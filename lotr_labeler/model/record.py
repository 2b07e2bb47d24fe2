"""Recording a model as a run: ``model.pkl`` (``learn.export()``: loads with stock ``load_learner``)
and its ONNX twin, the class probabilities of every image (what Review reads), ``metrics.json``;
and registering a model trained elsewhere (``import_model``).

fastai is imported inside functions: importing it takes ~10 s.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lotr_labeler.errors import InvalidInput
from lotr_labeler.imaging import write_atomic
from lotr_labeler.model import hardware, runs
from lotr_labeler.model.onnx_export import export_quietly
from lotr_labeler.project import name_key
from lotr_labeler.store import ImageRow, Store

log = logging.getLogger(__name__)


def export_model(learn: Any, run: runs.Run) -> None:
    """Write ``run``'s ``model.pkl`` in plain fp32, and its ``model.onnx`` for fast predictions (a
    failure of the latter only logs)."""
    # Absolute (a relative name is joined onto learn.path), and through a temp name: a kill
    # mid-write leaves no model.pkl that looks whole.
    partial = run.path.absolute() / f"{runs.PARTIAL_PREFIX}{os.getpid()}-{runs.MODEL_FILE}"
    with hardware.plain_for_export(learn):
        learn.export(partial)
    partial.replace(run.model_path)
    export_quietly(learn, run.model_path)


def evaluate(
    store: Store, run: runs.Run, learn: Any, images: Sequence[ImageRow], files: Sequence[Path]
) -> tuple[list[str], dict[str, Any]]:
    """Store the class probabilities of ``images`` (read from ``files``) under ``run``; returns the
    model's classes and the validation set's ``class_metrics``."""
    vocab = [str(v) for v in learn.dls.vocab]
    with learn.no_bar():
        valid_probs, valid_targets = learn.get_preds(dl=learn.dls.valid)
        probs = predict_images(learn, files)
    runs.save_predictions(store, run.id, vocab, zip([img.id for img in images], probs, strict=True))
    return vocab, class_metrics(valid_probs, valid_targets, vocab)


def write_metrics(run: runs.Run, metrics: dict[str, Any]) -> None:
    """``run``'s ``metrics.json`` (everything the Train page and ``runs`` show beyond the row's summary)."""
    write_atomic(run.metrics_path, json.dumps(metrics, indent=2).encode())


def class_metrics(probs: Any, targets: Any, vocab: Sequence[str]) -> dict[str, Any]:
    """The confusion matrix, per-class precision/recall/support and accuracy of ``probs`` against ``targets``."""
    import numpy as np

    pred = np.asarray(probs).argmax(1)
    true = np.asarray(targets)
    k = len(vocab)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(true, pred, strict=True):
        cm[int(t), int(p)] += 1
    per_class = {}
    for i, name in enumerate(vocab):
        tp = int(cm[i, i])
        precision = tp / int(cm[:, i].sum()) if cm[:, i].sum() else None
        recall = tp / int(cm[i].sum()) if cm[i].sum() else None
        per_class[name] = {"precision": precision, "recall": recall, "support": int(cm[i].sum())}
    accuracy = float((pred == true).mean()) if len(true) else None
    return {"confusion_matrix": cm.tolist(), "per_class": per_class, "accuracy": accuracy}


def project_order(vocab: Sequence[str], classes: Sequence[str]) -> list[int]:
    """The indices of ``vocab`` (the model's classes, fastai sorts them) in the project's class order, for
    tables the user reads beside the other pages; classes the project no longer has come last, as they were."""
    rank = {name_key(c): i for i, c in enumerate(classes)}
    return sorted(range(len(vocab)), key=lambda i: (rank.get(name_key(vocab[i]), len(rank)), i))


def predict_images(learn: Any, files: Sequence[Path], batch_size: int = 64) -> list[list[float]]:
    """Class probabilities (in ``learn.dls.vocab`` order) for image ``files``, batched."""
    if not files:
        return []
    dl = learn.dls.test_dl(list(files), bs=batch_size, num_workers=0)
    probs, _ = learn.get_preds(dl=dl)
    return [[float(p) for p in row] for row in probs.tolist()]


def import_model(store: Store, path: Path, name: str | None = None) -> runs.Run:
    """Register a ``model.pkl`` trained elsewhere (e.g. on a GPU) and compute its predictions here.

    Loading a pickle runs code from it: only import files you made yourself.

    Parameters
    ----------
    store
        The project.
    path
        A ``learn.export()`` file.
    name
        What messages call the file (an upload's own name rather than its temporary path).

    Returns
    -------
    Run
        A finished run holding a copy of the model and its predictions (its accuracy counts the
        images whose class the model knows).

    Raises
    ------
    InvalidInput
        No file at ``path``, or not a model this fastai can load.
    """
    import fastai.vision.all as fv

    path = Path(path).absolute()
    if not path.is_file():
        raise InvalidInput(
            f"Model file {name or path} does not exist. Give the path of a model.pkl from learn.export()."
        )
    run = runs.create_run(store, {"imported_from": str(path)}, source="imported")
    try:
        shutil.copyfile(path, run.model_path)
        try:
            learn = fv.load_learner(run.model_path.absolute(), cpu=True)
        except Exception as exc:  # any unpickling failure: wrong file, other fastai version
            log.info("import %s: %r", path, exc)
            raise InvalidInput(
                f"{name or path} is not a model this app can load: use the model.pkl written by "
                "learn.export() (or `lotr-labeler train --out`) with the same fastai version."
            ) from exc
        export_quietly(learn, run.model_path)  # model.onnx for fast predictions; a failure only logs
        vocab = [str(v) for v in learn.dls.vocab]
        images = store.images()
        with learn.no_bar():
            probs = predict_images(learn, [store.path(img) for img in images])
        runs.save_predictions(store, run.id, vocab, zip([i.id for i in images], probs, strict=True))
        valid = [(img, p) for img, p in zip(images, probs, strict=True) if img.split == "valid"]
        known = [(img, p) for img, p in valid if img.label in vocab]
        accuracy = (
            sum(vocab[max(range(len(p)), key=p.__getitem__)] == img.label for img, p in known) / len(known)
            if known
            else None
        )
        summary = {
            "accuracy": accuracy,
            "images": len(images),
            "error_rate": None if accuracy is None else 1 - accuracy,
        }
        write_metrics(
            run, {"run_id": run.id, "source": "imported", "imported_from": str(path), "vocab": vocab, **summary}
        )
        return runs.finish_run(store, run.id, "done", vocab=vocab, metrics=summary)
    except BaseException as exc:
        runs.finish_run(store, run.id, "failed", message=str(exc) or type(exc).__name__)
        raise
