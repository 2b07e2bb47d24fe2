"""Job specs: what a page launches is exactly what the worker's parser reads back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lotr_labeler.cli import build_parser
from lotr_labeler.errors import InvalidInput, TrainingError
from lotr_labeler.jobs import table
from lotr_labeler.jobs.specs import DownloadJob, EmbedJob, JobSpec, SearchJob, TrainJob
from lotr_labeler.model.learner import PRESETS, TrainParams
from lotr_labeler.store import Store

SPECS: list[JobSpec] = [
    SearchJob(),
    SearchJob(label="Elves", query="-legolas bow", max=7, delay=0.25),
    SearchJob(type="any", size="Large", layout="Wide", license="Public", safesearch="off", region="uk-en"),
    SearchJob(label="Men", query="aragorn=king", timelimit="y", type="clipart"),
    DownloadJob(),
    DownloadJob(ids=(3, 1, 2), workers=4),
    DownloadJob(allow_private_hosts=True, retry_failed=True),
    EmbedJob(),
    EmbedJob(backbone="run", size=160),
    EmbedJob(backbone="imagenet", pretrained=False, size=32),
    TrainJob(),
    TrainJob(preset="standard", arch="resnet34", epochs=5, size=96, bs=8, lr=0.0015, seed=7),
    TrainJob(find_lr=True, pretrained=False, augment=False),
    TrainJob.of(TrainParams(epochs=1, size=64, batch_size=4, lr=1e-9, pretrained=False, augment=False)),
    TrainJob.of(PRESETS["standard"]),
]


def _parse(argv: list[str]) -> Any:
    return build_parser().parse_args(["--project", "p", *argv])


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: " ".join(s.to_argv()))
def test_spec_round_trips_through_the_parser(spec: JobSpec) -> None:
    ns = _parse(spec.to_argv())
    assert ns.command == spec.command and ns.job is None
    assert type(spec).from_args(ns) == spec


def test_paths_become_absolute_and_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.pth").write_bytes(b"x")
    for spec in (
        EmbedJob(backbone="imagenet", weights="w.pth"),
        TrainJob(weights="w.pth", bundle="b.zip", out="m.pkl"),
    ):
        assert spec.weights == str(tmp_path / "w.pth")
        assert type(spec).from_args(_parse(spec.to_argv())) == spec


def test_train_job_reproduces_its_params() -> None:
    params = TrainParams(arch="resnet50", epochs=9, size=48, batch_size=3, lr=0.01, find_lr=True, seed=1)
    assert TrainJob.of(params).params() == params
    assert TrainJob.from_args(_parse(TrainJob.of(params).to_argv())).params() == params  # through the argv
    assert TrainJob().params() == PRESETS["quick"]


def test_embed_job_of_a_backbone() -> None:
    from lotr_labeler.model.embed import Backbone

    assert EmbedJob.of(Backbone("run", 128, run_id="r1")) == EmbedJob(backbone="run", size=128)
    assert EmbedJob.of(Backbone("resnet18", 32, pretrained=False)) == EmbedJob(
        backbone="imagenet", size=32, pretrained=False
    )


def test_bad_values_are_refused_before_a_worker_starts(empty_store: Store) -> None:
    with pytest.raises(InvalidInput, match="safesearch"):
        SearchJob(safesearch="maybe").launch(empty_store)
    with pytest.raises(InvalidInput, match="out of range"):
        TrainJob(epochs=0).launch(empty_store)
    with pytest.raises(TrainingError, match="at least 2 classes"):
        TrainJob().launch(empty_store)
    assert table.latest_job(empty_store, "search") is None and table.latest_job(empty_store, "train") is None


@pytest.mark.parametrize(
    "spec", [SearchJob(label="circle", query="-x"), DownloadJob(ids=(5,), retry_failed=True), EmbedJob(size=64)]
)
def test_the_launched_workers_argv_parses(store: Store, spec: JobSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    real_popen = subprocess.Popen

    def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        seen.append(argv)  # the worker's command line; a harmless process stands in for it
        return real_popen([sys.executable, "-c", "pass"], **kwargs)

    monkeypatch.setattr(table.subprocess, "Popen", popen)
    job = spec.launch(store)
    (argv,) = seen
    assert argv[:3] == [sys.executable, "-m", "lotr_labeler"]
    ns = build_parser().parse_args(argv[3:])
    assert ns.project == store.name and Path(ns.data) == store.root.parent.absolute()
    assert ns.job == job.id and job.kind == spec.kind and job.args == json.loads(json.dumps(spec.record()))
    assert type(spec).from_args(ns) == spec


def test_status_fails_jobs_whose_worker_is_gone(empty_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """`status` looks at every running job: one whose process is gone is marked failed there."""
    from lotr_labeler.cli import main

    started = table.process_start(1)
    assert started is not None
    stale = table.insert(empty_store, "download", {}, 1, started - 3600)  # pid 1, but started long after
    live = table.insert(empty_store, "search", {}, os.getpid(), table.own_start())
    assert main(["--data", str(empty_store.root.parent), "--project", empty_store.name, "status", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["project"] == empty_store.name  # stdout is still one JSON document
    assert f"download job {stale.id} was marked failed" in out.err
    assert table.get_job(empty_store, stale.id).state == "failed"
    assert table.get_job(empty_store, live.id).state == "running"  # this process is alive


def test_every_job_kind_has_its_body_in_its_spec() -> None:
    """The worker, the CLI and a notebook run a job through ``spec.run(store, progress, cancel)``: no job
    body lives only in a CLI handler."""
    import inspect

    from lotr_labeler.jobs.specs import SPECS

    for spec in SPECS:
        assert "run" in vars(spec), f"{spec.__name__} has no run(): its body would live in the CLI"
        params = list(inspect.signature(spec.run).parameters)
        assert params[:4] == ["self", "store", "report", "cancel"], (spec.__name__, params)
