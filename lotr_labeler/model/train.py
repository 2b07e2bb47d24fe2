"""Training: a fastai ``vision_learner`` fine-tuned on the project's images and stable split.

The work runs in its own process (``lotr-labeler train``, started by the Train page as a
background job: ``jobs.specs.TrainJob``) and reports ``TrainProgress`` through
``jobs.worker.JobRun``. Each run writes
``runs/<id>/model.pkl`` (``learn.export()``: loads with stock ``load_learner``),
``metrics.json``, and the probabilities of every image into the store for Review.
fastai and torch are imported inside functions: importing them takes ~10 s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from PIL import Image

from lotr_labeler.errors import InvalidInput, LabelerError, TrainingError, WeightsUnavailable, check_choice
from lotr_labeler.explain import explain, is_connection_failure, not_weights_file, wrong_weights
from lotr_labeler.imaging import write_atomic
from lotr_labeler.model import backbones, hardware, runs
from lotr_labeler.store import ImageRow, Store

log = logging.getLogger(__name__)

# The bundled EfficientNet-Lite0 first: its ImageNet weights install with pip, so the default trains
# pretrained with no network (model/backbones.py). The ResNets download theirs, or take a weights file.
ARCHS = (backbones.BUNDLED, *backbones.RESNETS)
DEFAULT_ARCH = backbones.BUNDLED


@dataclass(frozen=True)
class TrainProgress:
    """Where a training run is: stored on the job row, drawn by the Train page and the CLI bar."""

    device: str
    phase: str  # "head" (frozen body) or "fine-tune"
    epoch: int  # 1-based, over both phases
    epochs: int
    batch: int  # 1-based within the epoch
    batches: int
    fraction: float  # of all training batches
    elapsed_s: float
    eta_s: float | None  # None until a batch is done
    history: list[dict[str, Any]]  # one row of metrics per finished epoch

    @property
    def stage(self) -> str:
        return progress_stage(self.phase, self.epoch, self.epochs)

    @property
    def message(self) -> str:
        return f"{self.stage}, batch {self.batch}/{self.batches}"


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


Progress = Callable[[TrainProgress], None]


@dataclass(frozen=True)
class TrainParams:
    """Every knob of a training run. ``lr=None`` means the default, or lr_find with ``find_lr``."""

    arch: str = DEFAULT_ARCH
    epochs: int = 3
    size: int = 224
    batch_size: int = 32
    lr: float | None = None
    find_lr: bool = False
    seed: int = 42
    pretrained: bool = True
    weights: str | None = None  # a local torchvision state-dict file for ``arch``
    augment: bool = True

    def __post_init__(self) -> None:
        check_choice(self.arch, ARCHS, "Architecture")
        if self.weights and self.arch == backbones.BUNDLED:
            raise InvalidInput(
                f"A weights file is for the ResNets ({', '.join(backbones.RESNETS)}); {backbones.BUNDLED} "
                "brings its own ImageNet weights. Pick a ResNet with --arch, or leave --weights out."
            )
        for name, value, lo, hi in (
            ("epochs", self.epochs, 1, 200),
            ("size", self.size, 32, 1024),
            ("batch_size", self.batch_size, 1, 1024),
        ):
            if not lo <= value <= hi:
                raise InvalidInput(f"{name}={value} is out of range. Use {lo} to {hi}.")
        if self.lr is not None and not 0 < self.lr < 1:
            raise InvalidInput(f"Learning rate {self.lr} is out of range. Use a value between 0 and 1, e.g. 0.002.")
        if self.weights:
            if not Path(self.weights).is_file():
                raise InvalidInput(f"Weights file {self.weights} does not exist. Give the path of a .pth state dict.")
            # Kept in the run's params and handed to a worker: it must not depend on the cwd.
            object.__setattr__(self, "weights", str(Path(self.weights).absolute()))


DEFAULT_LR = 2e-3
# The Train page's names for the two weight controls; error messages point at them by these names.
PRETRAINED_LABEL = "Pretrained ImageNet weights"
WEIGHTS_LABEL = "Local weights file (.pth)"
# Quick: fits a CPU laptop (a few minutes for a few hundred images). Standard: the fastai course on a GPU.
PRESETS: dict[str, TrainParams] = {
    "quick": TrainParams(epochs=2, size=128, batch_size=32),
    "standard": TrainParams(epochs=4, size=224, batch_size=64),
}


def weights_file(params: TrainParams) -> str | None:
    """The ``.pth`` file a ResNet run starts from: ``--weights``, else (pretrained) the user's weights folder's
    file for the arch, which spares the download; None: the bundled network, the download or random init."""
    if params.weights:
        return params.weights
    if params.pretrained and params.arch != backbones.BUNDLED:
        found = backbones.user_weights_file(params.arch)
        return str(found) if found is not None else None
    return None


def weights_line(params: TrainParams) -> str:
    """One line on where the run's starting weights come from (the CLI prints it; the Train page says it too)."""
    file = weights_file(params)
    if file is not None:
        where = "your weights folder" if not params.weights else "--weights"
        return f"Training {params.arch} from the weights file {Path(file).name} ({where})."
    if not params.pretrained:
        return f"Training {params.arch} from random weights (--no-pretrained): expect a weaker model."
    if params.arch == backbones.BUNDLED:
        return f"Training {params.arch} from its ImageNet weights, bundled with the install (no download)."
    return f"Training {params.arch} from torchvision's ImageNet weights (downloaded once, then cached)."


def preset(name: str, **overrides: Any) -> TrainParams:
    base = PRESETS[check_choice(name, PRESETS, "Preset")]
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def device_name() -> str:
    """The device training will use: CUDA, Apple MPS, else CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


# -- several processes (``accelerate launch``) ------------------------------------------------


def process_rank() -> int:
    """This process's rank under ``accelerate launch``/torchrun (``RANK``), 0 when launched alone."""
    return int(os.environ.get("RANK", "0") or 0)


def world_size() -> int:
    """How many processes train together (``WORLD_SIZE``), 1 when launched alone."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def _trainer_class() -> Any:
    """fastai's ``DistributedTrainer`` whose loaders share their batch order over the process group's
    own device: fastai's ``DistributedDL`` broadcasts it as a CUDA tensor (NCCL only), which fails on
    a CPU process group (gloo)."""
    import torch
    from fastai.distributed import DistributedDL, DistributedTrainer

    class SharedOrderDL(DistributedDL):  # type: ignore[misc]
        def _broadcast(self, t: list[int], rank: int) -> list[int]:
            device = self.device if torch.device(self.device).type == "cuda" else "cpu"
            tensor = torch.tensor(t, dtype=torch.long, device=device)
            torch.distributed.broadcast(tensor, rank)
            return [int(i) for i in tensor.cpu().tolist()]

    class Trainer(DistributedTrainer):  # type: ignore[misc]
        def _wrap_dl(self, dl: Any) -> Any:
            return dl if isinstance(dl, DistributedDL) else SharedOrderDL(dl, device=self.learn.model.device)

    return Trainer


@contextmanager
def _distributed(learn: Any, enabled: bool) -> Iterator[None]:
    """With ``enabled`` and several processes (``WORLD_SIZE`` > 1: torchrun, ``accelerate launch``), each
    trains on its shard of every batch in DistributedDataParallel; alone, it is a plain fit.

    What fastai's ``distrib_ctx`` does, with two fixes for a CPU process group (gloo): accelerate is told
    ``cpu=True`` (else it leaves the model unwrapped and fastai fails on "'Sequential' object has no
    attribute 'device'"), and the batch order is shared as a CPU tensor (see ``_trainer_class``).
    """
    if not enabled or world_size() < 2:
        yield
        return
    # sync_bn=False: the exported model keeps plain BatchNorm (ONNX export, BN folding stay as they are).
    trainer = _trainer_class()(sync_bn=False, cpu=learn.dls.device.type == "cpu")
    learn.add_cb(trainer)
    try:
        yield
    finally:
        learn.remove_cb(trainer)
        _leave_group()


def _leave_group() -> None:
    """End this process's part in the group once the fit is over (every collective is done by then).

    Rank 0 then exports and predicts alone, and fastai gathers predictions across ``WORLD_SIZE``
    processes whenever it is above 1 (``maybe_gather``), waiting for ranks that have exited: so
    ``WORLD_SIZE`` becomes 1 for the rest of this process.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    os.environ["WORLD_SIZE"] = "1"


def _check_distributed(params: TrainParams) -> None:
    if params.find_lr:
        raise InvalidInput("--find-lr cannot be used with --distributed (each process would find its own). Give --lr.")


def train_replica(store: Store, params: TrainParams) -> None:
    """The part of a distributed run a non-zero rank does: train its shard, record nothing.

    Rank 0 (``train_run``) creates the run, reports progress, exports and evaluates; the others only
    join the gradient exchange, reading the same images in the same order from the project folder.
    """
    _check_distributed(params)
    snap = check_dataset(store)
    paths = [str(store.path(img).relative_to(store.root)) for img in snap.images]
    learn = _build_learner(store, params, snap.images, paths, hardware.detect(device_name(), world_size()))
    with learn.no_bar(), learn.no_logging(), _distributed(learn, True):
        learn.fine_tune(params.epochs, base_lr=params.lr or DEFAULT_LR, freeze_epochs=1)


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


# -- dataset --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSnapshot:
    images: list[ImageRow]
    classes: list[str]
    counts: dict[str, int]
    valid_counts: dict[str, int]
    digest: str


def snapshot(store: Store, images: Sequence[ImageRow] | None = None) -> DatasetSnapshot:
    """Counts and a digest of the images a run trains on (so runs can be compared)."""
    images = list(store.images() if images is None else images)
    classes = sorted({img.label for img in images})
    counts = {c: 0 for c in classes}
    valid = {c: 0 for c in classes}
    for img in images:
        counts[img.label] += 1
        valid[img.label] += img.split == "valid"
    digest = hashlib.sha256("\n".join(sorted(f"{i.sha256}:{i.label}:{i.split}" for i in images)).encode()).hexdigest()[
        :16
    ]
    return DatasetSnapshot(images, classes, counts, valid, digest)


def check_dataset(store: Store, min_per_class: int | None = None) -> DatasetSnapshot:
    """The dataset to train on, or TrainingError saying exactly what is missing."""
    snap = snapshot(store)
    minimum = store.settings().min_images_per_class if min_per_class is None else min_per_class
    if len(snap.classes) < 2:
        raise TrainingError(
            f"Training needs at least 2 classes with images; project {store.name!r} has "
            f"{len(snap.classes)} ({', '.join(snap.classes) or 'none'}). Import or download images first."
        )
    thin = {c: n for c, n in snap.counts.items() if n < minimum}
    if thin:
        listing = ", ".join(f"{c} ({n})" for c, n in thin.items())
        raise TrainingError(
            f"Every class needs at least {minimum} images (setting min_images_per_class); too few: {listing}. "
            "Add images or lower the setting."
        )
    no_valid = [c for c, n in snap.valid_counts.items() if n == 0]
    if no_valid:
        raise TrainingError(
            f"Class(es) {', '.join(no_valid)} have no validation image (the split comes from each image's hash). "
            "Add a few more images to them."
        )
    return snap


def _snapshot_files(
    store: Store, images: Sequence[ImageRow], folder: Path
) -> tuple[list[ImageRow], list[str], list[dict[str, Any]]]:
    """Hard links (copies where links are not possible) of the run's images, named by content hash.

    A run can take many minutes: relabels, deletes and class renames meanwhile move the project's
    files, never these. Unreadable files (a full decode, since ``verify()`` passes truncated JPEGs)
    are skipped and reported. Returns (images, their paths relative to the project, skipped).
    """
    folder.mkdir(parents=True, exist_ok=True)
    ok: list[ImageRow] = []
    paths: list[str] = []
    skipped: list[dict[str, Any]] = []
    for img in images:
        dst = folder / f"{img.sha256}.jpg"
        try:
            if not dst.exists():
                src = store.path(store.get_image(img.id))  # where it is now, not when listed
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            with Image.open(dst) as handle:
                handle.load()
            ok.append(img)
            paths.append(str(dst.relative_to(store.root)))
        except (OSError, SyntaxError) as exc:
            dst.unlink(missing_ok=True)
            skipped.append({"id": img.id, "path": img.relpath, "reason": str(exc) or type(exc).__name__})
    return ok, paths, skipped


# -- the fastai job ---------------------------------------------------------------------------


def _make_progress_callback(report: Progress | None, should_stop: Callable[[], bool] | None) -> Any:
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
            total = max(1, self.total_epochs * n)
            elapsed = time.monotonic() - self.started
            frac = min(1.0, self.batches_done / total)
            report(
                TrainProgress(
                    device=self.dls.device.type,
                    phase=self.phase,
                    epoch=self.global_epoch + 1,
                    epochs=self.total_epochs,
                    batch=self.iter + 1 if self.training else n,
                    batches=n,
                    fraction=frac,
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
            if should_stop is not None and should_stop():
                self.cancelled = True
                raise fv.CancelFitException()

        def after_batch(self) -> None:
            if not self.training:
                return
            self.batches_done += 1
            self._tell()
            if should_stop is not None and should_stop():
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


def _build_learner(
    store: Store, params: TrainParams, images: Sequence[ImageRow], paths: Sequence[str], hw: hardware.Hardware
) -> Any:
    import fastai.vision.all as fv
    import pandas as pd
    import torch
    import torchvision

    fv.set_seed(params.seed, reproducible=True)
    df = pd.DataFrame(
        {
            "path": list(paths),
            "label": [img.label for img in images],
            "is_valid": [img.split == "valid" for img in images],
        }
    )
    hardware.bind_local_gpu(hw)
    batch_tfms: list[Any] = list(fv.aug_transforms(size=params.size)) if params.augment else []
    weights = weights_file(params)
    if weights:
        # The weights file replaces the download: normalise as for the ImageNet weights.
        log.info("%s weights from %s", params.arch, weights)
        batch_tfms.append(fv.Normalize.from_stats(*fv.imagenet_stats))
    dls = fv.ImageDataLoaders.from_df(
        df,
        path=store.root.absolute(),  # becomes learn.path, which fastai joins onto relative paths
        fn_col="path",
        label_col="label",
        valid_col="is_valid",
        item_tfms=fv.Resize(params.size),
        batch_tfms=batch_tfms,
        bs=params.batch_size,
        seed=params.seed,
        num_workers=hw.num_workers,
        pin_memory=hw.pin_memory,
        persistent_workers=hw.num_workers > 0,  # fine_tune fits twice, each epoch would start them again
        device=torch.device(hw.device),
    )
    if params.arch == backbones.BUNDLED:
        learn = _bundled_learner(dls, params.pretrained)
        hardware.apply_precision(learn, hw)
        return learn
    arch = getattr(torchvision.models, params.arch)
    pretrained = params.pretrained and not weights
    try:
        learn = fv.vision_learner(dls, arch, pretrained=pretrained, metrics=fv.error_rate)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; hub errors are RuntimeErrors
        log.info("pretrained %s weights: %r", params.arch, exc)
        why = "there is no internet connection" if is_connection_failure(exc) else explain(exc, "The download")
        raise WeightsUnavailable(
            f"Could not get the pretrained {params.arch} weights: {why}. Either train the bundled "
            f"{backbones.BUNDLED} (pretrained, no download: --arch {backbones.BUNDLED}), {backbones.WEIGHTS_DIR_HINT}, "
            f"give the file for this run in '{WEIGHTS_LABEL}' (CLI: --weights FILE), or train from scratch "
            f"(untick '{PRETRAINED_LABEL}'; CLI: --no-pretrained)."
        ) from exc
    if weights:
        _load_body_weights(learn, arch, weights)
    hardware.apply_precision(learn, hw)
    return learn


def _bundled_learner(dls: Any, pretrained: bool) -> Any:
    """fastai's timm learner on EfficientNet-Lite0 with the bundled weights, as ``pretrained=True`` would
    build it with a download: the body's ImageNet weights, timm's input statistics, the body frozen."""
    import fastai.vision.all as fv

    learn = fv.vision_learner(dls, backbones.TIMM_NAME, pretrained=False, normalize=False, metrics=fv.error_rate)
    if pretrained:
        backbones.load_bundled(learn.model[0].model)
        dls.add_tfms([fv.Normalize.from_stats(backbones.BUNDLED_MEAN, backbones.BUNDLED_STD)], "after_batch")
        learn.freeze()
        learn.pretrained = True
    return learn


def _load_body_weights(learn: Any, arch: Any, weights: str) -> None:
    import torch
    from torch import nn

    reference = arch(weights=None)
    name = f"Weights file {Path(weights).name}"
    try:
        # weights_only: tensors only, no code runs
        state = torch.load(Path(weights).absolute(), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises anything from IndexError to UnpicklingError on a non-weights file
        log.info("weights file %s: %r", weights, exc)
        raise WeightsUnavailable(not_weights_file(name)) from exc
    try:
        reference.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
        log.info("weights file %s: %r", weights, exc)
        raise WeightsUnavailable(wrong_weights(name)) from exc
    body = nn.Sequential(*list(reference.children())[:-2])
    learn.model[0].load_state_dict(body.state_dict())


def _class_metrics(probs: Any, targets: Any, vocab: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    pred = np.asarray(probs).argmax(1)
    true = np.asarray(targets)
    k = len(vocab)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(true, pred, strict=True):
        cm[int(t), int(p)] += 1
    per_class = {}
    for i, name in enumerate(vocab):
        tp = int(cm[i, i])
        precision = tp / int(cm[:, i].sum()) if cm[:, i].sum() else None
        recall = tp / int(cm[i].sum()) if cm[i].sum() else None
        per_class[name] = {"precision": precision, "recall": recall, "support": int(cm[i].sum())}
    accuracy = float((pred == true).mean()) if len(true) else None
    return {"confusion_matrix": cm.tolist(), "per_class": per_class, "accuracy": accuracy}


def predict_images(learn: Any, files: Sequence[Path], batch_size: int = 64) -> list[list[float]]:
    """Class probabilities (in ``learn.dls.vocab`` order) for image ``files``, batched."""
    if not files:
        return []
    dl = learn.dls.test_dl(list(files), bs=batch_size, num_workers=0)
    probs, _ = learn.get_preds(dl=dl)
    return [[float(p) for p in row] for row in probs.tolist()]


def train_run(
    store: Store,
    params: TrainParams,
    *,
    job_id: int | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
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
        Called after each batch and epoch.
    should_stop
        Polled during training; True cancels the run.
    min_per_class
        Images each class needs; None: the project's setting.
    distributed
        Fit inside fastai's ``distrib_ctx`` (``accelerate launch``: this is rank 0; the other ranks
        run ``train_replica``). Alone it trains as usual.

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
    processes = world_size() if distributed else 1  # before the fit: it ends the group
    if distributed:
        _check_distributed(params)
    snap = check_dataset(store, min_per_class)
    run = runs.create_run(store, {**asdict(params), "preset": None}, job_id=job_id)
    started = time.monotonic()
    data = run.path / runs.SNAPSHOT_DIR
    try:
        images, paths, skipped = _snapshot_files(store, snap.images, data)
        if skipped:
            log.warning("skipping %d unreadable image file(s)", len(skipped))
            snap = snapshot(store, images)
        device = device_name()
        hw = hardware.detect(device, processes)
        learn = _build_learner(store, params, images, paths, hw)
        callback = _make_progress_callback(progress, should_stop)
        n_batches = len(learn.dls.train)
        callback.total_epochs = params.epochs + 1  # fine_tune: 1 frozen epoch + ``epochs``
        lr = params.lr
        if lr is None and params.find_lr:
            lr = float(learn.lr_find(show_plot=False).valley)
        lr = lr or DEFAULT_LR
        with learn.no_bar(), learn.no_logging():
            learn.add_cb(callback)
            with _distributed(learn, distributed):
                learn.fine_tune(params.epochs, base_lr=lr, freeze_epochs=1)
            learn.remove_cb(callback)
        if callback.cancelled:
            return runs.finish_run(store, run.id, "cancelled", message="Cancelled by the user.")
        vocab = [str(v) for v in learn.dls.vocab]
        # Absolute (a relative name is joined onto learn.path), and through a temp name: a kill
        # mid-write leaves no model.pkl that looks whole.
        partial = run.path.absolute() / f"{runs.PARTIAL_PREFIX}{os.getpid()}-{runs.MODEL_FILE}"
        with hardware.plain_for_export(learn):
            learn.export(partial)
        partial.replace(run.model_path)
        from lotr_labeler.model.onnx_export import export_quietly

        export_quietly(learn, run.model_path)  # model.onnx for fast predictions; a failure only logs
        with learn.no_bar():
            valid_probs, valid_targets = learn.get_preds(dl=learn.dls.valid)
            probs = predict_images(learn, [store.root.absolute() / p for p in paths])
        evaluation = _class_metrics(valid_probs, valid_targets, vocab)
        runs.save_predictions(store, run.id, vocab, zip([img.id for img in images], probs, strict=True))
        last = callback.history[-1] if callback.history else {}
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
            "params": asdict(params),
            "lr": lr,
            "device": device,
            "hardware": hw.as_dict(),
            "processes": processes,
            "distributed": distributed,
            "dataset": {
                "snapshot": snap.digest,
                "images": len(images),
                "class_counts": snap.counts,
                "valid_counts": snap.valid_counts,
                "skipped": skipped,
            },
            "batches_per_epoch": n_batches,
            "train_batches": callback.batches_done,  # this process's steps: its shard when distributed
            "history": callback.history,
            **evaluation,
            **{k: v for k, v in summary.items() if k not in ("accuracy",)},
            "vocab": vocab,
        }
        write_atomic(run.metrics_path, json.dumps(metrics, indent=2).encode())
        return runs.finish_run(store, run.id, "done", vocab=vocab, metrics=summary, message="")
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


# -- models from elsewhere ------------------------------------------------------------------


def import_model(store: Store, path: Path, name: str | None = None) -> runs.Run:
    """Register a ``model.pkl`` trained elsewhere (e.g. on a GPU) and compute its predictions here.

    Loading a pickle runs code from it: only import files you made yourself.

    Parameters
    ----------
    store
        The project.
    path
        A ``learn.export()`` file.
    name
        What messages call the file (an upload's own name rather than its temporary path).

    Returns
    -------
    Run
        A finished run holding a copy of the model and its predictions (its accuracy counts the
        images whose class the model knows).

    Raises
    ------
    InvalidInput
        No file at ``path``, or not a model this fastai can load.
    """
    import fastai.vision.all as fv

    path = Path(path).absolute()
    if not path.is_file():
        raise InvalidInput(
            f"Model file {name or path} does not exist. Give the path of a model.pkl from learn.export()."
        )
    run = runs.create_run(store, {"imported_from": str(path)}, source="imported")
    try:
        shutil.copyfile(path, run.model_path)
        try:
            learn = fv.load_learner(run.model_path.absolute(), cpu=True)
        except Exception as exc:  # any unpickling failure: wrong file, other fastai version
            log.info("import %s: %r", path, exc)
            raise InvalidInput(
                f"{name or path} is not a model this app can load: use the model.pkl written by "
                "learn.export() (or `lotr-labeler train --out`) with the same fastai version."
            ) from exc
        from lotr_labeler.model.onnx_export import export_quietly

        export_quietly(learn, run.model_path)  # model.onnx for fast predictions; a failure only logs
        vocab = [str(v) for v in learn.dls.vocab]
        images = store.images()
        with learn.no_bar():
            probs = predict_images(learn, [store.path(img) for img in images])
        runs.save_predictions(store, run.id, vocab, zip([i.id for i in images], probs, strict=True))
        valid = [(img, p) for img, p in zip(images, probs, strict=True) if img.split == "valid"]
        known = [(img, p) for img, p in valid if img.label in vocab]
        accuracy = (
            sum(vocab[max(range(len(p)), key=p.__getitem__)] == img.label for img, p in known) / len(known)
            if known
            else None
        )
        summary = {
            "accuracy": accuracy,
            "images": len(images),
            "error_rate": None if accuracy is None else 1 - accuracy,
        }
        metrics = {"run_id": run.id, "source": "imported", "imported_from": str(path), "vocab": vocab, **summary}
        write_atomic(run.metrics_path, json.dumps(metrics, indent=2).encode())
        return runs.finish_run(store, run.id, "done", vocab=vocab, metrics=summary)
    except BaseException as exc:
        runs.finish_run(store, run.id, "failed", message=str(exc) or type(exc).__name__)
        raise


def last_params(store: Store) -> TrainParams:
    """The settings of the current trained run (so a retrain compares like with like), else Quick."""
    run = runs.current_run(store)
    if run is not None and run.source == "trained":
        known = {f for f in TrainParams.__dataclass_fields__}
        try:
            return TrainParams(**{k: v for k, v in run.params.items() if k in known})
        except InvalidInput:  # e.g. its weights file is gone
            log.info("run %s settings no longer valid; retraining with the Quick preset", run.id)
    return PRESETS["quick"]


# -- the Train page's form, remembered per project ------------------------------------------

FORM_KEY = "train_form"  # meta key: the form as JSON


@dataclass(frozen=True)
class TrainForm:
    """The Train page's choices, kept per project so a reload, another page or a restart brings them back
    (above all an offline user's unticked Pretrained, without which every Start fails again).

    Unlike ``TrainParams`` it may name a weights file that does not exist (yet): the page keeps what was
    typed, and Start reports it.
    """

    preset: str = "quick"
    arch: str = PRESETS["quick"].arch
    epochs: int = PRESETS["quick"].epochs
    size: int = PRESETS["quick"].size
    batch_size: int = PRESETS["quick"].batch_size
    lr: float = 0.0  # 0: the default rate, or lr_find's with find_lr
    find_lr: bool = False
    seed: int = PRESETS["quick"].seed
    augment: bool = True
    pretrained: bool = True
    weights: str = ""

    @classmethod
    def of(cls, params: TrainParams, preset: str | None = None) -> TrainForm:
        """The form holding ``params``; its preset is the one they equal, else ``preset`` or Quick."""
        named = next((name for name, p in PRESETS.items() if p == params), preset or "quick")
        return cls(
            preset=named,
            arch=params.arch,
            epochs=params.epochs,
            size=params.size,
            batch_size=params.batch_size,
            lr=params.lr or 0.0,
            find_lr=params.find_lr,
            seed=params.seed,
            augment=params.augment,
            pretrained=params.pretrained,
            weights=params.weights or "",
        )

    def with_preset(self, name: str) -> TrainForm:
        """The preset's size, epochs, architecture… keeping the weight choice (it is about the machine)."""
        base = PRESETS[check_choice(name, PRESETS, "Preset")]
        return replace(TrainForm.of(base, name), preset=name, pretrained=self.pretrained, weights=self.weights)

    def params(self) -> TrainParams:
        """The run these choices ask for.

        Raises
        ------
        InvalidInput
            A value is out of range or the weights file does not exist.
        """
        return TrainParams(
            arch=self.arch,
            epochs=self.epochs,
            size=self.size,
            batch_size=self.batch_size,
            lr=self.lr or None,
            find_lr=self.find_lr,
            seed=self.seed,
            pretrained=self.pretrained,
            # A file typed for a ResNet stays in the form (greyed out) when the bundled network is chosen.
            weights=(self.weights.strip() or None) if self.arch != backbones.BUNDLED else None,
            augment=self.augment,
        )


def save_form(store: Store, form: TrainForm) -> None:
    store.meta_set(FORM_KEY, json.dumps(asdict(form)))


def load_form(store: Store) -> TrainForm:
    """The project's remembered form; never saved (or no longer valid): the current run's settings, else Quick."""
    fallback = TrainForm.of(last_params(store))
    raw = store.meta_get(FORM_KEY)
    if raw is None:
        return fallback
    try:
        data = json.loads(raw)
        values = {f.name: data[f.name] for f in fields(TrainForm) if f.name in data}
        for f in fields(TrainForm):  # a hand-edited or older row: each value must have its field's type
            kind = type(getattr(fallback, f.name))
            if (
                f.name in values
                and not isinstance(values[f.name], kind)
                and not (kind is float and type(values[f.name]) is int)
            ):
                del values[f.name]
        form = replace(fallback, **{**values, "lr": float(values.get("lr", fallback.lr))})  # 0 -> 0.0 for the widget
        check_choice(form.preset, PRESETS, "Preset")
        replace(form, weights="").params()  # ranges; a missing weights file is kept to be reported on Start
    except (ValueError, TypeError, InvalidInput) as exc:
        log.info("remembered train form not usable (%s); using %s", exc, fallback)
        return fallback
    return form
