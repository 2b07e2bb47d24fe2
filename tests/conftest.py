"""Shared fixtures: generated images, a data root, projects with and without images, the tiny model.

Only fixtures live here; the plain helpers they use (and tests import) are in helpers.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import SHAPES, ImageHandler, TinyModel, image_bytes, register, shape_image, train_tiny_model

from lotr_labeler.imaging import normalize
from lotr_labeler.model import runs
from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project


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


@pytest.fixture(scope="session")
def image_server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving generated images; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """One tiny trained model per session (test_predict, test_api, test_api_hardening share it)."""
    return train_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture
def project(data_root: Path, tiny_model: TinyModel) -> Iterator[tuple[Store, runs.Run]]:
    """Project "demo" with the shape classes, 2 images each, and one finished run (current)."""
    store = create_project(data_root, "demo", "empty")
    for shape in SHAPES:
        store.add_class(shape)
        for i in range(2):
            store.add_image(
                normalize(image_bytes(shape_image(shape, 700 + 10 * SHAPES.index(shape) + i))), shape, source="upload"
            )
    run = register(store, tiny_model.path, tiny_model.vocab)
    yield store, run
    store.close()


@pytest.fixture(autouse=True)
def _no_orphan_workers() -> Iterator[None]:
    """Background workers run in their own session: a failing test must not leave one running."""
    yield
    import psutil

    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            command = child.cmdline()
            if "lotr_labeler" in command and "--job" in command:  # a worker jobs.table.launch started
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=30)
