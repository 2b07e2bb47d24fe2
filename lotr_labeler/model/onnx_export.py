"""ONNX copy of a trained model, next to its ``model.pkl``, for ONNX Runtime inference.

``model.pkl`` stays the portable artefact (stock ``load_learner``); ``model.onnx`` beside it is
only a speed-up: the learner's model and its output activation (softmax for a single-label
classifier) as one graph. Its input is the batch the learner's validation transforms make
(resized, scaled, normalised): ``predict.Predictor`` keeps applying those with fastai, so the
preprocessing is the same code on both engines. The graph's metadata records the sha256 of the
``model.pkl`` it was exported from, so a ``model.onnx`` left from another export is ignored.

The export is checked with ONNX Runtime against torch before the rename; failing to export is
a logged warning and no file (prediction then uses torch). ``torch``, ``onnx`` and
``onnxruntime`` are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from lotr_labeler.errors import InvalidInput
from lotr_labeler.imaging import write_atomic

log = logging.getLogger(__name__)

SUFFIX = ".onnx"
PKL_SHA_KEY = "lotr_labeler.model_pkl_sha256"
VOCAB_KEY = "lotr_labeler.vocab"
INPUT, OUTPUT = "image", "probabilities"
OPSET = 17
AGREE_ATOL = 1e-5  # ONNX Runtime vs torch on the probe, in probability


def onnx_path(model_pkl: Path) -> Path:
    """Where the ONNX copy of ``model_pkl`` lives: same folder and name, ``.onnx``."""
    return Path(model_pkl).with_suffix(SUFFIX)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads slow conv kernels down)."""
    import psutil

    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(psutil.cpu_count(logical=False) or allowed, allowed))


def make_session(
    model: Path | bytes, providers: Sequence[str] = ("CPUExecutionProvider",), *, spinning: bool = True
) -> Any:
    """An ONNX Runtime session on ``model`` (a file or its bytes), one intra-op thread per core; on the
    first of ``providers`` ONNX Runtime can use (the CPU by default).

    ``spinning=False``: its threads sleep between their parts of a run instead of spinning, for a session
    that shares the cores with other work (embeddings decode the next batches meanwhile)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = physical_cores()
    opts.inter_op_num_threads = 1
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only: ORT's warnings go to stderr, not the logger
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=list(providers))


def metadata(session: Any) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map)


def probe_batch(dl: Any) -> Any:
    """A synthetic image through ``dl``'s validation transforms: a CPU float tensor (1, 3, H, W)."""
    import torch
    from fastai.torch_core import to_device
    from fastai.vision.core import PILImage

    probe = Image.new("RGB", (256, 192), (96, 128, 160))
    # On the loader's device: its Normalize statistics live there (a GPU while training).
    batch = dl.after_batch(to_device(dl.do_batch([dl.after_item((PILImage.create(probe),))]), dl.device))
    return batch[0].as_subclass(torch.Tensor).float().cpu()


def activation(learner: Any) -> Any:
    """The function turning the model's outputs into probabilities, as ``learn.predict`` applies it."""
    import torch

    act = getattr(learner.loss_func, "activation", None)
    return act if callable(act) else (lambda out: torch.softmax(out, dim=-1))


def export_onnx(learner: Any, model_pkl: Path) -> Path:
    """Write ``model.onnx`` next to ``model_pkl`` (the export of ``learner``), atomically.

    Parameters
    ----------
    learner
        The fastai Learner that ``model_pkl`` was exported from (any device; it is not changed).
    model_pkl
        Its ``learn.export()`` file; its sha256 goes into the ONNX metadata.

    Returns
    -------
    Path
        The ``.onnx`` file written.

    Raises
    ------
    InvalidInput
        When ONNX Runtime's probabilities differ from torch's on a probe image.
    Exception
        Whatever torch.onnx, onnx or onnxruntime raise (missing package, unsupported layer).
    """
    import onnx
    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self, model: Any, act: Any) -> None:
            super().__init__()
            self.model, self.act = model, act

        def forward(self, x: Any) -> Any:
            return self.act(self.model(x))

    # A CPU copy: the learner may still be training on a GPU, and eval() must not leak into it.
    wrapped = Probabilities(copy.deepcopy(learner.model).float().cpu(), activation(learner)).eval()
    x = probe_batch(learner.dls.valid)
    with tempfile.TemporaryDirectory(prefix="lotr-onnx-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes of the TorchScript exporter
        raw = Path(tmp) / "model.onnx"
        torch.onnx.export(
            wrapped,
            (x,),
            raw,
            dynamo=False,  # the TorchScript exporter: needs `onnx` only, not onnxscript
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"}, OUTPUT: {0: "batch"}},
            opset_version=OPSET,
        )
        proto = onnx.load(raw)
    vocab = [str(v) for v in learner.dls.vocab]
    onnx.helper.set_model_props(proto, {PKL_SHA_KEY: file_sha256(model_pkl), VOCAB_KEY: json.dumps(vocab)})
    data = proto.SerializeToString()

    with torch.inference_mode():
        expected = wrapped(x).numpy()
    got = make_session(data).run([OUTPUT], {INPUT: x.numpy()})[0]
    diff = float(abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if diff > AGREE_ATOL:
        raise InvalidInput(
            f"The ONNX export of {model_pkl} disagrees with torch by {diff:.2g} (allowed {AGREE_ATOL:g}); not written."
        )
    out = onnx_path(model_pkl)
    write_atomic(out, data)
    log.info("exported %s (%.1f MB)", out, len(data) / 1e6)
    return out


def export_quietly(learner: Any, model_pkl: Path) -> Path | None:
    """``export_onnx``, with any failure logged as a warning: the run still succeeds (torch predicts)."""
    try:
        return export_onnx(learner, model_pkl)
    except Exception as exc:  # the ONNX file is optional: any failure means "predict with torch"
        log.warning("no ONNX export for %s (%s: %s); predictions will use torch", model_pkl, type(exc).__name__, exc)
        log.debug("ONNX export failure", exc_info=True)
        onnx_path(model_pkl).unlink(missing_ok=True)  # an older one would be stale
        return None
