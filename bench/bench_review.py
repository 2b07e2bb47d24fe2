"""Benchmark of Review: quick head retrain vs a fastai fine-tune, and label-error detection.

    python bench/bench_review.py [--n 1000] [--size 128] [--flip 0.1] [--seed 0]

Data: scikit-learn's digits (real 8x8 scans, ``sklearn.datasets.load_digits``) upscaled to
``--size`` px, written as PNG and imported into a throw-away project, one class per digit;
then ``--flip`` of the labels are moved to another class with ``store.relabel``.

1. Retrain speed: ``fitting.fit_scores`` (5-fold head on 1,000 cached embeddings, every score
   refreshed and stored) against fastai ``fine_tune(1)`` (resnet18, random init since the
   ImageNet weights cannot be downloaded here, no augmentation, batch 64) on the same images.
   128 px by default: the size of the Train page's CPU "quick" preset, which fine-tunes for
   2 epochs (+1 frozen), so fine_tune(1) is the cheaper anchor. ``--size 64`` halves fastai's time.
2. Label-error detection, k = number of flipped labels (so precision@k = recall@k):
   ours (our ranking by self-confidence) against (a) fastai's approach, top losses of the
   validation split only, and (b) cleanlab's ``find_label_issues`` on our same out-of-sample
   probabilities (when cleanlab is importable: ``pip install -r bench/requirements.txt``).
   "ours" is the product's default once a model exists: the fastai run above is registered as
   the current run, so embeddings come from its body and valid-split scores are averaged
   with its predictions. A second line gives ours without any run (random-init resnet18).

Prints one JSON object per figure per line: name, ours, anchor, ratio, goal, unit, note
(``ratio`` oriented so that bigger is better for us: anchor/ours for seconds, ours/anchor
otherwise; ``goal`` as bench/run_all.py reads it). Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from kit import emit, flip_labels, say
from PIL import Image

from lotr_labeler.collect.importers import import_folder
from lotr_labeler.model import embed, runs
from lotr_labeler.review import backbone_choice, fitting, queue
from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project


def digits_project(root: Path, n: int, size: int) -> tuple[Store, dict[int, str]]:
    """A project of ``n`` digits as ``size`` px PNGs; returns it and the true label per image id."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    src = root / "digits"
    for i in range(min(n, len(digits.target))):
        label = str(int(digits.target[i]))
        (src / label).mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)
        img = Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
        img.save(src / label / f"{i}.png")
    store = create_project(root / "data", "digits", "empty")
    report = import_folder(store, src)
    say(f"imported: {report.summary()}")
    return store, {img.id: img.label for img in store.images()}


def detection(scores: dict[int, float], flipped: set[int], k: int) -> tuple[float, float]:
    """recall@k and AUROC of a suspicion score (higher = more suspicious; missing = least)."""
    from sklearn.metrics import roc_auc_score

    ids = sorted(scores, key=lambda i: -scores[i])
    recall = len(set(ids[:k]) & flipped) / len(flipped)
    y = [int(i in flipped) for i in scores]
    auroc = float(roc_auc_score(y, list(scores.values())))
    return recall, auroc


def fastai_run(store: Store, size: int, seed: int) -> tuple[Any, float]:
    """fine_tune(1) on the project's images and stable split; returns the learner and its seconds."""
    import fastai.vision.all as fv
    import pandas as pd
    import torchvision

    fv.set_seed(seed, reproducible=True)
    images = store.images()
    df = pd.DataFrame(
        {
            "path": [img.relpath for img in images],
            "label": [img.label for img in images],
            "is_valid": [img.split == "valid" for img in images],
        }
    )
    dls = fv.ImageDataLoaders.from_df(
        df,
        path=store.root,
        fn_col="path",
        label_col="label",
        valid_col="is_valid",
        item_tfms=fv.Resize(size),
        bs=64,
        num_workers=0,
    )
    learn = fv.vision_learner(dls, torchvision.models.resnet18, pretrained=False, metrics=fv.error_rate)
    started = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(1)
    seconds = time.perf_counter() - started
    say(f"fastai fine_tune(1): {seconds:.1f} s, {len(dls.train_ds)} train / {len(dls.valid_ds)} valid images")
    return learn, seconds


def register_run(store: Store, learn: Any, size: int) -> runs.Run:
    """Make the fastai learner the project's current run, with its predictions, as train.py does."""
    images = store.images()
    run = runs.create_run(store, {"size": size, "pretrained": False, "epochs": 1})
    learn.export(run.model_path)
    dl = learn.dls.test_dl([store.path(img) for img in images], bs=64, num_workers=0)
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=dl)
    vocab = [str(v) for v in learn.dls.vocab]
    runs.save_predictions(store, run.id, vocab, zip([img.id for img in images], probs.tolist(), strict=True))
    return runs.finish_run(store, run.id, "done", vocab=vocab)


def fastai_valid_top_losses(store: Store, learn: Any) -> dict[int, float]:
    """fastai's way: losses of the validation split; train images get no score (ranked last)."""
    images = store.images()
    valid = [img for img in images if img.split == "valid"]
    dl = learn.dls.test_dl([store.path(img) for img in valid], with_labels=False, bs=64, num_workers=0)
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=dl)
    vocab = [str(v) for v in learn.dls.vocab]
    p = probs.numpy()
    losses = {img.id: float(-np.log(max(p[i, vocab.index(img.label)], 1e-12))) for i, img in enumerate(valid)}
    floor = min(losses.values()) - 1.0
    return {img.id: losses.get(img.id, floor) for img in images}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--n", type=int, default=1000, help="images (digits; at most 1797)")
    parser.add_argument("--size", type=int, default=128, help="pixels, for both fastai and the embeddings")
    parser.add_argument("--flip", type=float, default=0.1, help="fraction of labels flipped")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store, _truth = digits_project(Path(tmp), args.n, args.size)
        flipped = flip_labels(store, args.flip, args.seed)
        k = len(flipped)
        n = store.count()
        say(f"{n} images, {k} labels flipped (k = {k})")

        # -- ours without a model: random-init resnet18 (the ImageNet download is unreachable here)
        rand = embed.resolve_backbone(store, "imagenet", pretrained=False, size=args.size)
        started = time.perf_counter()
        embed.compute_embeddings(store, rand)
        say(f"embeddings (random-init resnet18, {args.size} px): {time.perf_counter() - started:.1f} s for {n}")
        fitting.fit_scores(store, rand)  # cold: imports scikit-learn
        fits = []
        for _ in range(3):
            started = time.perf_counter()
            fitting.fit_scores(store, rand)
            fits.append(time.perf_counter() - started)
        quick = min(fits)
        say(f"quick retrain (fit_scores, warm): {', '.join(f'{t:.3f}' for t in fits)} s")
        norun = {it.id: -(it.self_confidence or 0.0) for it in queue.ranking(store, status="all")}
        # The product with no model: the bundled pretrained network (what a user gets), beside random init.
        bundled = embed.resolve_backbone(store, "bundled", size=args.size)
        started = time.perf_counter()
        fitting.refresh(store, bundled)
        say(f"embeddings + fit ({bundled.short}, {args.size} px): {time.perf_counter() - started:.1f} s")
        norun_bundled = {it.id: -(it.self_confidence or 0.0) for it in queue.ranking(store, status="all")}

        # -- fastai
        learn, fine_tune_s = fastai_run(store, args.size, args.seed)
        with learn.no_bar():
            valid_error = float(learn.validate()[1])
        setup = f"{n} digits at {args.size} px, 2 cores; fastai resnet18 random init, no augmentation, bs 64"
        emit(
            "review_quick_retrain_speedup_vs_fastai_fine_tune_1",
            quick,
            fine_tune_s,
            ">= 100",
            "s",
            f"{setup}; ours = 5-fold head refit + every score stored (warm, best of 3)",
        )
        emit("review_quick_retrain_1000_images_seconds", quick, None, "ours <= 2", "s", setup)
        fastai_scores = fastai_valid_top_losses(store, learn)

        # -- ours with the run (the product's default once a model exists)
        run = register_run(store, learn, args.size)
        body = embed.resolve_backbone(store, "run")  # auto would pass over a body trained from scratch
        started = time.perf_counter()
        _, fit = fitting.refresh(store, body)
        say(f"run {run.id} body embeddings + fit: {time.perf_counter() - started:.1f} s; {fit and fit.summary()}")
        items = queue.ranking(store, status="all")
        ours = {it.id: -(it.self_confidence or 0.0) for it in items}

        ours_recall, ours_auroc = detection(ours, flipped, k)
        fastai_recall, fastai_auroc = detection(fastai_scores, flipped, k)
        norun_recall, norun_auroc = detection(norun, flipped, k)
        bundled_recall, bundled_auroc = detection(norun_bundled, flipped, k)
        valid_ids = {img.id for img in store.images(split="valid")}
        ceiling = len(flipped & valid_ids) / k  # no valid-only method, however good its model, can do better
        say(f"ours recall@k {ours_recall:.3f} AUROC {ours_auroc:.3f}; no run {norun_recall:.3f} / {norun_auroc:.3f}")
        say(
            f"fastai valid top losses: recall@k {fastai_recall:.3f} AUROC {fastai_auroc:.3f}; its valid error "
            f"{valid_error:.3f}; valid-only ceiling {ceiling:.3f}"
        )
        detect = f"{n} digits, {k} flipped labels, k = {k}"
        emit(
            "review_recall_at_k_vs_fastai_valid_top_losses",
            ours_recall,
            fastai_recall,
            ">= 2",
            "recall@k",
            f"{detect}; fastai model after fine_tune(1) from random init: valid error {valid_error:.2f}",
        )
        emit(
            "review_recall_at_k_vs_any_valid_only_ranking",
            ours_recall,
            ceiling,
            ">= 2",
            "recall@k",
            f"{detect}; anchor = share of the flips in the valid split: the best any valid-only ranking can do",
        )
        emit("review_auroc_vs_fastai_valid_top_losses", ours_auroc, fastai_auroc, "context", "AUROC", detect)

        # -- backbone "best" (chosen by cross-validation) against each fixed backbone, in the same state
        choice = backbone_choice.choose_backbone(store, size=args.size)
        assert choice is not None
        say(f"backbone best: {choice.reason}")
        fixed: dict[str, float] = {}
        for trial in choice.trials:
            if trial.backbone is None:
                continue
            fitting.refresh(store, trial.backbone)
            scores = {it.id: -(it.self_confidence or 0.0) for it in queue.ranking(store, status="all")}
            fixed[trial.name] = detection(scores, flipped, k)[0]
            say(f"  {trial.name}: CV accuracy {trial.accuracy:.3f}, recall@k {fixed[trial.name]:.3f}")
        auto_name = next(t.name for t in choice.trials if t.backbone == choice.backbone)
        auto_recall = fixed[auto_name]
        for name, recall in fixed.items():
            emit(
                f"review_auto_backbone_recall_at_k_vs_{name.split(' ')[0] if name.startswith('run') else name}".replace(
                    " ", "_"
                ),
                auto_recall,
                recall,
                ">= 1" if name != auto_name else "context",
                "recall@k",
                f"{detect}; best (cross-validated) chose {auto_name} ({choice.reason}); anchor = {name} fixed",
            )

        # -- instant model: "Retrain head" to a prediction, and its valid accuracy vs the fine-tune
        from lotr_labeler.model import predict
        from lotr_labeler.review import instant

        fitting.refresh(store, choice.backbone)
        sample = store.images()[0]
        started = time.perf_counter()
        fitting.fit_scores(store)
        made = instant.export_instant(store)
        predictor = predict.load_predictor(predict.resolve_model(store).path)
        with Image.open(store.path(sample)) as im:
            predictor.predict_one(im.convert("RGB"))
        to_prediction = time.perf_counter() - started
        say(f"instant model: {made.summary()}; engine {predictor.engine}; {to_prediction:.2f} s to a prediction")
        emit(
            "review_instant_model_retrain_head_to_prediction_seconds",
            to_prediction,
            None,
            "ours <= 5",
            "s",
            f"{n} images; fit_scores + export (learn.export + model.onnx) + load + predict one image; fastai "
            f"already imported in this process (as after a Predict page visit); engine {predictor.engine}",
        )
        emit(
            "review_instant_model_valid_accuracy_vs_full_fine_tune",
            made.valid_accuracy or 0.0,
            1 - valid_error,
            "context",
            "accuracy",
            f"{detect}; same stable split, both against the given (10% flipped) labels; instant = head on "
            f"{choice.backbone.short} fitted on the train split; fine-tune = fastai resnet18 fine_tune(1) random init",
        )
        emit(
            "review_recall_at_k_without_a_run_vs_fastai",
            norun_recall,
            fastai_recall,
            "context",
            "recall@k",
            f"{detect}; ours on random-init resnet18 embeddings (no model, no download)",
        )
        emit(
            "review_recall_at_k_without_a_run_bundled_vs_random_init",
            bundled_recall,
            norun_recall,
            "context",
            "recall@k",
            f"{detect}; the bundled EfficientNet-Lite0 (what a user gets with no model) against random-init "
            f"resnet18, both 5-fold heads; AUROC {bundled_auroc:.3f} vs {norun_auroc:.3f}. Digits are 8x8 scans "
            "upscaled: see bench_backbone.py for real pictures",
        )

        # -- cleanlab on the same out-of-sample probabilities
        try:
            from cleanlab.filter import find_label_issues
        except ImportError:
            say("cleanlab not importable: pip install -r bench/requirements.txt for that comparison")
            return 0
        labelled = [it for it in items if it.scored]
        classes = list(labelled[0].probs)
        probs = np.array([[it.probs[c] for c in classes] for it in labelled])
        probs = probs / probs.sum(axis=1, keepdims=True)
        labels = np.array([classes.index(it.given) for it in labelled])
        ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
        found = [labelled[int(i)].id for i in ranked]
        cl_recall = len(set(found[:k]) & flipped) / k
        cl_precision = len(set(found) & flipped) / len(found) if found else 0.0
        say(f"cleanlab flags {len(found)}: precision {cl_precision:.3f}, recall@k {cl_recall:.3f}")
        emit(
            "review_recall_at_k_vs_cleanlab_same_probs",
            ours_recall,
            cl_recall,
            ">= 1",
            "recall@k",
            f"{detect}; cleanlab find_label_issues flags {len(found)} (precision {cl_precision:.2f}); "
            "ranked by self-confidence like ours, so it differs only by the images it leaves unflagged",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
