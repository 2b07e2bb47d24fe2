"""Collecting images: search, candidates, download, import, export."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from lotr_labeler.cli.context import Subparsers, project_command
from lotr_labeler.cli.output import Progress, emit, print_json
from lotr_labeler.collect.export import export_dataset
from lotr_labeler.collect.importers import ImportReport, import_folder, import_urls, import_zip
from lotr_labeler.errors import InvalidInput
from lotr_labeler.jobs.specs import DownloadJob, SearchJob
from lotr_labeler.jobs.worker import JobRun
from lotr_labeler.store import CANDIDATE_STATES, Store


@project_command
def cmd_search(store: Store, args: argparse.Namespace) -> int:
    from lotr_labeler.collect.search import SearchProgress, plan_queries, run_search

    spec = SearchJob.from_args(args)
    settings = store.settings()
    options = spec.options()
    planned = plan_queries(store, spec.label, spec.query)
    max_results = spec.max or settings.search_max_results
    delay = settings.search_delay if spec.delay is None else spec.delay
    with JobRun(store, SearchJob.kind, {"queries": len(planned), "max": max_results}, args.job) as job:
        with Progress("search", "query", job) as bar:

            def progress(p: SearchProgress) -> None:
                bar(p.index, len(planned), p, p.message, postfix=f"{p.results_so_far} new · {p.query[:40]}")

            report = run_search(
                store,
                planned,
                max_results=max_results,
                options=options,
                delay_s=delay,
                progress=progress,
                should_stop=job.cancel.is_set,
            )
        job.finish_if(job.cancel.is_set(), report.summary(), report.as_dict())
    if args.json:
        print_json(report.as_dict())
    else:
        print(report.summary())
    if report.queries and all(q.error for q in report.queries):
        print(f"error: every query failed: {report.errors[0].error}", file=sys.stderr)
        return 1
    return 0


@project_command
def cmd_download(store: Store, args: argparse.Namespace) -> int:
    from lotr_labeler.collect.download import DownloadProgress, download_candidates

    spec = DownloadJob.from_args(args)
    with JobRun(store, DownloadJob.kind, {"ids": list(spec.ids), "retry_failed": spec.retry_failed}, args.job) as job:
        with Progress("download", "img", job) as bar:

            def progress(p: DownloadProgress) -> None:
                postfix = f"ok={p.ok}, failed={p.failed}, dup={p.duplicates}"
                bar(p.done, p.total, p, p.message, postfix=postfix, force=p.done == p.total)

            report = download_candidates(
                store,
                list(spec.ids) or None,
                retry_failed=spec.retry_failed,
                workers=spec.workers,
                allow_private=True if spec.allow_private_hosts else None,
                progress=progress,
                cancel=job.cancel,
            )
        job.finish_if(report.cancelled, report.summary(), report.as_dict())
    if args.json:
        print_json(report.as_dict())
    else:
        print(report.summary() if report.total else "Nothing to download: accept candidates first.")
        for cid, url, reason in report.failures[:20]:
            print(f"  failed #{cid} {url}: {reason}", file=sys.stderr)
    if report.cancelled:
        print("error: download cancelled; run it again to resume.", file=sys.stderr)
        return 1
    return 0


def _report(report: ImportReport, as_json: bool) -> int:
    if as_json:
        print_json(report.as_dict())
        return 0
    print(report.summary())
    for item, reason in report.rejected:
        print(f"  rejected {item}: {reason}", file=sys.stderr)
    for item, existing in report.duplicates:
        print(f"  duplicate {item}: same as image {existing}", file=sys.stderr)
    return 0


@project_command
def cmd_import(store: Store, args: argparse.Namespace) -> int:
    path = Path(args.path)
    with Progress(f"import {args.kind}") as update:
        if args.kind == "folder":
            report = import_folder(store, path, update)
        elif args.kind == "zip":
            if not path.is_file():
                raise InvalidInput(f"{path} is not a file. Give the path of a .zip.")
            report = import_zip(store, path, update)
        else:
            if not path.is_file():
                raise InvalidInput(f"{path} is not a file. Give a CSV of url,label[,thumbnail] rows.")
            text = path.read_text(encoding="utf-8-sig", errors="replace")
            report = import_urls(store, text, args.label)
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


@project_command
def cmd_candidates(store: Store, args: argparse.Namespace) -> int:
    if args.cand_cmd == "list":
        rows = store.candidates(args.label, state=args.state, query=args.query, limit=args.limit)
        emit([asdict(r) for r in rows], ["id", "label", "state", "query", "image_url", "error"], args.json)
        return 0
    state = {"accept": "accepted", "reject": "rejected", "reset": "pending"}[args.cand_cmd]
    # Bulk selections act on undecided candidates, plus failed ones for a reset.
    from_states = ("pending", "failed") if state == "pending" else ("pending",)
    ids = _candidate_ids(store, args, from_states)
    changed = store.decide(ids, state, label=args.to)
    print(f"{state.capitalize()} {changed} candidate(s).")
    return 0


@project_command
def cmd_export(store: Store, args: argparse.Namespace) -> int:
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
    with Progress("export") as update:
        n = export_dataset(store, Path(args.out), update)
    print(f"Exported {n} image(s) and manifest.csv to {args.out}.")
    return 0


def _select(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", nargs="*", type=int, help="candidate ids")
    p.add_argument("--class", dest="label", help="every undecided candidate of this class")
    p.add_argument("--all", action="store_true", help="every undecided candidate")
    p.add_argument("--to", help="also move them to this class")


def register(sub: Subparsers) -> None:
    s = sub.add_parser("import", help="import a folder, a zip, or a CSV of image URLs")
    s.add_argument("kind", choices=("folder", "zip", "urls"))
    s.add_argument("path")
    s.add_argument("--class", dest="label", help="label for bare URLs (urls only)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("candidates", help="list, accept, reject or reset search candidates")
    cs = s.add_subparsers(dest="cand_cmd", required=True)
    c = cs.add_parser("list")
    c.add_argument("--class", dest="label")
    c.add_argument("--state", choices=CANDIDATE_STATES)
    c.add_argument("--query")
    c.add_argument("--limit", type=int)
    c.add_argument("--json", action="store_true")
    for name in ("accept", "reject", "reset"):
        _select(cs.add_parser(name))
    s.set_defaults(func=cmd_candidates)

    s = sub.add_parser("search", help="search images for every class (or one) and add them as candidates")
    SearchJob.add_arguments(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("download", help="download accepted candidates")
    DownloadJob.add_arguments(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("export", help="export the dataset (zip) or the current model (pkl)")
    s.add_argument("what", choices=("dataset", "model"))
    s.add_argument("out", metavar="OUT")
    s.add_argument("--run", help="with `model`: this run instead of the current one")
    s.set_defaults(func=cmd_export)
