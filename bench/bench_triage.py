"""Benchmark of candidate triage: the model scores search results before download.

    python bench/bench_triage.py [--per-class 60] [--candidates 300] [--wrong 0.25] [--latency 0.2]
                                 [--size 224] [--seed 0]

Data: scikit-learn's digits (real 8x8 scans, upscaled to 64 px PNGs). Classes "0", "1", "2";
the initial accepted set is ``--per-class`` images of each, imported and embedded (Review's
Compute at ``--size`` px), in two passes: the bundled pretrained EfficientNet-Lite0 (what a user gets; row
names end "(bundled)") and random-init resnet18 (the rows measured before it existed, "(random init)").
Then ``--candidates`` new search results are added, their thumbnails served by a local
HTTP server that waits ``--latency`` seconds per request; ``--wrong`` of them are wrong: half
off-topic (digits 3-9), half a digit of another class searched under this one.

Figures (one JSON object per line, as bench/run_all.py reads them):

1. Scoring throughput: ``review.candidates.score_candidates`` end to end on the candidates
   (fetch through the guarded downloader, embed, score), seconds; goal <= 15 s. Anchor: a plain
   one-at-a-time fetch loop over the same thumbnail URLs (measured on 50, scaled to all).
2. Precision and recall of "Accept all with p >= ACCEPT_AT" and "Reject all with p <= REJECT_AT"
   at the default thresholds (a wrong candidate is one that should not be accepted in its class).
3. Actions an oracle user needs to reach a clean set. Without triage: one click per candidate.
   With triage: the two bulk clicks, one click per candidate left pending (accept, reject or
   "→ predicted"), one per wrongly auto-accepted and one per wrongly auto-rejected candidate.
   Goal: ratio >= 3 with auto-accept precision >= 0.98.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import kit
import numpy as np
from kit import say, serve
from PIL import Image

from lotr_labeler.collect.importers import import_folder
from lotr_labeler.model import embed
from lotr_labeler.review import candidates as cands
from lotr_labeler.review import fitting
from lotr_labeler.store import CandidateIn
from lotr_labeler.workspace import create_project

CLASSES = ("0", "1", "2")
PX = 64


def emit(name: str, ours: float, anchor: float | None, goal: str, unit: str, note: str = "") -> None:
    """One figure of this pass: its name ends with the backbone it measured."""
    kit.emit(f"{name} ({_BACKBONE[0]})", ours, anchor, goal, unit, note)


def png(pixels: np.ndarray) -> bytes:
    import io

    img = Image.fromarray((pixels * (255 / 16)).astype(np.uint8), "L").resize((PX, PX), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


# Which backbone the rows of this pass measure (their names end with it): the bundled pretrained network, what
# a user gets, then random-init resnet18 for comparison with the rows measured before it existed.
_BACKBONE = ["bundled"]


def main() -> int:
    for which in ("bundled", "random init"):
        _BACKBONE[0] = which
        say(f"-- {which}")
        code = run(which)
        if code:
            return code
    return 0


def run(which: str) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--wrong", type=float, default=0.25)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--size", type=int, default=224, help="embedding size (the embed_size default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(digits.target))
    by_digit: dict[int, list[int]] = {d: [int(i) for i in order if digits.target[i] == d] for d in range(10)}

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = root / "seed"
        for name in CLASSES:
            (src / name).mkdir(parents=True)
            for i in by_digit[int(name)][: args.per_class]:
                (src / name / f"{i}.png").write_bytes(png(digits.images[i]))
        store = create_project(root / "data", "digits", "empty")
        say(import_folder(store, src).summary())
        store.set_setting("embed_size", args.size)
        if which == "bundled":
            backbone = embed.resolve_backbone(store, "bundled", size=args.size)
        else:
            backbone = embed.resolve_backbone(store, "imagenet", pretrained=False, size=args.size)
        started = time.monotonic()
        _, fit = fitting.refresh(store, backbone)
        say(f"initial set embedded and fitted in {time.monotonic() - started:.1f} s: {fit.summary() if fit else ''}")

        # The scrape: right candidates, off-topic ones, and ones of another class.
        n_wrong = round(args.candidates * args.wrong)
        n_off, n_other = n_wrong // 2, n_wrong - n_wrong // 2
        unused = {d: by_digit[d][args.per_class :] if str(d) in CLASSES else list(by_digit[d]) for d in range(10)}
        plan: list[tuple[str, int, str]] = []  # (searched class, digit index, truth: the class it belongs to or "")
        for k in range(args.candidates - n_wrong):
            name = CLASSES[k % len(CLASSES)]
            plan.append((name, unused[int(name)].pop(), name))
        for k in range(n_off):
            plan.append((CLASSES[k % len(CLASSES)], unused[3 + k % 7].pop(), ""))
        for k in range(n_other):
            name, other = CLASSES[k % 3], CLASSES[(k + 1 + k // 3 % 2) % 3]
            plan.append((name, unused[int(other)].pop(), other))
        rng.shuffle(plan)  # type: ignore[arg-type]
        bodies = {f"/t/{n}.png": png(digits.images[i]) for n, (_, i, _) in enumerate(plan)}
        server, base = serve(bodies, args.latency)
        store.add_candidates(
            CandidateIn(label, f"{base}/full/{n}", thumbnail_url=f"{base}/t/{n}.png", source="ddg")
            for n, (label, _, _) in enumerate(plan)
        )
        truth = {c.id: plan[int(c.image_url.rsplit("/", 1)[-1])] for c in store.candidates()}

        # 1. Throughput.
        report = cands.score_candidates(store, allow_private=True)
        say(report.summary())
        seconds = report.seconds
        import httpx

        from lotr_labeler.collect import fetch

        sample = list(bodies)[:50]
        t0 = time.monotonic()
        with fetch.make_client(httpx.Timeout(10.0)) as client:
            for path in sample:
                fetch.fetch(client, base + path, max_bytes=10**6, allow_private=True)
        serial = (time.monotonic() - t0) * len(bodies) / len(sample)
        emit(
            f"triage: score {len(plan)} candidates end to end (fetch {args.latency * 1000:.0f} ms latency, "
            f"embed at {args.size} px, score) vs a one-at-a-time fetch loop",
            seconds,
            serial,
            "ours <= 15",
            "s",
            f"{report.scored} scored, {report.failed} failed; {backbone.short} at {args.size} px; "
            f"anchor measured on {len(sample)} fetches, scaled",
        )
        server.shutdown()

        # 2. Precision / recall at the default thresholds.
        items = {t.id: t for t in cands.triage(store, state="pending")}
        right = {cid for cid, (label, _, belongs) in truth.items() if belongs == label}
        wrong = set(truth) - right
        acc = {t.id for t in cands.at_least(store, cands.ACCEPT_AT)}
        rej = {t.id for t in cands.at_most(store, cands.REJECT_AT)}
        acc_p = len(acc & right) / len(acc) if acc else 0.0
        acc_r = len(acc & right) / len(right)
        rej_p = len(rej & wrong) / len(rej) if rej else 0.0
        rej_r = len(rej & wrong) / len(wrong)
        emit(
            f"triage: precision of accept p >= {cands.ACCEPT_AT}",
            acc_p,
            None,
            "ours >= 0.98",
            "precision",
            f"{len(acc)} auto-accepted of {len(plan)}; recall {acc_r:.3f}",
        )
        emit(f"triage: recall of accept p >= {cands.ACCEPT_AT}", acc_r, None, "", "recall")
        emit(
            f"triage: precision of reject p <= {cands.REJECT_AT}",
            rej_p,
            None,
            "",
            "precision",
            f"{len(rej)} auto-rejected; recall {rej_r:.3f}",
        )
        emit(f"triage: recall of reject p <= {cands.REJECT_AT}", rej_r, None, "", "recall")
        looks = {cid for cid, t in items.items() if t.looks_like is not None}
        other = {cid for cid, (label, _, belongs) in truth.items() if belongs and belongs != label}
        moved_right = sum(1 for cid in looks & other if items[cid].looks_like == truth[cid][2])
        say(
            f"looks-like flagged {len(looks)}; of the {len(other)} other-class candidates "
            f"{moved_right} point to the right class"
        )

        # 3. Oracle actions.
        middle = set(truth) - acc - rej
        with_triage = 2 + len(middle) + len(acc & wrong) + len(rej & right)
        without = len(truth)
        emit(
            "triage: oracle actions to a clean set, one click per candidate vs triage",
            float(with_triage),
            float(without),
            "ratio >= 3",
            "actions",
            f"{len(middle)} left to decide by hand, {len(acc & wrong)} wrong accepts and {len(rej & right)} "
            f"wrong rejects to fix; {cands.ACCEPT_AT}/{cands.REJECT_AT} thresholds",
        )
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
