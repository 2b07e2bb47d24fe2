"""Paging for the thumbnail grids."""

from __future__ import annotations

import math

import streamlit as st


def pager(total: int, page_size: int, key: str) -> int:
    """Page picker; returns the offset of the page shown. Keeps the page in the session."""
    pages = max(1, math.ceil(total / page_size))
    state_key = f"_page_{key}"
    page = min(int(st.session_state.get(state_key, 1)), pages)
    if pages > 1:
        c1, c2, c3 = st.columns([1, 2, 1])
        if c1.button("◀ Previous", key=f"prev_{key}", disabled=page <= 1, width="stretch"):
            page -= 1
        if c3.button("Next ▶", key=f"next_{key}", disabled=page >= pages, width="stretch"):
            page += 1
        c2.markdown(
            f"<div style='text-align:center'>page {page} of {pages} · {total} items</div>", unsafe_allow_html=True
        )
    st.session_state[state_key] = page
    return (page - 1) * page_size


def reset_page(key: str) -> None:
    st.session_state.pop(f"_page_{key}", None)
