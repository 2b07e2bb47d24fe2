"""The app's server (`streamlit run streamlit_app.py`, what ``make run`` starts): Streamlit's own, whose
pages begin at ``home.py`` (the navigation and the Home page).

An ``st.App`` rather than the page script itself for its start-up hook: as the server starts, it imports
what the first page needs and ranks the project's Review queue while the browser is still loading
Streamlit's JavaScript, work the server's first session paid before (0.4-0.9 s of Home's first run at
20,000 images).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from lotr_labeler import project as proj
from lotr_labeler import warmup
from lotr_labeler.workspace import last_project, list_projects

ROOT = Path(__file__).resolve().parent
# Imported in the first run but by no import of home.py: the emoji list Streamlit checks page icons against.
FIRST_RUN_MODULES = ("streamlit.emojis",)


def _project() -> Path | None:
    """The project a new session opens: the last one chosen, else the first."""
    root = proj.data_root()
    name = last_project(root) or next(iter(list_projects(root)), None)
    return root / name if name else None


app = st.App(ROOT / "home.py", lifespan=warmup.lifespan(ROOT / "home.py", FIRST_RUN_MODULES, _project))
