"""The GPU training path, with the device faked on this CPU machine: which settings are chosen (workers,
pinned memory, precision, layout), that a run with them trains, and that its model.pkl stays plain fp32."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import SHAPES, image_bytes, shape_image

from lotr_labeler.cli import main
from lotr_labeler.imaging import normalize
from lotr_labeler.model import hardware, learner, runs
from lotr_labeler.model.dataset import check_dataset
from lotr_labeler.model.hardware import Hardware
from lotr_labeler.store import Store

TINY = ["--no-pretrained", "--epochs", "1", "--size", "64", "--bs", "8", "--json"]


def _fill(store: Store, per_class: int = 8, valid: int = 2) -> None:
    for shape in SHAPES:
        store.add_class(shape)
        seed = 500 * (SHAPES.index(shape) + 1)
        while store.count(shape) < per_class or store.count(shape, split="valid") < valid:
            store.add_image(normalize(image_bytes(shape_image(shape, seed))), shape, source="upload")
            seed += 1
    store.set_setting("min_images_per_class", 3)


def test_cuda_gets_workers_pinned_memory_mixed_precision_and_channels_last() -> None:
    assert hardware.choose("cuda", cores=6, bf16_supported=True) == Hardware("cuda", 6, True, "bf16", True)
    # A GPU without bf16 (before Ampere): fp16, which fastai's MixedPrecision trains with loss scaling.
    assert hardware.choose("cuda", cores=6, bf16_supported=False).precision == "fp16"
    assert hardware.choose("cuda", cores=64, bf16_supported=True).num_workers == hardware.MAX_WORKERS
    # Two processes share the cores: a GPU each, half the workers each.
    assert hardware.choose("cuda", cores=6, bf16_supported=True, processes=2).num_workers == 3


def test_cpu_keeps_no_workers_and_fp32() -> None:
    """Measured on this 2-core machine (bench_train.py): workers cost more than they give."""
    for device in ("cpu", "mps"):
        assert hardware.choose(device, cores=2, bf16_supported=True) == Hardware(device, 0, False, "fp32", False)


def test_detect_on_a_faked_cuda_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(hardware, "usable_cores", lambda: 12)
    assert learner.device_name() == "cuda"
    assert hardware.detect(learner.device_name()) == Hardware("cuda", 8, True, "fp16", True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert hardware.detect("cuda", processes=4).as_dict() == {
        "device": "cuda",
        "num_workers": 3,
        "pin_memory": True,
        "precision": "bf16",
        "channels_last": True,
    }


@pytest.mark.slow
def test_the_cpu_run_is_unchanged(empty_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(empty_store)
    assert main(["train", *TINY]) == 0, capsys.readouterr().err
    run = runs.get_run(empty_store, json.loads(capsys.readouterr().out)["id"])
    assert run.full_metrics()["hardware"] == Hardware("cpu", 0, False, "fp32", False).as_dict()


def _learner_settings(learn: Any) -> dict[str, Any]:
    from fastai.callback.channelslast import ChannelsLast
    from fastai.callback.fp16 import MixedPrecision

    mixed = [cb for cb in learn.cbs if isinstance(cb, MixedPrecision)]
    return {
        "workers": [dl.fake_l.num_workers for dl in learn.dls.loaders],
        "pin_memory": [dl.pin_memory for dl in learn.dls.loaders],
        "amp": [cb.amp_mode.value for cb in mixed],
        "channels_last": any(isinstance(cb, ChannelsLast) for cb in learn.cbs),
    }


def test_fp16_learner_has_fastai_loss_scaling(store: Store) -> None:
    hw = replace(hardware.choose("cuda", cores=2, bf16_supported=False), device="cpu")
    snap = check_dataset(store, 1)
    paths = [str(store.path(img).relative_to(store.root)) for img in snap.images]
    learn = learner.build_learner(store, learner.TrainParams(pretrained=False, size=64), snap.images, paths, hw)
    assert _learner_settings(learn) == {
        "workers": [2, 2],
        "pin_memory": [True, True],
        "amp": ["fp16"],  # MixedPrecision(fp16): autocast plus its GradScaler
        "channels_last": True,
    }


@pytest.mark.slow
def test_gpu_settings_train_and_export_a_plain_fp32_model(
    empty_store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CUDA settings (bf16, channels-last, a worker per core, pinned memory) on this CPU: the run
    trains, and model.pkl opens with stock load_learner as an fp32 model with no precision callback."""
    import fastai.vision.all as fv
    import torch
    from fastai.callback.channelslast import ChannelsLast
    from fastai.callback.fp16 import MixedPrecision

    gpu = hardware.choose("cuda", cores=2, bf16_supported=True)
    on_cpu = replace(gpu, device="cpu")  # everything the GPU would get, on the device there is
    monkeypatch.setattr(hardware, "detect", lambda device, processes=1: on_cpu)
    built: list[dict[str, Any]] = []
    real_build = learner.build_learner

    def build(*args: Any) -> Any:
        learn = real_build(*args)
        built.append(_learner_settings(learn))
        return learn

    monkeypatch.setattr(learner, "build_learner", build)
    _fill(empty_store)
    with pytest.warns(UserWarning, match="CUDA is not available"):  # autocast('cuda') disables itself here
        assert main(["train", *TINY]) == 0, capsys.readouterr().err
    assert built == [{"workers": [2, 2], "pin_memory": [True, True], "amp": ["bf16"], "channels_last": True}]
    run = runs.get_run(empty_store, json.loads(capsys.readouterr().out)["id"])
    assert run.full_metrics()["hardware"] == on_cpu.as_dict()

    learn = fv.load_learner(Path(run.model_path), cpu=True)
    floats = [*learn.model.parameters(), *(b for b in learn.model.buffers() if b.is_floating_point())]
    dtypes = {t.dtype for t in floats}
    assert dtypes == {torch.float32}
    convs = [m.weight for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous() for w in convs)  # the default layout, not channels-last
    assert not [cb for cb in learn.cbs if isinstance(cb, (MixedPrecision, ChannelsLast))]
    assert [dl.fake_l.num_workers for dl in learn.dls.loaders] == [0, 0]
    assert not any(dl.pin_memory for dl in learn.dls.loaders)
    image = empty_store.path(empty_store.images()[0])
    with learn.no_bar():
        label, _, probs = learn.predict(image)
    assert str(label) in SHAPES and probs.dtype == torch.float32


def test_each_rank_trains_on_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun's second process on this machine
    hardware.bind_local_gpu(hardware.choose("cuda", cores=8, bf16_supported=True, processes=2))
    hardware.bind_local_gpu(hardware.choose("cpu", cores=8, bf16_supported=False))  # gloo on the CPU: no GPU
    monkeypatch.delenv("LOCAL_RANK")
    hardware.bind_local_gpu(hardware.choose("cuda", cores=8, bf16_supported=True))  # alone: the current GPU
    assert chosen == [1]
