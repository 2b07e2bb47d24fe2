"""A button that unfolds a list of lines, in the browser: the pages' History.

Why not ``st.popover``: its element loads Streamlit's popover code (a lazy chunk shared with the
tooltips of ``help=``), ~0.1 s of a 2-core machine's page load, for a list most visits never open (see
``ui/choice.py`` for how that was measured). This is a components-v2 element, the runtime the card grid
loads anyway: the lines come with the page, and opening the list is the browser's work alone (no rerun).
Escape or a click elsewhere folds it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from streamlit.delta_generator import DeltaGenerator

from lotr_labeler.ui.element import packaged


@dataclass(frozen=True)
class Line:
    """One line of the list: its text, struck through (an undone change), and a quieter note after it."""

    text: str
    struck: bool = False
    note: str = ""


def menu(label: str, lines: Sequence[Line], key: str, *, empty: str = "", where: DeltaGenerator | None = None) -> None:
    """Draw the button ``label``; a click unfolds ``lines`` below it (``empty`` when there are none)."""
    data = {"label": label, "lines": tuple(asdict(line) for line in lines), "empty": empty}
    with where if where is not None else contextlib.nullcontext():
        packaged("menu", '<div class="mn"></div>')(key=key, data=data)
