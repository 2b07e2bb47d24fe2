"""The database core of a project: connection, transactions, the file journal, migrations, meta.

Layout of a project folder::

    project.sqlite                 manifest (WAL)
    images/<class>/<id>.jpg        active images (fastai ``from_folder`` layout)
    trash/<id>.jpg                 soft-deleted images (restorable)
    tmp/                           files being written, before their row commits
    cache/                         thumbnails, embeddings

File paths are derived from the row (class name, id, deleted), never stored, so a
class rename is one folder move. Every file move is journaled in ``file_ops`` in
the same transaction as its DB change and carried out after commit. The DB is the
truth, the files follow.

Several processes (Streamlit tabs, jobs, the CLI, the API) may write one project at
once. Files therefore move only under SQLite's write lock: the journal is read fresh
and replayed in id order inside a ``BEGIN IMMEDIATE`` transaction that deletes the
replayed ops, at the start of every write transaction, after each commit and on open.
Replaying from any point is idempotent (a move whose source is gone is done), so a
``kill -9`` mid-way leaves nothing another process cannot finish. Decisions that
depend on the current state (what to relabel, whether bytes are stored already, what
to undo) are read inside the write transaction. Temp files have per-process unique
names and a process only ever deletes its own.

Tables owned here: ``file_ops`` (the journal) and ``meta`` (small named values).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from lotr_labeler.errors import Conflict, NotFound, StoreError
from lotr_labeler.store.schema import MIGRATIONS

log = logging.getLogger(__name__)

DB_NAME = "project.sqlite"
# Unreferenced temp files younger than this may belong to another process mid-write
# (a writer re-creates its temp file under the lock if it was swept meanwhile, so this
# only saves work; tests pass a shorter grace to ``Store``).
TMP_GRACE_SECONDS = 600.0


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _older(f: Path, cutoff: float) -> bool:
    """A regular file last modified before ``cutoff`` (False when it vanished meanwhile)."""
    try:
        st = f.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations this DB has not seen, each in its own transaction."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise StoreError(
            f"Database schema version {version} is newer than this lotr_labeler knows "
            f"({len(MIGRATIONS)}). Upgrade lotr_labeler."
        )
    for number, (name, sql) in enumerate(MIGRATIONS[version:], start=version + 1):
        try:
            # The guard fails the script when another process applied it meanwhile (checked under the
            # lock): re-running an older migration that happens to succeed would lower user_version.
            guard = (
                f"CREATE TEMP TABLE _migration_guard(v INTEGER CHECK (v < {number}));\n"
                "INSERT INTO _migration_guard SELECT user_version FROM pragma_user_version;\n"
                "DROP TABLE _migration_guard;"
            )
            conn.executescript(f"BEGIN IMMEDIATE;\n{guard}\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) >= number:
                continue  # another process (a second tab, the CLI) applied it first
            raise StoreError(f"Migration {name} failed: {exc}. The database was left unchanged.") from exc
        log.info("applied migration %s", name)
    return len(MIGRATIONS)


class Database:
    """One project's SQLite connection and folder: transactions, the file journal, meta."""

    def __init__(self, root: Path, *, tmp_grace_seconds: float = TMP_GRACE_SECONDS) -> None:
        self.root = Path(root)
        self.tmp_grace_seconds = tmp_grace_seconds
        self.name = self.root.name
        db = self.root / DB_NAME
        if not db.exists():
            raise NotFound(f"No project at {self.root} (missing {DB_NAME}). Create it with `init`.")
        self.conn = self._connect(db)
        self._tx_depth = 0
        # Moves that failed after their change was committed (they stay journaled and are retried):
        # front ends show these to the user (CLI: a warning line; pages: a warning), not only the log.
        self.move_errors: list[str] = []
        try:
            migrate(self.conn)
            self.repair()
        except BaseException:
            self.conn.close()
            raise

    # -- lifecycle -----------------------------------------------------------------

    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(db, isolation_level=None, timeout=10)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"Cannot open {db}: {exc}. Restore it from a backup or move it away.") from exc
        return conn

    @classmethod
    def create(cls, root: Path) -> Self:
        root = Path(root)
        if (root / DB_NAME).exists():
            raise Conflict(f"Project {root.name!r} exists already at {root}. Pick another name.")
        for sub in ("images", "trash", "tmp", "cache"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        cls._connect(root / DB_NAME).close()
        return cls(root)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    # -- transactions and the file journal -------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic change under the write lock. Nested calls join the outer transaction.

        Moves journaled by others are finished first, so the body sees files that agree
        with the DB; moves planned inside are carried out once the outermost commit is done.
        """
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield self.conn
            finally:
                self._tx_depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._tx_depth = 1
        replayed = False
        try:
            replayed = self._replay_journal() > 0
            self.conn.execute("SAVEPOINT body")
            yield self.conn
            self.conn.execute("RELEASE body")
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                if replayed:
                    # The replayed moves are done on disk: keep their journal deletions even when the
                    # body fails, or a second replay would redo them over what later moves wrote.
                    self.conn.execute("ROLLBACK TO body")
                    self.conn.execute("RELEASE body")
                    self.conn.execute("COMMIT")
                else:
                    self.conn.execute("ROLLBACK")
            raise
        finally:
            self._tx_depth = 0
        self._apply_file_ops()

    def _plan_move(self, src: str, dst: str) -> None:
        assert self._tx_depth, "file moves are planned inside a transaction"
        self.conn.execute("INSERT INTO file_ops(src, dst) VALUES (?, ?)", (src, dst))

    def _apply_file_ops(self) -> None:
        """Carry out the journaled moves in their own locked transaction, after a commit.

        Never raises: the change is committed already (reporting an error would invite a
        second attempt). A move that fails stays journaled for the next writer or open.
        """
        try:
            if self.conn.execute("SELECT NOT EXISTS (SELECT 1 FROM file_ops)").fetchone()[0]:
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self._replay_journal()
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:  # e.g. locked for longer than the timeout: the next writer replays
            log.warning("project %s: file moves postponed (%s)", self.name, exc)

    def _replay_journal(self) -> int:
        """Replay every journaled move in id order and drop the done ones. Call under the write lock.

        Stops at the first move that fails (later moves may depend on it) and leaves it and
        the rest journaled. Returns how many moves were replayed.
        """
        assert self.conn.in_transaction, "the journal is replayed under the write lock"
        done = 0
        for op in self.conn.execute("SELECT id, src, dst FROM file_ops ORDER BY id").fetchall():
            try:
                self._move(self.root / op["src"], self.root / op["dst"])
            except OSError as exc:
                text = (
                    f"Could not move {op['src']} to {op['dst']} ({exc.strerror or exc}). The change is saved; the "
                    "move is retried on the next change or when the project is opened. Check the folder's "
                    "permissions and free space."
                )
                log.warning("project %s: %s", self.name, text)
                self.move_errors.append(text)
                break
            self.conn.execute("DELETE FROM file_ops WHERE id = ?", (op["id"],))
            done += 1
        return done

    @classmethod
    def _move(cls, src: Path, dst: Path) -> None:
        """Idempotent move: finished already when ``src`` is gone (a replay after a crash)."""
        if not os.path.lexists(src):
            if not os.path.lexists(dst):
                log.warning("file move %s -> %s: neither exists", src, dst)
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir() and dst.is_dir() and not src.samefile(dst):
            # Merging into a folder that exists (an empty one left behind, or a replay cut short).
            for child in src.iterdir():
                cls._move(child, dst / child.name)  # through the class: tests patch it there
            src.rmdir()
            return
        src.replace(dst)  # also a case-only rename on a case-insensitive file system

    def repair(self) -> list[str]:
        """Finish interrupted file moves and drop stale temp files. Returns what was done.

        Runs on open, under the write lock; skipped (no lock taken) when there is nothing to do.
        """
        tmp = self.root / "tmp"
        cutoff = time.time() - self.tmp_grace_seconds
        stale = [f for f in tmp.iterdir() if _older(f, cutoff)] if tmp.is_dir() else []
        pending = int(self.conn.execute("SELECT count(*) FROM file_ops").fetchone()[0])
        if not stale and not pending:
            return []
        done: list[str] = []
        try:
            with self.transaction():  # replays the journal first
                left = {r[0] for r in self.conn.execute("SELECT src FROM file_ops")}
                if pending > len(left):
                    done.append(f"finished {pending - len(left)} interrupted file move(s)")
                for f in stale:
                    # re-checked under the lock; a journaled source is a committed image, never stale
                    if f"tmp/{f.name}" not in left and _older(f, cutoff):
                        f.unlink(missing_ok=True)
                        done.append(f"removed stale temp file {f.name}")
                if left:
                    done.append(f"{len(left)} file move(s) still pending (see the warning above)")
        except sqlite3.Error as exc:  # another process holds the lock; it replays the journal too
            log.warning("project %s: repair postponed (%s)", self.name, exc)
        for line in done:
            log.info("repair %s: %s", self.name, line)
        return done

    # -- meta: small named values (current run, how review scores were fitted) -----------

    def meta_get(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta_set(self, key: str, value: str) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def meta_delete(self, key: str, *, only_if: str | None = None) -> None:
        """Drop ``key``; with ``only_if``, only while it still holds that value."""
        with self.transaction():
            if only_if is None:
                self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self.conn.execute("DELETE FROM meta WHERE key = ? AND value = ?", (key, only_if))
