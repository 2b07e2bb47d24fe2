"""ONNX Runtime predictions: exported at the end of training, equal to learn.predict, torch when the file
is missing, stale or damaged, and the engine named in every answer."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import SHAPES, TOL, TinyModel, image_bytes, max_diff, reference, shape_image
from PIL import Image
from starlette.testclient import TestClient

from lotr_labeler.api import create_app
from lotr_labeler.cli import main
from lotr_labeler.imaging import normalize
from lotr_labeler.model import onnx_export, runs
from lotr_labeler.model import predict as pr
from lotr_labeler.model.learner import TrainParams
from lotr_labeler.model.record import import_model
from lotr_labeler.model.train import train_run
from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project

TINY = TrainParams(
    arch="resnet18", epochs=1, size=64, batch_size=8, pretrained=False
)  # augment on: aug_transforms in the batch


pytestmark = pytest.mark.slow  # trains and exports models


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, runs.Run]]:
    """One real training run through train_run (project "shapes" under its own data root)."""
    root = tmp_path_factory.mktemp("onnx_trained")
    store = create_project(root, "shapes", "empty")
    for shape in SHAPES:
        store.add_class(shape)
        seed = 100 * SHAPES.index(shape)
        while store.count(shape) < 10 or store.count(shape, split="valid") < 3:
            store.add_image(normalize(image_bytes(shape_image(shape, seed))), shape, source="upload")
            seed += 1
    store.set_setting("min_images_per_class", 3)
    run = train_run(store, TINY)
    yield store, run
    store.close()


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Files of several sizes and modes: RGB photo-sized, grey, RGBA, palette, odd aspects, tiny."""
    folder = tmp_path_factory.mktemp("odd_images")
    rgba = shape_image("square", 42, size=90).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((90, 90)))  # partly transparent
    made = [
        ("big.jpg", shape_image("circle", 41, size=300).resize((300, 200)), "JPEG"),
        ("grey.png", shape_image("triangle", 43, size=70).convert("L"), "PNG"),
        ("alpha.png", rgba, "PNG"),
        ("opaque-rgba.png", shape_image("circle", 44).convert("RGBA"), "PNG"),
        ("palette.gif", shape_image("square", 45), "GIF"),
        ("tall.png", shape_image("triangle", 46, size=151).resize((37, 151)), "PNG"),
        ("tiny.bmp", shape_image("circle", 47, size=20), "BMP"),
    ]
    for name, img, fmt in made:
        img.save(folder / name, format=fmt)
    return [folder / name for name, _, _ in made]


def reference_on(learn: Any, image: Image.Image) -> dict[str, float]:
    """learn.predict on an already decoded image (transparent pixels flattened as ours does)."""
    from fastai.vision.all import PILImage

    with learn.no_bar():
        _, _, probs = learn.predict(PILImage.create(image))
    return dict(zip(learn.dls.vocab, map(float, probs), strict=True))


def check_equal_to_learn_predict(model_pkl: Path, learn: Any, files: list[Path]) -> None:
    predictor = pr.load_predictor(model_pkl)
    assert predictor.engine == "onnx", predictor.engine_note
    images = [pr.read_image_file(p, pr.Limits.default()) for p in files]
    batched = predictor.predict(images, batch_size=3)
    for path, image, in_batch in zip(files, images, batched, strict=True):
        single = predictor.predict_one(image)
        assert single.engine == in_batch.engine == "onnx"
        expected = reference_on(learn, image)
        assert max_diff(single.predictions, expected) < TOL, path.name
        assert max_diff(in_batch.predictions, expected) < TOL, path.name
        if Image.open(path).mode not in ("RGBA", "LA", "PA"):  # fastai keeps the colour under alpha
            assert max_diff(single.predictions, reference(learn, path)) < TOL, path.name
    spread = max(r.probability for r in batched) - min(r.probability for r in batched)
    assert len({r.top for r in batched}) > 1 or spread > 1e-3  # not a constant model


def copy_model(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / "model.pkl"
    shutil.copyfile(src, dst)
    return dst


def bump_mtime(path: Path) -> None:
    """A new file at the same path, as a re-export makes it (mtime resolution can be coarse)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


# -- export -------------------------------------------------------------------------------------


def test_training_writes_model_onnx_next_to_model_pkl(trained: tuple[Store, runs.Run]) -> None:
    _, run = trained
    assert run.state == "done"
    onnx_file = run.path / "model.onnx"
    assert onnx_file.is_file() and run.model_path.is_file()
    meta = onnx_export.metadata(onnx_export.make_session(onnx_file))
    assert meta[onnx_export.PKL_SHA_KEY] == onnx_export.file_sha256(run.model_path)
    assert json.loads(meta[onnx_export.VOCAB_KEY]) == list(SHAPES)
    assert not [p for p in run.path.iterdir() if p.name.startswith(runs.PARTIAL_PREFIX)]


def test_trained_run_predicts_with_onnx_equal_to_learn_predict(
    trained: tuple[Store, runs.Run], odd_images: list[Path]
) -> None:
    from fastai.vision.all import load_learner

    _, run = trained
    learn = load_learner(run.model_path, cpu=True)
    assert any(type(t).__name__ == "Flip" for t in learn.dls.after_batch.fs)  # augmentation off in validation
    check_equal_to_learn_predict(run.model_path, learn, odd_images)


def test_normalized_model_predicts_with_onnx_equal_to_learn_predict(
    tiny_model: TinyModel, odd_images: list[Path], tmp_path: Path
) -> None:
    """The session's tiny model has a Normalize batch transform (as pretrained models do)."""
    model = copy_model(tiny_model.path, tmp_path / "run")
    assert onnx_export.export_onnx(tiny_model.learn, model) == tmp_path / "run" / "model.onnx"
    check_equal_to_learn_predict(model, tiny_model.learn, [*tiny_model.samples, *odd_images])


def test_failed_export_is_a_warning_and_no_file(
    tiny_model: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    model = copy_model(tiny_model.path, tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"an older export")

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", fail)
    with caplog.at_level(logging.WARNING, logger="lotr_labeler.model.onnx_export"):
        assert onnx_export.export_quietly(tiny_model.learn, model) is None
    assert any("unsupported operator" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pkl"]  # the older export would be stale


def test_imported_model_gets_model_onnx(empty_store: Store, tiny_model: TinyModel) -> None:
    run = import_model(empty_store, tiny_model.path)
    assert run.state == "done" and (run.path / "model.onnx").is_file()
    assert pr.load_predictor(run.model_path).engine == "onnx"


# -- fallback ---------------------------------------------------------------------------------


def test_missing_or_stale_onnx_falls_back_to_torch_and_says_so(tiny_model: TinyModel, tmp_path: Path) -> None:
    model = copy_model(tiny_model.path, tmp_path)
    image = pr.read_image_file(tiny_model.samples[2], pr.Limits.default())
    expected = reference(tiny_model.learn, tiny_model.samples[2])

    missing = pr.load_predictor(model)
    assert missing.engine == "torch" and missing.engine_note == "no model.onnx next to model.pkl"
    result = missing.predict_one(image)
    assert result.engine == "torch" and result.as_dict()["engine"] == "torch"
    assert max_diff(result.predictions, expected) < TOL

    onnx_export.export_onnx(tiny_model.learn, model)
    assert not pr.is_loaded(model)  # a new model.onnx is picked up on the next call
    fresh = pr.load_predictor(model)
    assert fresh.engine == "onnx" and fresh.predict_one(image).engine == "onnx"

    tmp = tmp_path / "new.pkl"  # retrained weights at the same path; model.onnx left from before
    shutil.copyfile(tiny_model.other, tmp)
    os.replace(tmp, model)
    bump_mtime(model)
    stale = pr.load_predictor(model)
    assert stale.engine == "torch" and "model.onnx is stale" in stale.engine_note
    assert max_diff(stale.predict_one(image).predictions, expected) > 1e-3  # the new weights answer
    assert stale.predict_one(image).engine == "torch"


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_onnx_falls_back_with_a_warning(
    tiny_model: TinyModel, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    model = copy_model(tiny_model.path, tmp_path)
    onnx_file = onnx_export.export_onnx(tiny_model.learn, model)
    data = onnx_file.read_bytes()
    onnx_file.write_bytes(b"\x08\x07 not a model" if damage == "garbage" else data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="lotr_labeler.model.predict"):
        predictor = pr.load_predictor(model)
    assert predictor.engine == "torch" and "model.onnx cannot be loaded" in predictor.engine_note
    assert any("model.onnx" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    image = pr.read_image_file(tiny_model.samples[0], pr.Limits.default())
    result = predictor.predict_one(image)
    assert result.engine == "torch"
    assert max_diff(result.predictions, reference(tiny_model.learn, tiny_model.samples[0])) < TOL


def test_importing_the_package_does_not_import_onnxruntime() -> None:
    import subprocess
    import sys

    code = (
        "import sys, lotr_labeler, lotr_labeler.model.predict, lotr_labeler.api, lotr_labeler.cli;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'onnx', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the API and the CLI --------------------------------------------------------------------------


def test_api_and_cli_answer_with_engine_onnx(
    trained: tuple[Store, runs.Run], odd_images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from fastai.vision.all import load_learner

    store, run = trained
    learn = load_learner(run.model_path, cpu=True)
    sample = odd_images[0]
    expected = reference(learn, sample)
    with TestClient(create_app(store.root.parent, "shapes")) as client:
        resp = client.post("/predict", files={"file": (sample.name, sample.read_bytes(), "image/jpeg")})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["engine"] == "onnx" and doc["model"] == run.id
    assert max_diff(doc["predictions"], expected) < TOL

    assert main(["--data", str(store.root.parent), "--project", "shapes", "predict", str(sample), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["engine"] == "onnx" and max_diff(row["predictions"], expected) < TOL
