"""Project commands: init, status, settings; and the user's weights folder (every project)."""

from __future__ import annotations

import argparse
import sys

from lotr_labeler import project as proj
from lotr_labeler.cli.context import Subparsers, project_command, root
from lotr_labeler.cli.output import emit, print_json, table
from lotr_labeler.jobs import table as jobs_table
from lotr_labeler.settings import SETTINGS, SETTINGS_BY_KEY, group_of
from lotr_labeler.store import CANDIDATE_STATES, Store
from lotr_labeler.workspace import create_project


def cmd_init(args: argparse.Namespace) -> int:
    store = create_project(root(args), args.project or proj.DEFAULT_PROJECT, args.template)
    print(f"Created project {store.name!r} at {store.root} with {len(store.classes())} class(es).")
    return 0


@project_command
def cmd_status(store: Store, args: argparse.Namespace) -> int:
    for job in jobs_table.fail_stale_jobs(store):  # a killed worker's job stops blocking new ones here
        print(f"note: {job.kind} job {job.id} was marked failed: {job.message}", file=sys.stderr)
    rows = store.status()
    totals = {k: sum(int(r[k]) for r in rows) for k in rows[0] if k not in ("id", "class")} if rows else {}
    if args.json:
        print_json({"project": store.name, "root": str(store.root), "classes": rows, "totals": totals})
    else:
        print(f"Project {store.name} ({store.root})")
        table(rows, ["class", "images", "valid", "flagged", "deleted", *CANDIDATE_STATES])
    return 0


@project_command
def cmd_settings(store: Store, args: argparse.Namespace) -> int:
    if args.settings_cmd == "set":
        value = store.set_setting(args.key, args.value)
        print(f"{args.key} = {value}")
        return 0
    if args.settings_cmd == "reset":
        print(f"{args.key} = {store.reset_setting(args.key)} (default)")
        return 0
    values = store.settings().as_dict()
    rows = [
        {"id": s.key, "group": group_of(s.key), "value": values[s.key], "default": s.default, "help": s.help}
        for s in SETTINGS
    ]
    emit(rows, ["id", "group", "value", "default", "help"], args.json)
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    """The weights folder of this user: torchvision .pth files that serve every project offline."""
    from lotr_labeler.model import backbones

    if args.weights_cmd == "set":
        print(f"Weights folder: {backbones.set_weights_dir(args.folder)} (saved in {backbones.config_path()})")
        return 0
    if args.weights_cmd == "clear":
        backbones.set_weights_dir(None)
        print("Weights folder cleared.")
        return 0
    folder = backbones.weights_dir()
    if folder is None:
        print(
            f"Weights folder: not set (set it with `lotr-labeler weights set FOLDER` or ${backbones.WEIGHTS_DIR_ENV})."
        )
    else:
        found = {arch: backbones.user_weights_file(arch) for arch in backbones.RESNETS}
        print(f"Weights folder: {folder}")
        for arch, path in found.items():
            print(f"  {arch}: {path or 'no ' + ' / '.join(backbones.TORCHVISION_FILES[arch])}")
    print(f"Bundled: {backbones.BUNDLED} ImageNet weights from {backbones.BUNDLED_SOURCE}; no download needed.")
    return 0


def register(sub: Subparsers) -> None:
    s = sub.add_parser("init", help="create a project")
    s.add_argument("--template", default="lotr", choices=sorted(proj.TEMPLATES))
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("status", help="per-class counts")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("settings", help="list or set project settings")
    cs = s.add_subparsers(dest="settings_cmd", required=True)
    c = cs.add_parser("list")
    c.add_argument("--json", action="store_true")
    c = cs.add_parser("set")
    c.add_argument("key", choices=list(SETTINGS_BY_KEY))
    c.add_argument("value")
    c = cs.add_parser("reset", help="forget a stored value: the setting follows its default again")
    c.add_argument("key", choices=list(SETTINGS_BY_KEY))
    s.set_defaults(func=cmd_settings)

    s = sub.add_parser(
        "weights", help="the folder of torchvision weights files that serves every project of this user offline"
    )
    cs = s.add_subparsers(dest="weights_cmd", required=True)
    cs.add_parser("show", help="the folder and the ResNet files found in it")
    c = cs.add_parser("set", help="save the folder (it holds e.g. resnet18-f37072fd.pth)")
    c.add_argument("folder")
    cs.add_parser("clear", help="forget the saved folder")
    s.set_defaults(func=cmd_weights)
