"""Work that was killed cleans up on the next look: a ``kill -9`` training run, job rows whose
pid now belongs to another process (a reboot reuses pids), runs of a dead process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import psutil
import pytest
from helpers import SHAPES, image_bytes, shape_image, wait_for

from lotr_labeler.cli import main
from lotr_labeler.errors import Conflict
from lotr_labeler.imaging import normalize
from lotr_labeler.jobs import table as jobs
from lotr_labeler.jobs.specs import TrainJob
from lotr_labeler.jobs.worker import JobRun
from lotr_labeler.model import runs
from lotr_labeler.model.learner import TrainParams
from lotr_labeler.store import Store, now


def fill(store: Store, per_class: int = 12) -> None:
    """Generated shapes, 2 classes, each with at least one image in the valid split."""
    for shape in SHAPES[:2]:
        store.add_class(shape)
        seed = 100 * SHAPES.index(shape)
        while store.count(shape) < per_class or store.count(shape, split="valid") < 1:
            store.add_image(normalize(image_bytes(shape_image(shape, seed, size=48))), shape, source="upload")
            seed += 1
    store.set_setting("min_images_per_class", 3)


def running_run(store: Store) -> runs.Run:
    row = store.conn.execute("SELECT id FROM runs WHERE state = 'running'").fetchone()
    assert row is not None
    return runs.get_run(store, row[0])


@pytest.mark.slow
def test_killed_training_is_failed_cleaned_removable_and_not_blocking(
    empty_store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store = empty_store
    fill(store)
    slow = TrainParams(arch="resnet18", epochs=50, size=64, batch_size=2, pretrained=False)
    job = jobs.launch(store, "train", TrainJob.of(slow).to_argv(), {})
    child = psutil.Process(job.pid)  # our worker, in its own session
    try:
        wait_for(lambda: jobs.get_job(store, job.id).progress.get("batch", 0) >= 1, 180, "the first batch")
        run = running_run(store)
        snapshot = run.path / runs.SNAPSHOT_DIR
        assert any(snapshot.iterdir())  # the run's hard-linked images
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    # What an export cut short by the kill would leave (the kill above came mid-epoch).
    (run.path / runs.MODEL_FILE).write_bytes(b"PK\x03\x04 half a model")
    (run.path / f"{runs.PARTIAL_PREFIX}{child.pid}-{runs.MODEL_FILE}").write_bytes(b"half")
    (run.path / "model.onnx").write_bytes(b"an ONNX copy exported before the kill")

    assert main(["runs", "list", "--json"]) == 0  # the next look
    listed = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["state"]) for r in listed] == [(run.id, "failed")]
    assert "ended without finishing" in runs.get_run(store, run.id).message
    assert not snapshot.exists()
    assert sorted(p.name for p in run.path.iterdir()) == []  # no model.pkl, no model.onnx, no temp file
    assert jobs.get_job(store, job.id).state == "failed"

    assert main(["runs", "rm", run.id]) == 0
    assert not run.path.exists() and runs.list_runs(store) == []

    code = main(["train", "--arch", "resnet18", "--no-pretrained", "--epochs", "1", "--size", "32", "--bs", "8"])
    assert code == 0, capsys.readouterr().err
    assert [r.state for r in runs.list_runs(store)] == ["done"]


def _job_row(store: Store, kind: str, pid: int, pid_started: float | None, updated_at: str | None = None) -> int:
    with store.transaction():
        cur = store.conn.execute(
            "INSERT INTO jobs(kind, pid, pid_started, started_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (kind, pid, pid_started, now(), updated_at or now()),
        )
    return int(cur.lastrowid or 0)


@pytest.mark.parametrize("pid", [os.getpid(), 1], ids=["this-process", "pid-1"])
def test_job_whose_pid_belongs_to_another_process_does_not_block(empty_store: Store, pid: int) -> None:
    """After a reboot the recorded pid may be alive, but started at another time: not our worker."""
    started = jobs.process_start(pid)
    assert started is not None  # alive
    stale = _job_row(empty_store, "download", pid, started - 3600)
    assert jobs.running_job(empty_store, "download") is None
    assert jobs.get_job(empty_store, stale).state == "failed"
    with JobRun(empty_store, "download", {}) as new:  # a new job starts
        assert new.job.id != stale and jobs.running_job(empty_store, "download") is not None


def test_job_rows_from_before_start_times_were_recorded(empty_store: Store) -> None:
    """A row without a start time: a process that started after the row's last write is not its worker."""
    stale = _job_row(empty_store, "search", os.getpid(), None, updated_at="2000-01-01T00:00:00+00:00")
    assert jobs.running_job(empty_store, "search") is None
    assert jobs.get_job(empty_store, stale).state == "failed"


def test_a_live_worker_still_blocks_a_second_job(empty_store: Store) -> None:
    """The control: the same pid with its real start time is alive and keeps its lock."""
    live = _job_row(empty_store, "download", os.getpid(), jobs.own_start())
    with pytest.raises(Conflict, match=f"job {live}"):
        jobs.attach(empty_store, "download", {}, None)


def test_run_of_a_dead_or_reused_process_is_failed_on_the_next_look(empty_store: Store) -> None:
    ours = runs.create_run(empty_store, {}, run_id="20260101-000000-live")  # this process, alive
    reused = runs.create_run(empty_store, {}, run_id="20260101-000000-dead")
    with empty_store.transaction():  # recorded for a process with our pid that started earlier
        empty_store.conn.execute("UPDATE runs SET pid_started = pid_started - 3600 WHERE id = ?", (reused.id,))
    (reused.path / runs.SNAPSHOT_DIR).mkdir()
    (reused.path / runs.SNAPSHOT_DIR / "x.jpg").write_bytes(b"x")
    states = {r.id: r.state for r in runs.list_runs(empty_store)}
    assert states == {ours.id: "running", reused.id: "failed"}
    assert not (reused.path / runs.SNAPSHOT_DIR).exists()
    with pytest.raises(Conflict, match="still running"):
        runs.delete_run(empty_store, ours.id)
    runs.delete_run(empty_store, reused.id)
    assert not Path(reused.path).exists()


def test_a_worker_that_cannot_start_leaves_no_running_row(empty_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from lotr_labeler.jobs import table

    def no_process(*args: object, **kwargs: object) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(table.subprocess, "Popen", no_process)
    with pytest.raises(Conflict, match=r"Could not start the download worker: .*Too many open files"):
        table.launch(empty_store, "download", ["download"], {})
    monkeypatch.undo()
    assert jobs.running_job(empty_store, "download") is None  # nothing blocks the next try
    assert jobs.latest_job(empty_store, "download").state == "failed"  # type: ignore[union-attr]
