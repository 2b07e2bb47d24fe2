"""Training in several processes (``accelerate launch``/torchrun): this process's rank, the fit
shared over the process group, and what a non-zero rank does (``train_replica``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lotr_labeler.errors import InvalidInput
from lotr_labeler.model import hardware
from lotr_labeler.model.dataset import check_dataset
from lotr_labeler.model.learner import DEFAULT_LR, TrainParams, build_learner, device_name
from lotr_labeler.store import Store


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
def shared_fit(learn: Any, enabled: bool) -> Iterator[None]:
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


def check_params(params: TrainParams) -> None:
    """InvalidInput for knobs a distributed run cannot honour."""
    if params.find_lr:
        raise InvalidInput("--find-lr cannot be used with --distributed (each process would find its own). Give --lr.")


def train_replica(store: Store, params: TrainParams) -> None:
    """The part of a distributed run a non-zero rank does: train its shard, record nothing.

    Rank 0 (``train_run``) creates the run, reports progress, exports and evaluates; the others only
    join the gradient exchange, reading the same images in the same order from the project folder.
    """
    check_params(params)
    snap = check_dataset(store)
    paths = [str(store.path(img).relative_to(store.root)) for img in snap.images]
    learn = build_learner(store, params, snap.images, paths, hardware.detect(device_name(), world_size()))
    with learn.no_bar(), learn.no_logging(), shared_fit(learn, True):
        learn.fine_tune(params.epochs, base_lr=params.lr or DEFAULT_LR, freeze_epochs=1)
