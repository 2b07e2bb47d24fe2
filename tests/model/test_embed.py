"""Embeddings: backbones (run body, resnet18 ImageNet / file / random), the content-hash cache,
batching with progress, and clear errors when weights cannot be had."""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lotr_labeler.errors import InvalidInput, NotFound, WeightsUnavailable
from lotr_labeler.model import embed, runs
from lotr_labeler.model.network import embed_arrays
from lotr_labeler.store import Store

SIZE = 32


pytestmark = pytest.mark.slow  # embeds with real networks


def test_cache_round_trip_and_order(tmp_path: Path) -> None:
    path = tmp_path / "e.npz"
    cache = embed.EmbeddingCache(path)
    assert len(cache) == 0 and cache.dim is None and cache.missing(["a", "b"]) == ["a", "b"]
    cache.add(["a", "b"], np.array([[1, 0], [0, 1]], dtype=np.float32))
    cache.add(["b", "c"], np.array([[9, 9], [2, 2]], dtype=np.float32))  # a known key keeps its vector
    cache.save()
    again = embed.EmbeddingCache(path)
    assert len(again) == 3 and again.dim == 2 and "c" in again
    assert again.matrix(["c", "a", "b"]).tolist() == [[2, 2], [1, 0], [0, 1]]
    with pytest.raises(KeyError, match="compute embeddings first"):
        again.matrix(["a", "zzz"])
    with pytest.raises(ValueError, match="width 3"):
        again.add(["d"], np.zeros((1, 3), dtype=np.float32))
    path.write_bytes(b"garbage")
    assert len(embed.EmbeddingCache(path)) == 0  # unreadable cache: recomputed, not a crash


def test_prepare_squashes_to_a_square_in_unit_range(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (120, 30), (255, 0, 0)).save(path)
    batch = embed.prepare([path], 16)
    assert batch.shape == (1, 3, 16, 16) and batch.dtype == np.float32
    assert batch[0, 0].min() == pytest.approx(1.0) and batch[0, 1:].max() == pytest.approx(0.0)


def test_random_backbone_embeds_once_per_content(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    backbone = embed.resolve_backbone(store, "imagenet", pretrained=False, size=SIZE)
    assert backbone.id == f"resnet18-random0-{SIZE}"
    seen: list[tuple[int, int]] = []
    report = embed.compute_embeddings(store, backbone, batch_size=5, progress=lambda p: seen.append((p.done, p.total)))
    assert report.computed == 18 and report.cached == 0 and not report.failed
    assert seen[0] == (0, 18) and seen[-1] == (18, 18) and [d for d, _ in seen] == [0, 5, 10, 15, 18]
    assert embed.cache_path(store, backbone).is_file()
    images, X = embed.embeddings(store, backbone, store.images())
    assert len(images) == 18 and X.shape == (18, 512) and np.isfinite(X).all()
    assert len({row.tobytes() for row in X}) == 18

    # Cached by content hash: a relabel changes nothing, and no network is even loaded.
    img = store.images()[0]
    store.relabel([img.id], "square" if img.label != "square" else "circle")
    monkeypatch.setattr(embed, "load_network", lambda b: pytest.fail("network loaded for cached images"))
    again = embed.compute_embeddings(store, backbone)
    assert again.computed == 0 and again.cached == 18
    assert embed.missing(store, backbone) == []


def test_random_init_is_the_same_in_every_process(store: Store) -> None:
    """The seeded random backbone must give the same vectors each time, or its cache would lie."""
    backbone = embed.Backbone("resnet18", SIZE, pretrained=False)
    paths = [store.path(img) for img in store.images()[:3]]
    batch = embed.prepare(paths, SIZE)
    a = embed_arrays(embed.load_network(backbone), batch)
    b = embed_arrays(embed.load_network(backbone), batch)
    assert np.array_equal(a, b)


def test_pretrained_weights_unavailable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models._api as api

    def offline(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailable) as err:
        embed.load_network(embed.Backbone("resnet18", SIZE, pretrained=True))
    message = str(err.value)
    assert "resnet18-f37072fd.pth" in message and "--backbone bundled" in message and "--weights" in message
    assert "weights folder" in message


def test_weights_file_backbone(store: Store, tmp_path: Path) -> None:
    import torch
    import torchvision

    with torch.random.fork_rng():
        torch.manual_seed(embed.RANDOM_SEED)
        model = torchvision.models.resnet18(weights=None)
    weights = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), weights)
    backbone = embed.resolve_backbone(store, "imagenet", weights=weights, size=SIZE)
    assert backbone.id.startswith("resnet18-file-") and backbone.weights_digest
    batch = embed.prepare([store.path(store.images()[0])], SIZE)
    from_file = embed_arrays(embed.load_network(backbone), batch)
    seeded = embed_arrays(embed.load_network(embed.Backbone("resnet18", SIZE, pretrained=False)), batch)
    assert np.allclose(from_file, seeded)

    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsUnavailable, match=r"bad.pth holds weights of another network"):
        embed.load_network(embed.resolve_backbone(store, "imagenet", weights=bad, size=SIZE))
    with pytest.raises(InvalidInput, match="does not exist"):
        embed.resolve_backbone(store, "imagenet", weights=tmp_path / "nope.pth")


def test_resolve_backbone_choices_and_errors(store: Store) -> None:
    auto = embed.resolve_backbone(store)
    assert auto.kind == "efficientnet_lite0" and auto.pretrained and auto.size == 224  # no run: the bundled network
    imagenet = embed.resolve_backbone(store, "imagenet")
    assert imagenet.kind == "resnet18" and imagenet.pretrained
    store.set_setting("embed_size", 96)
    assert embed.resolve_backbone(store).size == 96
    with pytest.raises(NotFound, match="no trained model"):
        embed.resolve_backbone(store, "run")
    with pytest.raises(InvalidInput, match="Must be one of: auto, run, bundled, imagenet"):
        embed.resolve_backbone(store, "vgg")
    with pytest.raises(InvalidInput, match="out of range"):
        embed.resolve_backbone(store, size=8)
    assert embed.Backbone.from_dict(auto.as_dict()) == auto


def test_run_body_backbone(store: Store) -> None:
    """The current run's body (load_learner(model.pkl).model[0]) with the run's own input size."""
    import fastai.vision.all as fv
    import pandas as pd
    import torchvision

    images = store.images()
    df = pd.DataFrame({"path": [i.relpath for i in images], "label": [i.label for i in images]})
    dls = fv.ImageDataLoaders.from_df(
        df, path=store.root, fn_col="path", label_col="label", item_tfms=fv.Resize(SIZE), bs=6, num_workers=0
    )
    learn = fv.vision_learner(dls, torchvision.models.resnet18, pretrained=False)
    run = runs.create_run(store, {"size": SIZE, "pretrained": False})
    learn.export(run.model_path)
    runs.finish_run(store, run.id, "done", vocab=[str(v) for v in dls.vocab])

    # auto: a run trained from scratch sees less than the bundled ImageNet network, so auto passes it over
    assert embed.resolve_backbone(store).kind == "efficientnet_lite0"
    backbone = embed.resolve_backbone(store, "run")
    assert backbone.kind == "run" and backbone.run_id == run.id and backbone.size == SIZE
    assert backbone.id == f"run-{run.id}-{SIZE}"
    network = embed.load_network(backbone)
    assert network.mean is None  # trained without pretrained weights: fastai added no Normalize
    report = embed.compute_embeddings(store, backbone, network=network)
    assert report.computed == 18
    _, X = embed.embeddings(store, backbone, store.images())
    assert X.shape == (18, 512) and np.isfinite(X).all()
    # The body's weights are the run's, not a fresh network's.
    batch = embed.prepare([store.path(images[0])], SIZE)
    fresh = embed_arrays(embed.load_network(embed.Backbone("resnet18", SIZE, pretrained=False)), batch)
    assert not np.allclose(embed_arrays(network, batch), fresh)

    run.model_path.write_bytes(b"not a pickle")
    with pytest.raises(InvalidInput, match="Use the resnet18 backbone instead"):
        embed.load_network(backbone)
