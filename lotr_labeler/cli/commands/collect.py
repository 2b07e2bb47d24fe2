"""Collecting images: search, candidates, download, import, export."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from lotr_labeler import signals
from lotr_labeler.cli.context import Subparsers, project_command
from lotr_labeler.cli.output import ProgressBar, emit, print_json
from lotr_labeler.collect.export import export_dataset
from lotr_labeler.collect.importers import IMPORT_KINDS, ImportReport, import_from
from lotr_labeler.collect.search import SearchProgress
from lotr_labeler.errors import InvalidInput
from lotr_labeler.jobs.specs import DownloadJob, ScoreCandidatesJob, SearchJob
from lotr_labeler.jobs.worker import JobRun
from lotr_labeler.progress import Progress as Step
from lotr_labeler.store import CANDIDATE_STATES, Store


def _search_figures(p: Step) -> str:
    return f"{p.results_so_far} new · {p.query[:40]}" if isinstance(p, SearchProgress) else ""


def _score_figures(p: Step) -> str:
    from lotr_labeler.review.candidates import ScoreProgress

    return f"failed={p.failed}" if isinstance(p, ScoreProgress) else ""


def _download_figures(p: Step) -> str:
    from lotr_labeler.collect.download import DownloadProgress  # httpx: not at every command's start

    return f"ok={p.ok}, failed={p.failed}, dup={p.duplicates}" if isinstance(p, DownloadProgress) else ""


@project_command
def cmd_search(store: Store, args: argparse.Namespace) -> int:
    spec = SearchJob.from_args(args)
    spec.check(store)  # bad filters, an unknown class: refused before a job row exists
    record = {"queries": len(spec.queries(store)), "max": spec.max_results(store)}
    with (
        JobRun(store, SearchJob.kind, record, args.job) as job,
        ProgressBar("search", "query", job, _search_figures) as bar,
    ):
        ran = spec.run(store, bar, job.cancel)
        job.finish(ran.state, ran.summary, ran.report.as_dict())
    report = ran.report
    scoring = spec.score_after(store, report)
    if args.json:
        print_json(report.as_dict())
    elif report.unreachable:
        print(f"error: {report.summary()}", file=sys.stderr)  # one sentence, once
    else:
        print(report.summary())
        if scoring:
            print(f"Scoring the candidates in the background (job {scoring.id}; `lotr-labeler status` shows it).")
    if report.unreachable:
        return 1
    if report.queries and all(q.error for q in report.queries):
        print(f"error: every query failed: {report.errors[0].error}", file=sys.stderr)
        return 1
    return 0


@project_command
def cmd_score(store: Store, args: argparse.Namespace) -> int:
    spec = ScoreCandidatesJob.from_args(args)
    with JobRun(store, ScoreCandidatesJob.kind, spec.record(), args.job) as job:
        with ProgressBar("score", "cand", job, _score_figures) as bar:
            ran = spec.run(store, bar, job.cancel)
        job.finish(ran.state, ran.summary, ran.report.as_dict())
    report = ran.report
    if args.json:
        print_json(report.as_dict())
    else:
        print(report.summary())
    if report.cancelled:
        if signals.received() is None:  # after Ctrl-C the CLI says "interrupted" once
            print("error: scoring cancelled; run it again to continue.", file=sys.stderr)
        return 1
    return 0


def _nothing_to_download(store: Store, retried: bool) -> str:
    """Why a download had nothing to do, and what would give it something."""
    failed = 0 if retried else store.count_candidates(state="failed")
    if failed:
        return (
            f"Nothing to download: no accepted candidates waiting, and {failed} failed "
            f"candidate{'' if failed == 1 else 's'}: retry {'it' if failed == 1 else 'them'} with "
            "`lotr-labeler download --retry-failed`."
        )
    return "Nothing to download: accept candidates first."


@project_command
def cmd_download(store: Store, args: argparse.Namespace) -> int:
    spec = DownloadJob.from_args(args)
    record = {"ids": list(spec.ids), "retry_failed": spec.retry_failed}
    with (
        JobRun(store, DownloadJob.kind, record, args.job) as job,
        ProgressBar("download", "img", job, _download_figures) as bar,
    ):
        ran = spec.run(store, bar, job.cancel)
        job.finish(ran.state, ran.summary, ran.report.as_dict())
    report = ran.report
    if args.json:
        print_json(report.as_dict())
    else:
        if not report.all_failed:  # all failed: the one error line below says it
            print(ran.summary if report.total else _nothing_to_download(store, spec.retry_failed))
        # When most failed, their reasons are counted in the summary: a few examples are enough.
        shown = 5 if report.mostly_failed else 20
        for cid, url, reason in sorted(report.failures)[:shown]:
            print(f"  failed #{cid} {url}: {reason}", file=sys.stderr)
        if len(report.failures) > shown:
            more = len(report.failures) - shown
            print(f"  … and {more} more: `lotr-labeler candidates list --state failed`", file=sys.stderr)
    if report.cancelled:
        if signals.received() is None:  # after Ctrl-C the CLI says "interrupted" once
            print("error: download cancelled; run it again to resume.", file=sys.stderr)
        return 1
    if report.all_failed:
        print(f"error: {report.verdict()}", file=sys.stderr)
        return 1
    return 0


def _report(report: ImportReport, as_json: bool) -> int:
    """Print the import's report; 1 when it refused items and took nothing (a script must not read "done"),
    0 otherwise: items already in the project are no failure, so a second import of a folder succeeds."""
    failed = bool(report.rejected) and not report.added and not report.candidates_added
    if as_json:
        print_json(report.as_dict())
        return 1 if failed else 0
    print(report.summary())
    for item, reason in report.rejected:
        print(f"  rejected {item}: {reason}", file=sys.stderr)
    for item, existing in report.duplicate_notes():
        print(f"  duplicate {item}: same as {existing}", file=sys.stderr)
    if failed:
        print(
            f"error: nothing was imported: {len(report.rejected)} item(s) refused (listed above). "
            "Fix or remove them and import again.",
            file=sys.stderr,
        )
        return 1
    return 0


@project_command
def cmd_import(store: Store, args: argparse.Namespace) -> int:
    with ProgressBar(f"import {args.kind}") as bar:
        report = import_from(
            store,
            args.kind,
            Path(args.path),
            label=args.label,
            create_classes=args.create_classes,
            progress=bar,
        )
    return _report(report, args.json)


def _candidate_ids(store: Store, args: argparse.Namespace, states: Sequence[str]) -> list[int]:
    if args.ids:
        return [int(i) for i in args.ids]
    if not (args.all or args.label):
        raise InvalidInput("Say which candidates: give ids, --class C, or --all.")
    ids: list[int] = []
    for state in states:
        ids += [c.id for c in store.candidates(args.label, state=state)]
    return ids


def _score_arg(text: str) -> float | str:
    """A probability, or ``suggested`` (thresholds from the head's out-of-sample precision)."""
    if text.strip().lower() == "suggested":
        return "suggested"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability: give 0-1, e.g. 0.9, or 'suggested'") from None


@project_command
def cmd_candidates(store: Store, args: argparse.Namespace) -> int:
    from lotr_labeler.review import candidates

    if args.cand_cmd == "list":
        items = candidates.triage(
            store, args.label, state=args.state, query=args.query, sort=args.sort, only=args.filter
        )
        rows = [t.as_dict() for t in items[: args.limit]]
        columns = ["id", "label", "state", "score", "looks_like", "near_duplicate_of", "query", "image_url", "error"]
        emit(rows, columns, args.json)
        return 0
    min_score = getattr(args, "min_score", None)
    max_score = getattr(args, "max_score", None)
    if min_score is not None or max_score is not None:
        if args.ids or args.to:
            raise InvalidInput("--min-score/--max-score select the candidates themselves: give no ids and no --to.")
        if "suggested" in (min_score, max_score):
            suggested = candidates.suggest_thresholds(store)
            print(suggested.describe(), file=sys.stderr)
            min_score = suggested.accept_at if min_score == "suggested" else min_score
            max_score = suggested.reject_at if max_score == "suggested" else max_score
        if min_score is not None:
            n = candidates.accept_at_least(store, float(min_score), args.label)
            print(f"Accepted {n} pending candidate(s) with p(class) >= {float(min_score):g}.")
        elif max_score is not None:
            n = candidates.reject_at_most(store, float(max_score), args.label)
            print(f"Rejected {n} pending candidate(s) with p(class) <= {float(max_score):g}.")
        return 0
    state = {"accept": "accepted", "reject": "rejected", "reset": "pending"}[args.cand_cmd]
    # Bulk selections act on undecided candidates, plus failed ones for a reset.
    from_states = ("pending", "failed") if state == "pending" else ("pending",)
    ids = _candidate_ids(store, args, from_states)
    changed = store.decide(ids, state, label=args.to)
    print(f"{state.capitalize()} {changed} candidate(s).")
    return 0


def _export_space(store: Store, args: argparse.Namespace) -> int:
    from lotr_labeler.model.predict import resolve_model
    from lotr_labeler.model.space import write_space

    model = resolve_model(store, args.run)
    with ProgressBar("export space", "step", postfix=lambda p: p.message) as bar:
        steps = iter(range(1, 4))
        done = write_space(
            model,
            Path(args.out),
            title=args.title or store.name,
            torch_fallback=args.torch_fallback,
            report=lambda msg: bar(Step(done=next(steps, 3), total=3, message=msg)),
        )
    print(
        f"Wrote a Hugging Face Space for run {model.run_id} to {done.folder} ({', '.join(done.files)}; "
        f"engine {done.engine}, {len(done.classes)} classes). Push the folder to a Space repository."
    )
    return 0


@project_command
def cmd_export(store: Store, args: argparse.Namespace) -> int:
    if args.what == "space":
        return _export_space(store, args)
    if args.what == "model":
        from lotr_labeler.model import runs

        run = runs.get_run(store, args.run) if args.run else runs.current_run(store)
        if run is None or not run.model_path.is_file():
            raise InvalidInput(f"Project {store.name!r} has no trained model yet. Run `lotr-labeler train` first.")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run.model_path, out)
        print(f"Exported the model of run {run.id} to {out} (load it with fastai's load_learner).")
        return 0
    with ProgressBar("export") as bar:
        n = export_dataset(store, Path(args.out), bar)
    print(f"Exported {n} image(s) and manifest.csv to {args.out}.")
    return 0


def _select(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", nargs="*", type=int, help="candidate ids")
    p.add_argument("--class", dest="label", help="every undecided candidate of this class")
    p.add_argument("--all", action="store_true", help="every undecided candidate")
    p.add_argument("--to", help="also move them to this class")


def register(sub: Subparsers) -> None:
    s = sub.add_parser("import", help="import a folder, a zip, or a CSV of image URLs")
    s.add_argument("kind", choices=IMPORT_KINDS)
    s.add_argument("path")
    s.add_argument("--class", dest="label", help="label for bare URLs (urls only)")
    s.add_argument(
        "--create-classes",
        action="store_true",
        help="create a class for a label that is not one yet (urls only; default: refuse the row)",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("candidates", help="list, accept, reject or reset search candidates")
    cs = s.add_subparsers(dest="cand_cmd", required=True)
    c = cs.add_parser("list")
    c.add_argument("--class", dest="label")
    c.add_argument("--state", choices=CANDIDATE_STATES)
    c.add_argument("--query")
    c.add_argument("--limit", type=int)
    c.add_argument(
        "--sort",
        choices=("id", "score", "score-desc"),
        default="id",
        help="score: lowest p(class) first; score-desc: highest",
    )
    c.add_argument(
        "--filter",
        choices=("off-topic", "looks-like", "near-duplicate", "unscored"),
        help="only likely off-topic, claimed by another class, near-duplicates of dataset images, or unscored",
    )
    c.add_argument("--json", action="store_true")
    for name in ("accept", "reject", "reset"):
        _select(p := cs.add_parser(name))
        if name == "accept":
            p.add_argument(
                "--min-score",
                type=_score_arg,
                help="every pending candidate with p(class) >= this (0-1, or 'suggested': the lowest p whose "
                "out-of-sample precision on the labeled images is >= 0.98)",
            )
        if name == "reject":
            p.add_argument(
                "--max-score",
                type=_score_arg,
                help="every pending candidate with p(class) <= this (0-1, or 'suggested', as for --min-score)",
            )
    s.set_defaults(func=cmd_candidates)
    c = cs.add_parser("score", help="score candidates from their thumbnails with the current model (background job)")
    ScoreCandidatesJob.add_arguments(c)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_score)

    s = sub.add_parser("search", help="search images for every class (or one) and add them as candidates")
    SearchJob.add_arguments(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("download", help="download accepted candidates")
    DownloadJob.add_arguments(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_download)

    s = sub.add_parser(
        "export", help="export the dataset (zip), the current model (pkl) or a Hugging Face Space (folder)"
    )
    s.add_argument("what", choices=("dataset", "model", "space"))
    s.add_argument("out", metavar="OUT")
    s.add_argument("--run", help="with `model` or `space`: this run instead of the current one")
    s.add_argument("--title", help="with `space`: the Space title (default: the project name)")
    s.add_argument(
        "--torch-fallback",
        action="store_true",
        help="with `space`: also list fastai/torch in requirements.txt next to onnxruntime",
    )
    s.set_defaults(func=cmd_export)
