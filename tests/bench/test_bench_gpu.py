"""bench/bench_gpu.py skips with one line where there is no GPU, and run_all.py then keeps its rows; its
``--dry-run`` goes through every row on the CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


pytestmark = pytest.mark.slow  # runs the bench in a subprocess


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.skipif(_has_cuda(), reason="a CUDA GPU is here: the bench measures instead of skipping")
def test_bench_gpu_skips_in_one_line_without_a_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_gpu.py")], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["skipped: no CUDA GPU here (torch.cuda.is_available() is False)"]

    spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
    assert spec is not None and spec.loader is not None
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    results = tmp_path / "RESULTS.md"
    measured = "| `bench_gpu.py` | GPU training img/s | 900 | 800 | 1.125 | >= 1.0 | yes | img/s | d | H100 | n |"
    results.write_text(f"# Benchmark results\n\n| bench | figure |\n|---|---|\n{measured}\n", encoding="utf-8")
    monkeypatch.setattr(run_all, "RESULTS", results)
    monkeypatch.setattr(run_all, "ROOT", tmp_path)
    assert run_all.main(["bench_gpu.py"]) == 0  # a skip is no failure
    assert measured in results.read_text(encoding="utf-8").splitlines()  # the GPU machine's rows are kept


def test_bench_gpu_dry_run_goes_through_every_row_on_the_cpu() -> None:
    """The GPU session's script, run end to end at a toy size on the CPU: every row comes out, the same
    architecture on both sides of the training row, and the accelerate launch trained a run."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_gpu.py"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    names = [row["name"] for row in rows]
    assert [n.split(" (")[0].split(",")[0] for n in names] == [
        "GPU training img/s",
        "GPU embeddings img/s",
        "GPU embeddings img/s vs the CPU path",
        "accelerate launch",
    ], names
    for row in rows:
        assert row["name"].endswith("on CPU (dry run)") and row["goal"] == "dry run", row  # never a GPU figure
        assert isinstance(row["ours"], float) and row["ours"] > 0, row
    train, forward, cpu, launch = rows
    assert "resnet18 from scratch" in train["note"] and train["anchor"] > 0
    assert forward["anchor"] > 0 and cpu["anchor"] > 0
    assert launch["note"].startswith("done (run "), launch["note"]
