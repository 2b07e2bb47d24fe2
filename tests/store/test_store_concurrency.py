"""Several processes writing one project at once, some killed with SIGKILL at any moment.

Worker processes (this file run as a script) import a shared folder (the same folder in
several processes) and folders of their own, relabel, delete and undo on one project with
a seeded random schedule; some kill themselves with SIGKILL inside the file-move code
(right after a commit, between two moves) and the controller kills others at random
moments. Afterwards, once the store is opened again, every row's file must exist where
its row says with its hash, no other file may exist, the journal must be empty, and no
operation may have reported an error although its change was saved.

``TORTURE_SEEDS=1,2,3`` runs other schedules; ``TORTURE_PACKAGE_ROOT=/path`` runs the
workers against another copy of the package (e.g. an older commit) for comparison.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lotr_labeler.store import ClassRow, Store

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKER_SLOTS = 4
SCHEDULE_SECONDS = 14.0  # spawn and kill workers for this long...
DRAIN_SECONDS = 25.0  # ...then let the survivors finish within this, killing stragglers
OPS_PER_WORKER = 25
# Errors that mean "nothing was saved" for a reason another process caused; anything else is a bug.
ALLOWED_ERRORS = {
    "relabel": {"Conflict", "NotFound"},  # image deleted / class undone meanwhile
    "delete": set(),
    "undo": {"NothingToUndo", "Conflict"},  # nothing left / "Cannot undo adding class ... has images"
    "import": set(),
}


# -- the worker (runs in a subprocess) ----------------------------------------------------


pytestmark = pytest.mark.slow  # processes writing one project for seconds, killed


def _noise_png(path: Path, seed: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8), "RGB").save(path, "PNG")


def worker(root: Path, shared: Path, scratch: Path, seed: int, log_path: Path) -> None:
    from lotr_labeler.collect.importers import import_folder

    rng = random.Random(seed)
    die = random.Random(seed * 7919)
    kill_p = die.choice([0.0, 0.02, 0.05])  # some workers kill themselves inside the move code

    def maybe_die() -> None:
        if die.random() < kill_p:
            os.kill(os.getpid(), signal.SIGKILL)

    move, apply_ops = Store._move, Store._apply_file_ops

    def dying_move(src: Path, dst: Path) -> None:
        maybe_die()  # between two journaled moves
        move(src, dst)

    def dying_apply(self: Store) -> None:
        maybe_die()  # committed, nothing moved yet
        apply_ops(self)

    Store._move = staticmethod(dying_move)  # type: ignore[method-assign]
    Store._apply_file_ops = dying_apply  # type: ignore[method-assign]

    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def log(entry: dict[str, Any]) -> None:
        os.write(fd, (json.dumps(entry) + "\n").encode())

    store = Store(root)
    for n in range(OPS_PER_WORKER):
        if rng.random() < 0.15:  # reopen now and then, as CLI commands and page reruns do
            store.close()
            store = Store(root)
        op = rng.choice(["import", "import", "relabel", "relabel", "delete", "undo"])
        log({"op": op, "phase": "start"})
        try:
            result: dict[str, Any] = {}
            if op == "import":
                if rng.random() < 0.5:
                    folder = shared
                else:
                    folder = scratch / f"{seed}-{n}"
                    for i in range(2):
                        _noise_png(folder / rng.choice(["d0", "d1", "d2"]) / f"{i}.png", seed * 1000 + n * 10 + i)
                report = import_folder(store, folder)
                result = {"added": len(report.added), "created": report.created_classes, "rejected": report.rejected}
            else:
                active = [r.id for r in store.images()]  # possibly stale by the time we act, as in a UI
                if op == "relabel" and active:
                    target = rng.choice(store.class_names())
                    result = {"n": store.relabel(rng.sample(active, min(len(active), rng.randint(1, 3))), target)}
                elif op == "delete" and active:
                    result = {"n": store.delete_images(rng.sample(active, min(len(active), 2)))}
                elif op == "undo":
                    result = {"msg": store.undo()}
            log({"op": op, "phase": "end", "ok": True, **result})
        except Exception as exc:  # every outcome is recorded; the controller judges it
            log({"op": op, "phase": "end", "ok": False, "error": type(exc).__name__, "msg": str(exc)})
    store.close()


# -- the controller (the test) ----------------------------------------------------------


def _spawn(root: Path, shared: Path, scratch: Path, seed: int, logs: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    package_root = os.environ.get("TORTURE_PACKAGE_ROOT", str(REPO))
    env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
    args = [sys.executable, str(Path(__file__).resolve()), str(root), str(shared), str(scratch), str(seed)]
    return subprocess.Popen(
        [*args, str(logs / f"w{seed}.jsonl")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _run_schedule(root: Path, shared: Path, scratch: Path, logs: Path, seed: int) -> tuple[int, int, list[str]]:
    """Run workers until the schedule ends. Returns (workers started, killed by us, crash outputs)."""
    rng = random.Random(seed)
    running: list[subprocess.Popen[bytes]] = []
    started = killed = 0
    crashes: list[str] = []

    def reap(p: subprocess.Popen[bytes]) -> None:
        _, err = p.communicate()
        if p.returncode not in (0, -signal.SIGKILL):
            crashes.append(err.decode(errors="replace")[-2000:])

    try:
        end = time.monotonic() + SCHEDULE_SECONDS
        while time.monotonic() < end:
            for p in [p for p in running if p.poll() is not None]:
                running.remove(p)
                reap(p)
            while len(running) < WORKER_SLOTS:
                started += 1
                running.append(_spawn(root, shared, scratch, seed * 1000 + started, logs))
            time.sleep(rng.uniform(0.05, 0.6))
            if running and rng.random() < 0.2:
                victim = rng.choice(running)
                if victim.poll() is None:
                    victim.send_signal(signal.SIGKILL)
                    killed += 1
        drain = time.monotonic() + DRAIN_SECONDS
        for p in running:
            try:
                p.wait(timeout=max(0.1, drain - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                killed += 1
            reap(p)
        running.clear()
    finally:
        for p in running:
            p.kill()
            p.wait()
    return started, killed, crashes


def _files(folder: Path) -> set[str]:
    return (
        {str(p.relative_to(folder.parent)) for p in folder.rglob("*") if not p.is_dir()} if folder.exists() else set()
    )


def _check_store(root: Path) -> list[str]:
    """Every way the files and rows can disagree, after one open (which repairs)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.environ.get("TORTURE_PACKAGE_ROOT", str(REPO)) + os.pathsep + env.get("PYTHONPATH", "")
    opener = f"from lotr_labeler.store import Store; Store({str(root)!r}, tmp_grace_seconds=0).close()"
    # cwd elsewhere: ``python -c`` puts the working directory ahead of PYTHONPATH
    subprocess.run([sys.executable, "-c", opener], env=env, cwd=root, check=True, timeout=60)
    problems: list[str] = []
    conn = sqlite3.connect(root / "project.sqlite")
    if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
        problems.append("database integrity check failed")
    if pending := conn.execute("SELECT count(*) FROM file_ops").fetchone()[0]:
        problems.append(f"{pending} file move(s) still journaled after open")
    rows = conn.execute(
        "SELECT i.id, i.sha256, i.deleted, c.name, c.deleted FROM images i JOIN classes c ON c.id = i.class_id"
    ).fetchall()
    expected: set[str] = set()
    for image_id, sha, deleted, label, class_deleted in rows:
        rel = f"trash/{image_id}.jpg" if deleted else f"images/{label}/{image_id}.jpg"
        expected.add(rel)
        if not deleted and class_deleted:
            problems.append(f"image {image_id} is active in deleted class {label}")
        path = root / rel
        if not path.exists():
            problems.append(f"image {image_id}: {rel} missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != sha:
            problems.append(f"image {image_id}: {rel} has the wrong content")
    on_disk = _files(root / "images") | _files(root / "trash")
    problems += [f"file without a row (or in the wrong folder): {f}" for f in sorted(on_disk - expected)]
    problems += [f"left-over temp file: {f}" for f in sorted(_files(root / "tmp"))]
    conn.close()
    return problems


def _check_outcomes(root: Path, logs: Path) -> tuple[list[str], dict[str, int]]:
    """No operation reported an error for a change that was saved, and none failed for a bad reason."""
    ok: dict[str, int] = dict.fromkeys(["ended", "refused", "import", "relabel", "delete", "undo", "created"], 0)
    inflight: dict[str, int] = dict.fromkeys(["import", "relabel", "delete", "undo"], 0)
    problems: list[str] = []
    for log in logs.glob("*.jsonl"):
        open_op: str | None = None
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry["phase"] == "start":
                open_op = entry["op"]
                continue
            open_op = None
            op = entry["op"]
            ok["ended"] += 1
            if not entry["ok"]:
                ok["refused"] += 1
                if entry["error"] not in ALLOWED_ERRORS[op]:
                    problems.append(f"{op} reported {entry['error']}: {entry['msg']}")
                continue
            bad = [r for r in entry.get("rejected", []) if not r[1].startswith("No class")]
            problems += [f"import rejected {name}: {reason}" for name, reason in bad]
            if op == "import":
                ok["import"] += entry["added"] > 0
                ok["created"] += len(entry["created"])
            elif op in ("relabel", "delete"):
                ok[op] += entry.get("n", 0) > 0
            elif "msg" in entry:
                ok["undo"] += 1
        if open_op is not None:  # killed during this operation: it may or may not have been saved
            inflight[open_op] += 1
    conn = sqlite3.connect(root / "project.sqlite")
    saved = dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
    saved["undo"] = conn.execute("SELECT count(*) FROM events WHERE undone = 1").fetchone()[0]
    # An import's classes are part of its one event (payload "classes"), not add_class events of their own.
    imported = conn.execute("SELECT payload FROM events WHERE kind = 'import'").fetchall()
    saved["add_class"] = saved.get("add_class", 0) + sum(len(json.loads(p).get("classes", [])) for (p,) in imported)
    conn.close()
    # Each successful change is exactly one event; a change whose command reported an error would be an extra one.
    for kind, op, slack in [
        ("import", "import", inflight["import"]),
        ("relabel", "relabel", inflight["relabel"]),
        ("delete", "delete", inflight["delete"]),
        ("undo", "undo", inflight["undo"]),
        ("add_class", "created", 3 * inflight["import"]),
    ]:
        if not ok[op] <= saved.get(kind, 0) <= ok[op] + slack:
            problems.append(f"{saved.get(kind, 0)} {kind} event(s) saved for {ok[op]} reported (+{slack} killed)")
    return problems, {**ok, **{f"killed_{k}": v for k, v in inflight.items()}}


def test_journal_is_not_replayed_from_a_stale_list(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process relabels back while we move files: the image must end where its row says.

    The old code read the journal, then moved outside any lock: the other process replayed
    both moves meanwhile, and ours then moved the file back into the wrong folder.
    """
    img = store.images("circle")[0]
    real_move = Store._move
    other_done = threading.Event()

    def relabel_back() -> None:
        with Store(store.root) as other:  # its own connection, as another process has
            other.relabel([img.id], "circle")
        other_done.set()

    def slow_move(src: Path, dst: Path) -> None:
        if not thread.is_alive() and not other_done.is_set():
            thread.start()
            other_done.wait(timeout=1.0)  # the fix makes the other writer wait for our lock instead
        real_move(src, dst)

    thread = threading.Thread(target=relabel_back)
    monkeypatch.setattr(Store, "_move", staticmethod(slow_move))
    store.relabel([img.id], "triangle")
    thread.join(timeout=30)
    assert other_done.is_set()
    assert store.get_image(img.id).label == "circle"
    assert store.path(store.get_image(img.id)).exists()
    assert not (store.root / f"images/triangle/{img.id}.jpg").exists()


def test_class_created_meanwhile_by_another_process_is_reused(
    empty_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two imports of the same folder at once: one class, one add_class event, no error."""
    real = Store._class_by_key
    other = Store(empty_store.root)

    def raced(self: Store, key: str) -> ClassRow | None:
        if self is empty_store and not other.class_names():
            other.ensure_class("d0")  # lands between our first look and our write
            return None  # what our first look saw
        return real(self, key)

    monkeypatch.setattr(Store, "_class_by_key", raced)
    created: list[str] = []
    cls = empty_store.ensure_class("D0", created=created)
    other.close()
    assert cls.name == "d0" and created == []
    assert [e.kind for e in empty_store.history()] == ["add_class"]


SEEDS = [int(s) for s in os.environ.get("TORTURE_SEEDS", "1").split(",")]


@pytest.mark.parametrize("seed", SEEDS)
def test_many_writers_and_kill_9_leave_files_and_rows_in_agreement(tmp_path: Path, seed: int) -> None:
    root = tmp_path / "data" / "p"
    Store.create(root).close()
    shared, scratch, logs = tmp_path / "shared", tmp_path / "scratch", tmp_path / "logs"
    logs.mkdir()
    for i in range(6):
        _noise_png(shared / f"d{i % 2}" / f"{i}.png", 10_000 + i)

    started, killed, crashes = _run_schedule(root, shared, scratch, logs, seed)
    outcome_problems, counts = _check_outcomes(root, logs)
    store_problems = _check_store(root)
    print(f"seed {seed}: {started} workers, {killed} killed by the controller, outcomes {counts}")

    assert not crashes, crashes[0]
    assert not store_problems, store_problems[:10]
    assert not outcome_problems, outcome_problems[:10]
    assert started >= WORKER_SLOTS and counts["ended"] > 40  # the schedule really ran
    with Store(root) as store:
        assert store.count() + store.count(deleted=True) > 0


if __name__ == "__main__":
    worker(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
