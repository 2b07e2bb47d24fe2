"""How training and embeddings use the machine: device, DataLoader workers, pinned memory, precision.

One place decides, from the device and the machine, so the CPU path stays as it was measured and a
GPU gets what keeps it busy (what plain fastai and the course do there):

- CUDA: a DataLoader worker per core (split between the processes of a distributed run), pinned
  memory, mixed precision (bf16 where the GPU supports it, else fp16 with fastai's loss scaling) and
  channels-last (tensor cores run convolutions in that layout).
- CPU (and Apple MPS): no workers (measured on a 2-core machine, bench/bench_train.py: two workers
  decode in other processes but take the cores the forward pass needs), fp32, the default layout.

The exported ``model.pkl`` is always plain: fp32, default layout, no precision callbacks, loaders
without workers (``plain_for_export``), so stock ``load_learner`` opens it on any CPU.
torch and fastai are imported inside functions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PRECISIONS = ("fp32", "bf16", "fp16")
# More workers than this feed no single GPU faster at these image sizes; they only cost memory.
MAX_WORKERS = 8


@dataclass(frozen=True)
class Hardware:
    """The settings a training run uses; recorded in its ``metrics.json``."""

    device: str  # "cuda", "mps" or "cpu"
    num_workers: int
    pin_memory: bool
    precision: str  # one of PRECISIONS
    channels_last: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def usable_cores() -> int:
    """Cores this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def choose(device: str, cores: int, bf16_supported: bool, processes: int = 1) -> Hardware:
    """The settings for ``device`` on a machine with ``cores`` cores shared by ``processes`` trainers."""
    if device == "cuda":
        workers = max(1, min(MAX_WORKERS, cores // max(1, processes)))
        return Hardware("cuda", workers, True, "bf16" if bf16_supported else "fp16", True)
    return Hardware(device, 0, False, "fp32", False)


def detect(device: str, processes: int = 1) -> Hardware:
    """``choose`` for this machine: its cores, and whether its GPU does bf16."""
    bf16 = False
    if device == "cuda":
        import torch

        bf16 = bool(torch.cuda.is_bf16_supported())
    return choose(device, usable_cores(), bf16, processes)


def bind_local_gpu(hw: Hardware) -> None:
    """Under torchrun/accelerate with several GPUs, make "cuda" mean this process's GPU (``LOCAL_RANK``):
    the loaders put batches on the current device, where accelerate puts this rank's model."""
    local = os.environ.get("LOCAL_RANK")
    if hw.device == "cuda" and local:
        import torch

        torch.cuda.set_device(int(local))


def apply_precision(learn: Any, hw: Hardware) -> None:
    """Mixed precision and channels-last on ``learn`` as ``hw`` says (fastai's own callbacks)."""
    from fastai.callback.channelslast import ChannelsLast
    from fastai.callback.fp16 import AMPMode, MixedPrecision

    if hw.precision == "bf16":
        learn.add_cb(MixedPrecision(amp_mode=AMPMode.BF16))  # learn.to_bf16(): bf16 needs no loss scaling
    elif hw.precision == "fp16":
        learn.add_cb(MixedPrecision(amp_mode=AMPMode.FP16))  # learn.to_fp16(): with its GradScaler
    if hw.channels_last:
        learn.add_cb(ChannelsLast())


@contextmanager
def plain_for_export(learn: Any) -> Iterator[None]:
    """``learn`` as a CPU user's stock ``load_learner`` should get it, for the span of an export:
    fp32 parameters in the default layout, no mixed-precision or channels-last callback, loaders
    without workers or pinned memory. The training loaders come back afterwards (predictions)."""
    import torch
    from fastai.callback.channelslast import ChannelsLast
    from fastai.callback.fp16 import MixedPrecision
    from fastai.data.core import DataLoaders

    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, (MixedPrecision, ChannelsLast))])
    learn.model.float().to(memory_format=torch.contiguous_format)
    trained = learn.dls
    learn.dls = DataLoaders(
        *[dl.new(num_workers=0, pin_memory=False) for dl in trained.loaders], path=trained.path, device=trained.device
    )
    try:
        yield
    finally:
        learn.dls = trained


# -- embeddings -------------------------------------------------------------------------------


def nvidia_present() -> bool:
    """Whether an NVIDIA driver is loaded, without importing torch (the CPU path stays as fast to start)."""
    return Path("/proc/driver/nvidia/version").is_file() or Path("/dev/nvidiactl").exists()


def embedding_device() -> str:
    """Where torch embeds: ``cuda`` when a CUDA GPU is usable, else ``cpu``."""
    if not nvidia_present():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
