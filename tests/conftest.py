"""Shared fixtures: generated images, a data root, projects with and without images."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project

SHAPES = ("circle", "square", "triangle")


def shape_image(shape: str, seed: int, size: int = 64) -> Image.Image:
    """A coloured shape on a noisy background: distinct per seed, class given by the shape."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(bg, "RGB")
    draw = ImageDraw.Draw(img)
    colour = tuple(int(v) for v in rng.integers(120, 256, 3))
    lo, hi = int(size * 0.2 + rng.integers(0, 6)), int(size * 0.8 - rng.integers(0, 6))
    if shape == "circle":
        draw.ellipse((lo, lo, hi, hi), fill=colour)
    elif shape == "square":
        draw.rectangle((lo, lo, hi, hi), fill=colour)
    else:
        draw.polygon([(size // 2, lo), (lo, hi), (hi, hi)], fill=colour)
    return img


def image_bytes(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fastai-layout folder: 3 classes x 6 images (png and jpg), generated once."""
    root = tmp_path_factory.mktemp("shapes")
    for shape in SHAPES:
        (root / shape).mkdir()
        for i in range(6):
            fmt = "PNG" if i % 2 else "JPEG"
            (root / shape / f"{i}.{fmt.lower()}").write_bytes(
                image_bytes(shape_image(shape, 100 * SHAPES.index(shape) + i), fmt)
            )
    return root


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    monkeypatch.setenv("LOTR_LABELER_DATA", str(root))
    return root


@pytest.fixture
def empty_store(data_root: Path) -> Iterator[Store]:
    store = create_project(data_root, "demo", "empty")
    yield store
    store.close()


@pytest.fixture
def store(data_root: Path, shapes_dir: Path) -> Iterator[Store]:
    """A project with the 3 shape classes and 18 images."""
    from lotr_labeler.importers import import_folder

    s = create_project(data_root, "demo", "empty")
    import_folder(s, shapes_dir)
    yield s
    s.close()


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.jpg")}
