"""train --distributed: fastai's distrib_ctx around the fit (accelerate launch), its one-process path on CPU."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from helpers import SHAPES, image_bytes, shape_image

from lotr_labeler.cli import main
from lotr_labeler.imaging import normalize
from lotr_labeler.model import runs
from lotr_labeler.store import Store

TINY = ["--no-pretrained", "--epochs", "1", "--size", "64", "--bs", "8"]


def _fill(store: Store, per_class: int = 8, valid: int = 2) -> None:
    for shape in SHAPES:
        store.add_class(shape)
        seed = 300 * (SHAPES.index(shape) + 1)
        while store.count(shape) < per_class or store.count(shape, split="valid") < valid:
            store.add_image(normalize(image_bytes(shape_image(shape, seed))), shape, source="upload")
            seed += 1
    store.set_setting("min_images_per_class", 3)


@pytest.fixture
def entered(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records each use of fastai's Learner.distrib_ctx (and still runs it)."""
    import fastai.distributed  # noqa: F401  (adds Learner.distrib_ctx)
    from fastai.learner import Learner

    original = Learner.distrib_ctx
    calls: list[dict[str, Any]] = []

    @contextmanager
    def spy(self: Any, **kwargs: Any) -> Iterator[Any]:
        calls.append(kwargs)
        with original(self, **kwargs) as learn:
            yield learn

    monkeypatch.setattr(Learner, "distrib_ctx", spy)
    return calls


def test_distributed_train_single_process_on_cpu(
    empty_store: Store, entered: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(empty_store)
    assert main(["train", "--distributed", *TINY, "--json"]) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    assert entered == [{"sync_bn": False}]  # the fit ran inside distrib_ctx, plain BatchNorm kept
    run = runs.get_run(empty_store, doc["id"])
    assert run.state == "done" and run.model_path.is_file()
    metrics = json.loads(run.metrics_path.read_text())
    assert metrics["distributed"] is True and metrics["processes"] == 1


def test_other_ranks_train_without_recording(
    empty_store: Store, entered: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(empty_store)
    monkeypatch.setenv("RANK", "1")  # as accelerate sets it in the second process
    assert main(["train", "--distributed", *TINY]) == 0
    assert entered == [{"sync_bn": False}]
    assert runs.list_runs(empty_store) == []  # rank 0 alone creates the run, exports and evaluates


def test_distributed_refuses_find_lr(empty_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(empty_store)
    assert main(["train", "--distributed", "--find-lr", *TINY]) == 1
    assert "--find-lr cannot be used with --distributed" in capsys.readouterr().err
    assert runs.list_runs(empty_store) == []
