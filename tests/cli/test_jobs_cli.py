"""Background jobs and the search/download commands that run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ddgs
import pytest
from helpers import wait_for

from lotr_labeler.cli import main
from lotr_labeler.errors import Conflict
from lotr_labeler.fakes import ENV as FAKE_ENV
from lotr_labeler.fakes import FakeDDGS
from lotr_labeler.jobs import table as jobs
from lotr_labeler.store import CandidateIn, Store


def ddg_rows(n: int, base: str = "http://img.test") -> list[dict[str, object]]:
    return [
        {
            "title": f"t{i}",
            "image": f"{base}/{{slug}}/{i}.jpg",
            "thumbnail": f"http://th.test/{{slug}}/{i}",
            "url": f"http://page.test/{i}",
            "width": 500,
            "height": 400,
            "source": "x",
        }
        for i in range(n)
    ]


@pytest.fixture
def fake_ddg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The env hook the app uses, with ddgs.DDGS restored after the test."""
    path = tmp_path / "ddg.json"
    path.write_text(json.dumps({"*": ddg_rows(3)}))
    monkeypatch.setenv(FAKE_ENV, str(path))
    monkeypatch.setattr(ddgs, "DDGS", FakeDDGS)
    return path


@pytest.fixture
def two_classes(empty_store: Store) -> Store:
    empty_store.add_class("elves", ["Legolas", "Arwen"], "{name} lotr")
    empty_store.add_class("dwarves", ["Gimli"], "{name} lotr")
    empty_store.set_setting("search_delay", 0)
    return empty_store


def test_cli_search_adds_candidates_and_records_a_job(
    two_classes: Store, fake_ddg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", "--max", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == 6 and len(report["queries"]) == 3
    assert {c.query for c in two_classes.candidates()} == {"Legolas lotr", "Arwen lotr", "Gimli lotr"}
    job = jobs.latest_job(two_classes, "search")
    assert job is not None and job.state == "done" and job.result and job.result["added"] == 6
    # A second run finds only known URLs.
    assert main(["search", "--class", "elves", "--max", "2"]) == 0
    assert "0 new candidate(s), 4 already known" in capsys.readouterr().out


def test_cli_search_free_text_needs_a_class(
    two_classes: Store, fake_ddg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", "--query", "gandalf"]) == 1
    assert "needs a class" in capsys.readouterr().err
    assert main(["search", "--class", "elves", "--query", "elf archer", "--max", "1"]) == 0
    assert [c.query for c in two_classes.candidates()] == ["elf archer"]


def test_cli_search_every_query_failing_exits_non_zero(
    two_classes: Store, fake_ddg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_ddg.write_text(json.dumps({"*": "ratelimit"}))
    assert main(["search"]) == 1
    err = capsys.readouterr().err
    assert "error: every query failed" in err and "rate" in err.lower()
    assert main(["search", "--type", "nonsense"]) == 1
    assert "type_image='nonsense'" in capsys.readouterr().err


def test_cli_download_with_progress_failures_and_retry(
    two_classes: Store, image_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    two_classes.add_candidates(
        [CandidateIn("elves", f"{image_server}/img/{i}.png") for i in range(4)]
        + [CandidateIn("dwarves", f"{image_server}/gone.png")]
    )
    assert main(["download"]) == 0
    assert "Nothing to download" in capsys.readouterr().out
    assert main(["candidates", "accept", "--all"]) == 0
    # Loopback is refused by default, before any connection.
    assert main(["download"]) == 1  # all refused: an error naming the fix
    assert {c.error for c in two_classes.candidates(state="failed")} == {"blocked host"}
    err = capsys.readouterr().err
    fix = "download --allow-private-hosts --retry-failed"
    assert fix in err, err  # the command that works, as typed below
    # A user who passes only the first flag is told the candidates failed and how to retry them.
    assert main(["download", "--allow-private-hosts"]) == 0
    out = capsys.readouterr().out
    assert "5 failed candidates" in out and "--retry-failed" in out and "accept candidates first" not in out, out
    assert main([*fix.split(), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["failed"]) == (4, 1)
    assert [c.error for c in two_classes.candidates(state="failed")] == ["http 404"]
    assert two_classes.count("elves") == 4
    job = jobs.latest_job(two_classes, "download")
    assert job is not None and job.state == "done" and job.progress["done"] == 5


def test_one_job_per_kind_and_dead_workers_are_noticed(two_classes: Store) -> None:
    job = jobs.attach(two_classes, "download", {}, None)
    with pytest.raises(Conflict, match="already running"):
        jobs.attach(two_classes, "download", {}, None)
    jobs.attach(two_classes, "search", {}, None)  # another kind may run alongside
    jobs.attach(two_classes, "train", {}, None)
    # Said as a person says it, with a time to read ("A train is already running … 2026-12-06T22:38:30+00:00").
    said = r"^A training is already running \(job \d+, started \d{4}-\d\d-\d\d \d\d:\d\d UTC\)"
    with pytest.raises(Conflict, match=said):
        jobs.attach(two_classes, "train", {}, None)
    # A worker that died without finishing is marked failed on the next look.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    two_classes.conn.execute("UPDATE jobs SET pid = ? WHERE id = ?", (int(dead.stdout), job.id))
    seen = jobs.get_job(two_classes, job.id)
    assert seen.state == "failed" and "ended without finishing" in seen.message
    assert jobs.running_job(two_classes, "download") is None


@pytest.mark.slow
def test_launched_download_can_be_cancelled(two_classes: Store, tmp_path: Path) -> None:
    """A real background worker: cancel stops it and leaves the rest accepted for a resume."""
    import socket
    import threading

    # A server that accepts connections and never answers: every download hangs until cancel.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    try:
        port = listener.getsockname()[1]
        two_classes.set_setting("allow_private_hosts", True)
        two_classes.set_setting("read_timeout", 4)
        two_classes.set_setting("download_workers", 2)
        two_classes.add_candidates([CandidateIn("elves", f"http://127.0.0.1:{port}/{i}.png") for i in range(20)])
        two_classes.decide([c.id for c in two_classes.candidates()], "accepted")
        job = jobs.launch(two_classes, "download", ["download"], {})
        wait_for(lambda: len(held) >= 2, 30, "the worker to connect")
        jobs.request_cancel(two_classes, job.id)
        # In-flight requests hang until the read timeout (4 s); the 16 others are never started,
        # so the job ends well within the bound (running them all would take ~40 s).
        wait_for(lambda: not jobs.get_job(two_classes, job.id).running, 30, "the cancel")
        assert jobs.get_job(two_classes, job.id).state == "cancelled"
        assert two_classes.count_candidates(state="accepted") >= 16  # not reached: still accepted
        assert not list((two_classes.root / "tmp").iterdir())
    finally:
        stop.set()
        for s in held:
            s.close()
        listener.close()
    assert os.environ.get(FAKE_ENV) is None
