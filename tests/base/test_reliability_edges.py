"""The audit's smaller findings, each as it was seen: a Host header with text after the IPv6 brackets, a
killed training's job row left running, `serve` announcing on a busy port, an IDN host resolved twice,
a file move that failed after its commit reported only in the log."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from helpers import SHAPES, image_bytes, shape_image, wait_for
from starlette.testclient import TestClient
from streamlit.testing.v1 import AppTest

from lotr_labeler.api import create_app, host_name, is_loopback
from lotr_labeler.cli import main
from lotr_labeler.collect import fetch as guarded
from lotr_labeler.imaging import normalize
from lotr_labeler.jobs import table as jobs
from lotr_labeler.jobs.specs import TrainJob
from lotr_labeler.model import runs
from lotr_labeler.model.learner import TrainParams
from lotr_labeler.store import Store

ROOT = Path(__file__).resolve().parents[2]


# -- Host: [::1]evil.example ----------------------------------------------------------------------------


pytestmark = pytest.mark.slow  # the session's tiny trained model, a killed training, real servers


def test_text_after_the_ipv6_brackets_is_not_a_loopback_host(project: tuple[Store, runs.Run], data_root: Path) -> None:
    assert host_name("[::1]evil.example") == "[::1]evil.example"
    assert host_name("[::1]:8000") == "[::1]" and host_name("[::1]:80x") == "[::1]:80x"
    assert not any(is_loopback(h) for h in ("[::1]evil.example", "[::1", "::1]", "[[::1]]", "[127.0.0.1]x"))
    assert is_loopback("[::1]") and is_loopback("::1")
    app = create_app(data_root, "demo", loopback_hosts_only=True)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/health").status_code == 200
        for host in ("[::1]evil.example", "[::1]evil.example:8000", "[::1"):
            refused = c.get("/health", headers={"host": host})
            assert refused.status_code == 421, host
            assert host in refused.json()["error"]


# -- a killed training's job row ------------------------------------------------------------------------


def _fill(store: Store, per_class: int = 12) -> None:
    for shape in SHAPES[:2]:
        store.add_class(shape)
        seed = 300 * (SHAPES.index(shape) + 1)
        while store.count(shape) < per_class or store.count(shape, split="valid") < 1:
            store.add_image(normalize(image_bytes(shape_image(shape, seed, size=48))), shape, source="upload")
            seed += 1
    store.set_setting("min_images_per_class", 3)


def test_a_killed_trainings_job_row_is_failed_on_the_next_look_at_the_runs(empty_store: Store) -> None:
    store = empty_store
    _fill(store)
    job = jobs.launch(
        store, "train", TrainJob.of(TrainParams(epochs=50, size=64, batch_size=2, pretrained=False)).to_argv(), {}
    )
    child = psutil.Process(job.pid)  # our worker, in its own session
    try:
        wait_for(lambda: jobs.get_job(store, job.id).progress.get("batch", 0) >= 1, 180, "the first batch")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    listed = runs.list_runs(store)  # the Train page's runs table, `runs list`
    assert [r.state for r in listed] == ["failed"]
    raw = sqlite3.connect(store.root / "project.sqlite")  # the row itself, not through a look that fixes it
    try:
        state = raw.execute("SELECT state FROM jobs WHERE id = ?", (job.id,)).fetchone()[0]
    finally:
        raw.close()
    assert state == "failed"


# -- serve on a busy port -------------------------------------------------------------------------------


def test_serve_on_a_busy_port_is_one_error_line_before_any_announcement(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "lotr_labeler", "--data", str(tmp_path), "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    assert "Prediction API on" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"error: Port {port} on 127.0.0.1 is in use (another `serve`, or another program). "
        f"Stop it, or pick another port with --port (e.g. --port {port + 1})."
    ]


# -- IDN hosts: pinned under the name the connection uses ------------------------------------------------


def test_an_idn_host_is_checked_and_pinned_under_its_xn_form(image_server: str) -> None:
    """The resolver knows only the xn-- name: the check resolves that name, and the connection goes to
    the pinned address (the system cannot resolve 'bücher.example', so a second lookup would fail)."""
    port = image_server.rsplit(":", 1)[1]
    asked: list[str] = []

    def resolver(host: str, p: int) -> list[str]:
        asked.append(host)
        if host != "xn--bcher-kva.example":
            raise OSError(f"no such host {host}")
        return ["127.0.0.1"]

    url = f"http://Bücher.example:{port}/img/1.png"
    assert guarded.wire_host(url) == "xn--bcher-kva.example"
    with guarded.make_client(5.0, 1) as client:
        got = guarded.fetch(client, url, max_bytes=5_000_000, allow_private=True, resolver=resolver, timeout=5.0)
    assert got.data[:4] == b"\x89PNG" and asked == ["xn--bcher-kva.example"]


# -- a file move that fails after its commit ------------------------------------------------------------


def test_a_failed_move_after_the_commit_is_told_to_the_cli_user(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    image = store.images("circle")[0]

    def refuse(src: Path, dst: Path) -> None:
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(Store, "_move", classmethod(lambda cls, src, dst: refuse(src, dst)))
    assert main(["relabel", str(image.id), "square"]) == 0  # the change is saved
    err = capsys.readouterr().err
    assert f"warning: Could not move images/circle/{image.id}.jpg to images/square/{image.id}.jpg" in err
    assert "Permission denied" in err and "retried" in err
    monkeypatch.undo()
    with Store(store.root) as again:  # the next open finishes the move: rows and files agree
        assert again.path(again.get_image(image.id)).is_file()


def test_a_failed_move_after_the_commit_is_shown_on_the_page(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    circle = store.get_class("circle")
    at = AppTest.from_file(str(ROOT / "pages" / "1_Classes.py"), default_timeout=60)
    at.run()

    def refuse(cls: type, src: Path, dst: Path) -> None:
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(Store, "_move", classmethod(refuse))
    at.text_input(key=f"rename_{circle.id}").input("Rounds")
    at.button(key=f"do_rename_{circle.id}").click().run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("Could not move images/circle to images/Rounds" in w and "retried" in w for w in warnings), warnings
