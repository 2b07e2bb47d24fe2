"""Train: fine-tune a classifier in the background, watch it live, compare runs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from lotr_labeler.errors import LabelerError, TrainingError
from lotr_labeler.jobs import worker as jobs
from lotr_labeler.jobs.specs import TrainJob
from lotr_labeler.model import runs
from lotr_labeler.model import train as tr
from lotr_labeler.store import Store
from lotr_labeler.ui.context import act, error_boundary, open_current, remember_widgets, show_flash
from lotr_labeler.ui.jobs import job_panel

st.set_page_config(page_title="Train · lotr_labeler", page_icon="🏋️", layout="wide")
st.title("Train")
PRESET_HELP = {
    "quick": "CPU laptop: 128 px, 2 epochs — a few minutes for a few hundred images.",
    "standard": "GPU: 224 px, 4 epochs — the fast.ai course setting.",
}
DEFAULTS = {"t_preset": "quick", "t_weights": "", "t_pretrained": True}
remember_widgets(DEFAULTS)


def _launch(store: Store, params: tr.TrainParams) -> str:
    TrainJob.of(params).launch(store)
    return "Training started in the background: you can leave this page, it keeps running."


def _import(store: Store, data: bytes, name: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pkl"
        path.write_bytes(data)
        run = tr.import_model(store, path, name=name)  # messages name the upload, not the temp file
    return f"Imported as run {run.id}."


def _export_space(store: Store, run_id: str, folder: str) -> str:
    from lotr_labeler.model.predict import resolve_model
    from lotr_labeler.model.space import write_space

    done = write_space(resolve_model(store, run_id), Path(folder).expanduser(), title=store.name)
    return (
        f"Wrote a Hugging Face Space to {done.folder} ({', '.join(done.files)}; engine {done.engine}). "
        "Push that folder to a new Gradio Space repository."
    )


def _space_section(store: Store, run: runs.Run) -> None:
    with st.expander("Deploy this run to a Hugging Face Space"):
        st.caption(
            "Writes app.py (Gradio, ONNX Runtime with a fastai fallback), requirements.txt, the model files "
            "and a README with the Space settings into a new folder; push it to a Space repository. "
            "CLI: `lotr-labeler export space DIR`."
        )
        folder = st.text_input("Folder", value=str(store.root / "exports" / f"space-{run.id}"), key=f"t_space_{run.id}")
        if st.button("Write Space", disabled=run.state != "done", key="t_space_go"):
            with st.spinner("Writing the Space: loading the model and checking the app…"):
                try:
                    st.success(_export_space(store, run.id, folder))
                except LabelerError as exc:
                    st.error(str(exc))


def _history_chart(history: list[dict[str, object]]) -> None:
    if history:
        df = pd.DataFrame(history).set_index("epoch")
        st.line_chart(df[[c for c in ("train_loss", "valid_loss", "error_rate") if c in df]], height=220)


def _live(job: jobs.Job) -> None:
    _history_chart(job.progress.get("history", []))


def _run_detail(run: runs.Run) -> None:
    metrics = run.full_metrics()
    cols = st.columns(4)
    err = metrics.get("error_rate")
    cols[0].metric("Error rate", f"{err:.3f}" if isinstance(err, float) else "—")
    cols[1].metric("Images", metrics.get("images", "—"))
    cols[2].metric("Duration", f"{metrics.get('duration_s', '—')} s")
    cols[3].metric("Device", metrics.get("device", "—"))
    _history_chart(metrics.get("history", []))
    vocab = metrics.get("vocab") or run.vocab
    if metrics.get("confusion_matrix") and vocab:
        left, right = st.columns(2)
        with left:
            st.markdown("**Confusion matrix** (rows: actual, columns: predicted; validation split)")
            cm = pd.DataFrame(metrics["confusion_matrix"], index=vocab, columns=vocab)
            st.dataframe(cm.style.background_gradient(cmap="Blues"), width="stretch")
        with right:
            st.markdown("**Per class**")
            st.dataframe(pd.DataFrame(metrics["per_class"]).T, width="stretch")


with open_current() as store:
    show_flash()
    project = store.name

    ready = False
    with error_boundary():
        try:
            snap = tr.check_dataset(store)
            valid = sum(snap.valid_counts.values())
            st.success(
                f"Ready: {len(snap.images)} images in {len(snap.classes)} classes "
                f"({valid} in the validation split, chosen by content hash so it stays the same across runs)."
            )
            ready = True
        except TrainingError as exc:
            st.warning(str(exc))

    st.subheader("New run")
    name = st.radio("Preset", list(tr.PRESETS), key="t_preset", horizontal=True, format_func=str.capitalize)
    st.caption(PRESET_HELP[name])
    base = tr.PRESETS[name]
    with st.expander("Settings (override the preset)"):
        c = st.columns(4)
        arch = c[0].selectbox("Architecture", tr.ARCHS, index=tr.ARCHS.index(base.arch), key=f"t_arch_{name}")
        epochs = c[1].number_input("Epochs", 1, 200, base.epochs, key=f"t_epochs_{name}")
        size = c[2].number_input("Image size (px)", 32, 1024, base.size, step=32, key=f"t_size_{name}")
        bs = c[3].number_input("Batch size", 1, 1024, base.batch_size, key=f"t_bs_{name}")
        c = st.columns(4)
        lr = c[0].number_input("Learning rate (0 = default 0.002)", 0.0, 0.99, 0.0, format="%.5f", key=f"t_lr_{name}")
        find_lr = c[1].checkbox("Find it with lr_find", key=f"t_findlr_{name}")
        seed = c[2].number_input("Seed", 0, 2**31 - 1, base.seed, key=f"t_seed_{name}")
        augment = c[3].checkbox("Augmentation", value=True, key=f"t_aug_{name}")
        pretrained = st.checkbox(
            "Pretrained ImageNet weights (downloaded by torchvision on first use)", key="t_pretrained"
        )
        weights = st.text_input("…or a local weights file (.pth) for offline use", key="t_weights")
    st.caption("Device: chosen automatically (CUDA, then Apple MPS, then CPU); shown once the run starts.")
    with error_boundary():
        params = tr.TrainParams(
            arch=arch,
            epochs=int(epochs),
            size=int(size),
            batch_size=int(bs),
            lr=lr or None,
            find_lr=find_lr,
            seed=int(seed),
            pretrained=pretrained,
            weights=weights.strip() or None,
            augment=augment,
        )
        running = jobs.running_job(store, "train") is not None
        st.button(
            "Start training",
            type="primary",
            disabled=running or not ready,
            on_click=act,
            args=(_launch, params),
            kwargs={"success": "{result}"},
        )
    job_panel(project, "train", "Training", _live)

    st.subheader("Runs")
    all_runs = runs.list_runs(store)
    if not all_runs:
        st.info("No runs yet.")
    else:
        table = pd.DataFrame(
            [
                {
                    "run": r.id,
                    "current": "★" if r.is_current else "",
                    "state": r.state,
                    "source": r.source,
                    "arch": r.params.get("arch"),
                    "epochs": r.params.get("epochs"),
                    "size": r.params.get("size"),
                    "error rate": r.metrics.get("error_rate"),
                    "seconds": r.metrics.get("duration_s"),
                    "message": r.message,
                }
                for r in all_runs
            ]
        )
        st.dataframe(table, hide_index=True, width="stretch")
        ids = [r.id for r in all_runs]
        chosen = st.selectbox("Show run", ids, key="t_run")
        run = next(r for r in all_runs if r.id == chosen)
        b = st.columns([1, 1, 3])
        b[0].button(
            "Make current",
            disabled=run.is_current or run.state != "done",
            on_click=act,
            args=(runs.set_current, run.id),
            kwargs={"success": f"Run {run.id} is now current."},
        )
        confirm = b[2].checkbox("Confirm delete", key=f"t_confirm_{run.id}")
        b[1].button(
            "Delete run",
            disabled=not confirm or run.state == "running",
            on_click=act,
            args=(runs.delete_run, run.id),
            kwargs={"success": f"Deleted run {run.id}."},
        )
        _run_detail(run)
        _space_section(store, run)

        done = [r for r in all_runs if r.state == "done"]
        if len(done) >= 2:
            with st.expander("Compare two runs"):
                pair = st.multiselect("Runs", [r.id for r in done], default=[r.id for r in done[:2]], max_selections=2)
                if len(pair) == 2:
                    for col, rid in zip(st.columns(2), pair, strict=True):
                        with col:
                            st.markdown(f"**{rid}**")
                            _run_detail(next(r for r in done if r.id == rid))

    with st.expander("Train on a remote GPU (Kaggle, Colab) and import the model"):
        st.markdown(
            "1. Export the dataset (Dataset page, or `lotr-labeler export dataset bundle.zip`).\n"
            "2. On the GPU machine: `pip install <this repo>` then\n"
            "   `lotr-labeler --data work train --bundle bundle.zip --preset standard --out model.pkl`.\n"
            "3. Bring `model.pkl` back and import it here (or `lotr-labeler import-model model.pkl`)."
        )
        upload = st.file_uploader("model.pkl", type=["pkl"])
        trust = st.checkbox("I made this file myself: loading a pickle runs code from it.")
        st.button(
            "Import model",
            disabled=upload is None or not trust,
            on_click=act,
            args=(_import, upload.getvalue() if upload else b"", upload.name if upload else "model.pkl"),
            kwargs={"success": "{result}"},
        )
