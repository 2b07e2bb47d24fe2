"""train --distributed: 2 real processes on the CPU (torchrun, gloo) as the README launches them, the
one-process path, and a failed run recorded once with its reason."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import SHAPES, image_bytes, shape_image

from lotr_labeler.cli import main
from lotr_labeler.imaging import normalize
from lotr_labeler.model import runs
from lotr_labeler.store import Store

TINY = ["--no-pretrained", "--epochs", "1", "--size", "64", "--bs", "8"]


pytestmark = pytest.mark.slow  # trains in torchrun processes


def _fill(store: Store, per_class: int = 8, valid: int = 2) -> None:
    for shape in SHAPES:
        store.add_class(shape)
        seed = 300 * (SHAPES.index(shape) + 1)
        while store.count(shape) < per_class or store.count(shape, split="valid") < valid:
            store.add_image(normalize(image_bytes(shape_image(shape, seed))), shape, source="upload")
            seed += 1
    store.set_setting("min_images_per_class", 3)


README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_launch(marker: str) -> list[str]:
    """The README's launch line that starts with ``marker``, split into words."""
    lines = [line.strip() for line in README.read_text(encoding="utf-8").splitlines()]
    found = [line for line in lines if line.startswith(marker)]
    assert len(found) == 1, f"README should hold one line starting {marker!r}, found {found}"
    return shlex.split(found[0])


def test_distributed_train_single_process_on_cpu(empty_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(empty_store)
    assert main(["train", "--distributed", *TINY, "--json"]) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    run = runs.get_run(empty_store, doc["id"])
    assert run.state == "done" and run.model_path.is_file()
    metrics = json.loads(run.metrics_path.read_text())
    assert metrics["distributed"] is True and metrics["processes"] == 1
    # Alone, every training batch is this process's: 1 frozen epoch + 1.
    assert metrics["train_batches"] == 2 * metrics["batches_per_epoch"]


def test_other_ranks_train_without_recording(empty_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(empty_store)
    monkeypatch.setenv("RANK", "1")  # as accelerate sets it in the second process
    assert main(["train", "--distributed", *TINY]) == 0
    assert runs.list_runs(empty_store) == []  # rank 0 alone creates the run, exports and evaluates


def test_two_processes_train_with_the_readme_line(empty_store: Store, data_root: Path) -> None:
    """The README's torchrun line, 2 processes on this CPU (gloo): both train, rank 0 records one run."""
    _fill(empty_store)
    words = _readme_launch("torchrun --standalone --nproc_per_node 2")
    argv = [sys.executable, "-m", "torch.distributed.run", *words[1:]]
    argv[argv.index("--data") + 1] = str(data_root)
    argv[argv.index("--project") + 1] = empty_store.name
    done = subprocess.run([*argv, *TINY, "--json"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    listed = runs.list_runs(empty_store)
    assert [r.state for r in listed] == ["done"], [(r.state, r.message) for r in listed]
    run = listed[0]
    assert json.loads(done.stdout)["id"] == run.id
    metrics = json.loads(run.metrics_path.read_text())
    assert metrics["distributed"] is True and metrics["processes"] == 2
    # Each process stepped through its half of every epoch's batches (fastai's DistributedDL).
    per_process = -(-metrics["batches_per_epoch"] // 2)
    assert metrics["train_batches"] == 2 * per_process < 2 * metrics["batches_per_epoch"]
    assert [tuple(r) for r in empty_store.conn.execute("SELECT kind, state FROM jobs")] == [("train", "done")]
    import fastai.vision.all as fv

    learn = fv.load_learner(run.model_path, cpu=True)
    assert type(learn.model).__name__ == "Sequential"  # plain, not the DistributedDataParallel wrapper


def test_fastai_event_failures_keep_their_reason() -> None:
    """fastai wraps an error inside a callback event on two lines; the run's reason keeps the second."""
    import fastai.vision.all as fv
    from torch import nn

    class Broken(fv.Callback):  # type: ignore[misc]
        def before_fit(self) -> None:
            raise AttributeError("'Sequential' object has no attribute 'device'")

    dls = fv.DataLoaders.from_dsets([(fv.tensor([0.0]), fv.tensor(0))], [(fv.tensor([0.0]), fv.tensor(0))], bs=1)
    learn = fv.Learner(dls, nn.Linear(1, 1), loss_func=nn.MSELoss(), cbs=Broken())
    with pytest.raises(AttributeError) as caught, learn.no_bar(), learn.no_logging():
        learn.fit(1)
    assert "\n" in str(caught.value)  # fastai's own wrapping, as seen in the failed 2-process runs
    from lotr_labeler.model.train import failure_reason

    reason = failure_reason(caught.value)
    assert reason == ("AttributeError in fastai's Broken.before_fit: 'Sequential' object has no attribute 'device'")


def test_a_failed_fit_records_its_reason_once(
    empty_store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure inside the fit: the run and its job both say why (the job row kept only fastai's first line)."""
    import fastai.vision.all as fv

    from lotr_labeler.model import hardware

    class Broken(fv.Callback):  # type: ignore[misc]
        def before_fit(self) -> None:
            raise RuntimeError("Connection closed by peer [127.0.0.1]:29601")

    real = hardware.apply_precision

    def with_failure(learn: Any, hw: hardware.Hardware) -> None:
        real(learn, hw)
        learn.add_cb(Broken())

    monkeypatch.setattr(hardware, "apply_precision", with_failure)
    _fill(empty_store)
    assert main(["train", "--distributed", *TINY]) == 1
    err = capsys.readouterr().err
    assert "Connection closed by peer" in err
    [run] = runs.list_runs(empty_store)
    assert run.state == "failed"
    assert run.message == "RuntimeError in fastai's Broken.before_fit: Connection closed by peer [127.0.0.1]:29601"
    job = empty_store.conn.execute("SELECT state, message FROM jobs").fetchall()
    assert [tuple(row) for row in job] == [("failed", f"Training failed: {run.message}")]


def test_distributed_refuses_find_lr(empty_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(empty_store)
    assert main(["train", "--distributed", "--find-lr", *TINY]) == 1
    assert "--find-lr cannot be used with --distributed" in capsys.readouterr().err
    assert runs.list_runs(empty_store) == []
