"""The API under hostile or degraded conditions: deeply nested JSON, a model file that is gone,
no server paths in any answer, memory given back after a burst of 56 MP uploads."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from helpers import TinyModel
from PIL import Image
from starlette.testclient import TestClient

from lotr_labeler.api import create_app, scrub_paths
from lotr_labeler.model import runs
from lotr_labeler.store import Store

pytestmark = pytest.mark.slow  # the session's tiny trained model, a burst of 56 MP uploads


@pytest.fixture
def client(project: tuple[Store, runs.Run], data_root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(data_root, "demo")) as c:
        yield c


def _no_paths(text: str, *roots: Path) -> None:
    for root in roots:
        assert str(root) not in text and str(root.resolve()) not in text, text


def test_deeply_nested_json_is_a_400(client: TestClient, data_root: Path) -> None:
    for body in ("[" * 100_000 + "]" * 100_000, '{"image": ' * 50_000 + "1" + "}" * 50_000):
        resp = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 400, resp.text
        assert "nested too deeply" in resp.json()["error"]
    assert client.get("/health").status_code == 200  # still serving


def test_missing_model_file_makes_health_503_and_no_answer_shows_a_path(
    client: TestClient, project: tuple[Store, runs.Run], data_root: Path, tiny_model: TinyModel
) -> None:
    _, run = project
    ok = client.get("/health")
    assert ok.status_code == 200 and ok.json()["status"] == "ok"
    run.model_path.unlink()
    health = client.get("/health")
    assert health.status_code == 503
    doc = health.json()
    assert doc["status"] == "error" and run.id in doc["message"] and "model.pkl" in doc["message"]
    image = {"image": base64.b64encode(tiny_model.samples[0].read_bytes()).decode()}
    answers = [health, client.post("/predict", json=image), client.get("/classes")]
    assert [a.status_code for a in answers[1:]] == [404, 404]
    for answer in answers:
        _no_paths(answer.text, data_root, Path.cwd(), Path.home())
        assert "demo/runs/" in answer.text or "model.pkl" in answer.text  # still says which file


def test_fixed_model_path_is_named_by_file_name_and_its_loss_is_a_503(tmp_path: Path, tiny_model: TinyModel) -> None:
    model = tmp_path / "models" / "mine.pkl"
    model.parent.mkdir()
    model.write_bytes(tiny_model.path.read_bytes())
    with TestClient(create_app(tmp_path / "no-root", None, model)) as c:
        image = {"image": base64.b64encode(tiny_model.samples[0].read_bytes()).decode()}
        assert c.post("/predict", json=image).json()["model"] == "mine.pkl"
        model.unlink()
        health = c.get("/health")
        assert health.status_code == 503 and "mine.pkl" in health.json()["message"]
        lost = c.post("/predict", json=image)
        assert lost.status_code == 404
        for answer in (health, lost):
            _no_paths(answer.text, tmp_path)


def test_scrub_paths_keeps_urls_and_relative_names() -> None:
    roots = [Path("/srv/data")]
    assert scrub_paths("no model file at /srv/data/demo/runs/r1/model.pkl.", roots) == (
        "no model file at demo/runs/r1/model.pkl."
    )
    assert scrub_paths("No model file '/opt/x/m.pkl'.", roots) == "No model file 'm.pkl'."
    assert scrub_paths(r"bad C:\Users\me\m.pkl here", roots) == "bad m.pkl here"
    kept = "see http://host/a/b.jpg, ratio 1/2, folder a/b/c"
    assert scrub_paths(kept, roots) == kept
    assert scrub_paths("at /tmp", [Path("/")]) == "at /tmp"  # a one-part path is no layout


# -- memory after a burst, measured on a real server process ----------------------------------------


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    """Start VmHWM afresh (``clear_refs`` 5, Linux 4.0+); without it the peak is since the start."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _rss_down_to(pid: int, target_kib: float, wait_s: float = 10.0) -> int:
    """VmRSS as soon as it is at most ``target_kib`` (the release runs as the last request ends, on a
    loaded machine a moment later), else the lowest seen in ``wait_s``."""
    lowest = _status_kib(pid, "VmRSS")
    deadline = time.monotonic() + wait_s
    while lowest > target_kib and time.monotonic() < deadline:
        time.sleep(0.1)
        lowest = min(lowest, _status_kib(pid, "VmRSS"))
    return lowest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def png_56mp() -> bytes:
    """A 7000x8000 PNG: 0.2 MB on the wire, 168 MB once decoded (under max_pixels 60 M)."""
    img = Image.new("RGB", (7000, 8000), (120, 80, 40))
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=9)
    del img
    return buf.getvalue()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS/VmHWM from /proc")
def test_api_gives_memory_back_after_a_burst_of_56mp_uploads(
    project: tuple[Store, runs.Run], data_root: Path, png_56mp: bytes, tiny_model: TinyModel
) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lotr_labeler",
            "--data",
            str(data_root),
            "--project",
            "demo",
            "serve",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # importing fastai on a loaded 2-core machine
        while True:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            try:
                if httpx.get(f"{base}/health", timeout=2).json().get("loaded"):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the API server did not start"
            time.sleep(0.3)
        small = tiny_model.samples[0].read_bytes()
        for _ in range(3):  # warm the worker threads with ordinary requests
            assert (
                httpx.post(f"{base}/predict", content=small, headers={"content-type": "image/png"}).status_code == 200
            )
        idle_kib = _status_kib(server.pid, "VmRSS")

        def upload(_: int) -> int:
            resp = httpx.post(f"{base}/predict", content=png_56mp, headers={"content-type": "image/png"}, timeout=300)
            assert resp.status_code == 200, resp.text
            assert json.loads(resp.text)["top"] in tiny_model.vocab
            return resp.status_code

        def burst(settled_below: float | None = None) -> tuple[int, int]:
            """8 uploads at once; (peak RSS during it, RSS after it) in KiB. The RSS after is read once it
            is under ``settled_below`` (default: half-way between idle and the peak), or after 10 s."""
            _reset_peak(server.pid)
            with ThreadPoolExecutor(8) as pool:
                assert list(pool.map(upload, range(8))) == [200] * 8
            peak = _status_kib(server.pid, "VmHWM")
            half = idle_kib + (peak - idle_kib) / 2
            return peak, _rss_down_to(server.pid, min(half, settled_below or half))

        # The first burst also pays for what stays: 8 request threads' allocator arenas, lazily loaded
        # decoders. Measured against idle alone, that one-off cost failed the suite under load (202 MB vs
        # 150). What "gives memory back" means is that a burst leaves nothing behind: the same burst
        # again must not grow the process, and each ends far below its peak.
        peak1, after1 = burst()
        peak2, after2 = burst(settled_below=after1 + 64 * 1024)
        print(
            f"API RSS: idle {idle_kib / 1024:.0f} MB; burst 1 peak {peak1 / 1024:.0f} MB, after "
            f"{after1 / 1024:.0f} MB; burst 2 peak {peak2 / 1024:.0f} MB, after {after2 / 1024:.0f} MB"
        )
        assert peak1 > idle_kib + 150 * 1024  # the burst really was big
        # Decodes take turns under the pixel budget (unbounded: 3-5 GB above idle were seen).
        assert max(peak1, peak2) - idle_kib < 1536 * 1024, (idle_kib, peak1, peak2)
        assert after2 - after1 < 64 * 1024, (after1, after2)  # the second burst left nothing behind
        for peak, after in ((peak1, after1), (peak2, after2)):  # and most of each burst went back
            assert after - idle_kib < (peak - idle_kib) / 2, (idle_kib, peak, after)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
