"""The one progress and cancel protocol (lotr_labeler/progress.py): every stage's record is a Progress, so
one consumer (the CLI's bar, a job's row, a page's panel) reads any of them; cancel is anything with is_set."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest

from lotr_labeler.cli.output import ProgressBar
from lotr_labeler.collect.download import DownloadProgress
from lotr_labeler.collect.search import SearchProgress
from lotr_labeler.jobs import table as jobs
from lotr_labeler.jobs.worker import JobRun
from lotr_labeler.model.train import TrainProgress
from lotr_labeler.progress import Progress, pause, stopped
from lotr_labeler.review.candidates import ScoreProgress
from lotr_labeler.review.compute import ComputeProgress
from lotr_labeler.store import Store


def test_every_stage_record_is_a_progress_with_keyword_fields() -> None:
    for record in (DownloadProgress, SearchProgress, ScoreProgress, TrainProgress, ComputeProgress):
        assert issubclass(record, Progress), record
        names = [f.name for f in dataclasses.fields(record)]
        assert names[:3] == ["done", "total", "message"], (record, names)
        assert all(f.kw_only for f in dataclasses.fields(record)), record


def test_fraction_is_bounded_and_zero_without_a_total() -> None:
    assert Progress(done=3, total=4).fraction == 0.75
    assert Progress(done=5, total=4).fraction == 1.0
    assert Progress(done=2, total=0).fraction == 0.0


def test_cancel_helpers() -> None:
    event = threading.Event()
    assert not stopped(None) and not stopped(event)
    assert pause(None, 0.01) is False and pause(event, 0.01) is False
    threading.Timer(0.05, event.set).start()
    started = time.monotonic()
    assert pause(event, 10.0) is True  # woken by the set, not after the full pause
    assert time.monotonic() - started < 5.0 and stopped(event)


def test_the_cli_bar_writes_any_stage_record_to_the_job_row(
    empty_store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    record = SearchProgress(done=2, total=3, message="query 2 of 3", query="elf", label="elves", results_so_far=7)
    with JobRun(empty_store, "search", {}) as job, ProgressBar("search", "query", job, lambda p: "figures") as bar:
        bar(record)
        row = jobs.get_job(empty_store, job.job.id)
    stored = json.loads(json.dumps(row.progress))
    assert stored["done"] == 2 and stored["total"] == 3 and stored["results_so_far"] == 7
    assert row.message == "query 2 of 3"
