"""A keyboard cursor over a grid of cards: the card that single-key shortcuts act on.

The focused card's id lives in session state under a page's key, so it survives reruns and the
card fragments; when it is not on the current page any more (decided under a "pending" filter,
another page), the first card is focused. The card's container (``st.container(key=...)``) is
highlighted with a style rule, since Streamlit has no focus state of its own for containers.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st


def focused(key: str, ids: Sequence[int]) -> int | None:
    """The focused id among ``ids``: the remembered one, else the first (None: no cards)."""
    if not ids:
        return None
    current = st.session_state.get(key)
    return current if current in ids else ids[0]


def step(key: str, ids: Sequence[int], delta: int) -> None:
    """Move the focus ``delta`` cards along ``ids`` (stops at the ends). A button callback."""
    current = focused(key, ids)
    if current is None:
        return
    index = min(max(list(ids).index(current) + delta, 0), len(ids) - 1)
    st.session_state[key] = ids[index]


def advance(key: str, ids: Sequence[int], done: int) -> None:
    """After acting on ``done``: focus the card after it (the one before when it was last)."""
    order = list(ids)
    if done not in order:
        return
    i = order.index(done)
    rest = order[i + 1 :] or order[:i][-1:]
    st.session_state[key] = rest[0] if rest else done


def highlight(container_key: str) -> None:
    """Outline the container made with ``st.container(key=container_key)``."""
    st.html(
        f"<style>.st-key-{container_key} {{ outline: 3px solid #ff4b4b; outline-offset: 2px; "
        "box-shadow: 0 0 0 6px rgba(255, 75, 75, 0.18); }</style>"
    )
