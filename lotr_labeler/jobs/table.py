"""The jobs table: every SQL statement on it, the ``Job`` row, and worker liveness.

A row names its worker by pid AND process start time: a worker killed with ``kill -9`` (or
lost in a reboot, after which its pid may belong to anything) is found dead on the next look,
its job marked failed and its run's leftovers removed, so no stale row blocks a new job.
Cancel is a flag on the row that the worker polls.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from lotr_labeler.errors import Conflict, NotFound
from lotr_labeler.store import Store, now
from lotr_labeler.store.history import ORIGIN_ENV

# A launched worker gets this long to record its pid before it is presumed dead.
_START_GRACE_S = 60
# Two processes may compute one process's start time a little apart (the OS boot time they add
# to it is rounded); a reused pid starts later than that by far.
_START_TOLERANCE_S = 1.5
# Rows from before start times were recorded: their worker started before its first write.
_LEGACY_SLACK_S = 10.0
# Workers this process launched, reaped on every liveness look (no zombies).
_children: dict[int, subprocess.Popen[bytes]] = {}  # workers this process launched, until reaped

DEAD_MESSAGE = "The worker process ended without finishing (crash or kill)."


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    state: str
    pid: int | None
    args: dict[str, Any]
    progress: dict[str, Any]
    message: str
    result: dict[str, Any] | None
    cancel_requested: bool
    started_at: str
    updated_at: str
    finished_at: str | None
    pid_started: float | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"


def _row(store: Store, job_id: int) -> Job:
    r = store.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if r is None:
        raise NotFound(f"No job with id {job_id} in project {store.name!r}.")
    return Job(
        id=r["id"],
        kind=r["kind"],
        state=r["state"],
        pid=r["pid"],
        args=json.loads(r["args"]),
        progress=json.loads(r["progress"]),
        message=r["message"],
        result=json.loads(r["result"]) if r["result"] else None,
        cancel_requested=bool(r["cancel_requested"]),
        started_at=r["started_at"],
        updated_at=r["updated_at"],
        finished_at=r["finished_at"],
        pid_started=r["pid_started"],
    )


# -- liveness -------------------------------------------------------------------------------


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch); None when there is none or it is
    a zombie (dead, waiting for its parent to collect it)."""
    import psutil  # here: 20 ms of a server's first page, which shows no job

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except psutil.NoSuchProcess:  # also ZombieProcess
        return None


@cache
def own_start() -> float:
    """This process's start time, as ``process_start`` reports it to other processes."""
    started = process_start(os.getpid())
    assert started is not None  # we are running
    return started


def same_process(pid: int, started: float | None, *, legacy_before: datetime | None = None) -> bool:
    """True while the process recorded as (``pid``, ``started``) still runs, not another one
    that got its pid. Without a recorded start (old rows) a process that started after
    ``legacy_before`` is another one."""
    import psutil

    try:
        now_started = process_start(pid)
    except psutil.AccessDenied:  # exists, but the OS will not say when it started: assume ours
        return True
    if now_started is None:
        return False
    if started is not None:
        return abs(now_started - started) <= _START_TOLERANCE_S
    if legacy_before is not None:
        return now_started <= legacy_before.timestamp() + _LEGACY_SLACK_S
    return True


def _alive(job: Job) -> bool:
    for pid, child in list(_children.items()):  # reap our own finished children (no zombies)
        if child.poll() is not None:
            del _children[pid]
    if job.pid is None:
        started = datetime.fromisoformat(job.started_at)
        return (datetime.now(UTC) - started).total_seconds() < _START_GRACE_S
    return same_process(job.pid, job.pid_started, legacy_before=datetime.fromisoformat(job.updated_at))


def job_alive(store: Store, job_id: int) -> bool:
    """Whether job ``job_id`` is running with its worker alive (marks nothing)."""
    job = _row(store, job_id)
    return job.running and _alive(job)


# -- reading (a look also fails a dead worker's job) --------------------------------------------


def get_job(store: Store, job_id: int) -> Job:
    job = _row(store, job_id)
    if job.running and not _alive(job):
        with store.transaction():  # only if still running: it may have finished meanwhile
            store.conn.execute(
                "UPDATE jobs SET state = 'failed', message = ?, updated_at = ?, finished_at = ? "
                "WHERE id = ? AND state = 'running'",
                (DEAD_MESSAGE, now(), now(), job_id),
            )
        job = _row(store, job_id)
    return job


def latest_job(store: Store, kind: str) -> Job | None:
    r = store.conn.execute("SELECT id FROM jobs WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,)).fetchone()
    return get_job(store, r["id"]) if r else None


def running_job(store: Store, kind: str) -> Job | None:
    job = latest_job(store, kind)
    return job if job and job.running else None


def fail_stale_jobs(store: Store) -> list[Job]:
    """Look at every running job once, so those whose worker is gone are marked failed;
    returns the jobs that were failed by this look."""
    ids = [r["id"] for r in store.conn.execute("SELECT id FROM jobs WHERE state = 'running'").fetchall()]
    return [job for job in (get_job(store, i) for i in ids) if job.state == "failed"]


# -- writing --------------------------------------------------------------------------------


# A job kind as a sentence starts with it ("A train is already running" read oddly).
KIND_NAMES = {
    "train": "A training",
    "review": "An embedding job",
    "score-candidates": "A scoring of the candidates",
}


def insert(store: Store, kind: str, args: dict[str, Any], pid: int | None, pid_started: float | None) -> Job:
    """A new running row of ``kind``; Conflict while another job of that kind runs."""
    # Check and insert under one write lock: two tabs clicking at once start one job.
    with store.transaction():
        active = running_job(store, kind)
        if active:
            started = active.started_at[:16].replace("T", " ")  # "2026-12-06 22:38", not the ISO stamp
            raise Conflict(
                f"{KIND_NAMES.get(kind, f'A {kind}')} is already running (job {active.id}, started {started} UTC). "
                "Wait for it to finish or cancel it."
            )
        cur = store.conn.execute(
            "INSERT INTO jobs(kind, pid, pid_started, args, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (kind, pid, pid_started, json.dumps(args), now(), now()),
        )
    return _row(store, int(cur.lastrowid or 0))


def launch(store: Store, kind: str, command: list[str], args: dict[str, Any]) -> Job:
    """Start ``lotr-labeler <command> --job ID`` in the background; one job per kind at a time.

    The worker runs in a new session, so page changes, reruns and closed tabs stop nothing.
    Prefer a job spec's ``launch`` (lotr_labeler.jobs.specs), which builds ``command``.
    """
    job = insert(store, kind, args, None, None)
    log_dir = store.cache_dir / "jobs"
    log_dir.mkdir(parents=True, exist_ok=True)
    root = store.root.absolute().parent  # the worker must find the project whatever its cwd
    argv = [sys.executable, "-m", "lotr_labeler", "--data", str(root), "--project", store.name]
    try:
        with open(log_dir / f"{job.id}.log", "wb") as log:
            child = subprocess.Popen(  # noqa: S603 - our own module, arguments built here
                [*argv, *command, "--job", str(job.id)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the page's script run and Ctrl-C in the server
                env={**os.environ, ORIGIN_ENV: store.author()},  # its changes are the launcher's to undo
            )
    except OSError as exc:  # no process: end the row now, or it would block this kind until the grace ends
        finish(store, job.id, "failed", f"Could not start the {kind} worker ({exc}).")
        raise Conflict(
            f"Could not start the {kind} worker: {exc}. Check free disk space and that {sys.executable} runs."
        ) from exc
    _children[child.pid] = child
    started = process_start(child.pid)  # our unreaped child: readable even if it died at once
    with store.transaction():
        store.conn.execute(
            "UPDATE jobs SET pid = ?, pid_started = ? WHERE id = ? AND pid IS NULL", (child.pid, started, job.id)
        )
    return _row(store, job.id)


def attach(store: Store, kind: str, args: dict[str, Any], job_id: int | None) -> Job:
    """The worker side: take over the launched row, or register a CLI run as a job."""
    if job_id is None:
        return insert(store, kind, args, os.getpid(), own_start())
    job = _row(store, job_id)
    if job.kind != kind or not job.running:
        raise Conflict(f"Job {job_id} is a {job.state} {job.kind} job, not a running {kind} job.")
    with store.transaction():
        store.conn.execute(
            "UPDATE jobs SET pid = ?, pid_started = ?, updated_at = ? WHERE id = ?",
            (os.getpid(), own_start(), now(), job_id),
        )
    return _row(store, job_id)


def request_cancel(store: Store, job_id: int) -> None:
    with store.transaction():
        store.conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state = 'running'", (job_id,))


def write_progress(store: Store, job_id: int, progress: dict[str, Any], message: str) -> None:
    with store.transaction():
        store.conn.execute(
            "UPDATE jobs SET progress = ?, message = ?, updated_at = ? WHERE id = ?",
            (json.dumps(progress, default=str), message, now(), job_id),
        )


def finish(store: Store, job_id: int, state: str, message: str, result: dict[str, Any] | None = None) -> None:
    with store.transaction():
        store.conn.execute(
            "UPDATE jobs SET state = ?, message = ?, result = ?, updated_at = ?, finished_at = ? WHERE id = ?",
            (state, message, json.dumps(result) if result is not None else None, now(), now(), job_id),
        )


def finish_from_thread(db: Path, job_id: int, state: str, message: str) -> None:
    """``finish`` on a connection of the calling thread (a signal's last words before the process
    ends); gives up after a short wait for the lock, as the next look marks a dead job failed anyway."""
    conn = sqlite3.connect(db, timeout=0.3)
    try:
        conn.execute(
            "UPDATE jobs SET state = ?, message = ?, updated_at = ?, finished_at = ? "
            "WHERE id = ? AND state = 'running'",
            (state, message, now(), now(), job_id),
        )
        conn.commit()
    finally:
        conn.close()


def cancel_requested(conn: sqlite3.Connection, job_id: int) -> bool:
    """Whether job ``job_id`` was asked to stop, read on ``conn`` (a watcher thread's own
    connection: sqlite connections stay in their thread)."""
    row = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bool(row and row[0])
