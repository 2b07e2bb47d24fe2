"""Image commands: images list, relabel, delete, undo, history."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from lotr_labeler.cli.context import Subparsers, project_command
from lotr_labeler.cli.output import emit
from lotr_labeler.store import SPLITS, Store
from lotr_labeler.store.history import describe_origin


@project_command
def cmd_images(store: Store, args: argparse.Namespace) -> int:
    rows = [
        {**asdict(r), "path": str(store.path(r))}
        for r in store.images(args.label, split=args.split, source=args.source, deleted=args.deleted, limit=args.limit)
    ]
    emit(rows, ["id", "label", "split", "source", "flags", "path"], args.json)
    return 0


@project_command
def cmd_relabel(store: Store, args: argparse.Namespace) -> int:
    n = store.relabel([int(i) for i in args.ids], args.label)
    print(f"Relabeled {n} image(s) to {store.get_class(args.label).name!r}.")
    return 0


@project_command
def cmd_delete(store: Store, args: argparse.Namespace) -> int:
    n = store.delete_images(int(i) for i in args.ids)
    print(f"Deleted {n} image(s) (moved to the trash; `undo` restores).")
    return 0


@project_command
def cmd_undo(store: Store, args: argparse.Namespace) -> int:
    event = store.undo_change(args.event)
    print(f"Undid #{event.id}: {event.summary}.")
    return 0


@project_command
def cmd_history(store: Store, args: argparse.Namespace) -> int:
    mine = store.author()
    rows = [{**asdict(e), "by": describe_origin(e.origin, mine)} for e in store.history(args.limit)]
    emit(rows, ["id", "at", "kind", "summary", "undone", "by"], args.json)
    return 0


def register(sub: Subparsers) -> None:
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

    s = sub.add_parser("undo", help="undo your last change (this terminal's), or --event N")
    s.add_argument("--event", type=int, metavar="N", help="undo change N instead (`history` lists them)")
    s.set_defaults(func=cmd_undo)

    s = sub.add_parser("history", help="recent changes")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_history)
