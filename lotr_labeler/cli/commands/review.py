"""``review``: rank the images whose label the model doubts; ``--compute`` is the Review page's job."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import ClassVar

from lotr_labeler import progress
from lotr_labeler.cli.context import Subparsers, project_command
from lotr_labeler.cli.output import ProgressBar, emit, print_json
from lotr_labeler.errors import InvalidInput
from lotr_labeler.jobs.specs import EmbedJob
from lotr_labeler.jobs.worker import JobRun
from lotr_labeler.store import SPLITS, Store


def _compute(store: Store, args: argparse.Namespace) -> int | None:
    """Embed and score (``EmbedJob.run``); an exit status when the command ends here, else None (go on listing).
    ``--compute`` is the background job the Review page starts; a listing computes in the foreground."""
    spec = EmbedJob.from_args(args)
    job = JobRun(store, EmbedJob.kind, {"backbone": spec.backbone}, args.job) if args.compute else None
    with job or contextlib.nullcontext(), _Bars(job) as show:
        ran = spec.run(store, show, job.cancel if job else None)
        if job is not None:
            job.finish(ran.state, ran.summary, ran.report.as_dict() or None)
    done = ran.report
    if done.reason is not None:
        print(f"Backbone chosen by cross-validation: {done.reason}", file=sys.stderr)
    elif done.backbone is not None and spec.backbone == "best" and not spec.pretrained:
        print(f"Backbone: {done.backbone.describe()} (--no-pretrained)", file=sys.stderr)
    if done.cancelled:
        print(f"error: {ran.summary}", file=sys.stderr)
        return 1
    assert done.embedded is not None
    print(done.embedded.summary(), file=sys.stderr)
    print(ran.summary, file=sys.stderr)
    return 0 if args.compute else None


class _Bars:
    """One console bar per phase of ``review.compute`` (choosing the backbone, then embedding), each
    also writing the job's progress row."""

    NAMES: ClassVar[dict[str, tuple[str, str]]] = {"choose": ("choose backbone", "img"), "embed": ("embed", "file")}

    def __init__(self, job: JobRun | None) -> None:
        self.job = job
        self.phase = ""
        self.bar: ProgressBar | None = None

    def __call__(self, p: progress.Progress) -> None:
        phase = getattr(p, "phase", "embed")
        if phase != self.phase or self.bar is None:
            self.close()
            desc, unit = self.NAMES.get(phase, (phase, "img"))
            self.phase, self.bar = phase, ProgressBar(desc, unit, job=self.job)
        self.bar(p)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _retrain_head(store: Store, as_json: bool, make_current: bool) -> int:
    """Review's "Retrain head" (``review.compute.retrain_head``): refit every score, then judge the instant
    model beside the current run; only ``--make-current`` exports it and makes it the deployed model."""
    from lotr_labeler.model import runs
    from lotr_labeler.review.compute import retrain_head

    done = retrain_head(store, build=make_current)
    print(done.fit.summary(), file=sys.stderr)
    if done.made is not None:
        print(done.made.summary(), file=sys.stderr)
        doc = {"run": done.made.run.id, "scored": done.fit.info.scored, "valid_accuracy": done.made.valid_accuracy}
        if as_json:
            print_json({**doc, "current": True})
        else:
            print(done.made.run.id)
        return 0
    assert done.check is not None
    current = runs.current_run(store)
    error = (current.metrics or {}).get("error_rate") if current is not None else None
    doc = {
        "run": None,
        "scored": done.fit.info.scored,
        "valid_accuracy": done.check.valid_accuracy,
        "valid_images": done.check.valid_images,
        "current_run": current.id if current is not None else None,
        "current_valid_error": error,
        "current": False,
    }
    if as_json:
        print_json(doc)
    else:
        unchanged = "The current model is unchanged: add --make-current to deploy the instant model."
        print(f"{done.check.beside(current)}. {unchanged}")
    return 0


@project_command
def cmd_review(store: Store, args: argparse.Namespace) -> int:
    from lotr_labeler.review import queue

    if args.make_current and not args.retrain_head:
        raise InvalidInput("--make-current deploys the instant model of --retrain-head: use both, or neither.")
    if args.retrain_head:
        return _retrain_head(store, args.json, args.make_current)
    if not args.cached:
        status = _compute(store, args)
        if status is not None:
            return status
    items = queue.ranking(
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
        help="refit the head on the cached embeddings (every score refreshed) and judge the instant model "
        "(the head on its backbone) beside the current run; the current model is unchanged",
    )
    s.add_argument(
        "--make-current",
        action="store_true",
        help="with --retrain-head: export the instant model as a run and make it the current model",
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
