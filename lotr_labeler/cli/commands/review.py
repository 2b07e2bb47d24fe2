"""``review``: rank the images whose label the model doubts; ``--compute`` is the Review page's job."""

from __future__ import annotations

import argparse
import contextlib
import sys

from lotr_labeler.cli.context import Subparsers, project_command
from lotr_labeler.cli.output import Progress, emit, print_json
from lotr_labeler.jobs.specs import EmbedJob
from lotr_labeler.jobs.worker import JobRun
from lotr_labeler.store import SPLITS, Store


def _compute(store: Store, args: argparse.Namespace) -> int | None:
    """Embed and score; an exit status when the command ends here, else None (go on listing)."""
    from lotr_labeler.model import embed
    from lotr_labeler.review import scoring as review

    spec = EmbedJob.from_args(args)
    # --compute is the background job the Review page starts; a listing computes in the foreground.
    job = JobRun(store, EmbedJob.kind, {"backbone": spec.backbone}, args.job) if args.compute else None
    with job or contextlib.nullcontext():
        reason = None
        if spec.backbone == "auto" and not spec.pretrained:  # --no-pretrained: random features, as asked
            backbone = embed.resolve_backbone(store, "imagenet", pretrained=False, size=spec.size)
            print(f"Backbone: {backbone.describe()} (--no-pretrained)", file=sys.stderr)
        elif spec.backbone == "auto":  # try each available backbone on a sample; the best K-fold head wins
            with Progress("choose backbone", "img", job=job) as bar:

                def trying(done: int, total: int) -> None:
                    p = {"done": done, "total": total, "backbone": "auto"}
                    bar(done, total, p, f"choosing the backbone: embedding {done}/{total} sample image(s)")

                choice = review.choose_backbone(
                    store,
                    weights=spec.weights,
                    size=spec.size,
                    progress=trying,
                    cancel=job.cancel if job else None,
                )
            if choice is None:
                if job is not None:
                    job.finish("cancelled", "Backbone choice cancelled.")
                print("error: backbone choice cancelled.", file=sys.stderr)
                return 1
            backbone, reason = choice.backbone, choice.reason
            print(f"Backbone auto: {reason}", file=sys.stderr)
        else:
            backbone = embed.resolve_backbone(
                store, spec.backbone, pretrained=spec.pretrained, weights=spec.weights, size=spec.size
            )
        with Progress("embed", job=job) as bar:

            def progress(done: int, total: int) -> None:
                p = {"done": done, "total": total, "backbone": backbone.describe()}
                bar(done, total, p, f"embedding {done}/{total} image(s)", force=done == total)

            embedded, fit = review.refresh(
                store, backbone, progress=progress, cancel=job.cancel if job else None, reason=reason
            )
        if fit is None:
            if job is not None:
                job.finish("cancelled", embedded.summary())
            print(f"error: {embedded.summary()}", file=sys.stderr)
            return 1
        if job is not None:
            job.finish("done", fit.summary(), {"embedded": embedded.computed, "scored": fit.info.scored})
    print(embedded.summary(), file=sys.stderr)
    print(fit.summary(), file=sys.stderr)
    return 0 if args.compute else None


def _retrain_head(store: Store, as_json: bool) -> int:
    """Review's "Retrain head": refit on the cached embeddings, then export the instant model."""
    from lotr_labeler.model import instant
    from lotr_labeler.review import scoring as review

    fit = review.fit_scores(store)
    print(fit.summary(), file=sys.stderr)
    made = instant.export_instant(store, fit.info.backbone_spec)
    print(made.summary(), file=sys.stderr)
    if as_json:
        print_json({"run": made.run.id, "scored": fit.info.scored, "valid_accuracy": made.valid_accuracy})
    else:
        print(made.run.id)
    return 0


@project_command
def cmd_review(store: Store, args: argparse.Namespace) -> int:
    from lotr_labeler.review import scoring as review

    if args.retrain_head:
        return _retrain_head(store, args.json)
    if not args.cached:
        status = _compute(store, args)
        if status is not None:
            return status
    items = review.ranking(
        store,
        sort=args.sort,
        label=args.label,
        predicted=args.predicted,
        split=args.split,
        flag=args.flag,
        status=args.status,
    )
    rows = [it.as_dict(args.sort) for it in (items[: args.top] if args.top else items)]
    columns = ["id", "given", "predicted", "confidence", "score", "split", "flags", "path"]
    emit(rows if args.json else [{**r, "flags": " ".join(r["flags"])} for r in rows], columns, args.json)
    return 0


@project_command
def cmd_similar(store: Store, args: argparse.Namespace) -> int:
    """``review similar ID``: the images nearest to one image by embedding ("More like this")."""
    from lotr_labeler.review import embedding_map

    rows = [n.as_dict() for n in embedding_map.similar(store, args.id, k=args.k)]
    emit(rows, ["id", "label", "similarity", "split", "path"], args.json)
    return 0


def register(sub: Subparsers) -> None:
    s = sub.add_parser("review", help="rank the images whose label the model doubts, worst first")
    s.add_argument("--top", type=int, default=20, help="rows to print (0: all; default 20)")
    s.add_argument("--sort", choices=("self_confidence", "margin"), default="self_confidence")
    s.add_argument("--class", dest="label", help="only images labeled with this class")
    s.add_argument("--predicted", help="only images predicted as this class")
    s.add_argument("--split", choices=SPLITS)
    s.add_argument("--flag", help="only images with this flag: any|tiny|aspect|grey|dark|light|blurry|near-duplicate")
    s.add_argument("--status", choices=("unreviewed", "reviewed", "all"), default="unreviewed")
    EmbedJob.add_arguments(s)  # --backbone, --no-pretrained, --weights, --size (and the hidden --job)
    s.add_argument("--compute", action="store_true", help="compute embeddings and scores only (no listing)")
    s.add_argument("--cached", action="store_true", help="list the stored scores without recomputing anything")
    s.add_argument(
        "--retrain-head",
        action="store_true",
        help="refit the head on the cached embeddings and export it with its backbone as a run (instant model)",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_review)
    # Optional subcommands: plain `review [options]` stays the ranking.
    more = s.add_subparsers(title="subcommands", dest="review_command", metavar="{similar}")
    similar = more.add_parser("similar", help="images nearest to image ID by embedding, most similar first")
    similar.add_argument("id", type=int, help="image id (see `review` or `status --json`)")
    similar.add_argument("--k", type=int, default=8, help="how many neighbours (default 8)")
    similar.add_argument("--json", action="store_true")
    similar.set_defaults(func=cmd_similar)
