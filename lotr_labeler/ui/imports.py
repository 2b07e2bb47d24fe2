"""The import widgets shared by the Dataset and Search pages."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from lotr_labeler.progress import Report
from lotr_labeler.store import Store
from lotr_labeler.ui.choice import choice
from lotr_labeler.ui.context import error_boundary, kept_expander
from lotr_labeler.ui.widgets import progress_bar

if TYPE_CHECKING:  # the importers load when an import runs: 28 ms off a page's first load (zip, lzma, csv)
    from lotr_labeler.collect.importers import ImportReport


def show_report(report: ImportReport) -> None:
    # Refused rows or files are not a plain success: the table below says which and why.
    (st.warning if report.rejected else st.success)(report.summary())
    problems = [{"item": f, "reason": r} for f, r in report.rejected]
    problems += [{"item": f, "reason": f"duplicate of {existing}"} for f, existing in report.duplicate_notes()]
    if problems:
        import pandas as pd  # here: importing it costs every page that shows the import widgets ~0.4 s

        st.dataframe(pd.DataFrame(problems), width="stretch", hide_index=True)


def _report_key(key: str) -> str:
    return f"{key}_report"


def pending_report(key: str) -> None:
    """The report ``run_import`` kept for this run, once."""
    if (report := st.session_state.pop(_report_key(key), None)) is not None:
        show_report(report)


def url_list_form(store: Store, key: str) -> None:
    """Paste or upload ``url,label[,thumbnail]`` rows; they become candidates for the review grid (on
    the Search page, drawn below this form; the Dataset grid does not show candidates)."""
    st.caption(
        "Rows of `url,label[,thumbnail]`, or bare URLs with a default class. They become candidates "
        "to review in the grid before anything is downloaded."
    )
    csv_file = st.file_uploader("CSV file", type=["csv", "txt"], key=f"{key}_csv")
    pasted = st.text_area("…or paste rows", height=100, key=f"{key}_paste")
    default = choice(
        "Class for bare URLs", [None, *store.class_names()], f"{key}_class", format_func=lambda c: c or "— none —"
    )
    create = st.checkbox(
        "Create classes for new labels",
        key=f"{key}_create",
        help="Off: a row whose label is not a class yet is refused, so a typo never becomes an empty class.",
    )
    text = csv_file.getvalue().decode("utf-8-sig", errors="replace") if csv_file else pasted
    if st.button("Add as candidates", disabled=not text.strip(), key=f"{key}_add"):
        from lotr_labeler.collect.importers import import_urls

        with error_boundary():
            show_report(import_urls(store, text, default, create_classes=create))


def run_import(work: Callable[[Report], ImportReport], key: str) -> None:
    """Run ``work(progress)`` under a progress bar that goes away when it ends, success or error
    (an error used to leave an orphan "Importing…" bar above its message), then the page again with
    the report (the import box is drawn below the grid)."""
    slot = st.empty()
    with slot.container():
        bar = progress_bar("Importing…")
    report = None
    with error_boundary():
        try:
            report = work(bar)
        finally:
            slot.empty()
    if report is not None:
        # The page again, the report in its next run (``pending_report``): the grid and its counts were
        # drawn above the import box before the import, and showed the project without it until a click.
        st.session_state[_report_key(key)] = report
        st.rerun()


def import_box(store: Store, key: str = "ds_import") -> None:
    """The "Import images or URLs" expander: a folder, a zip, or a URL list. Keyed, so it stays open
    with its report or error across reruns."""
    with kept_expander("Import images or URLs", key) as box:
        if not box.open:  # drawn when opened: a page loads without its widgets
            return
        from lotr_labeler.collect.importers import import_folder, import_zip

        pending_report(key)  # above the tabs: seen whichever tab is open
        tab_folder, tab_zip, tab_urls = st.tabs(["Folder", "Zip", "URL list (CSV)"])
        with tab_folder:
            folder = st.text_input(
                "Folder with one sub-folder per class", placeholder="/home/me/photos/lotr", key=f"{key}_folder"
            )
            if st.button("Import folder", disabled=not folder, key=f"{key}_folder_go"):
                run_import(lambda bar: import_folder(store, Path(folder), bar), key)
        with tab_zip:
            upload = st.file_uploader("Zip of class folders", type=["zip"], key=f"{key}_zip")
            if st.button("Import zip", disabled=upload is None, key=f"{key}_zip_go") and upload is not None:
                data = upload.getvalue()
                run_import(lambda bar: import_zip(store, io.BytesIO(data), bar), key)
        with tab_urls:
            url_list_form(store, "ds_urls")
