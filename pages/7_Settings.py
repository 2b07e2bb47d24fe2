"""Settings: every project setting, grouped, with its help, bounds, default and saved value."""

from __future__ import annotations

from typing import Any

import streamlit as st

from lotr_labeler.model import backbones
from lotr_labeler.settings import CAUTIONS, Setting, Value, grouped, setting
from lotr_labeler.ui.context import error_boundary, open_current, project_store, show_flash

st.set_page_config(page_title="Settings · lotr_labeler", page_icon="⚙️", layout="wide")
st.title("Settings")
st.caption(
    "Per project, stored in its database and read by every page, background job and the command line "
    "(`lotr-labeler settings list`, `settings set KEY VALUE`, `settings reset KEY`). "
    "Edit a group, then press its Save button; a value that does not fit is shown in red and nothing is stored."
)

_SEED = "_settings_seed"  # {"project": name, key: stored value the widget was last filled from}
_ERRORS = "_settings_errors"  # {key: message} of the last Save
_OUTCOME = "_settings_outcome"  # {group: (kind, message)}: stays until the group's next action
LABELS = {
    "valid_pct": "Validation split (%)",
    "jpeg_quality": "JPEG quality",
    "near_dup_distance": "Near-duplicate distance",
    "max_bytes": "Largest file (bytes)",
    "max_pixels": "Largest image (pixels)",
    "connect_timeout": "Connect timeout (s)",
    "read_timeout": "Read timeout (s)",
    "search_delay": "Pause between queries (s)",
    "allow_private_hosts": "Allow private and loopback hosts",
}


def _widget(key: str) -> str:
    return f"set_{key}"


def _label(s: Setting) -> str:
    return LABELS.get(s.key, s.key.replace("_", " ").capitalize())


def _show(s: Setting, value: Any) -> str:
    if isinstance(s.default, bool):
        return "on" if value else "off"
    if isinstance(s.default, int):
        return f"{int(value):,}"
    return f"{float(value):g}"


def _bounds(s: Setting) -> str:
    if s.minimum is None and s.maximum is None:
        return ""
    low = _show(s, s.minimum) if s.minimum is not None else "…"
    high = _show(s, s.maximum) if s.maximum is not None else "…"
    return f" · from {low} to {high}"


def _sync(project: str, stored: dict[str, Value]) -> None:
    """Fill the widgets from the stored values, keeping unsaved edits unless the stored value moved
    (changed by the CLI, another tab or a reset) or the project changed."""
    state = st.session_state
    seed: dict[str, Any] = state.get(_SEED) or {}
    # Streamlit drops the fields' state when the user leaves the page: none left means a new visit, and
    # the last visit's "Saved …" lines and errors go (they stayed above the next save's message).
    new_visit = not any(_widget(key) in state for key in stored)
    if seed.get("project") != project or new_visit:
        state[_ERRORS] = {}
        state[_OUTCOME] = {}
    if seed.get("project") != project:
        seed = {"project": project}
    for key, value in stored.items():
        if key not in seed or seed[key] != value or _widget(key) not in state:
            state[_widget(key)] = value
            seed[key] = value
    state[_SEED] = seed


def _save(project: str, group: str, keys: list[str]) -> None:
    state = st.session_state
    errors: dict[str, str] = state.setdefault(_ERRORS, {})
    outcome: dict[str, tuple[str, str]] = state.setdefault(_OUTCOME, {})
    values = {key: state[_widget(key)] for key in keys}
    for key in keys:
        errors.pop(key, None)
    for key, value in values.items():
        with error_boundary(show=None) as caught:
            setting(key).parse(value)
        if caught.message is not None:
            errors[key] = caught.message
    bad = [key for key in keys if key in errors]
    if bad:
        outcome[group] = ("error", f"Nothing saved: fix {', '.join(bad)} (see the message under it), then save again.")
        return
    saved: dict[str, int | float | bool] = {}
    with error_boundary(show=None) as caught, project_store(project) as store:
        before = store.settings().as_dict()
        changed = {k: v for k, v in values.items() if setting(k).parse(v) != before[k]}
        saved = store.set_settings(changed)
    if caught.message is not None:
        outcome[group] = ("error", f"Nothing saved: {caught.message}")
        return
    if saved:
        listed = ", ".join(f"{k} = {_show(setting(k), v)}" for k, v in saved.items())
        outcome[group] = ("success", f"Saved {len(saved)} setting(s): {listed}.")
    else:
        outcome[group] = ("info", "Nothing to save: these are the stored values.")


def _reset(project: str, group: str, key: str) -> None:
    state = st.session_state
    default: object = None
    with error_boundary(show=None) as caught, project_store(project) as store:
        default = store.reset_setting(key)
    if caught.message is not None:
        state.setdefault(_OUTCOME, {})[group] = ("error", caught.message)
        return
    state[_widget(key)] = default
    state.setdefault(_ERRORS, {}).pop(key, None)
    state.setdefault(_OUTCOME, {})[group] = ("success", f"Reset {key} to its default, {_show(setting(key), default)}.")


def _field(s: Setting, saved: Value, project: str, group: str) -> bool:
    """One setting: widget, help, default/saved/bounds, its error, Reset. Returns whether it has an unsaved edit."""
    key = _widget(s.key)
    if isinstance(s.default, bool):
        st.checkbox(_label(s), key=key)
    elif isinstance(s.default, int):
        st.number_input(_label(s), key=key, step=1)
    else:
        fine = s.maximum is not None and s.maximum <= 1  # a rate: 0.5 steps would jump across it
        st.number_input(_label(s), key=key, step=0.05 if fine else 0.5, format="%.2f")
    edited: bool = st.session_state[key] != saved
    note = " · **unsaved edit**" if edited else ""
    st.caption(f"{s.help}  \n`{s.key}` · saved **{_show(s, saved)}** · default {_show(s, s.default)}{_bounds(s)}{note}")
    st.button(
        "Reset to default",
        key=f"reset_{s.key}",
        type="tertiary",
        disabled=saved == s.default and not edited,
        on_click=_reset,
        args=(project, group, s.key),
    )
    if s.key in CAUTIONS:
        (st.warning if saved else st.info)(CAUTIONS[s.key], icon="⚠️" if saved else "🛡️")
    error = st.session_state.get(_ERRORS, {}).get(s.key)
    if error:
        st.error(error)
    return edited


with open_current() as store:
    show_flash()
    project = store.name
    stored = store.settings().as_dict()
_sync(project, stored)

st.markdown(f"Project **{project}**")
for group, about, members in grouped():
    with st.container(border=True):
        st.subheader(group)
        st.caption(about)
        columns = st.columns(2, gap="large")
        pending = []
        for i, s in enumerate(members):  # two per row: a group fits on a screen
            with columns[i % 2]:
                pending.append(_field(s, stored[s.key], project, group))
        keys = [s.key for s in members]
        st.button(
            f"Save {group.lower()}",
            key=f"save_{group}",
            type="primary",
            disabled=not any(pending) and not any(k in st.session_state.get(_ERRORS, {}) for k in keys),
            on_click=_save,
            args=(project, group, keys),
        )
        kind, message = st.session_state.get(_OUTCOME, {}).get(group, ("", ""))
        if message:
            {"error": st.error, "success": st.success}.get(kind, st.info)(message)


# -- this user, every project: the weights folder -------------------------------------------------


def _save_weights_dir() -> None:
    value = str(st.session_state.get("set_weights_dir", "")).strip()
    with error_boundary(show=None) as caught:
        saved = backbones.set_weights_dir(value or None)
    if caught.message is not None:
        st.session_state["_weights_outcome"] = ("error", caught.message)
        return
    st.session_state["_weights_outcome"] = (
        "success",
        f"Saved: {saved} serves every project." if saved else "Cleared: the ResNets download their weights again.",
    )


with st.container(border=True):
    st.subheader("Weights folder (all projects)")
    st.caption(
        f"The default network, {backbones.BUNDLED}, brings its ImageNet weights with the install "
        f"({backbones.BUNDLED_SOURCE}): nothing to download. The ResNets download theirs once from torchvision; "
        "offline, put their files (e.g. resnet18-f37072fd.pth) in a folder once and name it here, for training "
        f"and Review embeddings in every project. Also `lotr-labeler weights set FOLDER`, or "
        f"${backbones.WEIGHTS_DIR_ENV} (which wins). Saved in {backbones.config_path()}."
    )
    current = backbones.weights_dir()
    if "set_weights_dir" not in st.session_state:
        st.session_state["set_weights_dir"] = str(current or "")
    st.text_input("Weights folder", key="set_weights_dir", placeholder="/path/to/folder with resnet18-f37072fd.pth")
    if current is not None:
        files = {arch: backbones.user_weights_file(arch) for arch in backbones.RESNETS}
        st.caption(" · ".join(f"{arch}: {'✓ ' + f.name if f else 'no file'}" for arch, f in files.items()))
    st.button("Save weights folder", key="save_weights_dir", on_click=_save_weights_dir)
    kind, message = st.session_state.get("_weights_outcome", ("", ""))
    if message:
        (st.error if kind == "error" else st.success)(message)
