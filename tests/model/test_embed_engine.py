"""Embeddings on the GPU when one is there (ONNX Runtime's CUDA provider, else torch on CUDA), the engine
reported; on this CPU machine the path is the one it was. The GPU is faked: what is checked is the choice."""

from __future__ import annotations

from typing import Any

import pytest

from lotr_labeler.model import embed, hardware, onnx_embed
from lotr_labeler.model.network import CUDA_PROVIDER, Network
from lotr_labeler.store import Store

SIZE = 32


@pytest.mark.slow
def test_the_cpu_path_reports_its_engine(store: Store) -> None:
    assert not hardware.nvidia_present()  # this machine: the CPU path, unchanged
    assert onnx_embed.providers() == ("CPUExecutionProvider",)
    backbone = embed.resolve_backbone(store, "imagenet", pretrained=False, size=SIZE)
    network = embed.load_network(backbone, store.cache_dir)
    assert network.engine == "onnxruntime" and network.device == "cpu"
    assert network.engine_detail == "ONNX Runtime on the CPU"
    report = embed.compute_embeddings(store, backbone, network=network)
    assert report.engine == "ONNX Runtime on the CPU"
    assert report.summary().endswith("(ONNX Runtime on the CPU).")
    torch_net = embed.load_network(backbone)  # no cache folder: torch
    assert torch_net.engine_detail == "torch on the CPU"


def _fake_gpu(monkeypatch: pytest.MonkeyPatch, *, ort_cuda: bool, torch_cuda: bool) -> None:
    import onnxruntime as ort
    import torch

    real = ort.get_available_providers()
    monkeypatch.setattr(hardware, "nvidia_present", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: torch_cuda)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_PROVIDER, *real] if ort_cuda else real)


def test_onnxruntime_gpu_is_asked_for_cuda_first(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpu(monkeypatch, ort_cuda=True, torch_cuda=True)
    assert hardware.embedding_device() == "cuda"
    assert onnx_embed.providers() == (CUDA_PROVIDER, "CPUExecutionProvider")
    assert embed._onnx_first("cuda")  # ONNX Runtime takes the GPU: the body is exported from the CPU
    asked: list[tuple[str, ...]] = []
    from lotr_labeler.model import onnx_export

    real = onnx_export.make_session

    def spy(model: Any, providers: Any = ("CPUExecutionProvider",), **kw: Any) -> Any:
        asked.append(tuple(providers))
        return real(model, providers, **kw)

    monkeypatch.setattr(onnx_export, "make_session", spy)
    backbone = embed.resolve_backbone(store, "imagenet", pretrained=False, size=SIZE)
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):  # this ONNX Runtime has no CUDA: it says so
        network = embed.load_network(backbone, store.cache_dir)
    assert asked and set(asked) == {(CUDA_PROVIDER, "CPUExecutionProvider")}
    assert network.device == "cpu" and network.onnx is not None
    # The report names what really ran: this ONNX Runtime fell back to its CPU provider.
    assert network.engine_detail == "ONNX Runtime on the CPU"


def test_torch_takes_the_gpu_when_onnxruntime_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpu(monkeypatch, ort_cuda=False, torch_cuda=True)
    assert hardware.embedding_device() == "cuda"
    assert not embed._onnx_first("cuda")  # torch on CUDA beats ONNX Runtime on the CPU
    assert embed._onnx_first("cpu")
    net = Network(body=None, mean=None, std=None, size=SIZE, device="cuda")
    assert net.engine_detail == "torch on a CUDA GPU"
    _fake_gpu(monkeypatch, ort_cuda=False, torch_cuda=False)  # a driver but no usable CUDA torch
    assert hardware.embedding_device() == "cpu"
