"""Streamlit helpers shared by the pages: project context, error boundary, flash messages, grid."""

from __future__ import annotations

from lotr_labeler.store.history import ORIGIN_PROVIDERS
from lotr_labeler.ui.context import act, browser_origin, current_project, flash, open_current, show_flash

if browser_origin not in ORIGIN_PROVIDERS:  # every Store opened in a page's run writes as its window
    ORIGIN_PROVIDERS.append(browser_origin)

__all__ = ["act", "current_project", "flash", "open_current", "show_flash"]
