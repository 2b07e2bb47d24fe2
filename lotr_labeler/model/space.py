"""A ready Hugging Face Space (Gradio) for a trained run: ``lotr-labeler export space DIR``.

The folder holds ``app.py`` (``space_app.py`` copied verbatim: it imports no lotr_labeler),
``space.json`` (classes and the learner's validation preprocessing as plain numbers),
``model.onnx`` (the fast path, ONNX Runtime) or ``model.pkl`` (the fastai export: what serves when
there is no ONNX copy, or the fallback with ``torch_fallback``), ``requirements.txt`` pinned to the
versions installed here within what the Space's Gradio accepts (``SDK_CONSTRAINTS``), and a
``README.md`` with the Space front matter, the class list and how to push large files (Git LFS).
Before anything is written, the generated app is imported from a temp folder and must give
``load_predictor``'s probabilities on a probe image within 1e-4: preprocessing it cannot
reproduce is refused, not shipped.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image

from lotr_labeler.errors import InvalidInput, NotFound
from lotr_labeler.model import onnx_export
from lotr_labeler.model.predict import ModelRef, Predictor, load_predictor

log = logging.getLogger(__name__)

APP_SOURCE = Path(__file__).with_name("space_app.py")
GRADIO_SDK_VERSION = "5.49.1"  # the Space's Gradio (front matter sdk_version): gradio is not a dependency here
# What gradio==GRADIO_SDK_VERSION requires (its metadata) of the packages requirements.txt pins: a pin
# outside these makes the Hub's build fail (pip: ResolutionImpossible), e.g. pillow 13 against gradio
# 5.49.1's pillow<12. Such a package gets the range instead of this environment's version.
# tests/model/test_space_gradio.py checks the result with pip's resolver and a real Gradio.
SDK_CONSTRAINTS: dict[str, tuple[str, str]] = {"pillow": ("8.0", "12.0"), "numpy": ("1.0", "3.0")}
LFS_LIMIT_MB = 10  # the Hub refuses plain git pushes of larger files: they need Git LFS
TOL = 1e-4
FILES = ("app.py", "space.json", "requirements.txt", "README.md", "model.pkl", "model.onnx")
# What app.py imports on each path; pinned to the versions of this environment.
FAST_REQUIREMENTS = ("onnxruntime", "numpy", "pillow")
# timm: the default network (EfficientNet-Lite0, model/backbones.py) unpickles from it.
TORCH_REQUIREMENTS = ("fastai", "torch", "torchvision", "timm", "numpy", "pillow")

Report = Callable[[str], None]


@dataclass(frozen=True)
class SpaceExport:
    """What ``write_space`` wrote."""

    folder: Path
    files: list[str]
    engine: str  # "onnx" when model.onnx is shipped and used, else "torch"
    classes: list[str]
    max_diff: float  # generated app vs load_predictor on the probe image


def preprocessing(learner: Any) -> dict[str, Any]:
    """The learner's validation transforms as plain numbers ``app.py`` applies with PIL + numpy.

    Transforms are judged by class and by what they do at validation, never by name: training-only
    ones (``split_idx == 0``: fastai's ``Brightness``, ``Contrast``) are skipped, and any other batch
    transform is run at validation on a probe batch of the item size; one that gives the batch back
    unchanged (``aug_transforms``' ``Flip``, an ``AffineCoordTfm`` at the item size) is an identity.

    Raises InvalidInput for a transform it cannot reproduce (it names the transform).
    """
    from fastai.data.transforms import IntToFloatTensor, Normalize, ToTensor
    from fastai.vision.augment import Resize

    resize: dict[str, Any] | None = None
    dl = learner.dls.valid
    for tfm in dl.after_item.fs:
        if isinstance(tfm, Resize):
            width, height = (int(v) for v in tfm.size)
            resize = {
                "size": [width, height],
                "method": str(tfm.method),
                "pad_mode": str(tfm.pad_mode),
                "resample": int(tfm.mode),
            }
        elif not isinstance(tfm, ToTensor):
            raise InvalidInput(
                f"The Space app cannot reproduce the item transform {type(tfm).__name__}. Train with Resize only."
            )
    scale, mean, std = 1.0, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    for tfm in dl.after_batch.fs:
        if getattr(tfm, "split_idx", None) == 0:
            continue  # training-only augmentation
        if isinstance(tfm, IntToFloatTensor):
            scale = float(tfm.div)
        elif isinstance(tfm, Normalize):
            mean = [float(v) for v in tfm.mean.flatten().tolist()]
            std = [float(v) for v in tfm.std.flatten().tolist()]
        elif not _identity_at_validation(tfm, resize):
            raise InvalidInput(
                f"The Space app cannot reproduce the batch transform {type(tfm).__name__} at validation "
                "(it changes the image there). Train without it, or with fastai's aug_transforms at the item size."
            )
    return {"resize": resize, "scale": scale, "mean": mean, "std": std}


# How close to the probe a transform's validation output must be to count as unchanged: a quarter of one
# 8-bit level of a [0, 1] image. aug_transforms' Flip resamples its identity grid at validation and moves
# values by 7e-6 at 64 px but 1.4e-5 at 128 and 2.9e-5 at 224 px: the old 1e-5 refused the Quick and Standard
# presets' models (only a 64 px test model passed).
IDENTITY_ATOL = 1 / 1020


def _identity_at_validation(tfm: Any, resize: dict[str, Any] | None) -> bool:
    """Whether ``tfm`` gives a validation batch of the item size back unchanged (within ``IDENTITY_ATOL``)."""
    if resize is None:
        return False  # no fixed item size to probe with
    import torch
    from fastai.torch_core import TensorImage

    width, height = resize["size"]
    probe = TensorImage(torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0)))
    try:
        with torch.no_grad():
            out = tfm(probe.clone(), split_idx=1)
    except Exception as exc:  # a transform that cannot even run on a batch: not reproducible
        log.info("probing %s at validation failed: %s", type(tfm).__name__, exc)
        return False
    return bool(tuple(out.shape) == tuple(probe.shape) and torch.allclose(out, probe, atol=IDENTITY_ATOL, rtol=0))


def _release(version: str) -> tuple[int, ...]:
    """``13.0.0`` -> (13, 0, 0); a pre-release suffix is ignored (enough to compare with bounds)."""
    parts = []
    for piece in version.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, piece))
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _pins(names: tuple[str, ...]) -> list[str]:
    """``name==version`` as installed here, unless the Space's Gradio needs another: then its range."""
    lines = []
    for name in dict.fromkeys(names):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            lines.append(name)  # not installed here: the Space takes the newest
            continue
        low, high = SDK_CONSTRAINTS.get(name, ("0", "999999"))
        if _release(low) <= _release(installed) < _release(high):
            lines.append(f"{name}=={installed}")
        else:
            lines.append(f"{name}>={low},<{high}")
    return lines


def readme(title: str, classes: list[str], engine: str, run_label: str, files: list[str] | None = None) -> str:
    """The Space's README.md: Hugging Face front matter, then what the model tells apart."""
    listing = "\n".join(f"- {c}" for c in classes)
    path = "ONNX Runtime on `model.onnx`" if engine == "onnx" else "fastai on `model.pkl`"
    shipped = set(files or ("model.onnx", "model.pkl"))
    python = f"{sys.version_info.major}.{sys.version_info.minor}"  # the pins are for this Python
    return (
        "---\n"
        f"title: {json.dumps(title)}\n"
        "emoji: 🔎\n"
        "colorFrom: indigo\n"
        "colorTo: green\n"
        "sdk: gradio\n"
        f"sdk_version: {GRADIO_SDK_VERSION}\n"
        f'python_version: "{python}"\n'
        "app_file: app.py\n"
        "pinned: false\n"
        "---\n\n"
        f"# {title}\n\n"
        f"An image classifier trained with lotr_labeler (run {run_label}). Upload a photo or use the camera; "
        f"the app shows the probability of each class. Predictions run with {path}.\n\n"
        f"## Classes ({len(classes)})\n\n{listing}\n\n"
        "## Files\n\n"
        "- `app.py`: the Gradio app; `predict(image)` returns `{class: probability}`\n"
        "- `space.json`: classes and preprocessing (resize, scale, normalisation)\n"
        + ("- `model.onnx`: the model for ONNX Runtime\n" if "model.onnx" in shipped else "")
        + (
            "- `model.pkl`: the fastai export (`load_learner`); a pickle: load only files you trust\n"
            if "model.pkl" in shipped
            else ""
        )
        + "- `requirements.txt`: pinned dependencies (they resolve together with the Gradio version above)\n\n"
        f"Run it locally: `pip install -r requirements.txt gradio=={GRADIO_SDK_VERSION} && python app.py`.\n\n"
        "## Pushing to the Hub\n\n"
        f"The Hub stores files over {LFS_LIMIT_MB} MB (the model files often are) through Git LFS only: a plain "
        '`git push` of them is refused. Either run `git lfs install` and `git lfs track "*.onnx" "*.pkl"` '
        "before committing, or upload the folder with `huggingface-cli upload <user>/<space> . --repo-type space`, "
        "which uses LFS by itself.\n"
    )


def _import_app(folder: Path) -> Any:
    """The generated app.py as a fresh module (not left in sys.modules)."""
    name = f"_space_app_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, folder / "app.py")
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
        raise InvalidInput(f"Cannot load {folder / 'app.py'}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def _probe() -> Image.Image:
    """A non-square, textured probe so a wrong crop or scale shows in the probabilities."""
    img = Image.radial_gradient("L").resize((300, 200)).convert("RGB")
    return Image.merge(
        "RGB",
        (img.getchannel(0), img.getchannel(1).rotate(90), img.getchannel(2).transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    )


def _ensure_onnx(model: ModelRef) -> Predictor:
    predictor = load_predictor(model.path)
    # An older run or an imported model has no model.onnx: export it now (a failure leaves the torch path).
    missing = predictor.session is None and not onnx_export.onnx_path(model.path).exists()
    if missing and onnx_export.export_quietly(predictor.learner, model.path) is not None:
        predictor = load_predictor(model.path)
    return predictor


def write_space(
    model: ModelRef,
    out: Path,
    *,
    title: str,
    torch_fallback: bool = False,
    report: Report | None = None,
) -> SpaceExport:
    """Write a Hugging Face Space for ``model`` into folder ``out`` (created; must be empty or absent).

    Parameters
    ----------
    model
        The run's model (``resolve_model``) or a model file the user named.
    out
        The Space folder: push it to a Space repository as it is.
    title
        The Space title (front matter and page heading).
    torch_fallback
        Also list fastai/torch in requirements.txt when model.onnx is shipped (the app then
        still answers should ONNX Runtime fail to install); they are always listed without it.
    report
        Called with a line per step (long steps: loading and exporting the model).

    Returns
    -------
    SpaceExport
        The files written, the engine the app uses, and its agreement with ``load_predictor``.

    Raises
    ------
    InvalidInput
        ``out`` is a file or a non-empty folder; or the learner's preprocessing cannot be
        reproduced; or the generated app disagrees with ``load_predictor``.
    NotFound
        The model file is gone.
    """
    tell = report or (lambda _msg: None)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput(f"{out} is not an empty folder. Give a new folder for the Space, e.g. {out}-space.")
    if not model.path.is_file():
        raise NotFound(f"No model file {model.path}. Train a model first.")
    tell("loading the model")
    predictor = _ensure_onnx(model)
    engine = predictor.engine
    classes = list(predictor.vocab)
    config = {
        "title": title,
        "classes": classes,
        "run": model.label if model.run_id else model.path.name,
        "input": onnx_export.INPUT,
        "output": onnx_export.OUTPUT,
        **preprocessing(predictor.learner),
    }
    names = (
        FAST_REQUIREMENTS + (TORCH_REQUIREMENTS if torch_fallback else ()) if engine == "onnx" else TORCH_REQUIREMENTS
    )
    tell("writing the Space")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".space-", dir=out.parent) as tmp:
        stage = Path(tmp)
        shutil.copyfile(APP_SOURCE, stage / "app.py")
        (stage / "space.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (stage / "requirements.txt").write_text("\n".join(_pins(names)) + "\n", encoding="utf-8")
        # model.pkl only where it serves: the torch path, or as the fallback asked for (it is the larger
        # file, and a pickle the Space would never load otherwise).
        shipped = (["model.onnx"] if engine == "onnx" else []) + (
            ["model.pkl"] if engine != "onnx" or torch_fallback else []
        )
        (stage / "README.md").write_text(readme(title, classes, engine, str(config["run"]), shipped), encoding="utf-8")
        if "model.pkl" in shipped:
            shutil.copyfile(model.path, stage / "model.pkl")
        if engine == "onnx":
            shutil.copyfile(onnx_export.onnx_path(model.path), stage / "model.onnx")
        tell("checking the app against the model")
        probe = _probe()
        expected = predictor.predict_one(probe).predictions
        got = _import_app(stage).predict(probe)
        diff = max(abs(got[c] - expected[c]) for c in classes)
        if list(got) != classes or diff > TOL:
            raise InvalidInput(
                f"The generated app.py disagrees with the model by {diff:.2g} (allowed {TOL:g}); nothing written."
            )
        out.mkdir(exist_ok=True)
        files = sorted(p.name for p in stage.iterdir() if p.name != "__pycache__")
        for name in files:
            (stage / name).replace(out / name)
    log.info("wrote a Space to %s (%s, max diff %.2g)", out, engine, diff)
    return SpaceExport(out, files, engine, classes, diff)
