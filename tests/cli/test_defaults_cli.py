"""The defaults a new user runs: the CLI started from some working directory, no --data and no
LOTR_LABELER_DATA, so the data root is the relative ``./data``; and the README's remote-GPU
commands with a relative ``--data work`` and relative bundle/model paths.

Every command runs as a real subprocess with ``cwd`` set to a fresh temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SHAPES, image_bytes, shape_image

from lotr_labeler.project import DATA_ENV

PER_CLASS = 16  # enough for the default min_images_per_class (10) and a hash-split valid image per class
TRAIN = ["--arch", "resnet18", "--no-pretrained", "--size", "32", "--epochs", "1", "--bs", "8"]


pytestmark = pytest.mark.slow  # trains through the CLI in subprocesses


def cli(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m lotr_labeler ARGS`` in ``cwd`` with the data environment variable unset."""
    env = {k: v for k, v in os.environ.items() if k != DATA_ENV}
    return subprocess.run(
        [sys.executable, "-m", "lotr_labeler", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working directory with a folder of tiny images, one sub-folder per class (2 classes)."""
    cwd = tmp_path_factory.mktemp("newuser")
    for shape in SHAPES[:2]:
        (cwd / "pics" / shape).mkdir(parents=True)
        for i in range(PER_CLASS):
            (cwd / "pics" / shape / f"{i}.png").write_bytes(
                image_bytes(shape_image(shape, 100 * SHAPES.index(shape) + i, size=48))
            )
    yield cwd


@pytest.fixture(scope="module")
def trained_here(workdir: Path) -> Path:
    """init, classes add, import folder, train: all with the default ./data."""
    ok(cli(workdir, "--project", "p", "init", "--template", "empty"))
    for shape in SHAPES[:2]:
        ok(cli(workdir, "classes", "add", shape))
    ok(cli(workdir, "import", "folder", "pics"))
    ok(cli(workdir, "--project", "p", "train", *TRAIN))
    return workdir


def _load(model: Path) -> list[str]:
    from fastai.vision.all import load_learner

    learn = load_learner(model, cpu=True)
    return [str(v) for v in learn.dls.vocab]


def test_train_with_the_default_relative_data_dir(trained_here: Path) -> None:
    data = trained_here / "data" / "p"
    assert (data / "project.sqlite").is_file()
    listed = json.loads(ok(cli(trained_here, "runs", "list", "--json")))
    assert [r["state"] for r in listed] == ["done"]
    model = Path(listed[0]["path"])
    assert model.is_absolute() and model.is_file()
    assert model.parent.parent.parent == data.resolve()  # runs/<id>/model.pkl inside ./data/p
    assert sorted(_load(model)) == sorted(SHAPES[:2])
    assert not (data / "data").exists()  # nothing nested under a doubled relative path


def test_remote_gpu_round_trip_with_relative_paths(trained_here: Path) -> None:
    """README "Training on a remote GPU": export, `--data work train --bundle … --out model.pkl`, import-model."""
    ok(cli(trained_here, "export", "dataset", "bundle.zip"))
    out = ok(cli(trained_here, "--data", "work", "train", "--bundle", "bundle.zip", *TRAIN, "--out", "model.pkl"))
    assert "model.pkl" in out
    assert (trained_here / "work" / "bundle" / "project.sqlite").is_file()
    assert sorted(_load(trained_here / "model.pkl")) == sorted(SHAPES[:2])
    ok(cli(trained_here, "--project", "p", "import-model", "model.pkl"))
    states = [(r["source"], r["state"]) for r in json.loads(ok(cli(trained_here, "runs", "list", "--json")))]
    assert states[0] == ("imported", "done") and len(states) == 2
