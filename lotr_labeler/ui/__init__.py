"""Streamlit helpers shared by the pages: project context, error boundary, flash messages, grid."""

from __future__ import annotations

from lotr_labeler.ui.context import act, current_project, flash, open_current, show_flash

__all__ = ["act", "current_project", "flash", "open_current", "show_flash"]
