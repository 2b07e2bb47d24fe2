"""A `kill -9`'d `import folder` is one undoable step: the images its batches committed and the classes
it created sit in one history event (the audit: 7 of 7 killed imports left committed images with no
event, and `undo` then failed on the class they were in)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import files_under, image_bytes, shape_image

from lotr_labeler.errors import NothingToUndo
from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project

CLASSES = ("one", "two", "three")
PER_CLASS = 40
# Kill once this many images are committed (0: as soon as the process runs): early, mid-batch, late.
KILL_AFTER = (0, 1, 5, 12, 25, 40, 57, 70, 80, 95)


pytestmark = pytest.mark.slow  # ten imports in subprocesses, killed


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("killed-src")
    for c, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(PER_CLASS):
            (root / name / f"{i}.png").write_bytes(image_bytes(shape_image("circle", 10_000 + c * 100 + i)))
    return root


def _committed(db: Path) -> int:
    try:
        conn = sqlite3.connect(db, timeout=5)
        try:
            return int(conn.execute("SELECT count(*) FROM images").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _agree(store: Store) -> None:
    """Rows and files agree: every row's file where the row says, no other image file, no journal left."""
    rows = store.images() + store.images(deleted=True)
    on_disk = {f"images/{p}" for p in files_under(store.root / "images")}
    on_disk |= {f"trash/{p}" for p in files_under(store.root / "trash") if "/" not in p}
    assert on_disk == {r.relpath for r in rows}
    assert store.conn.execute("SELECT count(*) FROM file_ops").fetchone()[0] == 0
    live = {c.name for c in store.classes()}
    folders = {p.name for p in (store.root / "images").iterdir() if p.is_dir()}
    assert live <= folders and not [f for f in folders - live if any((store.root / "images" / f).iterdir())]


def test_ten_killed_imports_are_each_undoable_in_one_step(source: Path, tmp_path: Path) -> None:
    undone = 0
    for round_, threshold in enumerate(KILL_AFTER):
        data = tmp_path / f"data{round_}"
        create_project(data, "p", "empty").close()
        db = data / "p" / "project.sqlite"
        env = {**os.environ, "LOTR_LABELER_DATA": str(data)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "lotr_labeler", "import", "folder", str(source)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while _committed(db) < threshold and proc.poll() is None:
            assert time.monotonic() < deadline, f"round {round_}: no progress"
            time.sleep(0.01)
        time.sleep((round_ % 4) * 0.013)  # land at different points of a batch: decoding, committing, moving
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        with Store(data / "p", tmp_grace_seconds=0) as store:  # the next open repairs what the kill left
            _agree(store)
            n = store.count()
            live = [e for e in store.history() if not e.undone]
            if n == 0:
                assert live == [] and store.classes() == []
                print(f"round {round_}: killed before the first commit: nothing stored, nothing to undo")
                continue
            assert [e.kind for e in live] == ["import"], live  # one step, no add_class events of its own
            assert live[0].summary == f"imported {n} image(s) from folder"
            store.undo()
            assert store.count() == 0 and store.count(deleted=True) == n
            assert store.classes() == []  # the classes it made go with it
            _agree(store)
            with pytest.raises(NothingToUndo):
                store.undo()
            undone += 1
        print(f"round {round_}: killed after >= {threshold} committed, {n} stored, undone in one step")
    assert undone >= 8  # nearly every kill landed mid-import (the first may land before any commit)
