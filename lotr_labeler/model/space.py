"""A ready Hugging Face Space (Gradio) for a trained run: ``lotr-labeler export space DIR``.

The folder holds ``app.py`` (``space_app.py`` copied verbatim: it imports no lotr_labeler),
``space.json`` (classes and the learner's validation preprocessing as plain numbers),
``model.onnx`` (the fast path, ONNX Runtime) and ``model.pkl`` (the fastai export: the portable
artefact and the fallback), ``requirements.txt`` pinned to the versions installed here, and a
``README.md`` with the Space front matter and the class list. Before anything is written, the
generated app is imported from a temp folder and must give ``load_predictor``'s probabilities on
a probe image within 1e-4: preprocessing it cannot reproduce is refused, not shipped.
"""

from __future__ import annotations

import importlib.util
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

    Raises InvalidInput for a transform it cannot reproduce (it names the transform).
    """
    resize: dict[str, Any] | None = None
    dl = learner.dls.valid
    for tfm in dl.after_item.fs:
        name = type(tfm).__name__
        if name == "Resize":
            width, height = (int(v) for v in tfm.size)
            resize = {
                "size": [width, height],
                "method": str(tfm.method),
                "pad_mode": str(tfm.pad_mode),
                "resample": int(tfm.mode),
            }
        elif name != "ToTensor":
            raise InvalidInput(f"The Space app cannot reproduce the item transform {name}. Train with Resize only.")
    scale, mean, std = 1.0, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    for tfm in dl.after_batch.fs:
        name = type(tfm).__name__
        if getattr(tfm, "split_idx", None) == 0:
            continue  # training-only augmentation
        if name == "IntToFloatTensor":
            scale = float(tfm.div)
        elif name == "Normalize":
            mean = [float(v) for v in tfm.mean.flatten().tolist()]
            std = [float(v) for v in tfm.std.flatten().tolist()]
        elif name in ("AffineCoordTfm", "Warp", "RandomResizedCropGPU") and _same_size(tfm, resize):
            continue  # at validation an identity warp at the item size
        else:
            raise InvalidInput(f"The Space app cannot reproduce the batch transform {name} at validation.")
    return {"resize": resize, "scale": scale, "mean": mean, "std": std}


def _same_size(tfm: Any, resize: dict[str, Any] | None) -> bool:
    size = getattr(tfm, "size", None) or getattr(tfm, "cp_size", None)
    if size is None:
        return True
    pair = [int(size), int(size)] if isinstance(size, int) else [int(v) for v in size]
    return resize is not None and sorted(pair) == sorted(resize["size"]) and pair[0] == pair[1]


def _pins(names: tuple[str, ...]) -> list[str]:
    lines = []
    for name in dict.fromkeys(names):
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(name)  # not installed here: the Space takes the newest
    return lines


def readme(title: str, classes: list[str], engine: str, run_label: str) -> str:
    """The Space's README.md: Hugging Face front matter, then what the model tells apart."""
    listing = "\n".join(f"- {c}" for c in classes)
    path = "ONNX Runtime on `model.onnx`" if engine == "onnx" else "fastai on `model.pkl`"
    return (
        "---\n"
        f"title: {json.dumps(title)}\n"
        "emoji: 🔎\n"
        "colorFrom: indigo\n"
        "colorTo: green\n"
        "sdk: gradio\n"
        f"sdk_version: {GRADIO_SDK_VERSION}\n"
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
        "- `model.onnx`: the model for ONNX Runtime (when present)\n"
        "- `model.pkl`: the fastai export (`load_learner`); a pickle: load only files you trust\n"
        "- `requirements.txt`: pinned dependencies\n\n"
        "Run it locally: `pip install -r requirements.txt gradio && python app.py`.\n"
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
        (stage / "README.md").write_text(readme(title, classes, engine, str(config["run"])), encoding="utf-8")
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
