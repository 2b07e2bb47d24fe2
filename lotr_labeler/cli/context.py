"""What every command shares: the data root, the project store opened once, argument types."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from lotr_labeler import project as proj
from lotr_labeler.jobs.specs import cli_path
from lotr_labeler.store import Store
from lotr_labeler.workspace import absolute, open_project

Handler = Callable[[argparse.Namespace], int]
ProjectHandler = Callable[[Store, argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

__all__ = ["Handler", "Subparsers", "cli_path", "open_store", "project_command", "root"]


def root(args: argparse.Namespace) -> Path:
    """The data root, absolute (also a relative $LOTR_LABELER_DATA or the default ./data)."""
    return absolute(proj.data_root(args.data))


def open_store(args: argparse.Namespace) -> Store:
    """The project of ``--data``/``--project`` (the only or last used one without ``--project``)."""
    return open_project(root(args), args.project)


def project_command(func: ProjectHandler) -> Handler:
    """A command run on the project's store, opened once and closed however the command ends."""

    @functools.wraps(func)
    def handler(args: argparse.Namespace) -> int:
        with open_store(args) as store:
            try:
                return func(store, args)
            finally:
                for problem in dict.fromkeys(store.move_errors):  # committed, but a file did not follow yet
                    print(f"warning: {problem}", file=sys.stderr)

    return handler
