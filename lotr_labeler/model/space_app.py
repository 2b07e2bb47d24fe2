"""Image classifier demo for a Hugging Face Space (Gradio), written by ``lotr-labeler export space``.

This file is copied verbatim into the Space as ``app.py``: it must not import lotr_labeler (a
Space installs only its requirements.txt). It reads ``space.json`` next to it (classes and the
learner's validation preprocessing) and predicts with ONNX Runtime on ``model.onnx`` when both
exist, else with fastai on ``model.pkl`` (``SPACE_ENGINE=onnx|torch`` forces one).

``predict`` is defined before, and independently of, the Gradio UI: importing this module needs
neither gradio nor a server (``python app.py``, which Spaces run, builds and launches the UI).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
CONFIG: dict[str, Any] = json.loads((HERE / "space.json").read_text(encoding="utf-8"))
CLASSES: list[str] = list(CONFIG["classes"])
ONNX_FILE = HERE / "model.onnx"
PKL_FILE = HERE / "model.pkl"
_PAD_MODES = {"zeros": "constant", "reflection": "reflect", "border": "edge"}

log = logging.getLogger("space")


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB with EXIF orientation applied (phone photos) and transparency flattened onto white,
    as the images the model was trained on were stored."""
    img = ImageOps.exif_transpose(img)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(rgba, mask=rgba)
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


def load_image(source: Any) -> Image.Image:
    """An RGB PIL image from a PIL image, a numpy array, a file path or file bytes."""
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        img = Image.fromarray(source.astype(np.uint8))
    elif isinstance(source, bytes):
        import io

        img = Image.open(io.BytesIO(source))
    elif isinstance(source, (str, os.PathLike)):
        img = Image.open(source)
    else:
        raise TypeError(f"Cannot read an image from {type(source).__name__}; give a PIL image, an array or a path.")
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)  # animated GIF/WebP: the first frame
    img.load()
    return to_rgb(img)


def _resize(img: Image.Image, resize: dict[str, Any]) -> Image.Image:
    """fastai's ``Resize`` at validation: centre crop (or pad) to the target aspect, then resize."""
    tw, th = resize["size"]
    w, h = img.size
    method, resample = resize["method"], int(resize["resample"])
    if method == "squish":
        return img.resize((tw, th), resample)
    pad = method == "pad"
    scale = w / tw if ((w / tw > h / th) if pad else (w / tw < h / th)) else h / th
    cw, ch = int(scale * tw), int(scale * th)
    left, top = int(0.5 * (w - cw)), int(0.5 * (h - ch))
    if left >= 0 and top >= 0:
        img = img.crop((left, top, left + cw, top + ch))
    else:  # pad: the image sits in the middle of a larger canvas
        arr = np.asarray(img.crop((max(left, 0), max(top, 0), min(left + cw, w), min(top + ch, h))))
        before = (max(-top, 0), max(-left, 0))
        after = (max(top + ch - h, 0), max(left + cw - w, 0))
        widths = ((before[0], after[0]), (before[1], after[1]), (0, 0))
        img = Image.fromarray(np.pad(arr, widths, mode=_PAD_MODES[resize["pad_mode"]]))  # type: ignore[call-overload]
    return img.resize((tw, th), resample)


def preprocess(img: Image.Image) -> np.ndarray:
    """The batch the model expects: (1, 3, H, W) float32, scaled and normalised like fastai's
    validation transforms (Resize, ToTensor, IntToFloatTensor, Normalize)."""
    if CONFIG.get("resize"):
        img = _resize(img, CONFIG["resize"])
    x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1)[None] / float(CONFIG["scale"])
    mean = np.asarray(CONFIG["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(CONFIG["std"], dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


class _Model:
    """The engine that answers, chosen and loaded on first use (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.engine = ""
        self._session: Any = None
        self._learner: Any = None

    def _load(self) -> None:
        wanted = os.environ.get("SPACE_ENGINE", "auto")
        if wanted in ("auto", "onnx") and ONNX_FILE.is_file():
            try:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.log_severity_level = 3
                self._session = ort.InferenceSession(str(ONNX_FILE), opts, providers=["CPUExecutionProvider"])
                self.engine = "onnx"
                return
            except ImportError:
                if wanted == "onnx":
                    raise
                log.warning("onnxruntime is not installed: predicting with fastai")
        if not PKL_FILE.is_file():
            raise FileNotFoundError(f"Neither {ONNX_FILE.name} (with onnxruntime) nor {PKL_FILE.name} is usable.")
        from fastai.learner import load_learner

        self._learner = load_learner(PKL_FILE, cpu=True)  # a pickle: this Space's own model file
        self.engine = "torch"

    def probabilities(self, img: Image.Image) -> list[float]:
        with self._lock:
            if not self.engine:
                self._load()
            if self._session is not None:
                out = self._session.run([CONFIG["output"]], {CONFIG["input"]: preprocess(img)})[0]
                return [float(p) for p in out[0]]
            from fastai.vision.core import PILImage

            with self._learner.no_bar():
                _, _, probs = self._learner.predict(PILImage.create(np.asarray(img)))
            return [float(p) for p in probs]


MODEL = _Model()


def predict(image: Any) -> dict[str, float]:
    """Probability of each class for one image (PIL image, array, path or bytes)."""
    if image is None:
        return {}
    probs = MODEL.probabilities(load_image(image))
    return dict(zip(CLASSES, probs, strict=True))


def build_demo() -> Any:
    """The Gradio UI around ``predict`` (gradio is imported here only)."""
    import gradio as gr  # type: ignore[import-not-found,unused-ignore]

    return gr.Interface(
        fn=predict,
        inputs=gr.Image(type="pil", label="Photo"),
        outputs=gr.Label(num_top_classes=len(CLASSES), label="Classes"),
        title=CONFIG.get("title") or "Image classifier",
        description="Classes: " + ", ".join(CLASSES),
    )


if __name__ == "__main__":
    build_demo().launch()
