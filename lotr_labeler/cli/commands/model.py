"""Model commands: train, import-model, runs, predict, serve."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lotr_labeler import project as proj
from lotr_labeler import signals
from lotr_labeler.cli.context import Subparsers, cli_path, open_store, project_command, root
from lotr_labeler.cli.output import ProgressBar, emit, print_json, table
from lotr_labeler.collect.importers import import_folder, import_zip
from lotr_labeler.errors import InvalidInput, LabelerError
from lotr_labeler.jobs.specs import TrainJob
from lotr_labeler.jobs.worker import JobRun
from lotr_labeler.settings import Settings
from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project, list_projects, open_project

TRUST = "a model.pkl is a pickle and loading it runs its code: only give files you trust"


def _bundle_store(args: argparse.Namespace, bundle: Path) -> Store:
    """The project a dataset bundle (export zip or its unzipped folder) is imported into."""
    data = root(args)
    name = args.project or proj.validate_name(bundle.stem if bundle.suffix else bundle.name, "Project name")
    store = open_project(data, name) if name in list_projects(data) else create_project(data, name, "empty")
    if bundle.is_file():
        report = import_zip(store, bundle)
    elif (bundle / "images").is_dir():
        report = import_folder(store, bundle / "images")
    else:
        report = import_folder(store, bundle)
    print(f"Bundle {bundle}: {report.summary()}", file=sys.stderr)
    return store


def cmd_train(args: argparse.Namespace) -> int:
    from lotr_labeler.model import distributed
    from lotr_labeler.model import train as tr
    from lotr_labeler.model.dataset import check_dataset
    from lotr_labeler.model.learner import weights_line

    spec = TrainJob.from_args(args)
    params = spec.params()
    if spec.distributed and distributed.process_rank() > 0:
        # Another rank of `accelerate launch`: rank 0 imports the bundle and records the run.
        with open_store(args) as store:
            distributed.train_replica(store, params)
        return 0
    with _bundle_store(args, Path(spec.bundle)) if spec.bundle else open_store(args) as store:
        check_dataset(store)  # refuse before the 10 s fastai import
        print(weights_line(params), file=sys.stderr)
        with JobRun(store, TrainJob.kind, spec.record(), args.job) as job:
            # The postfix: "head epoch (body frozen), batch 2/5", then "epoch 1/3, …"
            with ProgressBar("train", "batch", job, lambda p: p.message) as bar:
                run = spec.run(store, bar, job.cancel, job_id=job.job.id)
            job.finish_if(run.state == "cancelled", tr.outcome(run), {"run_id": run.id, **run.metrics})
        if run.state == "cancelled":
            if signals.received() is None:  # after Ctrl-C the CLI says "interrupted" once
                print(f"error: training cancelled (run {run.id}).", file=sys.stderr)
            return 1
        m = run.metrics
        if args.json:
            print_json({"id": run.id, "path": str(run.model_path), **m})
        else:
            print(f"Run {run.id}: error rate {m.get('error_rate', 0):.3f} in {m.get('duration_s')} s.")
            print(f"Model: {spec.out or run.model_path}")
    return 0


@project_command
def cmd_import_model(store: Store, args: argparse.Namespace) -> int:
    from lotr_labeler.model.record import import_model

    print(
        "warning: a model.pkl is a pickle and loading it runs code from it: only import files you made.",
        file=sys.stderr,
    )
    run = import_model(store, Path(args.path))
    acc = run.metrics.get("accuracy")
    shown = f"{acc:.3f}" if isinstance(acc, float) else "n/a (no validation image of its classes)"
    print(f"Imported {args.path} as run {run.id}; validation accuracy here {shown}.")
    return 0


@project_command
def cmd_runs(store: Store, args: argparse.Namespace) -> int:
    from lotr_labeler.model import runs

    if args.runs_cmd == "current":
        run = runs.set_current(store, args.run)
        print(f"Run {run.id} is now current (Review and Predict use it).")
    elif args.runs_cmd == "rm":
        runs.delete_run(store, args.run, force=args.force)
        print(f"Deleted run {args.run} (a run is not in the undo history).")
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
        if not args.json:  # the table reads 0.333, not 0.33333333333333337 (JSON keeps every digit)
            rows = [
                {**r, "error_rate": _rounded(r["error_rate"]), "duration_s": _rounded(r["duration_s"], 1)} for r in rows
            ]
        emit(rows, ["id", "state", "current", "arch", "epochs", "size", "error_rate", "duration_s"], args.json)
    return 0


def _predict_model(args: argparse.Namespace) -> tuple[Any, Settings]:
    """The model to predict with (``--model``, ``--run`` or the current run) and the settings."""
    from lotr_labeler.model.predict import default_settings, model_from_path, resolve_model

    if args.model:
        if args.run:
            raise InvalidInput("Give --model PATH or --run RUN_ID, not both.")
        model = model_from_path(args.model)
        try:
            with open_store(args) as store:
                return model, store.settings()
        except LabelerError:
            if args.project:
                raise
            return model, default_settings()  # a model file needs no project
    with open_store(args) as store:
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
        print_json(rows)
    else:
        print(f"Model: {model.label}")
        table([{**r, "probability": f"{r['probability']:.3f}"} for r in rows], ["id", "top", "probability", "path"])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from lotr_labeler.api import serve, serve_token

    model = Path(args.model) if args.model else None
    token, generated = serve_token(args.host, args.token, args.no_auth)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}/"

    def announce() -> None:  # only once the port is free and the model found
        print(
            f"Prediction API on {url} (phone page GET /, POST /predict, GET /health, GET /classes). Ctrl-C stops.",
            file=sys.stderr,
        )
        if token is not None:
            where = "generated for this start" if generated else "from --token"
            print(f"Access token ({where}): {token}", file=sys.stderr)
            print(f"On a phone open {url}#token={token} (0.0.0.0: use this machine's LAN address).", file=sys.stderr)

    def loading() -> None:
        print("Loading the model (a few seconds; the API answers once its address is printed)…", file=sys.stderr)

    serve(
        root(args),
        args.project,
        model,
        host=args.host,
        port=args.port,
        cors_origins=args.cors_origin,
        token=token,
        announce=announce,
        loading=loading,
    )
    return 0


def register(sub: Subparsers) -> None:
    s = sub.add_parser("train", help="fine-tune a classifier on the project's images")
    TrainJob.add_arguments(s)
    s.add_argument("--json", action="store_true")
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
    c.add_argument("--force", action="store_true", help="delete it also when it is the current model")
    s.set_defaults(func=cmd_runs)

    s = sub.add_parser("predict", help="classify image files or URLs with a trained model")
    s.add_argument("images", nargs="+", metavar="IMAGE", help="image files or http(s) URLs")
    s.add_argument("--model", metavar="PATH", type=cli_path, help=f"use this model file instead of a run ({TRUST})")
    s.add_argument("--run", metavar="RUN_ID", help="use this finished run instead of the current one")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("serve", help="run the JSON prediction API (POST /predict) with uvicorn")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument(
        "--model", metavar="PATH", type=cli_path, help=f"serve this model file, not the current run ({TRUST})"
    )
    s.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages of this origin (e.g. https://me.github.io, or *) call the API from a browser; repeatable",
    )
    s.add_argument(
        "--token", help="require this token (header Authorization: Bearer T); default: generated off loopback"
    )
    s.add_argument(
        "--no-auth", action="store_true", help="serve a non-loopback address without a token (trusted networks only)"
    )
    s.set_defaults(func=cmd_serve)


def _rounded(value: Any, digits: int = 3) -> Any:
    return round(value, digits) if isinstance(value, float) else value
