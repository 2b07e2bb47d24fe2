"""export space: a Hugging Face Space folder whose app.py predicts like learn.predict, without lotr_labeler."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from helpers import TOL, TinyModel, max_diff, reference

from lotr_labeler.cli import main
from lotr_labeler.errors import InvalidInput
from lotr_labeler.model import runs
from lotr_labeler.model.predict import model_from_path
from lotr_labeler.model.space import write_space
from lotr_labeler.store import Store

pytestmark = pytest.mark.slow  # the session's tiny trained model, exported Spaces


def _import_app(folder: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, folder / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def space(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("space") / "shapes-space"
    write_space(model_from_path(tiny_model.path), out, title="Shapes", torch_fallback=True)  # both engines
    return out


def test_cli_writes_a_ready_space(
    project: tuple[Store, runs.Run], data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run = project
    out = tmp_path / "space"
    assert main(["--data", str(data_root), "export", "space", str(out), "--title", "Shapes demo"]) == 0
    assert f"run {run.id}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(  # no model.pkl: model.onnx serves
        ["README.md", "app.py", "model.onnx", "requirements.txt", "space.json"]
    )
    readme = (out / "README.md").read_text()
    front = readme.split("---\n")[1]
    assert 'title: "Shapes demo"' in front and "sdk: gradio" in front and "app_file: app.py" in front
    assert "sdk_version: " in front and 'python_version: "3.' in front
    assert "model.pkl" not in readme and "Git LFS" in readme and "over 10 MB" in readme
    for shape in ("circle", "square", "triangle"):
        assert f"- {shape}\n" in readme
    pins = (out / "requirements.txt").read_text().split()
    names = {p.split("==")[0].split(">=")[0] for p in pins}
    assert names == {"onnxruntime", "numpy", "pillow"} and all("==" in p or ",<" in p for p in pins)
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse((out / "app.py").read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert "lotr_labeler" not in imported and {"numpy", "PIL", "onnxruntime"} <= imported
    assert json.loads((out / "space.json").read_text())["run"] == run.id
    # An existing, non-empty folder is refused, not mixed into.
    assert main(["--data", str(data_root), "export", "space", str(out)]) == 1
    assert "not an empty folder" in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_app_predicts_like_learn_predict(
    space: Path, tiny_model: TinyModel, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPACE_ENGINE", engine)
    app = _import_app(space, f"space_app_{engine}")
    for sample in tiny_model.samples:  # png, jpg, non-square, grey, gif, webp, bmp
        got = app.predict(str(sample))
        assert max_diff(got, reference(tiny_model.learn, sample)) < TOL, sample.name
    assert app.MODEL.engine == engine
    assert app.predict(None) == {}


def test_app_runs_without_lotr_labeler_or_torch(space: Path, tiny_model: TinyModel) -> None:
    """What a Space has: its own folder, no lotr_labeler; the ONNX path loads no torch either."""
    code = (
        "import sys, json; sys.modules['lotr_labeler'] = None\n"
        "import app\n"
        f"out = app.predict({str(tiny_model.samples[1])!r})\n"
        "print(json.dumps({'probs': out, 'engine': app.MODEL.engine, 'torch': 'torch' in sys.modules}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=space, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["engine"] == "onnx" and doc["torch"] is False
    assert max_diff(doc["probs"], reference(tiny_model.learn, tiny_model.samples[1])) < TOL


def test_gradio_ui_is_built_around_predict(space: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gradio is not installed here: a recording stand-in checks the wiring of build_demo."""
    calls: dict[str, Any] = {}
    fake = types.ModuleType("gradio")
    fake.Image = lambda **kw: ("Image", kw)  # type: ignore[attr-defined]
    fake.Label = lambda **kw: ("Label", kw)  # type: ignore[attr-defined]
    fake.Interface = lambda **kw: calls.update(kw) or "demo"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gradio", fake)
    app = _import_app(space, "space_app_ui")
    assert app.build_demo() == "demo"
    assert calls["fn"] is app.predict
    assert calls["inputs"] == ("Image", {"type": "pil", "label": "Photo"})
    assert calls["outputs"][1]["num_top_classes"] == 3 and calls["title"] == "Shapes"


def test_space_without_onnx_ships_the_fastai_path(tiny_model: TinyModel, tmp_path: Path) -> None:
    model = tmp_path / "model.pkl"
    model.write_bytes(tiny_model.path.read_bytes())
    (tmp_path / "model.onnx").write_bytes(b"not an onnx file")  # unusable: the export keeps torch
    done = write_space(model_from_path(model), tmp_path / "space", title="Shapes")
    assert done.engine == "torch" and "model.onnx" not in done.files and done.max_diff < TOL
    pins = {p.split("==")[0] for p in (tmp_path / "space" / "requirements.txt").read_text().split()}
    assert {"fastai", "torch", "torchvision"} <= pins and "onnxruntime" not in pins


def test_unreproducible_preprocessing_is_refused(tiny_model: TinyModel) -> None:
    from fastai.vision.all import RandomResizedCrop

    from lotr_labeler.model.space import preprocessing

    learn = tiny_model.learn
    dl = learn.dls.valid
    saved = dl.after_item
    try:
        dl.after_item = type(saved)([RandomResizedCrop(64), *saved.fs])
        with pytest.raises(InvalidInput, match="RandomResizedCrop"):
            preprocessing(learn)
    finally:
        dl.after_item = saved


def test_train_page_writes_a_space(project: tuple[Store, runs.Run], tmp_path: Path) -> None:
    from streamlit.testing.v1 import AppTest

    _, run = project
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "pages" / "4_Train.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    folder = next(t for t in at.text_input if t.label == "Folder")
    assert folder.value.endswith(f"space-{run.id}")  # a new folder under the project's exports by default
    folder.set_value(str(tmp_path / "page-space")).run()
    next(b for b in at.button if b.label == "Write Space").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Wrote a Hugging Face Space" in at.success[0].value
    assert (tmp_path / "page-space" / "app.py").is_file() and (tmp_path / "page-space" / "model.onnx").is_file()
    next(b for b in at.button if b.label == "Write Space").click().run()  # now not empty: refused, said why
    assert "not an empty folder" in at.error[0].value
