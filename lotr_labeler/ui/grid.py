"""Paging for the thumbnail grids."""

from __future__ import annotations

import math

import streamlit as st

# The paging keys of a page whose pager drives its card grid (Search has its own pager with the same
# keys): Shift+arrows extend the grid's selection, so the page keys are Shift+PageUp/PageDown.
PAGE_KEYS = (("Shift + PageDown / Shift + PageUp", "next / previous page"),)


def pager(total: int, page_size: int, key: str, gone: int = 0, keys: bool = False) -> int:
    """Page picker; returns the offset of the page shown. Keeps the page (and its offset) in the session.

    ``gone``: cards of the page shown that have left the listing since (decided out of the filter, kept
    in place on the grid): Next moves on by that many fewer, so no card is skipped. ``keys``: Next and
    Previous answer Shift+PageDown / Shift+PageUp (one pager per page may; list ``PAGE_KEYS`` in the grid's help)."""
    pages = max(1, math.ceil(total / page_size))
    state_key, off_key = f"_page_{key}", f"_off_{key}"
    page = min(int(st.session_state.get(state_key, 1)), pages)
    offset = int(st.session_state.get(off_key, (page - 1) * page_size))
    if offset >= total:  # the listing shrank under the page: its last page
        offset, page = (pages - 1) * page_size, pages
    step = max(1, page_size - gone)
    if pages > 1 or offset > 0:
        c1, c2, c3 = st.columns([1.4, 1.2, 1.4])  # a button and its key hint whole at 1000 px
        prev, nxt = ("Shift+PageUp", "Shift+PageDown") if keys else (None, None)
        if c1.button("◀ Previous", key=f"prev_{key}", disabled=offset <= 0, width="stretch", shortcut=prev):
            offset, page = max(0, offset - page_size), max(1, page - 1)
        if c3.button("Next ▶", key=f"next_{key}", disabled=offset + step >= total, width="stretch", shortcut=nxt):
            offset, page = offset + step, page + 1
        # Plain markdown: raw HTML here would load the browser's 190 KB HTML-in-markdown parser on every page.
        c2.markdown(f"page {page} of {pages} · {total} items", text_alignment="center")
    st.session_state[state_key] = page
    st.session_state[off_key] = offset
    return offset


def page_view(key: str, *parts: object) -> str:
    """The grid's ``view`` token for pager ``key``: the filters given and the page turned to."""
    return "|".join(
        [*map(str, parts), str(st.session_state.get(f"_page_{key}")), str(st.session_state.get(f"_off_{key}"))]
    )


def reset_page(key: str) -> None:
    st.session_state.pop(f"_page_{key}", None)
    st.session_state.pop(f"_off_{key}", None)
