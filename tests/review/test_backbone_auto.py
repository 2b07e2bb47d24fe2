"""``--backbone best`` (``choose_backbone``): the backbone whose K-fold head is most accurate on the labels wins."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import TinyModel, image_bytes, register
from PIL import Image

from lotr_labeler.imaging import normalize
from lotr_labeler.model import embed
from lotr_labeler.review import backbone_choice, last_fit
from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}
SIZE = 32


pytestmark = pytest.mark.slow  # K-fold heads on several backbones


def colour_image(rgb: tuple[int, int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.array(rgb, dtype=np.int16)[None, None, :]
    noise = rng.integers(-40, 40, (48, 48, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture
def colours(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """3 colour classes x 12 images; no ImageNet weights on this machine (as offline)."""
    monkeypatch.setattr(embed, "imagenet_weights_cached", lambda: False)
    store = create_project(data_root, "demo", "empty")
    for k, (name, rgb) in enumerate(COLOURS.items()):
        store.add_class(name)
        for i in range(12):
            store.add_image(normalize(image_bytes(colour_image(rgb, 100 * k + i))), name, source="upload")
    yield store
    store.close()


def blank_weights(path: Path) -> Path:
    """A resnet18 state dict whose convolutions are all zero: every image embeds the same."""
    import torch
    import torchvision

    model = torchvision.models.resnet18(weights=None)
    state = {
        k: torch.zeros_like(v) if k.endswith("conv1.weight") or ".conv" in k else v
        for k, v in model.state_dict().items()
    }
    torch.save(state, path)
    return path


def test_auto_picks_the_backbone_with_the_better_cv_accuracy(colours: Store, tmp_path: Path) -> None:
    weights = blank_weights(tmp_path / "blank.pth")
    choice = backbone_choice.choose_backbone(colours, weights=weights, size=SIZE)
    assert choice is not None
    by_name = {t.name: t for t in choice.trials}
    assert choice.backbone.id == embed.Backbone("efficientnet_lite0", SIZE, pretrained=True).id
    bundled = by_name["EfficientNet-Lite0 (bundled)"]
    assert bundled.accuracy is not None and bundled.accuracy >= 0.9
    blank = by_name["weights file blank.pth"]
    assert blank.accuracy is not None and blank.accuracy < 0.5  # constant features: a guess
    assert by_name["ImageNet resnet18"].backbone is None and "not downloaded" in by_name["ImageNet resnet18"].note
    assert "random init" not in by_name  # a pretrained network is there: random features are not tried
    # It says which and why, with both figures.
    assert re.match(
        r"EfficientNet-Lite0 \(bundled\): CV accuracy (0\.9\d|1\.00) vs weights file blank\.pth 0\.", choice.reason
    )
    assert "skipped: ImageNet resnet18" in choice.reason


def test_auto_prefers_the_bundled_network_over_a_worse_run_body(
    colours: Store, tiny_model: TinyModel, tmp_path: Path
) -> None:
    """The measured failure: a weak run's body must not win just because it is a run."""
    import torch
    from fastai.learner import load_learner

    learn = load_learner(tiny_model.other, cpu=True)
    with torch.no_grad():
        for p in learn.model[0].parameters():
            p.zero_()
    learn.export(tmp_path / "weak.pkl")
    run = register(colours, tmp_path / "weak.pkl", list(tiny_model.vocab))
    run_body = embed.resolve_backbone(colours, "auto", size=SIZE)
    assert run_body.kind == "run"  # what auto picked before: the run's body, whatever its quality

    choice = backbone_choice.choose_backbone(colours, size=SIZE)
    assert choice is not None
    assert [t.name for t in choice.trials] == [
        f"run {run.id} body",
        "EfficientNet-Lite0 (bundled)",
        "ImageNet resnet18",
    ]
    assert choice.backbone.kind == "efficientnet_lite0" and choice.backbone.pretrained
    assert re.match(
        rf"EfficientNet-Lite0 \(bundled\): CV accuracy (0\.9\d|1\.00) vs run {run.id} body 0\.", choice.reason
    )


def test_cli_review_auto_says_which_and_why(colours: Store, tmp_path: Path, data_root: Path) -> None:
    weights = blank_weights(tmp_path / "blank.pth")
    cmd = [sys.executable, "-m", "lotr_labeler", "--data", str(data_root), "--project", "demo", "review"]
    out = subprocess.run(
        [*cmd, "--compute", f"--weights={weights}", f"--size={SIZE}"], capture_output=True, text=True, check=True
    )
    assert re.search(
        r"Backbone chosen by cross-validation: EfficientNet-Lite0 \(bundled\): "
        r"CV accuracy (0\.9\d|1\.00) vs weights file blank\.pth",
        out.stderr,
    )
    info = last_fit.fit_info(colours)
    assert info is not None and info.backbone_spec.id == f"efficientnet_lite0-bundled-{SIZE}"
    assert info.backbone_reason is not None and info.backbone_reason.startswith("EfficientNet-Lite0 (bundled): CV")
    listed = subprocess.run([*cmd, "--cached", "--json", "--top=3"], capture_output=True, text=True, check=True)
    assert len(json.loads(listed.stdout)) == 3


def test_cancelled_choice_returns_none(colours: Store, tmp_path: Path) -> None:
    weights = blank_weights(tmp_path / "blank.pth")
    cancel = threading.Event()
    cancel.set()
    assert backbone_choice.choose_backbone(colours, weights=weights, size=SIZE, cancel=cancel) is None
