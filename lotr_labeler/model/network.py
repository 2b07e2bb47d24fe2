"""A loaded embedding body and one batch through it: ``Network`` (the body with the input statistics
it expects) and ``embed_arrays`` (normalise, forward, average-pool), on torch or, when the network
carries one, an ONNX Runtime session (``OnnxEmbedder``, attached by ``model/onnx_embed.py``).

Below both ``model/embed.py`` (which loads networks and caches their vectors) and
``model/onnx_embed.py`` (which exports a network and checks it against ``embed_arrays``).
torch is imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]

INPUT, OUTPUT = "image", "features"  # the exported graph's input and output names
RUN_BATCH = 16  # images per ONNX Runtime call: bigger batches gain nothing on 2 cores and cost memory
CUDA_PROVIDER = "CUDAExecutionProvider"


@dataclass(frozen=True)
class OnnxEmbedder:
    """An ONNX Runtime session on an exported body; ``path`` is the file it was loaded from."""

    session: Any
    path: Path

    @property
    def provider(self) -> str:
        """The execution provider that runs the graph (the first one ONNX Runtime accepted)."""
        return str(self.session.get_providers()[0])

    def __call__(self, batch: npt.NDArray[np.float32]) -> Matrix:
        step = RUN_BATCH if self.provider == "CPUExecutionProvider" else max(1, len(batch))  # a GPU takes it whole
        parts = [
            self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(batch[i : i + step], dtype=np.float32)})[0]
            for i in range(0, len(batch), step)
        ]
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


@dataclass
class Network:
    """A loaded body and the input statistics it expects (``None``: inputs in 0..1).

    ``onnx``, when set, embeds instead of torch (normalisation included); ``body`` is then None
    when the export came from the cache and torch was never loaded.
    """

    body: Any
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    size: int
    extra: dict[str, Any] = field(default_factory=dict)
    onnx: OnnxEmbedder | None = None
    device: str = "cpu"  # where the torch body runs

    @property
    def engine(self) -> str:
        return "onnxruntime" if self.onnx is not None else "torch"

    @property
    def engine_detail(self) -> str:
        """The runtime and the hardware that embed, as reported to the user ("ONNX Runtime on the CPU")."""
        if self.onnx is not None:
            where = "a CUDA GPU" if self.onnx.provider == CUDA_PROVIDER else "the CPU"
            return f"ONNX Runtime on {where}"
        return "torch on a CUDA GPU" if self.device == "cuda" else "torch on the CPU"


def embed_arrays(network: Network, batch: npt.NDArray[np.float32]) -> Matrix:
    """Pooled body features of an (N, 3, H, W) batch in 0..1 (ONNX Runtime when the network has it)."""
    if network.onnx is not None:
        return network.onnx(batch)
    import torch

    x = torch.from_numpy(batch).to(network.device)
    if network.mean is not None and network.std is not None:
        mean = torch.tensor(network.mean, dtype=torch.float32, device=network.device).view(1, -1, 1, 1)
        std = torch.tensor(network.std, dtype=torch.float32, device=network.device).view(1, -1, 1, 1)
        x = (x - mean) / std
    with torch.inference_mode():
        features = network.body(x)
        pooled = features.mean(dim=(2, 3)) if features.ndim == 4 else features.flatten(1)
    return np.ascontiguousarray(pooled.float().cpu().numpy(), dtype=np.float32)
