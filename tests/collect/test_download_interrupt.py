"""A download ended by Ctrl-C or an error: every image it committed is in its one undoable event,
and the call returns at once instead of waiting for the fetches still in flight."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ALL_COMPLETED, Future
from concurrent.futures import wait as real_wait
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from lotr_labeler.collect import download as dl
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.workspace import create_project


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Store]:
    store = create_project(tmp_path, "interrupt", "empty")
    store.add_class("a")
    store.set_setting("allow_private_hosts", True)  # the test servers are on 127.0.0.1
    yield store
    store.close()


def _one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every candidate finish before the first commit, so they are committed as one batch:
    a fetch job returns once its body is processed, and the loop waits for all of them."""
    real_fetch_job = dl._fetch_job

    def fetch_job(*args: Any) -> Any:
        got = real_fetch_job(*args)
        if isinstance(got, Future):
            got.result(timeout=30)
        return got

    def wait_all(fs: Any, timeout: float | None = None, return_when: str = ALL_COMPLETED) -> Any:
        return real_wait(fs, timeout=30, return_when=ALL_COMPLETED)

    monkeypatch.setattr(dl, "_fetch_job", fetch_job)
    monkeypatch.setattr(dl, "wait", wait_all)


def _undo_takes_back_everything(proj: Store, n: int) -> None:
    """The run's event names all ``n`` stored images and one undo puts every one in the trash."""
    stored = proj.images()
    assert len(stored) == n
    events = [e for e in proj.history(5) if e.kind == "import"]
    assert [e.summary for e in events] == [f"downloaded {n} image(s)"]
    assert all(c.state == "downloaded" for c in proj.candidates())  # consistent with the commit
    proj.undo()
    assert proj.images() == []
    trashed = proj.images(deleted=True)
    assert sorted(i.id for i in trashed) == sorted(i.id for i in stored)
    for image in trashed:  # rows and files agree
        assert proj.path(image).is_file() and image.relpath == f"trash/{image.id}.jpg"
    assert not list((proj.root / "images" / "a").glob("*.jpg"))


def test_ctrl_c_in_the_progress_after_a_group_commit_leaves_every_image_undoable(
    proj: Store, image_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 5
    _one_batch(monkeypatch)
    real_add = proj.add_images
    batches: list[int] = []

    def add_images(items: Any, **kw: Any) -> Any:
        batches.append(len(items))
        return real_add(items, **kw)

    monkeypatch.setattr(proj, "add_images", add_images)
    proj.add_candidates(CandidateIn("a", f"{image_server}/img/{k}.png") for k in range(n))
    proj.decide([c.id for c in proj.candidates()], "accepted")
    calls = 0

    def progress(_: dl.DownloadProgress) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second image of the batch: 3 more are committed but not yet counted
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dl.download_candidates(proj, workers=n, progress=progress)
    assert batches == [n]
    _undo_takes_back_everything(proj, n)


def test_ctrl_c_while_a_committed_batch_moves_its_files_leaves_every_image_undoable(
    proj: Store, image_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The commit is done, then Ctrl-C lands while its files are moved: add_images raises, the rows stay.
    n = 4
    _one_batch(monkeypatch)
    real_apply = proj._apply_file_ops
    interrupted = False

    def apply_file_ops() -> None:
        nonlocal interrupted
        if not interrupted and proj.conn.execute("SELECT count(*) FROM images").fetchone()[0]:
            interrupted = True
            raise KeyboardInterrupt
        real_apply()

    monkeypatch.setattr(proj, "_apply_file_ops", apply_file_ops)
    proj.add_candidates(CandidateIn("a", f"{image_server}/img/{k}.png") for k in range(n))
    proj.decide([c.id for c in proj.candidates()], "accepted")
    with pytest.raises(KeyboardInterrupt):
        dl.download_candidates(proj, workers=n)
    assert interrupted
    _undo_takes_back_everything(proj, n)


# -- an error or Ctrl-C does not wait for the fetches in flight ----------------------------------


def _png(k: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (40 * k % 256, 90, 160)).save(buf, "PNG")
    return buf.getvalue()


class _SlowHandler(BaseHTTPRequestHandler):
    """/fast/<k>.png: an image at once. /trickle/...: one byte every 0.25 s. /stall/...: a few bytes,
    then silence. Both slow kinds end by themselves after at most 10 s (or when the test ends)."""

    done: threading.Event

    def do_GET(self) -> None:
        if self.path.startswith("/fast/"):
            data = _png(int(self.path.rsplit("/", 1)[1].split(".")[0]))
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            if self.path.startswith("/stall/"):
                self.wfile.write(b"\x89PNG")
                self.wfile.flush()
                self.done.wait(10)
                return
            for _ in range(40):  # 10 s
                self.wfile.write(b"x")
                self.wfile.flush()
                if self.done.wait(0.25):
                    return
        except OSError:  # the client hung up
            return

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    done = threading.Event()
    handler = type("Handler", (_SlowHandler,), {"done": done})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        done.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _tmp_files(store: Store) -> list[Path]:
    tmp = store.root / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


@pytest.mark.parametrize(("kind", "error"), [("trickle", KeyboardInterrupt), ("stall", RuntimeError)])
def test_an_error_or_ctrl_c_stops_the_fetches_in_flight_at_once(
    proj: Store, slow_server: str, kind: str, error: type[BaseException]
) -> None:
    # read_timeout 20 s: a trickle never goes silent that long (deadline 5 + 10 x 20 s) and the
    # stalled server hangs up after 10 s, so waiting for either takes 10 s instead of a moment.
    proj.set_setting("read_timeout", 20)
    urls = [f"{slow_server}/{kind}/{k}.png" for k in range(3)] + [f"{slow_server}/fast/1.png"]
    proj.add_candidates(CandidateIn("a", url) for url in urls)
    proj.decide([c.id for c in proj.candidates()], "accepted")
    raised_at: list[float] = []

    def progress(p: dl.DownloadProgress) -> None:  # the fast image is in: fail
        raised_at.append(time.monotonic())
        raise error("stop here")

    with pytest.raises(error):
        dl.download_candidates(proj, workers=4, progress=progress)
    took = time.monotonic() - raised_at[0]
    assert took < 5, f"returned {took:.1f} s after the error"
    assert _tmp_files(proj) == []
    assert len(proj.images()) == 1 and [e.summary for e in proj.history(5) if e.kind == "import"] == [
        "downloaded 1 image(s)"
    ]
    states = {c.image_url.split("/")[3]: c.state for c in proj.candidates()}
    assert states == {"fast": "downloaded", kind: "accepted"}  # a rerun fetches the slow ones again


def test_an_image_staged_while_the_run_ends_leaves_no_temp_file(
    proj: Store, slow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Candidate 2 is decoded and staged to tmp/ but only hands its outcome in after the error.
    interrupted = threading.Event()
    real_work = dl._work

    def work(cand: Any, *args: Any) -> Any:
        out = real_work(cand, *args)
        if cand.image_url.endswith("/2.png"):
            assert out.staged is not None and out.staged.exists()
            interrupted.wait(10)
        return out

    monkeypatch.setattr(dl, "_work", work)
    proj.add_candidates(CandidateIn("a", f"{slow_server}/fast/{k}.png") for k in (1, 2))
    proj.decide([c.id for c in proj.candidates()], "accepted")

    def progress(p: dl.DownloadProgress) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dl.download_candidates(proj, workers=2, progress=progress)
    assert _tmp_files(proj) == []
    assert len(proj.images()) == 1
