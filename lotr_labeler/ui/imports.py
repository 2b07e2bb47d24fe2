"""The import widgets shared by the Dataset and Search pages."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lotr_labeler.collect.importers import ImportReport, import_urls
from lotr_labeler.store import Store
from lotr_labeler.ui.context import error_boundary


def show_report(report: ImportReport) -> None:
    # Refused rows or files are not a plain success: the table below says which and why.
    (st.warning if report.rejected else st.success)(report.summary())
    problems = [{"item": f, "reason": r} for f, r in report.rejected]
    problems += [{"item": f, "reason": f"duplicate of image {i}"} for f, i in report.duplicates]
    if problems:
        st.dataframe(pd.DataFrame(problems), width="stretch", hide_index=True)


def url_list_form(store: Store, key: str) -> None:
    """Paste or upload ``url,label[,thumbnail]`` rows; they become candidates for the review grid."""
    st.caption(
        "Rows of `url,label[,thumbnail]`, or bare URLs with a default class. They become candidates "
        "to review in the grid before anything is downloaded."
    )
    csv_file = st.file_uploader("CSV file", type=["csv", "txt"], key=f"{key}_csv")
    pasted = st.text_area("…or paste rows", height=100, key=f"{key}_paste")
    default = st.selectbox("Class for bare URLs", [None, *store.class_names()], key=f"{key}_class")
    create = st.checkbox(
        "Create classes for new labels",
        key=f"{key}_create",
        help="Off: a row whose label is not a class yet is refused, so a typo never becomes an empty class.",
    )
    text = csv_file.getvalue().decode("utf-8-sig", errors="replace") if csv_file else pasted
    if st.button("Add as candidates", disabled=not text.strip(), key=f"{key}_add"):
        with error_boundary():
            show_report(import_urls(store, text, default, create_classes=create))
