"""Dataset: browse images by class, relabel, delete, undo; import and export."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from lotr_labeler.collect.export import export_dataset
from lotr_labeler.collect.importers import import_folder, import_zip
from lotr_labeler.store import ImageRow, Store
from lotr_labeler.ui.context import act, error_boundary, open_current, show_flash
from lotr_labeler.ui.grid import pager, reset_page
from lotr_labeler.ui.imports import show_report, url_list_form
from lotr_labeler.ui.widgets import (
    all_select,
    image_thumb,
    label_select,
    progress_bar,
    restore_button,
    undo_and_history,
)

st.set_page_config(page_title="Dataset · lotr_labeler", page_icon="🗂️", layout="wide")
st.title("Dataset")
COLUMNS = 6


def _relabel(store: Store, image_id: int, key: str) -> None:
    store.relabel([image_id], st.session_state[key])


def _card(store: Store, img: ImageRow, classes: list[str], thumb_size: int) -> None:
    with st.container(border=True):
        image_thumb(store, img, thumb_size)
        flags = f" · ⚠️ {', '.join(img.flags)}" if img.flags else ""
        st.caption(f"#{img.id} · {img.label} · {img.split} · {img.width}×{img.height}{flags}")
        if img.deleted:
            restore_button(f"restore_{img.id}", img.id)
            return
        key = f"relabel_{img.id}_{img.class_id}"
        label_select("Label", classes, img.label, key, _relabel, img.id, key)
        st.button("🗑 Delete", key=f"del_{img.id}", on_click=act, args=(Store.delete_images, [img.id]), width="stretch")


with open_current() as store:
    show_flash()
    settings = store.settings()
    classes = store.class_names()

    undo_and_history(store)

    f = st.columns(4)
    label = all_select("Class", classes, "ds_class", where=f[0], on_change=reset_page, args=("dataset",))
    split = all_select("Split", ["train", "valid"], "ds_split", where=f[1], on_change=reset_page, args=("dataset",))
    source = all_select("Source", store.sources(), "ds_source", where=f[2], on_change=reset_page, args=("dataset",))
    view = f[3].radio(
        "Show", ["Active", "Trash"], horizontal=True, key="ds_view", on_change=reset_page, args=("dataset",)
    )
    trash = view == "Trash"
    with error_boundary():
        total = store.count(label, split=split, source=source, deleted=trash)
        page_size = settings.page_size
        offset = pager(total, page_size, "dataset")
        rows = store.images(label, split=split, source=source, deleted=trash, limit=page_size, offset=offset)
        if not rows:
            st.info("No images here yet. Import a folder or zip below, or search and download on the Search page.")
        for start in range(0, len(rows), COLUMNS):
            for col, img in zip(st.columns(COLUMNS), rows[start : start + COLUMNS], strict=False):
                with col:
                    _card(store, img, classes, settings.thumb_size)

    st.divider()
    with st.expander("Import images or URLs"):
        tab_folder, tab_zip, tab_urls = st.tabs(["Folder", "Zip", "URL list (CSV)"])
        with tab_folder:
            folder = st.text_input("Folder with one sub-folder per class", placeholder="/home/me/photos/lotr")
            if st.button("Import folder", disabled=not folder):
                bar = progress_bar("Importing…")
                with error_boundary():
                    show_report(import_folder(store, Path(folder), bar))
        with tab_zip:
            upload = st.file_uploader("Zip of class folders", type=["zip"])
            if st.button("Import zip", disabled=upload is None) and upload is not None:
                bar = progress_bar("Importing…")
                with error_boundary():
                    show_report(import_zip(store, io.BytesIO(upload.getvalue()), bar))
        with tab_urls:
            url_list_form(store, "ds_urls")

    with st.expander("Export dataset"):
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
