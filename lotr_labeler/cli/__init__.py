"""The `lotr-labeler` command line."""

from lotr_labeler.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
