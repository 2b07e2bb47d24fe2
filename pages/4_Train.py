"""Train: fine-tune a classifier in the background, watch it live, compare runs."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from lotr_labeler.errors import NotFound
from lotr_labeler.jobs import table as jobs
from lotr_labeler.jobs.specs import TrainJob
from lotr_labeler.model import backbones, learner, runs, train_form
from lotr_labeler.model.dataset import check_dataset
from lotr_labeler.model.record import import_model, project_order
from lotr_labeler.model.train import epoch_label
from lotr_labeler.review.trust import how_to_improve, model_trust
from lotr_labeler.store import Store
from lotr_labeler.ui.choice import choice
from lotr_labeler.ui.context import act, error_boundary, open_current, project_store, show_flash
from lotr_labeler.ui.jobs import IDLE_POLL_S, follow_jobs, job_panel, last_box
from lotr_labeler.ui.widgets import confusion_styler

st.set_page_config(page_title="Train · lotr_labeler", page_icon="🏋️", layout="wide")
st.title("Train")
PRESET_HELP = {
    "quick": "CPU laptop: 128 px, 2 epochs — a few minutes for a few hundred images.",
    "standard": "GPU: 224 px, 4 epochs — the fast.ai course setting.",
}
# The form's widget keys per TrainForm field. Its values live in the project DB (train_form.save_form on every
# change): a reload, another page or a restart brings them back, per project.
FORM_KEYS = {
    "preset": "t_preset",
    "arch": "t_arch",
    "epochs": "t_epochs",
    "size": "t_size",
    "batch_size": "t_bs",
    "lr": "t_lr",
    "find_lr": "t_findlr",
    "seed": "t_seed",
    "augment": "t_aug",
    "pretrained": "t_pretrained",
    "weights": "t_weights",
}
_FORM_OF = "_t_form_project"  # which project's form the widgets hold


def _restore(store: Store) -> None:
    """Fill the form from the project's remembered one on a new session, a project switch, or a
    return to the page (Streamlit drops the state of widgets that were not drawn)."""
    state = st.session_state
    if state.get(_FORM_OF) == store.name and all(k in state for k in FORM_KEYS.values()):
        return
    form = train_form.load_form(store)
    for field, key in FORM_KEYS.items():
        state[key] = getattr(form, field)
    state[_FORM_OF] = store.name


def _form() -> train_form.TrainForm:
    state = st.session_state
    values = {field: state[key] for field, key in FORM_KEYS.items()}
    return train_form.TrainForm(
        **{
            **values,
            "epochs": int(values["epochs"]),
            "size": int(values["size"]),
            "batch_size": int(values["batch_size"]),
            "seed": int(values["seed"]),
            "lr": float(values["lr"]),
        }
    )


def _remember(store: Store) -> None:
    train_form.save_form(store, _form())


def _apply_preset(store: Store) -> None:
    form = _form().with_preset(st.session_state["t_preset"])
    for field, key in FORM_KEYS.items():
        st.session_state[key] = getattr(form, field)
    train_form.save_form(store, form)


def _launch(store: Store) -> str:
    form = _form()
    train_form.save_form(store, form)  # remembered even when Start is refused
    TrainJob.of(form.params()).launch(store)
    return "Training started in the background: you can leave this page, it keeps running."


def _import(store: Store, data: bytes, name: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pkl"
        path.write_bytes(data)
        run = import_model(store, path, name=name)  # messages name the upload, not the temp file
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
    if run.state != "done":  # a cancelled or failed run has no model to deploy: no form to fill in vain
        return
    with st.expander("Deploy this run to a Hugging Face Space"):
        st.caption(
            "Writes app.py (Gradio, ONNX Runtime with a fastai fallback), requirements.txt, the model files "
            "and a README with the Space settings into a new folder; push it to a Space repository. "
            "CLI: `lotr-labeler export space DIR`."
        )
        folder = st.text_input("Folder", value=str(store.root / "exports" / f"space-{run.id}"), key=f"t_space_{run.id}")
        if st.button("Write Space", key="t_space_go"):
            with st.spinner("Writing the Space: loading the model and checking the app…"), error_boundary():
                st.success(_export_space(store, run.id, folder))


CHART_METRICS = ("train_loss", "valid_loss", "error_rate")


WAITING = "Loss and error rate appear here when the first epoch ends (the head epoch)."
NO_CURVE = {
    "failed": "No loss curve: the run failed before its first epoch ended.",
    "cancelled": "No loss curve: the run was cancelled before its first epoch ended.",
    "done": "No loss curve recorded for this run.",
}


def _cell(value: Any, fmt: str = "") -> str:
    """A table value as text: "—" for a missing one (None, NaN), numbers with ``fmt``."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, float) and fmt:
        return format(value, fmt)
    return str(value)


def _history_chart(history: list[dict[str, Any]], empty: str = WAITING) -> None:
    """Loss and error rate per epoch: the head epoch, then 1..N. Points as well as lines, on an ordinal
    axis, so the first epoch is already a visible point (a one-row line chart draws nothing). ``empty``:
    what to say when there is no epoch yet (a running run) or none ever (a finished one)."""
    import altair as alt

    rows = [
        {"epoch": epoch_label(h), "metric": name, "value": float(h[name])}
        for h in history
        for name in CHART_METRICS
        if isinstance(h.get(name), int | float)
    ]
    if not rows:
        st.caption(empty)
        return
    order = list(dict.fromkeys(epoch_label(h) for h in history))
    chart = (
        alt.Chart(pd.DataFrame(rows))
        .mark_line(point=alt.OverlayMarkDef(size=60))
        .encode(
            x=alt.X(
                "epoch:O",
                sort=order,
                title="epoch (head = body frozen, then the fine-tune epochs)",
                axis=alt.Axis(labelAngle=0),
            ),
            y=alt.Y("value:Q", title=None),
            color=alt.Color("metric:N", title=None, sort=list(CHART_METRICS)),
            tooltip=["epoch", "metric", alt.Tooltip("value:Q", format=".4f")],
        )
        .properties(height=220)
    )
    st.altair_chart(chart, width="stretch")


def _live(job: jobs.Job) -> None:
    _history_chart(job.progress.get("history", []))


def _train_ended(job: jobs.Job) -> None:
    """The last training's box; when the run it made was deleted since, it says so (it named a run the
    table below no longer has)."""
    run_id = (job.result or {}).get("run_id")
    note = ""
    if isinstance(run_id, str):
        with project_store() as store:
            try:
                runs.get_run(store, run_id)
            except NotFound:
                note = f"Run {run_id} has been deleted since."
    last_box(job, note)


def _weak_warning(store: Store, run: runs.Run) -> None:
    """A finished run worse than the weak_model_error_rate setting (or than the K-fold head) says so."""
    if run.state != "done":
        return
    trust = model_trust(store, run.id)
    if trust.weak:
        which = "the current model" if run.is_current else "not current"
        st.warning(f"⚠️ Run {run.id} ({which}) is weak. {trust.reason} {how_to_improve(run)}")


def _run_detail(run: runs.Run, classes: Sequence[str], said: str | None = None) -> None:
    """One run's figures, its classes in the project's order (``classes``); a failed or cancelled one
    says why in full (the runs table cuts it short), unless the training panel above says it already (``said``)."""
    if run.state in ("failed", "cancelled") and run.message and run.message != said:
        (st.error if run.state == "failed" else st.warning)(f"Run {run.id} {run.state}: {run.message}")
    metrics = run.full_metrics()
    instant = run.source == runs.INSTANT
    cols = st.columns(4)
    err = metrics.get("error_rate")
    cols[0].metric("Error rate", f"{err:.3f}" if isinstance(err, float) else "—")
    cols[1].metric("Images", _cell(metrics.get("images")))
    seconds = metrics.get("duration_s")
    cols[2].metric("Duration", f"{seconds} s" if isinstance(seconds, int | float) else "—")
    if instant:
        cols[3].metric("Model", "instant")
        backbone = run.params.get("backbone_name") or "backbone"
        st.caption(
            f"Instant model: a logistic-regression head on {backbone} embeddings at {run.params.get('size')} px, "
            "fitted on the train split by ⚡ Retrain head on Review (seconds, no epochs: no loss curve). "
            "Error rate on the validation split."
        )
    else:
        cols[3].metric("Device", _cell(metrics.get("device")))
        _history_chart(metrics.get("history", []), WAITING if run.state == "running" else NO_CURVE[run.state])
    vocab = metrics.get("vocab") or run.vocab
    if metrics.get("confusion_matrix") and vocab:
        # One above the other, each the page's width: side by side, a 7-class matrix lost its last columns.
        order = [vocab[i] for i in project_order(vocab, classes)]
        st.markdown("**Confusion matrix** (rows: actual, columns: predicted; validation split)")
        cm = pd.DataFrame(metrics["confusion_matrix"], index=vocab, columns=vocab).loc[order, order]
        st.dataframe(confusion_styler(cm), width="stretch")
        st.markdown("**Per class**")
        per_class = pd.DataFrame(metrics["per_class"]).T.reindex(order)
        if per_class["precision"].isna().any():
            st.caption("— : no validation image was predicted as that class (precision undefined).")
        st.dataframe(per_class.astype(object).map(lambda v: _cell(v, ".3g")), width="stretch")


with open_current() as store:
    show_flash()
    project = store.name

    ready = False
    with error_boundary(show=st.warning):  # not ready yet (too few images, one class): what to add
        snap = check_dataset(store)
        valid = sum(snap.valid_counts.values())
        st.success(
            f"Ready: {len(snap.images)} images in {len(snap.classes)} classes "
            f"({valid} in the validation split, chosen by content hash so it stays the same across runs)."
        )
        ready = True

    st.subheader("New run")
    _restore(store)
    keep: dict[str, Any] = {"on_change": act, "args": (_remember,)}  # every change is remembered for this project
    name = choice(
        "Preset",
        list(learner.PRESETS),
        "t_preset",
        horizontal=True,
        format_func=str.capitalize,
        on_change=act,
        args=(_apply_preset,),
    )
    st.caption(PRESET_HELP[name] + " Choosing a preset fills in the settings below; your changes are remembered.")
    with st.expander("Settings (override the preset)", key="t_settings_open"):
        c = st.columns(4)
        choice("Architecture", learner.ARCHS, "t_arch", where=c[0], **keep)
        c[1].number_input(
            "Epochs",
            1,
            200,
            key="t_epochs",
            help="Fine-tune epochs. Each run first trains the new head for one epoch with the body frozen.",
            **keep,
        )
        c[2].number_input("Image size (px)", 32, 1024, step=32, key="t_size", **keep)
        c[3].number_input("Batch size", 1, 1024, key="t_bs", **keep)
        c = st.columns(4)
        c[0].number_input("Learning rate (0 = default 0.002)", 0.0, 0.999, format="%g", key="t_lr", **keep)
        c[1].checkbox("Find it with lr_find", key="t_findlr", **keep)
        c[2].number_input("Seed", 0, 2**31 - 1, key="t_seed", **keep)
        c[3].checkbox("Augmentation", key="t_aug", **keep)
    form = _form()
    st.caption(
        f"This run: {form.arch} · {form.size} px · 1 head epoch, then {form.epochs} epoch(s) · batch {form.batch_size}"
        f" · learning rate {form.lr or ('lr_find' if form.find_lr else 'default 0.002')}"
        f" · device chosen automatically (CUDA, then Apple MPS, then CPU), shown once the run starts."
    )
    # Outside the expander: the offline error names these two controls, so they must be in sight.
    w = st.columns(2)
    w[0].checkbox(
        learner.PRETRAINED_LABEL,
        key="t_pretrained",
        help=f"{backbones.BUNDLED} (the default): its ImageNet weights come with the install, no download. "
        "The ResNets download theirs once from torchvision (about 45 MB for resnet18), or read them from your "
        "weights folder (Settings) or a file given here.",
        **keep,
    )
    if form.arch == backbones.BUNDLED:
        w[0].caption(f"{backbones.BUNDLED}: ImageNet weights bundled with the install — trains pretrained offline.")
    else:
        w[0].caption(
            f"{form.arch}: torchvision downloads the weights once; offline, use your weights folder (Settings), "
            f"a file here, or the bundled {backbones.BUNDLED}."
        )
    w[1].text_input(
        learner.WEIGHTS_LABEL,
        key="t_weights",
        placeholder="/path/to/resnet18-f37072fd.pth",  # short: the field is half the page wide
        help="ResNets only: a torchvision weights file, the offline alternative to the download.",
        disabled=form.arch == backbones.BUNDLED,
        **keep,
    )
    with error_boundary():
        running = jobs.running_job(store, "train") is not None
        st.button(
            "Start training",
            type="primary",
            disabled=running or not ready,
            on_click=act,
            args=(_launch,),
            kwargs={"success": "{result}"},
        )
    job_panel(project, "train", "Training", _live, ended=_train_ended)
    if jobs.running_job(store, "train") is None:  # one started in another tab or by the CLI shows here
        follow_jobs(project, ("train",), idle_s=IDLE_POLL_S)
    current = runs.current_run(store)
    if current is not None:  # the just-finished run is current: its outcome box above does not judge it
        _weak_warning(store, current)

    st.subheader("Runs")
    all_runs = runs.list_runs(store)
    if not all_runs:
        st.info("No runs yet.")
    else:
        # A failed run's message is the failed job's, shown in the panel above: not a second time here.
        last = jobs.latest_job(store, "train")
        said = last.message if last is not None and last.state == "failed" else None
        table = pd.DataFrame(
            [
                {
                    "run": r.id,
                    "current": "★" if r.is_current else "",
                    "state": r.state,
                    "source": r.source,
                    "arch": runs.model_kind(r),
                    "epochs": _cell(r.params.get("epochs")),
                    "size": _cell(r.params.get("size")),
                    "error rate": _cell(r.metrics.get("error_rate"), ".3f"),
                    "seconds": _cell(r.metrics.get("duration_s"), ".1f"),
                    "message": "(see above)" if said and r.message == said else r.message,
                }
                for r in all_runs
            ]
        )
        st.dataframe(table, hide_index=True, width="stretch")
        ids = [r.id for r in all_runs]
        if st.session_state.get("_t_newest") != ids[0]:  # a new run appeared: show it, not the last one looked at
            st.session_state["_t_newest"] = st.session_state["t_run"] = ids[0]
        elif st.session_state.get("t_run") not in ids:
            st.session_state["t_run"] = ids[0]
        chosen = choice("Show run", ids, "t_run")
        run = next(r for r in all_runs if r.id == chosen)
        b = st.columns([1.3, 1.1, 2.6])  # "Make current" whole at 1000 px
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
            kwargs={"success": f"Deleted run {run.id}.", "force": True},  # confirmed by the checkbox
        )
        if not run.is_current:  # the current one is judged above, under the training panel
            _weak_warning(store, run)
        _run_detail(run, store.class_names(), said)
        _space_section(store, run)

        done = [r for r in all_runs if r.state == "done"]
        if len(done) >= 2:
            with st.expander("Compare two runs"):
                pair = st.multiselect("Runs", [r.id for r in done], default=[r.id for r in done[:2]], max_selections=2)
                if len(pair) == 2:
                    for col, rid in zip(st.columns(2), pair, strict=True):
                        with col:
                            st.markdown(f"**{rid}**")
                            _run_detail(next(r for r in done if r.id == rid), store.class_names())

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
