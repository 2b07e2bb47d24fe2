"""Issue 18's smaller findings: the confusion matrix on one colour scale, `runs list` rounding."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lotr_labeler.cli import main
from lotr_labeler.model import runs
from lotr_labeler.store import Store
from lotr_labeler.ui.widgets import confusion_styler


def _background(styler: object, row: int, col: int) -> str:
    ctx = styler._compute().ctx  # type: ignore[attr-defined]  # pandas' computed cell styles
    return dict(ctx[(row, col)])["background-color"]


def test_the_confusion_matrix_is_shaded_on_one_scale() -> None:
    """An off-diagonal 1 was as dark as a diagonal 5 (pandas shades each column on its own)."""
    cm = pd.DataFrame([[5, 1], [0, 0]], index=["a", "b"], columns=["a", "b"])
    styler = confusion_styler(cm)
    assert _background(styler, 0, 1) != _background(styler, 0, 0)  # 1 is lighter than 5
    assert _background(styler, 1, 1) == _background(styler, 1, 0)  # equal counts, one colour


def test_runs_list_rounds_the_error_rate(store: Store, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = runs.create_run(store, {"arch": "resnet18", "epochs": 1, "size": 64})
    runs.finish_run(store, run.id, "done", vocab=["a", "b"], metrics={"error_rate": 1 / 3, "duration_s": 12.3456})
    assert main(["--data", str(data_root), "--project", store.name, "runs", "list"]) == 0
    out = capsys.readouterr().out
    assert "0.333" in out and "0.3333" not in out and "12.3" in out and "12.34" not in out
    assert main(["--data", str(data_root), "--project", store.name, "runs", "list", "--json"]) == 0
    assert "0.3333333" in capsys.readouterr().out  # JSON keeps every digit


@pytest.mark.slow
def test_torch_jit_script_deprecation_does_not_reach_the_terminal() -> None:
    """fastai's import-time torch.jit.script made every model command print a FutureWarning."""
    import subprocess
    import sys

    code = "import lotr_labeler, fastai.vision.all"
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "jit.script" not in done.stderr, done.stderr
