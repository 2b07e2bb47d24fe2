"""The package's components-v2 elements: registered once per process from the files shipped beside this
module (``<name>.js`` + ``<name>.css``), and what the browser sent one (its state and triggers)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import streamlit as st

HERE = Path(__file__).parent


@functools.cache
def packaged(name: str, html: str) -> Any:
    """The element ``lotr_labeler.<name>``: ``html`` styled by ``<name>.css`` and run by ``<name>.js``."""
    return st.components.v2.component(
        f"lotr_labeler.{name}",
        html=html,
        css=(HERE / f"{name}.css").read_text(encoding="utf-8"),
        js=(HERE / f"{name}.js").read_text(encoding="utf-8"),
    )


def trigger(key: str, name: str) -> Any:
    """The value the element keyed ``key`` sent as ``name`` (a state or a trigger), None when none."""
    value: Any = st.session_state.get(key)  # the component's state and triggers (a dict-like view)
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)
