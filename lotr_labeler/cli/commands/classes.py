"""``classes list|add|set|rename|rm``."""

from __future__ import annotations

import argparse
from typing import Any

from lotr_labeler.cli.context import Subparsers, project_command
from lotr_labeler.cli.output import print_json, table
from lotr_labeler.store import Store


def _split_names(raw: str | None) -> list[str] | None:
    return None if raw is None else [n for n in raw.split(",")]


@project_command
def cmd_classes(store: Store, args: argparse.Namespace) -> int:
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
            print_json(rows)
        else:
            table([{**r, "names": ", ".join(r["names"])} for r in rows], ["id", "name", "images", "template", "names"])
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


def register(sub: Subparsers) -> None:
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
