"""Predict: try a trained model on an uploaded, camera, web or dataset image."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from lotr_labeler.model import predict as pr
from lotr_labeler.review.trust import model_trust
from lotr_labeler.settings import Settings
from lotr_labeler.store import Store
from lotr_labeler.ui.choice import choice
from lotr_labeler.ui.context import error_boundary, open_current, show_flash
from lotr_labeler.ui.widgets import all_select

st.set_page_config(page_title="Predict · lotr_labeler", page_icon="🔮", layout="wide")
st.title("Predict")

TRAIN_PAGE = "pages/4_Train.py"
SOURCES = ("Upload", "Camera", "URL", "Dataset image")
_RUN = "_predict_run"  # plain keys survive leaving the page; widget keys do not
_URL = "_predict_url"  # (url, bytes) of the last fetched URL

Picked = tuple[bytes, str, str]  # image bytes, name, caption


def _keep_run() -> None:
    st.session_state[_RUN] = st.session_state["predict_run"]


def choose_run(store: Store) -> str | None:
    runs = pr.finished_runs(store)
    if not runs:
        st.info("No model yet. Train one on the Train page (or `lotr-labeler train`), then come back.")
        if (Path(__file__).resolve().parent.parent / TRAIN_PAGE).exists():
            try:
                st.page_link(TRAIN_PAGE, label="Go to Train", icon="🏋️")
            except StreamlitAPIException:  # the page was run on its own, not from home.py
                st.caption(f"Open the Train page: `{TRAIN_PAGE}`.")
        return None
    by_id = {r.id: r for r in runs}
    chosen = st.session_state.get(_RUN)
    if chosen not in by_id:
        chosen = next((r.id for r in runs if r.is_current), runs[0].id)
    st.session_state["predict_run"] = chosen

    def describe(run_id: str) -> str:
        run = by_id[run_id]
        err = run.metrics.get("error_rate")
        score = f" · error rate {err:.3f}" if isinstance(err, int | float) else ""
        return f"{run_id}{' · current' if run.is_current else ''}{score} · {', '.join(run.vocab)}"

    return str(choice("Model (run)", list(by_id), "predict_run", format_func=describe, on_change=_keep_run))


def pick_image(store: Store, settings: Settings) -> Picked | None:
    source = choice("Image from", SOURCES, "predict_source", horizontal=True)
    if source == "Upload":
        up = st.file_uploader(
            "Image file", type=list(pr.UPLOAD_TYPES), key="predict_upload", max_upload_size=pr.upload_limit_mb(settings)
        )
        return (up.getvalue(), up.name, up.name) if up else None
    if source == "Camera":
        shot = st.camera_input("Take a photo", key="predict_camera")
        return (shot.getvalue(), "camera photo", "camera photo") if shot else None
    if source == "URL":
        url = st.text_input("Image URL", key="predict_url", placeholder="https://example.org/photo.jpg").strip()
        if st.button("Fetch", disabled=not url):
            with error_boundary():
                st.session_state[_URL] = (url, pr.fetch_image(url, settings))
        got = st.session_state.get(_URL)
        return (got[1], url, url) if got and got[0] == url else None
    return pick_dataset_image(store)


def pick_dataset_image(store: Store) -> Picked | None:
    cols = st.columns([1, 2, 1])
    label = all_select("Class", store.class_names(), "predict_ds_class", where=cols[0])
    rows = {r.id: r for r in store.images(label, limit=200)}
    by_id = cols[2].number_input("…or image id", min_value=1, value=None, step=1, key="predict_ds_id")
    if by_id is not None:
        image = store.get_image(int(by_id))
    elif rows:
        picked = choice(
            "Image", list(rows), "predict_ds_image", format_func=lambda i: f"#{i} · {rows[i].label}", where=cols[1]
        )
        image = rows[int(picked)]
    else:
        st.info("No images in the dataset yet.")
        return None
    caption = f"image #{image.id} · labelled {image.label} ({image.split})"
    return store.path(image).read_bytes(), f"image #{image.id}", caption


def probability_bars(predictions: dict[str, float]) -> Any:
    """Every class's probability as a bar on a fixed 0-100 % axis: an axis fitted to the data (0-45 %
    for a weak model) makes a 42 % bar look certain."""
    import altair as alt

    df = pd.DataFrame({"class": list(predictions), "probability": list(predictions.values())})
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="probability"),
            y=alt.Y("class:N", sort="-x", title=None),
            tooltip=["class", alt.Tooltip("probability:Q", format=".1%")],
        )
        .properties(height=60 + 30 * len(df))
    )


def show_prediction(store: Store, run_id: str, settings: Settings, picked: Picked) -> None:
    data, name, caption = picked
    image = pr.decode_image(data, pr.Limits.from_settings(settings), name)
    model = pr.resolve_model(store, run_id)
    fresh = not pr.is_loaded(model.path)
    with st.spinner("Loading the model (the first time takes a few seconds)…"):
        predictor = pr.load_predictor(model.path)
    started = time.perf_counter()
    result = predictor.predict_one(image)
    latency_ms = (time.perf_counter() - started) * 1000

    left, right = st.columns([2, 3])
    left.image(image, caption=caption, width="stretch")
    with right:
        metrics = st.columns(2)
        metrics[0].metric("Top class", result.top)
        metrics[1].metric("Probability", f"{result.probability:.1%}")
        st.altair_chart(probability_bars(result.predictions), width="stretch")
        loaded = f" · model loaded in {predictor.load_seconds:.1f} s" if fresh else ""
        engine = "ONNX Runtime" if result.engine == "onnx" else f"torch ({predictor.engine_note})"
        st.caption(f"Run {model.label} · {latency_ms:.0f} ms · {engine}{loaded}")


with open_current() as store:
    show_flash()
    run_id = choose_run(store)
    if run_id is not None:
        if (trust := model_trust(store, run_id)).weak:
            st.warning(f"⚠️ {trust.reason}")
        settings = store.settings()
        with error_boundary():
            picked = pick_image(store, settings)
            if picked is None:
                st.caption("Choose an image to classify.")
            else:
                show_prediction(store, run_id, settings, picked)
