"""A download ended by Ctrl-C or an error: every image it committed is in its one undoable event."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ALL_COMPLETED, Future
from concurrent.futures import wait as real_wait
from pathlib import Path
from typing import Any

import pytest

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

    def add_images(items: Any) -> Any:
        batches.append(len(items))
        return real_add(items)

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
