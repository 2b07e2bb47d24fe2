"""Project context and the one error boundary of the pages.

Widget values vanish when the user leaves a page, so the chosen project lives in
a plain session key (``_project``) and on disk (the data root's last-project marker).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from lotr_labeler import project as proj
from lotr_labeler.explain import explain_known
from lotr_labeler.store import Store
from lotr_labeler.ui.choice import choice
from lotr_labeler.workspace import create_project, last_project, list_projects, remember

_FLASH = "_flash"
_PROJECT = "_project"


def data_dir() -> Path:
    return proj.data_root()


def flash(kind: str, message: str, slot: str | None = None) -> None:
    """Queue a message for the next run (callbacks cannot place elements themselves).

    ``slot`` names the place that shows it (e.g. the expander whose button acted), so the message
    appears next to the control; None: the page's top.
    """
    st.session_state.setdefault(_FLASH, []).append((kind, message, slot))


def has_flash(slot: str | None, kind: str = "error") -> bool:
    """Whether a ``kind`` message waits for ``slot`` (e.g. to add a link beside a refusal)."""
    return any(m[0] == kind and m[2] == slot for m in st.session_state.get(_FLASH, []))


def show_flash(slot: str | None = None, *, leftovers: bool = False) -> None:
    """Show the queued messages of ``slot``; ``leftovers``: also those whose slot was not drawn
    this run (a deleted class's expander), called once at the end of the page."""
    queued: list[tuple[str, str, str | None]] = st.session_state.get(_FLASH, [])
    shown = [m for m in queued if leftovers or m[2] == slot]
    st.session_state[_FLASH] = [m for m in queued if m not in shown]
    for kind, message, _ in shown:
        {"error": st.error, "success": st.success, "warning": st.warning}.get(kind, st.info)(message)


def kept_expander(label: str, key: str, expanded: bool = False) -> Any:
    """An expander that stays open or closed across reruns (its state lives in session state under
    ``key``), even when its label changes (counts) or a message appears above it; ``expanded``: its
    state on a session's first run.

    Opening or closing it reruns the page, so its ``.open`` is known: a form the user seldom opens is
    drawn only ``if box.open``. Drawn hidden, an import box's dozen widgets cost the browser a quarter
    of a second of every page load (and their script chunks a download)."""
    return st.expander(label, expanded=bool(st.session_state.get(key, expanded)), key=key, on_change="rerun")


@dataclass
class Caught:
    """What an ``error_boundary`` caught: the sentence shown for it, or None when the block ended well."""

    message: str | None = None


@contextmanager
def error_boundary(show: Callable[[str], object] | None = st.error) -> Iterator[Caught]:
    """The one error boundary of the pages: a domain error, or a library error ``explain`` knows (a full
    disk, a file gone, a bad image), ends the block as one sentence, passed to ``show`` (``st.error`` where
    the page draws; a callback flashes it or keeps it for a widget) and kept in the yielded ``Caught``.
    Anything else is a bug and surfaces with its traceback."""
    caught = Caught()
    try:
        yield caught
    except Exception as exc:
        message = explain_known(exc)
        if message is None:
            raise
        caught.message = message
        if show is not None:
            show(message)


def remember_widgets(defaults: dict[str, Any]) -> None:
    """Keep widget values when the user leaves the page (Streamlit drops them otherwise).

    Re-assigning a widget's key before the widget is created keeps its value; widgets then take
    their defaults from here rather than from index/value arguments.
    """
    for key, default in defaults.items():
        st.session_state[key] = st.session_state.get(key, default)


def _choose() -> None:
    name = st.session_state["project_picker"]
    st.session_state[_PROJECT] = name
    remember(data_dir(), name)


def _leave_legacy_navigation() -> None:
    """Run this page under the app's ``st.navigation`` (sidebar "Home"), also in a fresh server's first session.

    Streamlit starts in its legacy pages/ mode until a session has run home.py's ``st.navigation``;
    a first visit straight to /Search would run pages/2_Search.py alone and list the home page as
    "streamlit app". A rerun in navigation mode lands on the same page (same URL path, same page hash).
    """
    from streamlit.runtime.pages_manager import PagesManager

    # Once per session: a rerun drops the widget event of its run (AppTest resets the flag every run).
    if PagesManager.uses_pages_directory and not st.session_state.get("_navigation_mode"):
        st.session_state["_navigation_mode"] = True
        PagesManager.uses_pages_directory = False  # what st.navigation itself sets on its first call
        st.rerun()


def current_project() -> str:
    """The sidebar project picker. A first start creates the default project."""
    _leave_legacy_navigation()
    root = data_dir()
    projects = list_projects(root)
    if not projects:
        create_project(root).close()
        projects = list_projects(root)
        flash("info", f"Created the default project {proj.DEFAULT_PROJECT!r} with the Middle-earth classes.")
    chosen = st.session_state.get(_PROJECT)
    if chosen not in projects:
        chosen = last_project(root) or projects[0]
        st.session_state[_PROJECT] = chosen
    st.session_state["project_picker"] = chosen  # follows projects created or picked elsewhere
    choice("Project", projects, "project_picker", on_change=_choose, where=st.sidebar)
    return str(chosen)


_ORIGIN = "_history_origin"


def browser_origin() -> str | None:
    """The author of changes made in this script run: its browser session (one per window or tab),
    so that window's Undo and Z act on its own last change. None outside a page's run."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    # A token kept in the session's state rather than Streamlit's session id: one per window (a
    # reload starts a new one), and distinct for each AppTest as well.
    if _ORIGIN not in st.session_state:
        st.session_state[_ORIGIN] = f"browser:{secrets.token_hex(8)}"
    return str(st.session_state[_ORIGIN])


def chosen_project_dir() -> Path | None:
    """The folder of the project this session has chosen, without drawing the picker; None before
    a page has chosen one."""
    chosen = st.session_state.get(_PROJECT)
    return data_dir() / str(chosen) if chosen else None


def open_current() -> Store:
    """The sidebar's project picker, then its store for this run; pages use it in a ``with`` block."""
    return project_store(current_project())


def project_store(project: str | None = None) -> Store:
    """The one way the UI opens a project's store (pages and callbacks use it in a ``with`` block):
    ``project`` by name, else the one chosen in this session."""
    return Store(data_dir() / (project or str(st.session_state[_PROJECT])))


def act(
    fn: Callable[..., Any], *args: Any, success: str | None = None, flash_to: str | None = None, **kwargs: Any
) -> None:
    """Run ``fn(store, *args)`` as a widget callback; flash its result or its error (domain errors
    and the library errors ``explain`` knows) to ``flash_to`` (a ``show_flash`` slot)."""
    problems: list[str] = []
    result: Any = None
    with error_boundary(lambda message: flash("error", message, flash_to)) as caught, project_store() as store:
        problems = store.move_errors
        result = fn(store, *args, **kwargs)
    if caught.message is not None:
        return
    if success:
        flash("success", success.format(result=result), flash_to)
    if problems:  # saved, but a file did not follow yet: say so rather than only logging it
        flash("warning", " ".join(dict.fromkeys(problems)), flash_to)
