"""Benchmark of the Review page's embedding map and "More like this".

    python bench/bench_embedding_map.py [--n 1000] [--flip 0.05] [--seed 0]

Data: scikit-learn's digits (real 8x8 scans), written as 32 px PNGs into a throw-away project,
one class per digit; ``--flip`` of the labels moved to another class. The embeddings are the
scans' 64 grey values, planted in the embedding cache (no torch here: this measures the map
and the neighbour search, not a backbone).

1. Map cost: the first t-SNE projection (what ``auto`` picks up to ``TSNE_MAX`` images) against
   a page load that reuses the cache (``embedding_map`` again); PCA's first projection as context.
2. "More like this": of the 8 neighbours of each flipped image, the fraction whose *true* class
   is the flipped image's true class (the rest of its cluster, to relabel with it), against the
   chance of that class among all images.
3. ``similar`` time at ``--n`` images (context).

Prints one JSON object per figure per line (see bench/run_all.py); diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lotr_labeler.collect.importers import import_folder  # noqa: E402
from lotr_labeler.model import embed  # noqa: E402
from lotr_labeler.review import embedding_map as emap  # noqa: E402
from lotr_labeler.review import fitting  # noqa: E402
from lotr_labeler.workspace import create_project  # noqa: E402


def emit(name: str, ours: float, anchor: float | None, goal: str, unit: str, note: str = "") -> None:
    """One figure; ``ratio`` is oriented so that bigger is better for us."""

    def r(v: float | None) -> float | None:
        return None if v is None else round(float(v), 4)

    ratio = None if not anchor or not ours else (anchor / ours if unit == "s" else ours / anchor)
    doc = {"name": name, "ours": r(ours), "anchor": r(anchor), "ratio": r(ratio), "goal": goal, "unit": unit}
    if note:
        doc["note"] = note
    print(json.dumps(doc), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--flip", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(digits.target), args.n, replace=False)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        for j, i in enumerate(pick):
            folder = src / f"d{digits.target[i]}"
            folder.mkdir(parents=True, exist_ok=True)
            arr = (digits.images[i] * 16).clip(0, 255).astype(np.uint8)
            Image.fromarray(arr).resize((32, 32), Image.Resampling.NEAREST).save(folder / f"{j}.png")
        store = create_project(Path(tmp) / "data", "bench", "empty")
        import_folder(store, src)
        backbone = embed.resolve_backbone(store, "imagenet", pretrained=False, size=32)
        images = store.images()
        true = {img.id: img.label for img in images}
        vectors = np.stack(
            [
                np.asarray(
                    Image.open(store.path(img)).convert("L").resize((8, 8), Image.Resampling.BOX), np.float32
                ).ravel()
                for img in images
            ]
        )
        cache = embed.cache_for(store, backbone)
        cache.add([img.sha256 for img in images], vectors)
        cache.save()
        classes = store.class_names()
        flipped = [int(i) for i in rng.choice([img.id for img in images], round(args.flip * len(images)), False)]
        for image_id in flipped:
            label = true[image_id]
            store.relabel(
                [image_id], classes[(classes.index(label) + 1 + int(rng.integers(len(classes) - 1))) % len(classes)]
            )
        fitting.fit_scores(store, backbone)

        started = time.monotonic()
        first = emap.embedding_map(store, method="tsne")
        first_s = time.monotonic() - started
        started = time.monotonic()
        again = emap.embedding_map(store, method="tsne")
        again_s = time.monotonic() - started
        assert not first.cached and again.cached
        emit(
            f"map: page load with the cached projection vs the first t-SNE ({len(images)} images)",
            again_s,
            first_s,
            ">= 10",
            "s",
            "both include reading the scores and embeddings of every image",
        )
        started = time.monotonic()
        emap.embedding_map(store, method="pca")
        emit(f"map: first PCA projection ({len(images)} images)", time.monotonic() - started, None, "context", "s")

        fractions = []
        started = time.monotonic()
        for image_id in flipped:
            found = emap.similar(store, image_id, 8)
            fractions.append(np.mean([true[n.image.id] == true[image_id] for n in found]))
        per_call = (time.monotonic() - started) / max(1, len(flipped))
        chance = float(np.mean([sum(v == true[i] for v in true.values()) / len(true) for i in flipped]))
        emit(
            "More like this: share of a flipped image's 8 neighbours from its true class vs chance",
            float(np.mean(fractions)),
            chance,
            ">= 5",
            "fraction",
            f"{len(flipped)} flipped of {len(images)} digits; embeddings = the scans' pixels",
        )
        emit(f"More like this: similar() at {len(images)} images", per_call, None, "context", "s")
        store.close()


if __name__ == "__main__":
    main()
