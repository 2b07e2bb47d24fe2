"""Dataset: browse images by class, relabel, delete, undo; import and export."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import streamlit as st

from lotr_labeler.collect.export import export_dataset
from lotr_labeler.ui import cards
from lotr_labeler.ui.choice import choice
from lotr_labeler.ui.context import error_boundary, kept_expander, open_current, project_store, show_flash
from lotr_labeler.ui.grid import PAGE_KEYS, page_view, pager, reset_page
from lotr_labeler.ui.imports import import_box
from lotr_labeler.ui.jobs import follow_jobs
from lotr_labeler.ui.widgets import all_select, compact_page, history_menu, progress_bar

st.set_page_config(page_title="Dataset · lotr_labeler", page_icon="🗂️", layout="wide")
compact_page()
st.title("Dataset")
GRID = "ds_grid"


@st.fragment
def _grid(project: str, query: dict[str, Any]) -> None:
    """The pager and the cards of this page; an action reruns only this fragment (fast), keeping focus and
    scroll, and the pager's count follows it (a delete or a relabel out of the filter changes it)."""
    with project_store(project) as store, error_boundary():
        settings = store.settings()
        total = store.count(**query)
        offset = pager(total, settings.page_size, "dataset", gone=cards.state(GRID).gone, keys=True)
        rows = store.images(**query, limit=settings.page_size, offset=offset)
        trash = bool(query["deleted"])
        cards.grid(
            GRID,
            [cards.image_card(store, img, settings.thumb_size) for img in rows],
            classes=store.class_names(),
            actions=("restore", "undo") if trash else ("relabel", "delete", "undo"),
            on_action=cards.dataset_action,
            columns=settings.grid_columns,
            keys_help=PAGE_KEYS,
            large=cards.large_image(store),
            empty="The trash is empty."
            if trash
            else "No images here yet. Import a folder or zip below, or search and download on the Search page.",
            # A card relabeled out of the filter or deleted stays in place, marked, until the page turns.
            view=page_view("dataset", sorted(query.items())),
            fetch=cards.image_fetch(store, settings.thumb_size),
            limit=settings.page_size,
            counts=f"{total} image{'' if total == 1 else 's'}",
        )


with open_current() as store:
    show_flash()
    settings = store.settings()
    classes = store.class_names()

    # Filters and History in one row. No Undo button of the page's own: the grid's ↩ Undo (Z) is the same
    # Store.undo (this window's newest change, an import included), as on Search.
    f = st.columns([1, 1, 1, 1.2, 0.9], vertical_alignment="bottom")
    label = all_select("Class", classes, "ds_class", where=f[0], on_change=reset_page, args=("dataset",))
    split = all_select("Split", ["train", "valid"], "ds_split", where=f[1], on_change=reset_page, args=("dataset",))
    source = all_select("Source", store.sources(), "ds_source", where=f[2], on_change=reset_page, args=("dataset",))
    view = choice(
        "Show", ["Active", "Trash"], "ds_view", horizontal=True, on_change=reset_page, args=("dataset",), where=f[3]
    )
    history_menu(store, where=f[4])
    trash = view == "Trash"
    with error_boundary():
        query: dict[str, Any] = {"label": label, "split": split, "source": source, "deleted": trash}
        _grid(store.name, query)
    follow_jobs(store.name, ("download",))

    st.divider()
    import_box(store)

    with kept_expander("Export dataset", "ds_export") as box:
        if box.open:  # drawn when opened, as the import box
            st.caption(
                "A zip of `images/<class>/<id>.jpg` plus `manifest.csv` (split, hash, provenance): "
                "train on any GPU machine with fastai's `ImageDataLoaders.from_folder`."
            )
            if st.button("Build export zip"):
                with error_boundary():
                    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
                    out = store.root / "exports" / f"{store.name}-{stamp}.zip"
                    n = export_dataset(store, out, progress_bar("Exporting…"))
                    st.success(f"Exported {n} images to `{out}`.")
                    st.download_button("Download zip", out.read_bytes(), file_name=out.name, mime="application/zip")
