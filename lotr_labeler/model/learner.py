"""The fastai Learner a run trains: its knobs (``TrainParams``, the presets), the architecture and
where its starting weights come from, and the DataLoaders set for the hardware (workers, pinned
memory, precision: ``model/hardware.py``).

fastai, torch and torchvision are imported inside functions: importing them takes ~10 s.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lotr_labeler.errors import InvalidInput, WeightsUnavailable, check_choice
from lotr_labeler.explain import explain, is_connection_failure, not_weights_file, wrong_weights
from lotr_labeler.model import backbones, hardware
from lotr_labeler.store import ImageRow, Store

log = logging.getLogger(__name__)

# The bundled EfficientNet-Lite0 first: its ImageNet weights install with pip, so the default trains
# pretrained with no network (model/backbones.py). The ResNets download theirs, or take a weights file.
ARCHS = (backbones.BUNDLED, *backbones.RESNETS)
DEFAULT_ARCH = backbones.BUNDLED


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


def build_learner(
    store: Store, params: TrainParams, images: Sequence[ImageRow], paths: Sequence[str], hw: hardware.Hardware
) -> Any:
    """The seeded Learner for ``images`` (at ``paths``, relative to the project) with the DataLoaders,
    precision and layout ``hw`` asks for; WeightsUnavailable when the starting weights cannot be had."""
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
        load_body_weights(learn, arch, weights)
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


def load_body_weights(learn: Any, arch: Any, weights: str) -> None:
    """Load a torchvision state-dict file for ``arch`` into the body of ``learn`` (tensors only: no code runs)."""
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
