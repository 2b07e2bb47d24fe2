"""Widgets that several pages show: the "All" filter, Undo + History, and the pieces of an image card."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from lotr_labeler.imaging import thumbnail
from lotr_labeler.progress import Progress, Report
from lotr_labeler.store import ImageRow, Store
from lotr_labeler.store.history import describe_origin
from lotr_labeler.ui.choice import choice
from lotr_labeler.ui.context import act, error_boundary, project_store
from lotr_labeler.ui.menu import Line, menu

ALL = "All"
HISTORY = "history"  # the History list's element key


def all_select(
    label: str,
    options: Sequence[str],
    key: str,
    *,
    where: DeltaGenerator | None = None,
    on_change: Callable[..., None] | None = None,
    args: tuple[Any, ...] = (),
) -> str | None:
    """A filter with "All" first: the chosen option, or None for All.

    A remembered choice that no longer exists (a renamed class) falls back to All.
    """
    chosen = choice(label, [ALL, *options], key, on_change=on_change, args=args, where=where)
    return None if chosen in (None, ALL) else str(chosen)


# Less room around the page so the card grid starts above the fold at 1000x800 (Streamlit's defaults:
# 6rem above the title, 5rem at the sides of a wide page, a 2.75rem title). Its element is hidden.
COMPACT_CSS = """
[data-testid="stMainBlockContainer"] { padding-top: 3.2rem; padding-left: 1.5rem; padding-right: 1.5rem; }
[data-testid="stMainBlockContainer"] h1 { font-size: 1.9rem; padding: 0 0 0.25rem; }
.st-key-page_style { display: none; }
"""
_page_style: Any = None


def compact_page() -> None:
    """Tighter margins and a smaller title: a labeling surface, the grid high on the page.

    The style comes as a components-v2 element (not ``st.html``) and first on the page: the browser then
    fetches Streamlit's component code (about 190 KB, which the card grid needs) while the rest of the
    page arrives, instead of after the grid's element, and skips the HTML sanitizer ``st.html`` loads."""
    global _page_style
    if _page_style is None:
        _page_style = st.components.v2.component(
            "lotr_labeler.page", html="<span></span>", css=COMPACT_CSS, isolate_styles=False
        )
    _page_style(key="page_style")


def undo_and_history(
    store: Store, limit: int = 15, *, shortcut: str | None = None, where: Sequence[DeltaGenerator] | None = None
) -> None:
    """The Undo button (optionally with a keyboard ``shortcut``) and the History list of the newest changes
    (undone ones struck through); ``where``: the two columns to draw them in."""
    top = list(where) if where is not None else st.columns([1, 1.25, 3.75])  # "History" whole at 1000 px
    top[0].button(
        "↩ Undo",
        key="undo",
        shortcut=shortcut,
        help=f"Undo this window's newest change, whatever its kind ({shortcut})"
        if shortcut
        else "Undo this window's newest change (other windows and the CLI undo their own)",
        on_click=act,
        args=(Store.undo,),
        kwargs={"success": "{result}"},
        width="stretch",
    )
    history_menu(store, limit, where=top[1])


def history_menu(store: Store, limit: int = 15, *, where: DeltaGenerator | None = None) -> None:
    """The History list alone (a page whose grid has the Undo): the newest changes, undone ones struck through,
    each with its time and, when another window or the CLI made it, who did.

    Drawn in a fragment of its own that unfolding the list reruns: the page's grid keys rerun only the
    grid, another window or the CLI change the project too, and the list drawn with the page missed those."""
    with where if where is not None else contextlib.nullcontext():
        _history(store.name, limit)


@st.fragment
def _history(project: str, limit: int) -> None:
    with project_store(project) as store, error_boundary():
        mine = store.author()
        lines = [
            Line(
                e.summary,
                struck=e.undone,
                note=e.at[11:16] + ("" if e.origin in (mine, None) else f" · {describe_origin(e.origin, mine)}"),
            )
            for e in store.history(limit)
        ]
        menu("History", lines, HISTORY, empty="No changes yet.", on_open=_opened)


def _opened() -> None:
    """Nothing to do before the fragment's rerun: it reads the history afresh."""


def image_thumb(store: Store, img: ImageRow, size: int) -> None:
    """An image's cached thumbnail, or a warning when its file is gone."""
    try:
        st.image(str(thumbnail(store.path(img), store.cache_dir, img.sha256, size)), width="stretch")
    except OSError:
        st.warning(f"File missing: {img.relpath}")


def label_select(label: str, classes: list[str], current: str, key: str, fn: Callable[..., Any], *args: Any) -> None:
    """A collapsed class picker that runs ``fn(store, *args)`` through ``act`` when changed.

    Key it by the item's class id, so a change makes a new widget that is never stale.
    """
    choice(
        label,
        classes,
        key,
        index=classes.index(current) if current in classes else 0,
        label_visibility="collapsed",
        on_change=act,
        args=(fn, *args),
    )


def restore_button(key: str, image_id: int) -> None:
    st.button("Restore", key=key, on_click=act, args=(Store.restore_images, [image_id]))


def progress_bar(text: str) -> Report:
    """A progress bar and the ``Report`` callback that fills it (imports, exports)."""
    bar = st.progress(0.0, text=text)

    def update(p: Progress) -> None:
        bar.progress(p.fraction if p.total else 1.0, text=f"{p.done}/{p.total}")

    return update


def confusion_styler(cm: Any) -> Any:
    """A confusion matrix (a pandas DataFrame) shaded on one colour scale for the whole table: an
    off-diagonal 1 is lighter than a diagonal 5 (pandas shades each column on its own scale by default)."""
    return cm.style.background_gradient(cmap="Blues", axis=None)
