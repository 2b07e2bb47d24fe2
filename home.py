"""The app's main script, served by ``streamlit_app.py``'s ``st.App``: the navigation, and the Home page
(pick or create a project, see where each class stands, and the next step).

``st.navigation`` rather than the automatic pages/ list, so the first entry reads "Home", not the
script's name; the pages are still the files of pages/, found at start.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from lotr_labeler import project as proj
from lotr_labeler import warmup
from lotr_labeler.model.runs import current_run
from lotr_labeler.overview import next_step
from lotr_labeler.ui.context import (
    chosen_project_dir,
    data_dir,
    error_boundary,
    flash,
    kept_expander,
    open_current,
    show_flash,
)
from lotr_labeler.ui.widgets import compact_page
from lotr_labeler.workspace import create_project, remember

ROOT = Path(__file__).resolve().parent
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")
# Candidates "downloaded" are in "images" already. The candidates' states share one column, and the bar
# is 6 blocks: ten columns ran past the right edge of a 1000 px window.
COLUMNS = ("images", "valid", "flagged", "deleted")
CANDIDATE_STATES = ("pending", "accepted", "rejected", "failed")
BAR = 6


def class_table(status: list[dict[str, Any]]) -> str:
    """Per-class counts as a markdown table, the balance drawn as a bar of blocks; the candidates as
    "21 pending · 3 accepted" (the states with any, "—" for none)."""
    most = max((int(row["images"]) for row in status), default=0) or 1
    lines = [
        "| class | balance | " + " | ".join(COLUMNS) + " | candidates |",
        "|---|---|" + "---:|" * len(COLUMNS) + "---|",
    ]
    for row in status:
        name = _MARKDOWN.sub(r"\\\1", str(row["class"]))  # a class name is text, never markup
        bar = "█" * round(BAR * int(row["images"]) / most) or "·"
        waiting = " · ".join(f"{row[k]} {k}" for k in CANDIDATE_STATES if int(row.get(k, 0))) or "—"
        lines.append(f"| {name} | {bar} | " + " | ".join(str(row.get(c, 0)) for c in COLUMNS) + f" | {waiting} |")
    return "\n".join(lines)


def home() -> None:
    """The home page: project, counts, next step, a new project."""
    st.set_page_config(page_title="lotr_labeler", page_icon="🧙", layout="wide")
    compact_page()  # the margins of the other pages: the class table's 7 columns fit a 1000 px window
    st.title("lotr_labeler")
    st.caption("Class names in, a trained image classifier out: search → review → download → train → fix → predict.")
    _overview()
    _new_project()


def _overview() -> None:
    with open_current() as store:
        show_flash()
        from lotr_labeler.review.queue import class_rows  # numpy: kept out of the first paint's imports

        status = class_rows(store)  # with "flagged", the images Review shows under Flag = any
        settings = store.settings()
        st.subheader(f"Project: {store.name}")
        st.caption(f"Data in `{store.root}`")

        step = next_step(status, settings.min_images_per_class, has_run=current_run(store) is not None)
        with st.container(border=True):
            st.markdown(f"**Next step:** {step.message}")
            if (ROOT / step.page).exists():
                st.page_link(step.page, label=f"Go to {step.label}", icon="➡️")

        if status:
            # Plain markdown, no chart or dataframe: those load pandas, pyarrow and altair (about a
            # second of cold start) for a table of a few numbers per class.
            total = {key: sum(int(row[key]) for row in status) for key in ("images", "pending", "flagged")}
            cols = st.columns(4)
            cols[0].metric("Classes", len(status))
            cols[1].metric("Images", total["images"])
            cols[2].metric("Pending candidates", total["pending"])
            cols[3].metric(
                "Flagged", total["flagged"], help="Images with a quality or near-duplicate flag: Review, Flag = any"
            )
            st.markdown("**Class balance** (active images per class)")
            st.markdown(class_table(status))
        else:
            st.info("This project has no classes yet.")


def _new_project() -> None:
    # Keyed: stays open across the rerun of a submit, so its error (e.g. a name like ../evil) is seen.
    # Drawn only when open: hidden, its text fields' code was 20 scripts the browser fetched on every visit.
    with kept_expander("New project", "home_new_project") as box:
        if box.open:
            _new_project_form()


def _new_project_form() -> None:
    with st.form("new_project", clear_on_submit=False):
        name = st.text_input("Project name", placeholder="e.g. birds", key="new_project_name")
        names = st.text_area(
            "Classes (one per line, or comma-separated)",
            placeholder="e.g. robin, blackbird, sparrow",
            key="new_project_classes",
            help="Each class is searched by its name; add other search names on the Classes page.",
        )
        c = st.columns(2)
        if c[0].form_submit_button("Create project", type="primary"):
            _create(name, "empty", names)
        if c[1].form_submit_button("…or the Middle-earth example", help="The seven races of the seed, with queries"):
            _create(name.strip() or proj.DEFAULT_PROJECT, "lotr", "")


def _create(name: str, template: str, names: str) -> None:
    with error_boundary():
        created = create_project(data_dir(), name, template, proj.parse_class_names(names))
        n = len(created.class_names())
        created.close()
        remember(data_dir(), created.name)
        st.session_state["_project"] = created.name
        flash("success", f"Created project {created.name!r} with {n} class{'' if n == 1 else 'es'}.")
        del st.session_state["new_project_name"]  # empty fields for the next one (a bad name stays)
        del st.session_state["new_project_classes"]
        st.rerun()


def pages() -> list[Any]:
    """Home, then every file in pages/ in file-name order: a new page file shows up by itself, with
    the title and URL the file name gives it (``pages/2_Search.py`` → "Search" at ``/Search``)."""
    return [st.Page(home, title="Home", icon="🧙", url_path="home", default=True), *map(st.Page, page_files())]


def page_files() -> list[Path]:
    return sorted((ROOT / "pages").glob("[!_]*.py"))


try:
    st.navigation(pages()).run()
finally:  # however the run ended (a rerun, a stop): the other pages' first visits need not wait
    if (chosen := chosen_project_dir()) is not None:  # a run cut short before the picker: the next one
        ctx = get_script_run_ctx()  # its pages manager compiles into the script cache every session shares
        warmup.start(page_files(), chosen, ctx.pages_manager.get_page_script_byte_code if ctx else None)
