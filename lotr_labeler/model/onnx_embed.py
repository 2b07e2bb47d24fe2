"""Backbone embeddings through ONNX Runtime: the same vectors as torch, about twice as fast on a CPU.

A backbone's body, with its input normalisation and the average pool, is exported once to
``cache/onnx-embed/<backbone id>-<key>.onnx`` (input: an (N, 3, S, S) batch in 0..1; output: the
(N, D) pooled features ``network.embed_arrays`` makes with torch). ``key`` changes whenever the
vectors would: a format version, plus the sha256 of the model file for a run's body (the backbone
id already carries the size, the weights file's digest and the random seed). The caller
(``model/embed.py``) names the file with ``export_path``; every other function takes that path.

Before the export is written, ONNX Runtime's vectors on a probe batch are compared with torch's;
beyond ``REL_TOL`` (relative to the largest feature) nothing is written and embedding stays on
torch, with the reason logged. A sidecar ``.json`` holds the file's sha256: a file that does not
match it, or that ONNX Runtime cannot load, is deleted and exported again. With a valid export on
disk, neither torch nor fastai is imported at all (a job starts seconds sooner).

``torch``, ``onnx`` and ``onnxruntime`` are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lotr_labeler.imaging import write_atomic
from lotr_labeler.model.network import CUDA_PROVIDER, INPUT, OUTPUT, Network, OnnxEmbedder, embed_arrays

log = logging.getLogger(__name__)

ONNX_DIR = "onnx-embed"
FORMAT = "v1"  # bump when the graph's contract (input range, pooling) changes
OPSET = 17
REL_TOL = 1e-4  # max |onnx - torch| / max |torch| on the probe
PROBE_BATCH = 2
# A new export takes a few seconds (torch.onnx plus the check); for fewer images than this it costs more
# than it saves, so such small jobs use torch unless an export is already cached.
EXPORT_MIN = 64

# Exports made by this process, by file name: another project with the same backbone (the test
# suite, the bench) writes the bytes without exporting and checking again.
_made: dict[str, bytes] = {}
_made_lock = threading.Lock()
# sha256 of run model files by (path, mtime_ns, size): hashing 45 MB on every load is wasteful.
_file_sha: dict[tuple[str, int, int], str] = {}


def _model_sha(path: str) -> str:
    p = Path(path)
    st = p.stat()
    key = (str(p.absolute()), st.st_mtime_ns, st.st_size)
    if key not in _file_sha:
        digest = hashlib.sha256()
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _file_sha[key] = digest.hexdigest()
    return _file_sha[key]


def export_path(cache_dir: Path, backbone_id: str, model_file: str | None = None) -> Path:
    """Where the ONNX body of the backbone ``backbone_id`` lives in a project's cache; ``model_file``:
    the model a run's body comes from (its content keys the file: a retrained run exports anew)."""
    key = FORMAT
    if model_file:
        key += "-" + _model_sha(model_file)[:16]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", backbone_id)
    return cache_dir / ONNX_DIR / f"{safe}-{key}.onnx"


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def probe(size: int) -> npt.NDArray[np.float32]:
    """A fixed batch of noise in 0..1: every value path of the network is exercised."""
    return np.random.default_rng(0).random((PROBE_BATCH, 3, size, size), dtype=np.float32)


def relative_diff(got: npt.NDArray[np.float32], expected: npt.NDArray[np.float32]) -> float:
    if got.shape != expected.shape:
        return float("inf")
    scale = max(float(np.abs(expected).max()), 1e-12)
    return float(np.abs(got - expected).max()) / scale


def export_bytes(network: Network) -> tuple[bytes, float]:
    """The ONNX graph of ``network`` (normalise, body, pool) and its relative difference to torch on
    the probe. Raises ``ValueError`` when they disagree beyond ``REL_TOL``; torch/onnx errors pass."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, body: Any, mean: Any, std: Any) -> None:
            super().__init__()
            self.body = body
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)

        def forward(self, x: Any) -> Any:
            features = self.body((x - self.mean) / self.std)
            return features.mean(dim=(2, 3)) if features.ndim == 4 else features.flatten(1)

    channels = 3
    mean = torch.tensor(network.mean or (0.0,) * channels, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(network.std or (1.0,) * channels, dtype=torch.float32).view(1, -1, 1, 1)
    wrapped = Pooled(network.body, mean, std).eval()
    x = probe(network.size)
    with tempfile.TemporaryDirectory(prefix="lotr-onnx-embed-") as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation notes of the TorchScript exporter
        raw = Path(tmp) / "body.onnx"
        torch.onnx.export(
            wrapped,
            (torch.from_numpy(x),),
            raw,
            dynamo=False,  # the TorchScript exporter: needs `onnx` only, not onnxscript
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            opset_version=OPSET,
        )
        data = raw.read_bytes()
    expected = embed_arrays(network, x)  # the torch path, as embeddings were always made
    diff = relative_diff(OnnxEmbedder(_session(data), Path("<memory>"))(x), expected)
    if diff > REL_TOL:
        raise ValueError(f"ONNX Runtime differs from torch by {diff:.2g} relative (allowed {REL_TOL:g})")
    return data, diff


def providers() -> tuple[str, ...]:
    """ONNX Runtime's CUDA provider first where its package (onnxruntime-gpu) and a GPU are there, else the CPU."""
    import onnxruntime as ort

    from lotr_labeler.model.hardware import nvidia_present

    if CUDA_PROVIDER in ort.get_available_providers() and nvidia_present():
        return (CUDA_PROVIDER, "CPUExecutionProvider")
    return ("CPUExecutionProvider",)


def _session(model: Path | bytes) -> Any:
    from lotr_labeler.model.onnx_export import make_session

    # Not spinning: the prefetch thread decodes the next batches on the same cores while a batch runs
    # (spinning threads took its cycles: 0.61-0.69 of the forward pass alone at 32 px, 20,000 images).
    return make_session(model, providers(), spinning=False)


def load(path: Path) -> OnnxEmbedder | None:
    """The export at ``path`` when it is there and intact, else None (a bad one is deleted)."""
    if not path.is_file():
        return None
    try:
        meta = json.loads(_sidecar(path).read_text())
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise ValueError("its sha256 does not match the one recorded when it was checked")
        return OnnxEmbedder(_session(data), path)
    except Exception as exc:  # unreadable JSON, truncated or foreign file, ORT load failure: export again
        log.warning("ignoring the ONNX embedding export %s (%s: %s); exporting it again", path, type(exc).__name__, exc)
        path.unlink(missing_ok=True)
        _sidecar(path).unlink(missing_ok=True)
        return None


def save(path: Path, network: Network) -> OnnxEmbedder:
    """Export ``network`` (a torch body), check it against torch, write it at ``path``. Raises on failure."""
    with _made_lock:
        data = _made.get(path.name)
        diff: float | None = None
        if data is None:
            data, diff = export_bytes(network)
            _made[path.name] = data
    embedder = OnnxEmbedder(_session(data), path)
    meta = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "relative_diff": diff}
    # The sidecar first: a reader in another process sees the .onnx only once its sidecar is there
    # (the other order let a reader between the two writes judge a good export bad and delete it).
    write_atomic(_sidecar(path), json.dumps(meta).encode())
    write_atomic(path, data)
    log.info("exported a body to %s (%.1f MB)", path, len(data) / 1e6)
    return embedder


def attach(network: Network, path: Path, *, export: bool = True) -> Network:
    """Give a torch ``network`` its ONNX Runtime session (the export at ``path``, else a new one there
    unless ``export`` is False); on any failure it stays on torch, with the reason logged. An export is
    tried once per network."""
    if network.onnx is not None or network.extra.get("onnx_tried"):
        return network
    if not export:
        network.onnx = load(path)
        return network
    network.extra["onnx_tried"] = True
    try:
        network.onnx = load(path) or save(path, network)
    except Exception as exc:  # torch.onnx, onnx, onnxruntime or the check: embedding stays on torch
        reason = f"{type(exc).__name__}: {exc}"
        network.extra["onnx_error"] = reason
        log.warning("embedding with torch, not ONNX Runtime, for %s (%s)", path.stem, reason)
        log.debug("ONNX embedding export failure", exc_info=True)
    return network
