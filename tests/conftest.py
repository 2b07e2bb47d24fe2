"""Shared fixtures: generated images, a data root, projects with and without images."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project

SHAPES = ("circle", "square", "triangle")


def shape_image(shape: str, seed: int, size: int = 64) -> Image.Image:
    """A coloured shape on a noisy background: distinct per seed, class given by the shape."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(bg, "RGB")
    draw = ImageDraw.Draw(img)
    colour = tuple(int(v) for v in rng.integers(120, 256, 3))
    lo, hi = int(size * 0.2 + rng.integers(0, 6)), int(size * 0.8 - rng.integers(0, 6))
    if shape == "circle":
        draw.ellipse((lo, lo, hi, hi), fill=colour)
    elif shape == "square":
        draw.rectangle((lo, lo, hi, hi), fill=colour)
    else:
        draw.polygon([(size // 2, lo), (lo, hi), (hi, hi)], fill=colour)
    return img


def image_bytes(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fastai-layout folder: 3 classes x 6 images (png and jpg), generated once."""
    root = tmp_path_factory.mktemp("shapes")
    for shape in SHAPES:
        (root / shape).mkdir()
        for i in range(6):
            fmt = "PNG" if i % 2 else "JPEG"
            (root / shape / f"{i}.{fmt.lower()}").write_bytes(
                image_bytes(shape_image(shape, 100 * SHAPES.index(shape) + i), fmt)
            )
    return root


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    monkeypatch.setenv("LOTR_LABELER_DATA", str(root))
    return root


@pytest.fixture
def empty_store(data_root: Path) -> Iterator[Store]:
    store = create_project(data_root, "demo", "empty")
    yield store
    store.close()


@pytest.fixture
def store(data_root: Path, shapes_dir: Path) -> Iterator[Store]:
    """A project with the 3 shape classes and 18 images."""
    from lotr_labeler.collect.importers import import_folder

    s = create_project(data_root, "demo", "empty")
    import_folder(s, shapes_dir)
    yield s
    s.close()


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.jpg")}


class _ImageHandler(BaseHTTPRequestHandler):
    """/img/<n>.png: a distinct generated picture per n; anything else: 404."""

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/img/") and name.split(".")[0].isdigit():
            n = int(name.split(".")[0])
            body = image_bytes(shape_image(SHAPES[n % 3], 1000 + n, size=96))
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
        else:
            body = b"not found"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def image_server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving generated images; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll until ``predicate()`` holds; a bounded loop that fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(autouse=True)
def _no_orphan_workers() -> Iterator[None]:
    """Background workers run in their own session: a failing test must not leave one running."""
    yield
    from lotr_labeler.jobs import worker as jobs

    for pid, child in list(jobs._children.items()):
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        jobs._children.pop(pid, None)
