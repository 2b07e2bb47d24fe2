"""A full disk is an error, not a success: `import folder` and `download` stop with "The disk is full…"
and a non-zero exit (the audit: an import onto a 6 MB tmpfs exited 0 and called 362 files "unreadable:
No space left on device"). What was committed before stays one undoable step, rows and files agree."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import files_under
from PIL import Image

from lotr_labeler.cli import main
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.store import images as store_images
from lotr_labeler.workspace import create_project


def _noise_folder(root: Path, n: int, side: int = 320) -> Path:
    """``n`` images of noise (they stay large as JPEG) in one class folder."""
    folder = root / "src" / "noise"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{i}.png")
    return root / "src"


def _agree(store: Store) -> None:
    rows = store.images() + store.images(deleted=True)
    on_disk = {f"images/{p}" for p in files_under(store.root / "images")}
    on_disk |= {f"trash/{p}" for p in files_under(store.root / "trash") if "/" not in p}
    assert on_disk == {r.relpath for r in rows}


def _full_after(monkeypatch: pytest.MonkeyPatch, writes: int) -> None:
    """The write boundary of staged images fails with ENOSPC after ``writes`` files."""
    real = store_images.write_atomic
    count = {"n": 0}

    def write_atomic(path: Path, data: bytes) -> Any:
        count["n"] += 1
        if count["n"] > writes:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(store_images, "write_atomic", write_atomic)


def test_import_on_a_full_disk_is_an_error(
    empty_store: Store, shapes_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _full_after(monkeypatch, 5)
    assert main(["import", "folder", str(shapes_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: The disk is full.") and "unreadable" not in err
    assert len(err.strip().splitlines()) == 1
    _agree(empty_store)
    stored = empty_store.count()
    assert stored < 18
    if stored:
        assert [e.kind for e in empty_store.history()] == ["import"]


def test_download_on_a_full_disk_is_an_error_and_keeps_candidates_accepted(
    empty_store: Store, image_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty_store.add_class("a")
    empty_store.add_candidates(CandidateIn("a", f"{image_server}/img/{k}.png") for k in range(6))
    empty_store.decide([c.id for c in empty_store.candidates()], "accepted")
    _full_after(monkeypatch, 0)
    assert main(["download", "--allow-private-hosts", "--no-score", "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert "error: The disk is full" in err and "the candidates not downloaded stay accepted" in err
    states = {c.state for c in empty_store.candidates()}
    assert states == {"accepted"}  # none marked failed: the URLs were fine
    assert empty_store.count() == 0
    job = empty_store.conn.execute("SELECT state, message FROM jobs WHERE kind = 'download'").fetchone()
    assert job[0] == "failed" and "disk is full" in job[1]


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


@pytest.mark.slow
def test_import_onto_a_real_full_tmpfs(tmp_path: Path) -> None:
    """The audit's case on a real 6 MB file system (needs root to mount; skipped elsewhere)."""
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "6m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        src = _noise_folder(tmp_path, 90)
        create_project(mnt, "p", "empty").close()
        env = {**os.environ, "LOTR_LABELER_DATA": str(mnt)}
        done = subprocess.run(
            [sys.executable, "-m", "lotr_labeler", "import", "folder", str(src)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        print(f"tmpfs import: exit {done.returncode}, stderr {done.stderr.strip()[:200]!r}")
        assert done.returncode == 1
        assert done.stderr.startswith("error: The disk is full.") and "unreadable" not in done.stderr
        # Room again (as the user would free some): what was committed is consistent and one undo.
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        with Store(mnt / "p") as store:
            n = store.count()
            assert 0 < n < 90
            _agree(store)
            assert [e.kind for e in store.history()] == ["import"]
            store.undo()
            assert store.count() == 0 and store.classes() == []
            _agree(store)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
