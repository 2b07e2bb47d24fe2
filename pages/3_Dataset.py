"""Dataset: browse images by class, relabel, delete, undo; import and export."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from lotr_labeler.collect.export import export_dataset
from lotr_labeler.collect.importers import import_folder, import_zip
from lotr_labeler.imaging import thumbnail
from lotr_labeler.store import ImageRow, Store
from lotr_labeler.ui.context import act, error_boundary, open_current, show_flash
from lotr_labeler.ui.grid import pager, reset_page
from lotr_labeler.ui.imports import show_report, url_list_form

st.set_page_config(page_title="Dataset · lotr_labeler", page_icon="🗂️", layout="wide")
st.title("Dataset")
COLUMNS = 6
ALL = "All"


def _relabel(store: Store, image_id: int, key: str) -> None:
    store.relabel([image_id], st.session_state[key])


def _card(store: Store, img: ImageRow, classes: list[str], thumb_size: int) -> None:
    with st.container(border=True):
        try:
            st.image(str(thumbnail(store.path(img), store.cache_dir, img.sha256, thumb_size)), width="stretch")
        except OSError:
            st.warning(f"File missing: {img.relpath}")
        flags = f" · ⚠️ {', '.join(img.flags)}" if img.flags else ""
        st.caption(f"#{img.id} · {img.label} · {img.split} · {img.width}×{img.height}{flags}")
        if img.deleted:
            st.button("Restore", key=f"restore_{img.id}", on_click=act, args=(Store.restore_images, [img.id]))
            return
        key = f"relabel_{img.id}_{img.class_id}"  # a new widget after each change: never stale
        st.selectbox(
            "Label",
            classes,
            index=classes.index(img.label),
            key=key,
            label_visibility="collapsed",
            on_change=act,
            args=(_relabel, img.id, key),
        )
        st.button("🗑 Delete", key=f"del_{img.id}", on_click=act, args=(Store.delete_images, [img.id]), width="stretch")


with open_current() as store:
    show_flash()
    settings = store.settings()
    classes = store.class_names()

    top = st.columns([1, 1, 4])
    top[0].button("↩ Undo", on_click=act, args=(Store.undo,), kwargs={"success": "{result}"}, width="stretch")
    with top[1].popover("History", width="stretch"):
        events = store.history(15)
        if events:
            for e in events:
                st.markdown(f"{'~~' if e.undone else ''}{e.summary}{'~~' if e.undone else ''} · {e.at[11:16]}")
        else:
            st.caption("No changes yet.")

    f = st.columns(4)
    label = f[0].selectbox("Class", [ALL, *classes], key="ds_class", on_change=reset_page, args=("dataset",))
    split = f[1].selectbox("Split", [ALL, "train", "valid"], key="ds_split", on_change=reset_page, args=("dataset",))
    source = f[2].selectbox("Source", [ALL, *store.sources()], key="ds_source", on_change=reset_page, args=("dataset",))
    view = f[3].radio(
        "Show", ["Active", "Trash"], horizontal=True, key="ds_view", on_change=reset_page, args=("dataset",)
    )
    query = {
        "label": None if label == ALL else label,
        "split": None if split == ALL else split,
        "source": None if source == ALL else source,
        "deleted": view == "Trash",
    }
    with error_boundary():
        total = store.count(**query)
        page_size = int(settings["page_size"])
        offset = pager(total, page_size, "dataset")
        rows = store.images(**query, limit=page_size, offset=offset)
        if not rows:
            st.info("No images here yet. Import a folder or zip below, or search and download on the Search page.")
        for start in range(0, len(rows), COLUMNS):
            for col, img in zip(st.columns(COLUMNS), rows[start : start + COLUMNS], strict=False):
                with col:
                    _card(store, img, classes, int(settings["thumb_size"]))

    st.divider()
    with st.expander("Import images or URLs"):
        tab_folder, tab_zip, tab_urls = st.tabs(["Folder", "Zip", "URL list (CSV)"])
        with tab_folder:
            folder = st.text_input("Folder with one sub-folder per class", placeholder="/home/me/photos/lotr")
            if st.button("Import folder", disabled=not folder):
                bar = st.progress(0.0, text="Importing…")
                with error_boundary():
                    show_report(import_folder(store, Path(folder), lambda d, t: bar.progress(d / t, f"{d}/{t}")))
        with tab_zip:
            upload = st.file_uploader("Zip of class folders", type=["zip"])
            if st.button("Import zip", disabled=upload is None) and upload is not None:
                bar = st.progress(0.0, text="Importing…")
                with error_boundary():
                    show_report(import_zip(store, io.BytesIO(upload.getvalue()), lambda d, t: bar.progress(d / t)))
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
                bar = st.progress(0.0, text="Exporting…")
                n = export_dataset(store, out, lambda d, t: bar.progress(d / t))
                st.success(f"Exported {n} images to `{out}`.")
                st.download_button("Download zip", out.read_bytes(), file_name=out.name, mime="application/zip")
