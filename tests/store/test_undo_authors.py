"""Undo belongs to its author: a window's Undo/Z and a terminal's `undo` take back their own last
change, never another window's or terminal's; an event whose items changed since is refused, naming
the later change. (The audit: `delete 5` in one terminal, `import folder X` in another, `undo` in the
first undid the import.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import grid_data, grid_send, image_bytes, shape_image
from streamlit.testing.v1 import AppTest

from lotr_labeler.errors import Conflict, NothingToUndo
from lotr_labeler.store import Store

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.slow  # several windows, terminals and jobs on one project


def _as(store: Store, origin: str) -> Store:
    other = Store(store.root)
    other.origin = origin
    return other


def test_each_author_undoes_its_own_last_change(store: Store, shapes_dir: Path) -> None:
    a, b = _as(store, "cli:terminal-a"), _as(store, "cli:terminal-b")
    victim = store.images("circle")[0]
    a.delete_images([victim.id])
    moved = store.images("square")[0]
    b.relabel([moved.id], "triangle")
    assert a.undo() == "Undid: deleted 1 image(s)"  # not b's relabel, which is newer
    assert not a.get_image(victim.id).deleted and b.get_image(moved.id).label == "triangle"
    with pytest.raises(NothingToUndo, match=r"Nothing of yours to undo.*relabeled 1 image\(s\) to triangle.*--event"):
        a.undo()
    last = b.history(1)[0]
    assert a.undo_change(last.id).id == last.id  # named explicitly, anyone may
    assert a.get_image(moved.id).label == "square"
    a.close()
    b.close()


def test_undoing_a_change_whose_items_changed_since_is_refused_naming_it(store: Store) -> None:
    a, b = _as(store, "browser:window-a"), _as(store, "browser:window-b")
    img = store.images("circle")[0]
    a.relabel([img.id], "square")
    b.relabel([img.id], "triangle")
    later = b.history(1)[0]
    with pytest.raises(Conflict) as refused:
        a.undo()
    text = str(refused.value)
    assert f"image {img.id} changed since in #{later.id} (relabeled 1 image(s) to triangle" in text
    assert "another browser window" in text and f"undo --event {later.id}" in text
    assert a.get_image(img.id).label == "triangle"  # nothing changed
    b.undo()
    a.undo()  # now it is as a left it: undoable
    assert a.get_image(img.id).label == "circle"
    a.close()
    b.close()


def test_a_job_started_by_a_page_writes_as_that_page(empty_store: Store, image_server: str) -> None:
    """The worker of a page's job inherits the page's origin: that window's Undo takes its download back."""
    from helpers import wait_for

    from lotr_labeler.jobs import table
    from lotr_labeler.jobs.specs import DownloadJob
    from lotr_labeler.store import CandidateIn

    empty_store.add_class("a")
    empty_store.set_setting("allow_private_hosts", True)
    empty_store.add_candidates([CandidateIn("a", f"{image_server}/img/{k}.png") for k in range(2)])
    empty_store.decide([c.id for c in empty_store.candidates()], "accepted")
    empty_store.origin = "browser:the-page"
    job = DownloadJob(score=False).launch(empty_store)
    wait_for(lambda: not table.get_job(empty_store, job.id).running, 120, "the download job")
    event = empty_store.history(1)[0]
    assert (event.kind, event.origin) == ("import", "browser:the-page")
    assert empty_store.undo() == "Undid: downloaded 2 image(s)"  # the page's own change
    assert empty_store.count() == 0


# -- two terminals: each a real shell in its own session, commands typed one after another ------------


class Terminal:
    """A shell in a session of its own (as a terminal window runs one); commands run in order."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str) -> None:
        self.workdir = workdir
        self.name = name
        self.n = 0
        clean = {k: v for k, v in env.items() if k != "LOTR_LABELER_ORIGIN"}
        self.shell = subprocess.Popen(
            ["bash"], stdin=subprocess.PIPE, env=clean, start_new_session=True, text=True, cwd=workdir
        )

    def run(self, *args: str) -> tuple[int, str, str]:
        self.n += 1
        out, err, rc = (self.workdir / f"{self.name}{self.n}.{x}" for x in ("out", "err", "rc"))
        cli = " ".join([sys.executable, "-m", "lotr_labeler", *args])
        assert self.shell.stdin is not None
        self.shell.stdin.write(f"{cli} > {out} 2> {err}; echo $? > {rc}.tmp; mv {rc}.tmp {rc}\n")
        self.shell.stdin.flush()
        deadline = time.monotonic() + 120
        while not rc.exists():
            assert time.monotonic() < deadline, f"{self.name}: {args} did not finish"
            time.sleep(0.05)
        return int(rc.read_text()), out.read_text(), err.read_text()

    def close(self) -> None:
        assert self.shell.stdin is not None
        self.shell.stdin.close()
        self.shell.wait(30)


def test_two_terminals_delete_then_import_then_undo(store: Store, tmp_path: Path, shapes_dir: Path) -> None:
    env = {**os.environ, "LOTR_LABELER_DATA": str(store.root.parent)}
    first, second = Terminal(env, tmp_path, "a"), Terminal(env, tmp_path, "b")
    try:
        victim = store.images("circle")[0].id
        assert first.run("delete", str(victim))[0] == 0
        extra = tmp_path / "more" / "hexagon"
        extra.mkdir(parents=True)
        for k in range(2):
            (extra / f"h{k}.png").write_bytes(image_bytes(shape_image("square", 900 + k)))
        rc, out, err = second.run("import", "folder", str(tmp_path / "more"))
        assert rc == 0, err
        imported = store.count("hexagon")
        assert imported == 2
        rc, out, err = first.run("undo")
        assert rc == 0, err
        assert out.strip() == f"Undid #{_event_id(store, 'delete')}: deleted 1 image(s)."
        assert not store.get_image(victim).deleted and store.count("hexagon") == imported  # the import stays
        rc, out, err = first.run("undo")
        assert rc == 1 and "Nothing of yours to undo" in err and "another terminal or script" in err
        rc, out, err = second.run("undo")
        assert rc == 0 and "imported 2 image(s)" in out
        assert "hexagon" not in store.class_names()  # with the class it created: one step
    finally:
        first.close()
        second.close()


def _event_id(store: Store, kind: str) -> int:
    return next(e.id for e in store.history(50) if e.kind == kind)


# -- two browser windows on the Dataset page ----------------------------------------------------------


def _window() -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "3_Dataset.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_two_windows_each_undo_their_own_change(store: Store) -> None:
    one, two = _window(), _window()
    mine, theirs = store.images("circle")[0].id, store.images("square")[0].id
    one = grid_send(one, "ds_grid", {"action": "delete", "ids": [mine]})
    two = grid_send(two, "ds_grid", {"action": "delete", "ids": [theirs]})  # the newest change
    one = grid_send(one, "ds_grid", {"action": "undo", "ids": []})  # window one's Z
    assert not store.get_image(mine).deleted
    assert store.get_image(theirs).deleted  # window two's change stands
    two = grid_send(two, "ds_grid", {"action": "undo", "ids": []})  # window two's ↩ Undo
    assert not two.exception
    assert not store.get_image(theirs).deleted


def test_a_window_cannot_undo_what_another_window_changed_since(store: Store) -> None:
    """Window one relabels an image, window two relabels it again; window one's Z is refused with a message
    naming window two's change, and nothing moves. Once window two undoes its change, window one's Z works."""
    one, two = _window(), _window()
    image = store.images("circle")[0].id
    one = grid_send(one, "ds_grid", {"action": "relabel", "ids": [image], "label": "square"})
    two.run()  # window two now shows the card as square (a stale card would be left alone, not relabeled)
    two = grid_send(two, "ds_grid", {"action": "relabel", "ids": [image], "label": "triangle"})
    assert store.get_image(image).label == "triangle"
    one = grid_send(one, "ds_grid", {"action": "undo", "ids": []})
    kind, text = grid_data(one, "ds_grid")["message"]
    assert kind == "error" and f"image {image} changed since in #" in text and "another browser window" in text
    assert store.get_image(image).label == "triangle"
    two = grid_send(two, "ds_grid", {"action": "undo", "ids": []})
    one = grid_send(one, "ds_grid", {"action": "undo", "ids": []})
    assert store.get_image(image).label == "circle"
