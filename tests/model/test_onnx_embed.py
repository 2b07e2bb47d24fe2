"""Embeddings through ONNX Runtime: the same vectors as torch (so the content-hash cache stays
valid), exported once per backbone into the project's cache, reused without torch, and a corrupt,
missing or disagreeing export falls back (re-export, or torch) with the reason logged."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lotr_labeler.model import embed, onnx_embed
from lotr_labeler.model.network import embed_arrays
from lotr_labeler.store import Store

SIZE = 32


pytestmark = pytest.mark.slow  # exports and runs embedding networks


def torch_vectors(store: Store, backbone: embed.Backbone) -> np.ndarray:
    batch = embed.prepare([store.path(img) for img in store.images()], SIZE)
    network = embed.load_network(backbone)  # no cache folder: torch, as embeddings were made before
    assert network.engine == "torch"
    return embed_arrays(network, batch)


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture
def export_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Export for the 18 test images too (a real project waits for ``EXPORT_MIN`` images)."""
    monkeypatch.setattr(onnx_embed, "EXPORT_MIN", 1)


@pytest.mark.usefixtures("export_small")
def test_onnx_embeddings_equal_torch_within_tolerance(store: Store) -> None:
    backbone = embed.Backbone("resnet18", SIZE, pretrained=False)
    report = embed.compute_embeddings(store, backbone, batch_size=7)
    assert report.computed == 18
    export = onnx_embed.export_path(store.cache_dir, backbone.id, backbone.model_path)
    assert export.is_file() and export.parent == store.cache_dir / onnx_embed.ONNX_DIR
    _, X = embed.embeddings(store, backbone, store.images())
    assert relative(X, torch_vectors(store, backbone)) <= onnx_embed.REL_TOL

    network = embed.load_network(backbone, store.cache_dir)
    assert network.engine == "onnxruntime" and network.body is None  # loaded from the cache: no torch body
    batch = embed.prepare([store.path(img) for img in store.images()], SIZE)
    assert relative(embed_arrays(network, batch), X) <= onnx_embed.REL_TOL


@pytest.mark.usefixtures("export_small")
def test_torch_made_cache_stays_valid(store: Store) -> None:
    """Vectors cached by torch (before this engine existed) are what ONNX Runtime computes now."""
    backbone = embed.Backbone("resnet18", SIZE, pretrained=False)
    images = store.images()
    torch_net = embed.load_network(backbone)
    torch_net.extra["onnx_tried"] = True  # keep this one on torch
    embed.compute_embeddings(store, backbone, images[:9], network=torch_net)
    assert torch_net.engine == "torch"
    embed.compute_embeddings(store, backbone)  # the rest through ONNX Runtime
    assert onnx_embed.export_path(store.cache_dir, backbone.id, backbone.model_path).is_file()
    _, X = embed.embeddings(store, backbone, images)
    assert relative(X, torch_vectors(store, backbone)) <= onnx_embed.REL_TOL


def test_a_small_job_uses_an_export_but_does_not_make_one(store: Store) -> None:
    backbone = embed.Backbone("resnet18", SIZE, pretrained=False)
    export = onnx_embed.export_path(store.cache_dir, backbone.id, backbone.model_path)
    images = store.images()
    assert len(images) < onnx_embed.EXPORT_MIN
    embed.compute_embeddings(store, backbone, images[:9])
    assert not export.exists()  # 9 images: a new export would cost more than it saves
    assert embed.load_network(backbone, store.cache_dir, export=False).engine == "torch"
    embed.load_network(backbone, store.cache_dir)  # a big job made one
    assert export.is_file()
    net = embed.load_network(backbone)
    embed.compute_embeddings(store, backbone, images[9:], network=net)
    assert net.engine == "onnxruntime"  # the caller's torch network was given the cached export


def test_cached_export_is_used_without_importing_torch(store: Store) -> None:
    backbone = embed.Backbone("resnet18", SIZE, pretrained=False)
    embed.load_network(backbone, store.cache_dir)  # exports
    code = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from lotr_labeler.model import embed\n"
        "from lotr_labeler.model.network import embed_arrays\n"
        f"n = embed.load_network(embed.Backbone('resnet18', {SIZE}, pretrained=False), Path(sys.argv[1]))\n"
        f"v = embed_arrays(n, np.zeros((2, 3, {SIZE}, {SIZE}), np.float32))\n"
        "print(n.engine, v.shape, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(store.cache_dir)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["onnxruntime", "(2,", "512)", "False"]


def test_corrupt_export_is_replaced(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    backbone = embed.Backbone("resnet18", SIZE, pretrained=False)
    embed.load_network(backbone, store.cache_dir)
    export = onnx_embed.export_path(store.cache_dir, backbone.id, backbone.model_path)
    good = export.read_bytes()
    export.write_bytes(good[:1000])  # truncated
    with caplog.at_level(logging.WARNING, logger="lotr_labeler.model.onnx_embed"):
        network = embed.load_network(backbone, store.cache_dir)
    assert "ignoring the ONNX embedding export" in caplog.text and "exporting it again" in caplog.text
    assert network.engine == "onnxruntime" and export.read_bytes() == good

    # Same length, other bytes: ONNX Runtime might load it, the recorded sha256 does not match.
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    export.write_bytes(bytes(flipped))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lotr_labeler.model.onnx_embed"):
        assert onnx_embed.load(export) is None
    assert "sha256 does not match" in caplog.text and not export.exists()


def test_a_reader_between_the_two_writes_keeps_the_export(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process loading the export while ``save`` writes its two files finds no export yet
    or a whole one: it never judges a good export bad and deletes it."""
    backbone = embed.Backbone("resnet18", SIZE, pretrained=False)
    export = onnx_embed.export_path(store.cache_dir, backbone.id, backbone.model_path)
    seen: list[bool] = []
    write = onnx_embed.write_atomic

    def write_then_look(path: Path, data: bytes) -> None:
        write(path, data)
        seen.append(onnx_embed.load(export) is not None)  # the other process's look

    monkeypatch.setattr(onnx_embed, "write_atomic", write_then_look)
    with caplog.at_level(logging.WARNING, logger="lotr_labeler.model.onnx_embed"):
        assert embed.load_network(backbone, store.cache_dir).engine == "onnxruntime"
    assert seen == [False, True]  # after the first write: nothing yet; after the second: the export
    assert "ignoring" not in caplog.text and export.is_file()


def test_failed_or_disagreeing_export_falls_back_to_torch(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backbone = embed.Backbone("resnet18", SIZE, pretrained=False)
    monkeypatch.setattr(onnx_embed, "_made", {})  # export and check for real in this test
    monkeypatch.setattr(onnx_embed, "REL_TOL", -1.0)  # any difference at all is "too large"
    with caplog.at_level(logging.WARNING, logger="lotr_labeler.model.onnx_embed"):
        network = embed.load_network(backbone, store.cache_dir)
    assert network.engine == "torch" and "differs from torch" in network.extra["onnx_error"]
    assert "embedding with torch, not ONNX Runtime" in caplog.text
    assert not onnx_embed.export_path(store.cache_dir, backbone.id, backbone.model_path).exists()  # nothing written

    import torch

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken)
    report = embed.compute_embeddings(store, backbone)
    assert report.computed == 18
    _, X = embed.embeddings(store, backbone, store.images())
    assert np.allclose(X, torch_vectors(store, backbone), rtol=0, atol=1e-6)


def test_run_export_is_keyed_by_the_model_file(tmp_path: Path) -> None:
    model = tmp_path / "model.pkl"
    model.write_bytes(b"first")
    backbone = embed.Backbone("run", 64, run_id="r1", model_path=str(model))
    first = onnx_embed.export_path(tmp_path, backbone.id, backbone.model_path)
    model.write_bytes(b"second model")
    second = onnx_embed.export_path(tmp_path, backbone.id, backbone.model_path)
    assert first != second and first.name.startswith("run-r1-64-") and second.name.startswith("run-r1-64-")
    other_size = onnx_embed.export_path(tmp_path, embed.Backbone("resnet18", 96, pretrained=False).id)
    assert other_size.name.startswith("resnet18-random0-96-")
