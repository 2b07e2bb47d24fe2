"""Training: a fastai ``vision_learner`` fine-tuned on the project's images and stable split.

The work runs in its own process (``lotr-labeler train``, started by the Train page as a
background job: ``jobs.specs.TrainJob``) and reports ``TrainProgress`` through
``jobs.worker.JobRun``. ``train_run`` checks the dataset (``model/dataset.py``), builds the
Learner (``model/learner.py``), fits it with progress and cancel (here), in several processes when
asked (``model/distributed.py``), and records the run (``model/record.py``): ``runs/<id>/model.pkl``,
``metrics.json``, and the probabilities of every image into the store for Review.
fastai and torch are imported inside functions: importing them takes ~10 s.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lotr_labeler.errors import LabelerError, TrainingError
from lotr_labeler.explain import explain
from lotr_labeler.model import distributed as dist
from lotr_labeler.model import hardware, learner, record, runs
from lotr_labeler.model.dataset import DatasetSnapshot, check_dataset, snapshot, snapshot_files
from lotr_labeler.model.learner import DEFAULT_LR, TrainParams, device_name
from lotr_labeler.progress import Cancel, Progress, Report, stopped
from lotr_labeler.store import ImageRow, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainProgress(Progress):
    """Where a training run is: ``done`` of ``total`` training batches over the whole run (both
    phases); stored on the job row, drawn by the Train page and the CLI bar. ``message`` (left
    empty) is filled from the stage and batch: "epoch 1/3, batch 2/5"."""

    device: str
    phase: str  # "head" (frozen body) or "fine-tune"
    epoch: int  # 1-based, over both phases
    epochs: int
    batch: int  # 1-based within the epoch
    batches: int
    elapsed_s: float
    eta_s: float | None  # None until a batch is done
    history: list[dict[str, Any]]  # one row of metrics per finished epoch

    def __post_init__(self) -> None:
        if not self.message:
            object.__setattr__(self, "message", f"{self.stage}, batch {self.batch}/{self.batches}")

    @property
    def stage(self) -> str:
        return progress_stage(self.phase, self.epoch, self.epochs)


def progress_stage(phase: str, epoch: int, epochs: int) -> str:
    """Where a run is, in the user's terms: "head epoch", then "epoch k/N" of the N epochs asked for.

    ``epoch``/``epochs`` count fine_tune's extra frozen epoch too (N asked for, N + 1 run), so they
    are never shown as such: "Epochs = 3" must not read "epoch 1/4".
    """
    if phase == "head":
        return "head epoch (body frozen)"
    return f"epoch {max(1, epoch - 1)}/{max(1, epochs - 1)}"


def epoch_label(row: Mapping[str, Any]) -> str:
    """The x-axis name of a history row: "head" for the frozen epoch, else its fine-tune epoch number."""
    if row.get("phase") == "head":
        return "head"
    epoch = int(row.get("epoch", 1))
    return str(epoch - 1 if "phase" in row else epoch)  # rows without a phase (old runs): as recorded


# fastai wraps an error raised inside a callback event: "Exception occured in `X` when calling event
# `Y`:" on a first line, the reason on the next (a one-line summary of it would keep only the wrapper).
_FASTAI_EVENT = re.compile(r"Exception occured in `(?P<cb>[^`]+)` when calling event `(?P<event>[^`]+)`:\s*")


def failure_reason(exc: BaseException) -> str:
    """Why a run failed, in one line that keeps the reason: fastai's event wrapper is unfolded
    ("AttributeError in fastai's DistributedTrainer.before_fit: 'Sequential' object has no …")."""
    if isinstance(exc, LabelerError):
        return str(exc)
    text = str(exc).strip()
    match = _FASTAI_EVENT.match(text)
    if match is None:
        return explain(exc)
    detail = " ".join(text[match.end() :].split())[:500] or "no message"
    return f"{type(exc).__name__} in fastai's {match['cb']}.{match['event']}: {detail}"


def _make_progress_callback(report: Report | None, cancel: Cancel | None) -> Any:
    """A fastai callback: batch/epoch progress, per-epoch history, cancel within one batch."""
    import fastai.vision.all as fv

    class ProgressCallback(fv.Callback):  # type: ignore[misc]
        order = 60  # after the Recorder (50) has logged the epoch

        def __init__(self) -> None:
            self.history: list[dict[str, Any]] = []
            self.started = time.monotonic()
            self.epoch_started = self.started
            self.global_epoch = 0
            self.total_epochs = 1
            self.batches_done = 0
            self.cancelled = False
            self.phase = "head"

        def _tell(self) -> None:
            if report is None:
                return
            n = len(self.dls.train)
            elapsed = time.monotonic() - self.started
            frac = min(1.0, self.batches_done / max(1, self.total_epochs * n))
            report(
                TrainProgress(
                    done=self.batches_done,
                    total=self.total_epochs * n,
                    device=self.dls.device.type,
                    phase=self.phase,
                    epoch=self.global_epoch + 1,
                    epochs=self.total_epochs,
                    batch=self.iter + 1 if self.training else n,
                    batches=n,
                    elapsed_s=round(elapsed, 1),
                    eta_s=round(elapsed / frac - elapsed, 1) if frac > 0 else None,
                    history=list(self.history),
                )
            )

        def before_fit(self) -> None:
            self.phase = "head" if self.global_epoch == 0 else "fine-tune"
            if self.cancelled:
                raise fv.CancelFitException()

        def before_batch(self) -> None:
            # Also during validation and lr_find: a cancel (the page's button, Ctrl-C) waits for one batch only.
            if stopped(cancel):
                self.cancelled = True
                raise fv.CancelFitException()

        def after_batch(self) -> None:
            if not self.training:
                return
            self.batches_done += 1
            self._tell()
            if stopped(cancel):
                self.cancelled = True
                raise fv.CancelFitException()

        def before_epoch(self) -> None:
            self.epoch_started = time.monotonic()

        def after_epoch(self) -> None:
            values = self.recorder.values[-1] if self.recorder.values else []
            names = [str(m) for m in self.recorder.metric_names[1:-1]]  # drop "epoch" and "time"
            row: dict[str, Any] = {"epoch": self.global_epoch + 1, "phase": self.phase}
            row.update({k: (float(v) if v is not None else None) for k, v in zip(names, values, strict=False)})
            row["seconds"] = round(time.monotonic() - self.epoch_started, 2)
            self.history.append(row)
            self._tell()  # still this epoch and phase: the next one has not started
            self.global_epoch += 1

    return ProgressCallback()


def train_run(
    store: Store,
    params: TrainParams,
    *,
    job_id: int | None = None,
    progress: Report | None = None,
    cancel: Cancel | None = None,
    min_per_class: int | None = None,
    distributed: bool = False,
) -> runs.Run:
    """Train, export, evaluate and predict; returns the finished (or cancelled) run record.

    Parameters
    ----------
    store
        The project.
    params
        Architecture, epochs, size and the other knobs.
    job_id
        The background job doing this run, if any.
    progress
        Called with a ``TrainProgress`` after each training batch and epoch.
    cancel
        Looked at before and after each batch (validation and lr_find included); once set, the run
        ends as cancelled.
    min_per_class
        Images each class needs; None: the project's setting.
    distributed
        Fit inside fastai's ``distrib_ctx`` (``accelerate launch``: this is rank 0; the other ranks
        run ``distributed.train_replica``). Alone it trains as usual.

    Returns
    -------
    Run
        Done (model, metrics and predictions stored) or cancelled.

    Raises
    ------
    TrainingError
        The dataset is not ready (too few classes or images), or training failed.
    WeightsUnavailable
        Pretrained weights could not be loaded.
    """
    processes = dist.world_size() if distributed else 1  # before the fit: it ends the group
    if distributed:
        dist.check_params(params)
    snap = check_dataset(store, min_per_class)
    run = runs.create_run(store, {**asdict(params), "preset": None}, job_id=job_id)
    started = time.monotonic()
    data = run.path / runs.SNAPSHOT_DIR
    try:
        images, paths, skipped = snapshot_files(store, snap.images, data)
        if skipped:
            log.warning("skipping %d unreadable image file(s)", len(skipped))
            snap = snapshot(store, images)
        fit = _fit(store, params, images, paths, processes, distributed, progress, cancel)
        if fit.cancelled:
            return runs.finish_run(store, run.id, "cancelled", message="Cancelled by the user.")
        return _record(store, run, fit, images, paths, snap, skipped, started)
    except Exception as exc:
        reason = failure_reason(exc)
        runs.finish_run(store, run.id, "failed", message=reason)
        runs.remove_leftovers(run.path)
        if isinstance(exc, LabelerError):
            raise
        raise TrainingError(f"Training failed: {reason}") from exc  # the job row and the CLI say it in full
    except BaseException as exc:  # Ctrl-C, SystemExit: recorded, and passed on as they are
        runs.finish_run(store, run.id, "failed", message=str(exc) or type(exc).__name__)
        runs.remove_leftovers(run.path)
        raise
    finally:
        shutil.rmtree(data, ignore_errors=True)  # the links only lived for this run


def outcome(run: runs.Run) -> str:
    """How a done or cancelled ``run`` ended, in one line (the train job's message)."""
    if run.state == "cancelled":
        return f"Run {run.id} cancelled."
    return f"Run {run.id} finished: error rate {run.metrics.get('error_rate', 0):.3f}."


@dataclass(frozen=True)
class _Fit:
    """What a finished (or cancelled) fit leaves for the run's record."""

    learn: Any
    params: TrainParams
    lr: float
    device: str
    hw: hardware.Hardware
    processes: int
    distributed: bool
    history: list[dict[str, Any]]
    batches_done: int  # this process's steps: its shard when distributed
    cancelled: bool


def _fit(
    store: Store,
    params: TrainParams,
    images: list[ImageRow],
    paths: list[str],
    processes: int,
    distributed: bool,
    progress: Report | None,
    cancel: Cancel | None,
) -> _Fit:
    """Build the Learner and fine-tune it (one frozen epoch, then ``params.epochs``)."""
    device = device_name()
    hw = hardware.detect(device, processes)
    learn = learner.build_learner(store, params, images, paths, hw)
    callback = _make_progress_callback(progress, cancel)
    callback.total_epochs = params.epochs + 1  # fine_tune: 1 frozen epoch + ``epochs``
    lr = params.lr
    if lr is None and params.find_lr:
        lr = float(learn.lr_find(show_plot=False).valley)
    lr = lr or DEFAULT_LR
    with learn.no_bar(), learn.no_logging():
        learn.add_cb(callback)
        with dist.shared_fit(learn, distributed):
            learn.fine_tune(params.epochs, base_lr=lr, freeze_epochs=1)
        learn.remove_cb(callback)
    history, done, cancelled = callback.history, callback.batches_done, callback.cancelled
    return _Fit(learn, params, lr, device, hw, processes, distributed, history, done, cancelled)


def _record(
    store: Store,
    run: runs.Run,
    fit: _Fit,
    images: list[ImageRow],
    paths: list[str],
    snap: DatasetSnapshot,
    skipped: list[dict[str, Any]],
    started: float,
) -> runs.Run:
    """Export the model, store every image's probabilities, write ``metrics.json``; the run, done."""
    record.export_model(fit.learn, run)
    vocab, evaluation = record.evaluate(store, run, fit.learn, images, [store.root.absolute() / p for p in paths])
    last = fit.history[-1] if fit.history else {}
    summary = {
        "error_rate": last.get("error_rate"),
        "valid_loss": last.get("valid_loss"),
        "train_loss": last.get("train_loss"),
        "accuracy": evaluation["accuracy"],
        "duration_s": round(time.monotonic() - started, 1),
        "images": len(images),
    }
    metrics = {
        "run_id": run.id,
        "params": asdict(fit.params),
        "lr": fit.lr,
        "device": fit.device,
        "hardware": fit.hw.as_dict(),
        "processes": fit.processes,
        "distributed": fit.distributed,
        "dataset": {
            "snapshot": snap.digest,
            "images": len(images),
            "class_counts": snap.counts,
            "valid_counts": snap.valid_counts,
            "skipped": skipped,
        },
        "batches_per_epoch": len(fit.learn.dls.train),
        "train_batches": fit.batches_done,
        "history": fit.history,
        **evaluation,
        **{k: v for k, v in summary.items() if k not in ("accuracy",)},
        "vocab": vocab,
    }
    record.write_metrics(run, metrics)
    return runs.finish_run(store, run.id, "done", vocab=vocab, metrics=summary, message="")
