"""The ``lotr-labeler`` command line (also ``python -m lotr_labeler``).

Exit status 0 on success; 1 with one ``error:`` line on stderr for a domain error;
2 for a usage error; 130 after Ctrl-C and 143 after SIGTERM (``lotr_labeler.signals``).
``--json`` listings print one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from lotr_labeler import project as proj
from lotr_labeler import signals
from lotr_labeler.cli.commands import classes, collect, images, model, project, review
from lotr_labeler.cli.context import Handler
from lotr_labeler.errors import LabelerError
from lotr_labeler.explain import explain_known
from lotr_labeler.workspace import absolute

COMMANDS = (project, classes, collect, images, review, model)


def _path(value: str) -> str:
    """A path argument made absolute where it enters (fastai would join a relative one onto learn.path)."""
    return str(absolute(value))


def _global_options(parser: argparse._ActionsContainer, default: object = None) -> None:
    parser.add_argument("--data", type=_path, default=default, help=f"data folder (default ${proj.DATA_ENV} or ./data)")
    parser.add_argument("--project", default=default, help="project name (default: the only or last used project)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=False if default is None else default, help="log what happens"
    )


class _CommandParser(argparse.ArgumentParser):
    """A command's parser (and its subcommands', which argparse makes of the same class): it takes the
    global options after the command too, ``status --data D`` as people type them, not only before it.
    Unset, they leave the value from before the command (argparse copies only what a subparser set)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _global_options(self.add_argument_group("global options (also before the command)"), argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lotr-labeler", description=__doc__.splitlines()[0] if __doc__ else "")
    _global_options(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser)
    for module in COMMANDS:
        module.register(sub)
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
    with signals.handled():
        status = _run(func, args)
        signum = signals.received()
    if signum is not None:
        print(signals.message(signum), file=sys.stderr, flush=True)
        status = signals.exit_code(signum)
        if argv is None:  # the real command line: threads still blocked in the network must not hold the exit
            sys.stdout.flush()
            os._exit(status)
    return status


def _run(func: Handler, args: argparse.Namespace) -> int:
    """The one error boundary."""
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
    except Exception as exc:
        message = explain_known(exc)  # a library error it knows (torch, PIL, httpx, OSError) in one line
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if signals.received() is None:  # raised by something else than our handler: say so all the same
            print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
