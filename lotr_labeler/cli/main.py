"""The ``lotr-labeler`` command line (also ``python -m lotr_labeler``).

Exit status 0 on success; 1 with one ``error:`` line on stderr for a domain error;
2 for a usage error. ``--json`` listings print one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lotr_labeler import project as proj
from lotr_labeler.collect.export import export_dataset
from lotr_labeler.collect.importers import ImportReport, import_folder, import_urls, import_zip
from lotr_labeler.errors import InvalidInput, LabelerError
from lotr_labeler.jobs import worker as jobs
from lotr_labeler.settings import SETTINGS, SETTINGS_BY_KEY, Settings
from lotr_labeler.store import CANDIDATE_STATES, SPLITS, Store
from lotr_labeler.workspace import absolute, create_project, list_projects, open_project

Handler = Callable[[argparse.Namespace], int]


def _print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


def _bar(desc: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A console progress bar on stderr, fed as ``(done, total)``."""
    bar: Any = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="file", file=sys.stderr, leave=False, disable=None)
        bar.n = done
        bar.refresh()

    def close() -> None:
        if bar is not None:
            bar.close()

    return update, close


def _root(args: argparse.Namespace) -> Path:
    """The data root, absolute (also a relative $LOTR_LABELER_DATA or the default ./data)."""
    return absolute(proj.data_root(args.data))


def _store(args: argparse.Namespace) -> Store:
    return open_project(_root(args), args.project)


def _split_names(raw: str | None) -> list[str] | None:
    return None if raw is None else [n for n in raw.split(",")]


# -- commands ----------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    store = create_project(_root(args), args.project or proj.DEFAULT_PROJECT, args.template)
    print(f"Created project {store.name!r} at {store.root} with {len(store.classes())} class(es).")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _store(args) as store:
        rows = store.status()
        totals = {k: sum(int(r[k]) for r in rows) for k in rows[0] if k not in ("id", "class")} if rows else {}
        if args.json:
            _print_json({"project": store.name, "root": str(store.root), "classes": rows, "totals": totals})
        else:
            print(f"Project {store.name} ({store.root})")
            _table(rows, ["class", "images", "valid", "flagged", "deleted", *CANDIDATE_STATES])
    return 0


def cmd_classes(args: argparse.Namespace) -> int:
    with _store(args) as store:
        action = args.classes_cmd
        if action == "list":
            rows: list[dict[str, Any]] = [
                {
                    "id": c.id,
                    "name": c.name,
                    "names": list(c.names),
                    "template": c.template,
                    "queries": c.queries,
                    "images": store.count(c.name),
                }
                for c in store.classes()
            ]
            if args.json:
                _print_json(rows)
            else:
                _table(
                    [{**r, "names": ", ".join(r["names"])} for r in rows], ["id", "name", "images", "template", "names"]
                )
        elif action == "add":
            c = store.add_class(args.name, _split_names(args.names) or (), args.template)
            print(f"Added class {c.name!r}.")
        elif action == "set":
            c = store.update_class(args.name, names=_split_names(args.names), template=args.template)
            print(f"Updated class {c.name!r}: queries {c.queries}.")
        elif action == "rename":
            c = store.rename_class(args.old, args.new)
            print(f"Renamed class {args.old!r} to {c.name!r}.")
        elif action == "rm":
            moved = store.delete_class(args.name, force=args.force)
            print(f"Deleted class {args.name!r}; {moved} image(s) moved to the trash (undo restores them).")
    return 0


def _report(report: ImportReport, as_json: bool) -> int:
    if as_json:
        _print_json(report.as_dict())
        return 0
    print(report.summary())
    for item, reason in report.rejected:
        print(f"  rejected {item}: {reason}", file=sys.stderr)
    for item, existing in report.duplicates:
        print(f"  duplicate {item}: same as image {existing}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.path)
    with _store(args) as store:
        update, close = _bar(f"import {args.kind}")
        try:
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
        finally:
            close()
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


def cmd_candidates(args: argparse.Namespace) -> int:
    with _store(args) as store:
        if args.cand_cmd == "list":
            rows = store.candidates(args.label, state=args.state, query=args.query, limit=args.limit)
            if args.json:
                _print_json([asdict(r) for r in rows])
            else:
                _table([asdict(r) for r in rows], ["id", "label", "state", "query", "image_url", "error"])
            return 0
        state = {"accept": "accepted", "reject": "rejected", "reset": "pending"}[args.cand_cmd]
        # Bulk selections act on undecided candidates, plus failed ones for a reset.
        from_states = ("pending", "failed") if state == "pending" else ("pending",)
        ids = _candidate_ids(store, args, from_states)
        changed = store.decide(ids, state, label=args.to)
        print(f"{state.capitalize()} {changed} candidate(s).")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    with _store(args) as store:
        rows = [
            {**asdict(r), "path": str(store.path(r))}
            for r in store.images(
                args.label, split=args.split, source=args.source, deleted=args.deleted, limit=args.limit
            )
        ]
        if args.json:
            _print_json(rows)
        else:
            _table(rows, ["id", "label", "split", "source", "flags", "path"])
    return 0


def cmd_relabel(args: argparse.Namespace) -> int:
    with _store(args) as store:
        n = store.relabel([int(i) for i in args.ids], args.label)
        print(f"Relabeled {n} image(s) to {store.get_class(args.label).name!r}.")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _store(args) as store:
        n = store.delete_images(int(i) for i in args.ids)
        print(f"Deleted {n} image(s) (moved to the trash; `undo` restores).")
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    with _store(args) as store:
        print(store.undo())
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with _store(args) as store:
        rows = [asdict(e) for e in store.history(args.limit)]
        if args.json:
            _print_json(rows)
        else:
            _table(rows, ["id", "at", "kind", "summary", "undone"])
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from lotr_labeler.model import embed
    from lotr_labeler.review import scoring as review

    with _store(args) as store:
        if not args.cached:
            backbone = embed.resolve_backbone(
                store, args.backbone, pretrained=not args.no_pretrained, weights=args.weights, size=args.size
            )
            # --compute is the background job the Review page starts; a listing computes in the foreground.
            job = jobs.JobRun(store, "review", {"backbone": backbone.id}, args.job) if args.compute else None
            with job or contextlib.nullcontext():
                update, close = _bar("embed")

                def progress(done: int, total: int) -> None:
                    update(done, total)
                    if job is not None:
                        p = {"done": done, "total": total, "backbone": backbone.describe()}
                        job.update(p, f"embedding {done}/{total} image(s)", force=done == total)

                try:
                    embedded, fit = review.refresh(
                        store, backbone, progress=progress, should_stop=job.cancel.is_set if job else None
                    )
                finally:
                    close()
                if fit is None:
                    if job is not None:
                        job.finish("cancelled", embedded.summary())
                    print(f"error: {embedded.summary()}", file=sys.stderr)
                    return 1
                if job is not None:
                    job.finish("done", fit.summary(), {"embedded": embedded.computed, "scored": fit.info.scored})
            print(embedded.summary(), file=sys.stderr)
            print(fit.summary(), file=sys.stderr)
            if args.compute:
                return 0
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
        if args.json:
            _print_json(rows)
        else:
            _table(
                [{**r, "flags": " ".join(r["flags"])} for r in rows],
                ["id", "given", "predicted", "confidence", "score", "split", "flags", "path"],
            )
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    with _store(args) as store:
        if args.settings_cmd == "set":
            value = store.set_setting(args.key, args.value)
            print(f"{args.key} = {value}")
            return 0
        values = store.settings().as_dict()
        rows = [{"id": s.key, "value": values[s.key], "default": s.default, "help": s.help} for s in SETTINGS]
        if args.json:
            _print_json(rows)
        else:
            _table(rows, ["id", "value", "default", "help"])
    return 0


def _none_if_any(value: str | None) -> str | None:
    return None if value in (None, "", "any") else value


def search_options(args: argparse.Namespace) -> dict[str, Any]:
    """The search options of the CLI arguments, as SearchOptions fields."""
    return {
        "region": args.region,
        "safesearch": args.safesearch,
        "type_image": _none_if_any(args.type),
        "size": _none_if_any(args.size),
        "layout": _none_if_any(args.layout),
        "license_image": _none_if_any(args.license),
        "timelimit": _none_if_any(args.timelimit),
    }


def cmd_search(args: argparse.Namespace) -> int:
    from lotr_labeler.collect.search import SearchOptions, SearchProgress, plan_queries, run_search

    with _store(args) as store:
        settings = store.settings()
        options = SearchOptions(**search_options(args))
        planned = plan_queries(store, args.label, args.query)
        max_results = args.max or settings.search_max_results
        delay = settings.search_delay if args.delay is None else args.delay
        with jobs.JobRun(store, "search", {"queries": len(planned), "max": max_results}, args.job) as job:
            bar = tqdm(total=len(planned), desc="search", unit="query", file=sys.stderr, disable=None)

            def progress(p: SearchProgress) -> None:
                bar.n = p.index
                bar.set_postfix_str(f"{p.results_so_far} new · {p.query[:40]}")
                job.update(asdict(p), p.message)

            try:
                report = run_search(
                    store,
                    planned,
                    max_results=max_results,
                    options=options,
                    delay_s=delay,
                    progress=progress,
                    should_stop=job.cancel.is_set,
                )
            finally:
                bar.close()
            job.finish("cancelled" if job.cancel.is_set() else "done", report.summary(), report.as_dict())
        if args.json:
            _print_json(report.as_dict())
        else:
            print(report.summary())
        if report.queries and all(q.error for q in report.queries):
            print(f"error: every query failed: {report.errors[0].error}", file=sys.stderr)
            return 1
    return 0


def cmd_download(args: argparse.Namespace) -> int:

    from lotr_labeler.collect.download import DownloadProgress, download_candidates

    with _store(args) as store:
        with jobs.JobRun(store, "download", {"ids": args.ids, "retry_failed": args.retry_failed}, args.job) as job:
            bar: Any = None

            def progress(p: DownloadProgress) -> None:
                nonlocal bar
                if bar is None:
                    bar = tqdm(total=p.total, desc="download", unit="img", file=sys.stderr, disable=None)
                bar.n = p.done
                bar.set_postfix(ok=p.ok, failed=p.failed, dup=p.duplicates)
                job.update(asdict(p), p.message, force=p.done == p.total)

            try:
                report = download_candidates(
                    store,
                    args.ids or None,
                    retry_failed=args.retry_failed,
                    workers=args.workers,
                    allow_private=True if args.allow_private_hosts else None,
                    progress=progress,
                    cancel=job.cancel,
                )
            finally:
                if bar is not None:
                    bar.close()
            job.finish("cancelled" if report.cancelled else "done", report.summary(), report.as_dict())
        if args.json:
            _print_json(report.as_dict())
        else:
            print(report.summary() if report.total else "Nothing to download: accept candidates first.")
            for cid, url, reason in report.failures[:20]:
                print(f"  failed #{cid} {url}: {reason}", file=sys.stderr)
        if report.cancelled:
            print("error: download cancelled; run it again to resume.", file=sys.stderr)
            return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    with _store(args) as store:
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
        update, close = _bar("export")
        try:
            n = export_dataset(store, Path(args.out), update)
        finally:
            close()
        print(f"Exported {n} image(s) and manifest.csv to {args.out}.")
    return 0


def _bundle_store(args: argparse.Namespace) -> Store:
    """The project a dataset bundle (export zip or its unzipped folder) is imported into."""
    bundle = Path(args.bundle)
    root = _root(args)
    name = args.project or proj.validate_name(bundle.stem if bundle.suffix else bundle.name, "Project name")
    store = open_project(root, name) if name in list_projects(root) else create_project(root, name, "empty")
    if bundle.is_file():
        report = import_zip(store, bundle)
    elif (bundle / "images").is_dir():
        report = import_folder(store, bundle / "images")
    else:
        report = import_folder(store, bundle)
    print(f"Bundle {bundle}: {report.summary()}", file=sys.stderr)
    return store


def cmd_train(args: argparse.Namespace) -> int:

    from lotr_labeler.model import train as tr

    params = tr.preset(
        args.preset,
        arch=args.arch,
        epochs=args.epochs,
        size=args.size,
        batch_size=args.bs,
        lr=args.lr,
        seed=args.seed,
        find_lr=args.find_lr or None,
        pretrained=False if args.no_pretrained else None,
        weights=args.weights,
        augment=False if args.no_augment else None,
    )
    with _bundle_store(args) if args.bundle else _store(args) as store:
        tr.check_dataset(store)  # refuse before the 10 s fastai import
        with jobs.JobRun(store, "train", asdict(params), args.job) as job:
            bar = tqdm(total=100, desc="train", unit="%", file=sys.stderr, disable=None)

            def progress(p: dict[str, Any]) -> None:
                bar.n = int(100 * p["fraction"])
                bar.set_postfix_str(f"epoch {p['epoch']}/{p['epochs']} batch {p['batch']}/{p['batches']}")
                job.update(p, f"epoch {p['epoch']}/{p['epochs']}, batch {p['batch']}/{p['batches']}")

            try:
                run = tr.train_run(store, params, job_id=job.job.id, progress=progress, should_stop=job.cancel.is_set)
            finally:
                bar.close()
            m = run.metrics
            if run.state == "cancelled":
                job.finish("cancelled", f"Run {run.id} cancelled.", {"run_id": run.id})
            else:
                job.finish(
                    "done", f"Run {run.id} finished: error rate {m.get('error_rate', 0):.3f}.", {"run_id": run.id, **m}
                )
        if run.state == "cancelled":
            print(f"error: training cancelled (run {run.id}).", file=sys.stderr)
            return 1
        if args.out:
            shutil.copyfile(run.model_path, args.out)
        if args.json:
            _print_json({"id": run.id, "path": str(run.model_path), **m})
        else:
            print(f"Run {run.id}: error rate {m.get('error_rate', 0):.3f} in {m.get('duration_s')} s.")
            print(f"Model: {args.out or run.model_path}")
    return 0


def cmd_import_model(args: argparse.Namespace) -> int:
    from lotr_labeler.model.train import import_model

    print(
        "warning: a model.pkl is a pickle and loading it runs code from it: only import files you made.",
        file=sys.stderr,
    )
    with _store(args) as store:
        run = import_model(store, Path(args.path))
        acc = run.metrics.get("accuracy")
        shown = f"{acc:.3f}" if isinstance(acc, float) else "n/a (no validation image of its classes)"
        print(f"Imported {args.path} as run {run.id}; validation accuracy here {shown}.")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from lotr_labeler.model import runs

    with _store(args) as store:
        if args.runs_cmd == "current":
            run = runs.set_current(store, args.run)
            print(f"Run {run.id} is now current (Review and Predict use it).")
        elif args.runs_cmd == "rm":
            runs.delete_run(store, args.run)
            print(f"Deleted run {args.run}.")
        else:
            rows = [
                {
                    "id": r.id,
                    "state": r.state,
                    "source": r.source,
                    "current": r.is_current,
                    "error_rate": r.metrics.get("error_rate"),
                    "duration_s": r.metrics.get("duration_s"),
                    "arch": r.params.get("arch"),
                    "epochs": r.params.get("epochs"),
                    "size": r.params.get("size"),
                    "path": str(r.model_path),
                    "created_at": r.created_at,
                }
                for r in runs.list_runs(store)
            ]
            if args.json:
                _print_json(rows)
            else:
                _table(rows, ["id", "state", "current", "arch", "epochs", "size", "error_rate", "duration_s"])
    return 0


def _predict_model(args: argparse.Namespace) -> tuple[Any, Settings]:
    """The model to predict with (``--model``, ``--run`` or the current run) and the settings."""
    from lotr_labeler.model.predict import default_settings, model_from_path, resolve_model

    if args.model:
        if args.run:
            raise InvalidInput("Give --model PATH or --run RUN_ID, not both.")
        model = model_from_path(args.model)
        try:
            with _store(args) as store:
                return model, store.settings()
        except LabelerError:
            if args.project:
                raise
            return model, default_settings()  # a model file needs no project
    with _store(args) as store:
        return resolve_model(store, args.run), store.settings()


def cmd_predict(args: argparse.Namespace) -> int:
    from lotr_labeler.model.predict import Limits, decode_image, fetch_image, load_predictor, read_image_file

    model, settings = _predict_model(args)
    limits = Limits.from_settings(settings)
    images = [
        decode_image(fetch_image(item, settings), limits, item)
        if item.startswith(("http://", "https://"))
        else read_image_file(Path(item), limits)
        for item in args.images
    ]  # every input is checked before the slow model load
    results = load_predictor(model.path).predict(images)
    rows = [
        {"id": i, "path": item, **r.as_dict(), "model": model.label}
        for i, (item, r) in enumerate(zip(args.images, results, strict=True), start=1)
    ]
    if args.json:
        _print_json(rows)
    else:
        print(f"Model: {model.label}")
        _table([{**r, "probability": f"{r['probability']:.3f}"} for r in rows], ["id", "top", "probability", "path"])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from lotr_labeler.api import serve

    model = Path(args.model) if args.model else None
    print(
        f"Prediction API on http://{args.host}:{args.port} (POST /predict, GET /health, GET /classes). Ctrl-C stops.",
        file=sys.stderr,
    )
    serve(_root(args), args.project, model, host=args.host, port=args.port)
    return 0


# -- parser ------------------------------------------------------------------------------


def _path(value: str) -> str:
    """A path argument made absolute where it enters (fastai would join a relative one onto learn.path)."""
    return str(absolute(value))


def _select(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", nargs="*", type=int, help="candidate ids")
    p.add_argument("--class", dest="label", help="every undecided candidate of this class")
    p.add_argument("--all", action="store_true", help="every undecided candidate")
    p.add_argument("--to", help="also move them to this class")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lotr-labeler", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--data", type=_path, help=f"data folder (default ${proj.DATA_ENV} or ./data)")
    p.add_argument("--project", help="project name (default: the only or last used project)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("init", help="create a project")
    s.add_argument("--template", default="lotr", choices=sorted(proj.TEMPLATES))
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("status", help="per-class counts")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("classes", help="list, add, set, rename, rm classes")
    cs = s.add_subparsers(dest="classes_cmd", required=True)
    c = cs.add_parser("list")
    c.add_argument("--json", action="store_true")
    for name in ("add", "set"):
        c = cs.add_parser(name)
        c.add_argument("name")
        c.add_argument("--names", help="comma-separated search names, e.g. 'Frodo,Sam'")
        c.add_argument(
            "--template",
            default="{name}" if name == "add" else None,
            help="query template with {name}, e.g. '{name} lotr movie face'",
        )
    c = cs.add_parser("rename")
    c.add_argument("old")
    c.add_argument("new")
    c = cs.add_parser("rm")
    c.add_argument("name")
    c.add_argument("--force", action="store_true", help="also when the class has images (they go to the trash)")
    s.set_defaults(func=cmd_classes)

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

    s = sub.add_parser("images", help="list images")
    s.add_argument("images_cmd", choices=("list",))
    s.add_argument("--class", dest="label")
    s.add_argument("--split", choices=SPLITS)
    s.add_argument("--source")
    s.add_argument("--deleted", action="store_true", help="list the trash instead")
    s.add_argument("--limit", type=int)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_images)

    s = sub.add_parser("relabel", help="move images to another class")
    s.add_argument("ids", nargs="+", type=int, metavar="ID")
    s.add_argument("label", metavar="CLASS")
    s.set_defaults(func=cmd_relabel)

    s = sub.add_parser("delete", help="move images to the trash (undo restores)")
    s.add_argument("ids", nargs="+", type=int, metavar="ID")
    s.set_defaults(func=cmd_delete)

    s = sub.add_parser("undo", help="undo the last change")
    s.set_defaults(func=cmd_undo)

    s = sub.add_parser("history", help="recent changes")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_history)

    s = sub.add_parser("review", help="rank the images whose label the model doubts, worst first")
    s.add_argument("--top", type=int, default=20, help="rows to print (0: all; default 20)")
    s.add_argument("--sort", choices=("self_confidence", "margin"), default="self_confidence")
    s.add_argument("--class", dest="label", help="only images labeled with this class")
    s.add_argument("--predicted", help="only images predicted as this class")
    s.add_argument("--split", choices=SPLITS)
    s.add_argument("--flag", help="only images with this flag: any|tiny|aspect|grey|dark|light|blurry|near-duplicate")
    s.add_argument("--status", choices=("unreviewed", "reviewed", "all"), default="unreviewed")
    s.add_argument(
        "--backbone",
        choices=("auto", "run", "imagenet"),
        default="auto",
        help="embeddings from the current model's body (run) or resnet18 (imagenet); auto: run if any",
    )
    s.add_argument("--no-pretrained", action="store_true", help="resnet18 with random weights (no download)")
    s.add_argument("--weights", type=_path, help="a local torchvision resnet18 state-dict file instead of the download")
    s.add_argument("--size", type=int, help="embedding input size in px (default: the run's size or embed_size)")
    s.add_argument("--compute", action="store_true", help="compute embeddings and scores only (no listing)")
    s.add_argument("--cached", action="store_true", help="list the stored scores without recomputing anything")
    s.add_argument("--json", action="store_true")
    s.add_argument("--job", type=int, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_review)

    s = sub.add_parser("settings", help="list or set project settings")
    cs = s.add_subparsers(dest="settings_cmd", required=True)
    c = cs.add_parser("list")
    c.add_argument("--json", action="store_true")
    c = cs.add_parser("set")
    c.add_argument("key", choices=list(SETTINGS_BY_KEY))
    c.add_argument("value")
    s.set_defaults(func=cmd_settings)

    s = sub.add_parser("search", help="search images for every class (or one) and add them as candidates")
    s.add_argument("--class", dest="label", help="only this class")
    s.add_argument("--query", help="a free-text query instead of the class templates (needs --class)")
    s.add_argument("--max", type=int, help="results per query (default: setting search_max_results)")
    s.add_argument("--type", default="photo", help="photo|clipart|gif|transparent|line|any")
    s.add_argument("--size", help="Small|Medium|Large|Wallpaper")
    s.add_argument("--layout", help="Square|Tall|Wide")
    s.add_argument("--license", help="any|Public|Share|ShareCommercially|Modify|ModifyCommercially")
    s.add_argument("--safesearch", default="moderate", help="on|moderate|off")
    s.add_argument("--region", default="us-en", help="DuckDuckGo region, e.g. us-en, uk-en, wt-wt")
    s.add_argument("--timelimit", help="d|w|m|y")
    s.add_argument("--delay", type=float, help="seconds between queries (default: setting search_delay)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--job", type=int, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("download", help="download accepted candidates")
    s.add_argument("ids", nargs="*", type=int, help="only these candidates (accepted or failed)")
    s.add_argument("--workers", type=int, help="parallel downloads (default: setting download_workers)")
    s.add_argument("--allow-private-hosts", action="store_true", help="allow loopback/private addresses")
    s.add_argument("--retry-failed", action="store_true", help="also retry failed candidates")
    s.add_argument("--json", action="store_true")
    s.add_argument("--job", type=int, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("export", help="export the dataset (zip) or the current model (pkl)")
    s.add_argument("what", choices=("dataset", "model"))
    s.add_argument("out", metavar="OUT")
    s.add_argument("--run", help="with `model`: this run instead of the current one")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("train", help="fine-tune a classifier on the project's images")
    s.add_argument(
        "--preset",
        default="quick",
        choices=("quick", "standard"),
        help="quick: CPU laptop (128 px, 2 epochs); standard: GPU (224 px, 4 epochs)",
    )
    s.add_argument("--arch", choices=("resnet18", "resnet34", "resnet50"))
    s.add_argument("--epochs", type=int)
    s.add_argument("--size", type=int, help="image size in pixels")
    s.add_argument("--bs", type=int, help="batch size")
    s.add_argument("--lr", type=float, help="learning rate (default 0.002)")
    s.add_argument("--find-lr", action="store_true", help="pick the learning rate with lr_find")
    s.add_argument("--seed", type=int)
    s.add_argument("--no-pretrained", action="store_true", help="train from scratch (no ImageNet weights)")
    s.add_argument("--weights", type=_path, help="a local torchvision weights file for --arch (offline)")
    s.add_argument("--no-augment", action="store_true", help="no data augmentation")
    s.add_argument("--bundle", type=_path, help="first import this exported dataset (zip or folder) into the project")
    s.add_argument("--out", type=_path, help="also copy model.pkl here")
    s.add_argument("--json", action="store_true")
    s.add_argument("--job", type=int, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("import-model", help="register a model.pkl trained elsewhere (pickles run code!)")
    s.add_argument("path")
    s.set_defaults(func=cmd_import_model)

    s = sub.add_parser("runs", help="list runs, pick the current one, delete one")
    cs = s.add_subparsers(dest="runs_cmd", required=True)
    c = cs.add_parser("list")
    c.add_argument("--json", action="store_true")
    for name in ("current", "rm"):
        c = cs.add_parser(name)
        c.add_argument("run", metavar="RUN_ID")
    s.set_defaults(func=cmd_runs)

    trust = "a model.pkl is a pickle and loading it runs its code: only give files you trust"
    s = sub.add_parser("predict", help="classify image files or URLs with a trained model")
    s.add_argument("images", nargs="+", metavar="IMAGE", help="image files or http(s) URLs")
    s.add_argument("--model", metavar="PATH", type=_path, help=f"use this model file instead of a run ({trust})")
    s.add_argument("--run", metavar="RUN_ID", help="use this finished run instead of the current one")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("serve", help="run the JSON prediction API (POST /predict) with uvicorn")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--model", metavar="PATH", type=_path, help=f"serve this model file, not the current run ({trust})")
    s.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from lotr_labeler.fakes import install_from_env

    install_from_env()  # test hook, inert unless LOTR_LABELER_FAKE_DDGS is set
    func: Handler = args.func
    try:
        status = func(args)
        sys.stdout.flush()  # a closed pipe shows up here rather than at interpreter exit
        return status
    except BrokenPipeError:
        # The reader went away (`... --json | head`): stop quietly, as Python's docs recommend
        # (docs.python.org/3/library/signal.html#note-on-sigpipe): point stdout at devnull so
        # the final flush at exit cannot raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    except LabelerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
