"""A button that unfolds a list of lines, in the browser: the pages' History.

Why not ``st.popover``: its element loads Streamlit's popover code (a lazy chunk shared with the
tooltips of ``help=``), ~0.1 s of a 2-core machine's page load, for a list most visits never open (see
``ui/choice.py`` for how that was measured). This is a components-v2 element, the runtime the card grid
loads anyway: the lines come with the page and show at once when it opens. With ``on_open`` it also
sends an ``opened`` trigger then, so that a caller drawing it in a fragment redraws it with fresh lines
(that fragment's run alone): what changed since the page was drawn shows. Escape or a click elsewhere
folds it, in the browser alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from streamlit.delta_generator import DeltaGenerator

from lotr_labeler.ui.element import packaged


@dataclass(frozen=True)
class Line:
    """One line of the list: its text, struck through (an undone change), and a quieter note after it."""

    text: str
    struck: bool = False
    note: str = ""


def menu(
    label: str,
    lines: Sequence[Line],
    key: str,
    *,
    empty: str = "",
    on_open: Callable[[], None] | None = None,
    where: DeltaGenerator | None = None,
) -> None:
    """Draw the button ``label``; a click unfolds ``lines`` below it (``empty`` when there are none).
    ``on_open``: each unfolding also sends a trigger, and this runs before the rerun it causes."""
    data = {"label": label, "lines": tuple(asdict(line) for line in lines), "empty": empty, "refresh": bool(on_open)}
    element = packaged("menu", '<div class="mn"></div>')
    with where if where is not None else contextlib.nullcontext():
        if on_open is None:
            element(key=key, data=data)
        else:
            element(key=key, data=data, on_opened_change=on_open)
