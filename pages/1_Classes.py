"""Classes: add, rename, delete; edit each class's search names and query template."""

from __future__ import annotations

import streamlit as st

from lotr_labeler.store import Store
from lotr_labeler.ui.context import act, kept_expander, open_current, show_flash
from lotr_labeler.ui.widgets import undo_and_history

st.set_page_config(page_title="Classes · lotr_labeler", page_icon="🏷️", layout="wide")
st.title("Classes")
st.caption("Each class is a folder of images. Its search names fill the query template, one query per name.")


def _lines(text: str) -> list[str]:
    return [line for line in text.replace(",", "\n").splitlines() if line.strip()]


def _add(store: Store) -> str:
    s = st.session_state
    created = store.add_class(s["new_name"], _lines(s["new_names"]), s["new_template"] or "{name}")
    s["new_name"] = s["new_names"] = ""  # only cleared when the class really was added
    return created.name


def _save(store: Store, name: str, key: str) -> None:
    s = st.session_state
    store.update_class(name, names=_lines(s[f"names_{key}"]), template=s[f"tpl_{key}"])


def _rename(store: Store, name: str, key: str) -> str:
    return store.rename_class(name, st.session_state[f"rename_{key}"]).name


with open_current() as store:
    undo_and_history(store)  # a rename or delete undone right here, not only on the Dataset page
    top = st.container()  # messages for the page, and those of a class that is gone (deleted)
    with top:
        show_flash()
    classes = store.classes()
    counts = {r["class"]: r for r in store.status()}

    with st.form("add_class", clear_on_submit=False, border=True):
        st.markdown("**Add a class**")
        c1, c2, c3 = st.columns([2, 3, 3])
        c1.text_input("Name", key="new_name", placeholder="e.g. Ents")
        c2.text_input("Search names (comma separated)", key="new_names", placeholder="Treebeard, Quickbeam")
        c3.text_input(
            "Query template", key="new_template", value="{name}", help="{name} is replaced by each search name"
        )
        st.form_submit_button(
            "Add class", on_click=act, args=(_add,), kwargs={"success": "Added class {result!r}.", "flash_to": "add"}
        )
        show_flash("add")

    if not classes:
        st.info("No classes yet: add two or more above.")
    for c in classes:
        row = counts.get(c.name, {})
        key = str(c.id)
        title = f"**{c.name}** · {row.get('images', 0)} images · {row.get('pending', 0)} pending candidates"
        slot = f"class_{key}"  # by id: the expander and its messages follow a renamed class
        with kept_expander(title, f"exp_{slot}"):
            show_flash(slot)
            left, right = st.columns([3, 2])
            with left:
                st.text_area("Search names (one per line)", "\n".join(c.names), key=f"names_{key}", height=120)
                st.text_input("Query template", c.template, key=f"tpl_{key}")
                st.caption("Queries: " + " · ".join(f"`{q}`" for q in c.queries))
                st.button(
                    "Save names and template",
                    key=f"save_{key}",
                    on_click=act,
                    args=(_save, c.name, key),
                    kwargs={"success": f"Saved {c.name}.", "flash_to": slot},
                )
            with right:
                st.text_input("New name", c.name, key=f"rename_{key}")
                st.button(
                    "Rename",
                    key=f"do_rename_{key}",
                    on_click=act,
                    args=(_rename, c.name, key),
                    kwargs={"success": f"Renamed {c.name} to {{result}}.", "flash_to": slot},
                )
                images = int(row.get("images", 0))
                confirm = True
                if images:
                    confirm = st.checkbox(f"Also move its {images} images to the trash", key=f"confirm_{key}")
                st.button(
                    "Delete class",
                    key=f"delete_{key}",
                    disabled=not confirm,
                    on_click=act,
                    args=(Store.delete_class, c.name),
                    kwargs={
                        "force": True,
                        "success": f"Deleted class {c.name}; ↩ Undo above restores it.",
                        "flash_to": slot,
                    },
                )
    with top:
        show_flash(leftovers=True)  # e.g. "Deleted class …": its expander is gone
