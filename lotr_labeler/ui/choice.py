"""A pick-one widget drawn as the browser's own ``<select>`` (or a row of radio buttons): the filters of
the grid pages and the sidebar's project picker.

Why not ``st.selectbox``: its element is Streamlit's heaviest common widget to start. A page's first
selectbox makes the browser fetch, compile and render Base Web's select (a lazy chunk, styled-components
and a popper), ~0.25 s of a 2-core machine's page load, the same for one selectbox or seven (measured:
a page of the card grid alone 1.35 s, with one selectbox in the sidebar 1.62 s, with three native
selects instead 1.35 s); ``st.radio`` adds ~0.1 s the same way. This widget is a components-v2 element,
the runtime the card grid loads anyway, so it costs a page next to nothing, and a native ``<select>`` is
keyboard- and screen-reader-friendly as it is.

It behaves as ``st.selectbox`` does where the pages rely on it: the chosen option lives in
``st.session_state[key]`` (set it to choose in code; a value no longer among the options falls back to
the default), ``on_change(*args, **kwargs)`` runs before the page when the user picks, and the call
returns the chosen option. Unlike a widget's, the value outlives a visit to another page, as a filter
should. The browser sends ``{"index", "value"}`` (a trigger: one rerun per pick); the pick is matched
against the options drawn, so a list that changed meanwhile cannot pick the wrong one.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from lotr_labeler.ui.element import packaged, trigger

PREFIX = "_choice_"  # the element's own key: PREFIX + the value's key


def element_key(key: str) -> str:
    """The key of the element that draws the choice ``key`` (tests send picks to it)."""
    return PREFIX + key


def choice(
    label: str,
    options: Sequence[Any],
    key: str,
    *,
    index: int = 0,
    format_func: Callable[[Any], object] = str,
    on_change: Callable[..., None] | None = None,
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    help: str | None = None,
    label_visibility: Literal["visible", "collapsed"] = "visible",
    horizontal: bool = False,
    tabs: bool = False,
    disabled: bool = False,
    where: DeltaGenerator | None = None,
) -> Any:
    """Draw a pick-one list (``horizontal``: radio buttons in a row; ``tabs``: the row drawn as tabs, for a
    page that draws only the chosen view) and return the chosen option.

    ``options`` must not be empty; ``index`` is the default's position, shown until the user picks or
    code sets ``st.session_state[key]``."""
    if not options:
        raise ValueError(f"choice {label!r} ({key}) has no options: give at least one")
    chosen = st.session_state.get(key, options[index])
    position = _position(options, chosen)
    if position is None:  # e.g. a renamed class: back to the default
        chosen, position = options[index], index
    st.session_state[key] = chosen
    data = {
        "label": label,
        "labels": tuple(str(format_func(o)) for o in options),
        "values": tuple(str(o) for o in options),
        "index": position,
        "help": help or "",
        "hidden": label_visibility == "collapsed",
        "horizontal": horizontal or tabs,
        "tabs": tabs,
        "disabled": disabled,
    }
    on_pick = functools.partial(_picked, key, tuple(options), on_change, args, dict(kwargs or {}))
    with where if where is not None else contextlib.nullcontext():
        packaged("choice", '<div class="ch"></div>')(key=element_key(key), data=data, on_pick_change=on_pick)
    return chosen


def _position(options: Sequence[Any], value: Any) -> int | None:
    for i, option in enumerate(options):
        if option == value and type(option) is type(value):
            return i
    return None


def _picked(
    key: str,
    options: tuple[Any, ...],
    on_change: Callable[..., None] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    """The user picked: the option drawn at the index sent (or with the value's text, should the list
    have moved), then the page's ``on_change``. A pick that matches none is ignored."""
    pick = trigger(element_key(key), "pick")
    if not isinstance(pick, Mapping):
        return
    index, text = pick.get("index"), str(pick.get("value"))
    if isinstance(index, int) and 0 <= index < len(options) and str(options[index]) == text:
        picked = options[index]
    else:
        found = [o for o in options if str(o) == text]
        if not found:
            return
        picked = found[0]
    if st.session_state.get(key) == picked:
        return
    st.session_state[key] = picked
    if on_change is not None:
        on_change(*args, **kwargs)
