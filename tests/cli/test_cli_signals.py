"""Ctrl-C (SIGINT) and SIGTERM on the long CLI commands, sent as real signals to real subprocesses: each
stops within 2 s, says "interrupted", exits 130 / 143 and leaves the work as the README promises
(a download's unfinished candidates stay accepted; an import's committed part is one undo; a training
run ends cancelled). The audit's download ran on for 116 s after Ctrl-C, then marked its URLs failed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import image_bytes, shape_image, wait_for

from lotr_labeler.imaging import normalize
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.workspace import create_project

STOP_LIMIT_S = 2.0
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


pytestmark = pytest.mark.slow  # real signals to CLI subprocesses, training among them


class _Slow(BaseHTTPRequestHandler):
    """/trickle/N sends one byte a second of a promised 100 kB; /stall/N answers nothing for a minute."""

    hits = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with _Slow.lock:
            _Slow.hits += 1
        try:
            if self.path.startswith("/trickle/"):
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                for _ in range(60):
                    self.wfile.write(b"\xff")
                    self.wfile.flush()
                    time.sleep(1)
            else:
                time.sleep(60)
        except OSError:  # the client went away
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    _Slow.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _cli(data: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "LOTR_LABELER_DATA": str(data)}
    return subprocess.Popen(
        [sys.executable, "-m", "lotr_labeler", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str], signum: int) -> tuple[float, str]:
    """Send ``signum``; the seconds until the process ended, and its stderr."""
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return time.monotonic() - sent, err


def _job_state(root: Path, kind: str) -> str:
    conn = sqlite3.connect(root / "project.sqlite")
    try:
        return str(conn.execute("SELECT state FROM jobs WHERE kind = ? ORDER BY id DESC", (kind,)).fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_download_stops_within_2_s_and_keeps_candidates_accepted(tmp_path: Path, slow_server: str, signum: int) -> None:
    with create_project(tmp_path, "p", "empty") as store:
        store.add_class("a")
        store.set_setting("allow_private_hosts", True)
        urls = [f"{slow_server}/trickle/{k}" for k in range(4)] + [f"{slow_server}/stall/{k}" for k in range(4)]
        store.add_candidates(CandidateIn("a", u) for u in urls)
        store.decide([c.id for c in store.candidates()], "accepted")
    proc = _cli(tmp_path, "download", "--no-score")
    wait_for(lambda: _Slow.hits >= 8, 60, "every download in flight")
    time.sleep(0.5)
    took, err = _stop(proc, signum)
    print(f"download: {signal.Signals(signum).name} -> exit {proc.returncode} after {took:.2f} s")
    assert proc.returncode == CODES[signum], err
    assert "interrupted" in err and "Traceback" not in err
    assert took < STOP_LIMIT_S
    with Store(tmp_path / "p") as store:
        assert {c.state for c in store.candidates()} == {"accepted"}  # the README: they stay accepted
        assert _job_state(store.root, "download") == "cancelled"


def test_import_stops_within_2_s_and_its_committed_part_is_one_undo(tmp_path: Path) -> None:
    src = tmp_path / "src" / "shapes"
    src.mkdir(parents=True)
    for i in range(400):
        (src / f"{i}.png").write_bytes(image_bytes(shape_image("circle", 20_000 + i)))
    create_project(tmp_path / "data", "p", "empty").close()
    db = tmp_path / "data" / "p" / "project.sqlite"
    proc = _cli(tmp_path / "data", "import", "folder", str(tmp_path / "src"))

    def committed() -> bool:
        conn = sqlite3.connect(db)
        try:
            return int(conn.execute("SELECT count(*) FROM images").fetchone()[0]) > 0
        finally:
            conn.close()

    wait_for(committed, 60, "a first committed batch")
    took, err = _stop(proc, signal.SIGINT)
    print(f"import: SIGINT -> exit {proc.returncode} after {took:.2f} s")
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert took < STOP_LIMIT_S
    with Store(tmp_path / "data" / "p") as store:
        n = store.count()
        assert 0 < n < 400
        assert [e.kind for e in store.history() if not e.undone] == ["import"]
        store.undo()
        assert store.count() == 0 and store.classes() == []


def test_search_stops_within_2_s_in_its_polite_delay(tmp_path: Path) -> None:
    fake = tmp_path / "ddgs.json"
    rows = [
        {"title": "t", "image": f"http://example.com/{{slug}}/{i}.jpg", "thumbnail": None, "url": None}
        for i in range(3)
    ]
    fake.write_text(json.dumps({"*": rows}))
    create_project(tmp_path / "data", "p", "lotr").close()  # seven classes: seven queries
    env_data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lotr_labeler", "search", "--delay", "30"],
        env={**os.environ, "LOTR_LABELER_DATA": str(env_data), "LOTR_LABELER_FAKE_DDGS": str(fake)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = env_data / "p" / "project.sqlite"

    def first_query_stored() -> bool:
        try:
            conn = sqlite3.connect(db)
            try:
                return int(conn.execute("SELECT count(*) FROM candidates").fetchone()[0]) > 0
            finally:
                conn.close()
        except sqlite3.Error:
            return False

    wait_for(first_query_stored, 60, "the first query's candidates")
    took, err = _stop(proc, signal.SIGINT)
    print(f"search: SIGINT -> exit {proc.returncode} after {took:.2f} s")
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert took < STOP_LIMIT_S
    with Store(env_data / "p") as store:
        assert store.count_candidates() == 3  # what the first query found is kept
        assert _job_state(store.root, "search") == "cancelled"


def _fill(store: Store, per_class: int = 12) -> None:
    """Two classes of generated shapes, each with an image in the valid split."""
    for shape in ("circle", "square"):
        store.add_class(shape)
        seed = 500 if shape == "circle" else 900
        while store.count(shape) < per_class or store.count(shape, split="valid") < 1:
            store.add_image(normalize(image_bytes(shape_image(shape, seed, size=48))), shape, source="upload")
            seed += 1
    store.set_setting("min_images_per_class", 3)


def test_train_stops_within_2_s_and_the_run_ends_cancelled(empty_store: Store, data_root: Path) -> None:
    """SIGTERM while training: the run and its job end cancelled, within 2 s."""
    store = empty_store
    _fill(store)
    proc = _cli(
        data_root, "train", "--epochs", "50", "--size", "32", "--bs", "2", "--arch", "resnet18", "--no-pretrained"
    )

    def training() -> bool:
        conn = sqlite3.connect(store.root / "project.sqlite")
        try:
            row = conn.execute("SELECT progress FROM jobs WHERE kind = 'train' ORDER BY id DESC").fetchone()
            return bool(row and row[0] and json.loads(row[0]).get("batch", 0) >= 1)
        finally:
            conn.close()

    wait_for(training, 240, "the first batch")
    took, err = _stop(proc, signal.SIGTERM)
    print(f"train: SIGTERM -> exit {proc.returncode} after {took:.2f} s")
    assert proc.returncode == 143 and "interrupted" in err and "Traceback" not in err, err
    assert took < STOP_LIMIT_S
    assert _job_state(store.root, "train") == "cancelled"
    states = [r[0] for r in store.conn.execute("SELECT state FROM runs")]
    assert states == ["cancelled"]


def test_candidate_scoring_stops_within_2_s(project: tuple[Store, object], data_root: Path, slow_server: str) -> None:
    store, _ = project
    store.add_candidates(
        CandidateIn("circle", f"{slow_server}/stall/{k}.jpg", thumbnail_url=f"{slow_server}/trickle/{k}.jpg")
        for k in range(6)
    )
    proc = _cli(data_root, "candidates", "score", "--allow-private-hosts")
    wait_for(lambda: _Slow.hits >= 1, 120, "a thumbnail in flight")
    time.sleep(0.3)
    took, err = _stop(proc, signal.SIGINT)
    print(f"score: SIGINT -> exit {proc.returncode} after {took:.2f} s")
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert took < STOP_LIMIT_S
    assert _job_state(store.root, "score-candidates") == "cancelled"
    assert {c.state for c in store.candidates()} == {"pending"}
