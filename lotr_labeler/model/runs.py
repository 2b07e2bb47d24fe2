"""Run records: each trained or imported model, its files, its predictions, and the current one.

Files of a run live in ``runs/<id>/`` (``model.pkl`` from ``learn.export()``, ``metrics.json``).
The current run (used by Review and Predict) is the one the user picked, else the newest
finished one. A run records the pid and start time of the process doing it: a ``running`` run
whose process is gone (``kill -9``, a crash, a reboot) is marked failed on the next look and
its leftovers (the image snapshot, a partial model file) are removed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lotr_labeler.errors import Conflict, InvalidInput, NotFound, check_choice
from lotr_labeler.jobs import table as jobs
from lotr_labeler.model.onnx_export import onnx_path
from lotr_labeler.store import Store
from lotr_labeler.store import runs as table

RUN_STATES = ("running", "done", "failed", "cancelled")
MODEL_FILE = "model.pkl"
METRICS_FILE = "metrics.json"
SNAPSHOT_DIR = "data"  # hard links of the images a run trains on, removed when it ends
PARTIAL_PREFIX = ".tmp-"  # files being written (write_atomic, the model export) before their rename
DEAD_MESSAGE = "The process doing this run ended without finishing it (crash or kill); its partial files were removed."


@dataclass(frozen=True)
class Run:
    id: str
    state: str
    source: str
    params: dict[str, Any]
    vocab: list[str]
    metrics: dict[str, Any]
    message: str
    job_id: int | None
    created_at: str
    finished_at: str | None
    path: Path
    is_current: bool = False

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    def full_metrics(self) -> dict[str, Any]:
        """metrics.json (per-epoch history, confusion matrix…), or the DB summary when absent."""
        if self.metrics_path.is_file():
            data: dict[str, Any] = json.loads(self.metrics_path.read_text(encoding="utf-8"))
            return data
        return dict(self.metrics)


INSTANT = "instant"  # the source of a run made by Review's "Retrain head" (``embed.INSTANT_SOURCE``)


def model_kind(run: Run) -> str:
    """What the run's model is, in a few words for tables: the architecture of a trained one,
    "instant: head on <backbone> embeddings" of an instant one, "imported" without an architecture."""
    if run.source == INSTANT:
        return f"instant: head on {run.params.get('backbone_name') or 'backbone'} embeddings"
    arch = run.params.get("arch")
    if arch:
        return str(arch)
    return "imported" if run.source == "imported" else "—"


def runs_dir(store: Store) -> Path:
    # Absolute: run paths go to fastai (learn.export joins a relative one onto learn.path).
    return store.root.absolute() / "runs"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def _run(store: Store, row: Any, current: str | None) -> Run:
    return Run(
        id=row["id"],
        state=row["state"],
        source=row["source"],
        params=json.loads(row["params"]),
        vocab=json.loads(row["vocab"]),
        metrics=json.loads(row["metrics"]),
        message=row["message"],
        job_id=row["job_id"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        path=runs_dir(store) / row["id"],
        is_current=row["id"] == current,
    )


def _current_id(store: Store) -> str | None:
    return table.current_id(store)


def _alive(store: Store, row: Any) -> bool:
    if row["pid"] is not None:
        return jobs.same_process(row["pid"], row["pid_started"])
    # Rows from before process identities were recorded: alive only while their job is.
    return row["job_id"] is not None and jobs.job_alive(store, row["job_id"])


def remove_leftovers(run_path: Path) -> None:
    """Delete what an unfinished run leaves: its snapshot, a model file, temp files."""
    shutil.rmtree(run_path / SNAPSHOT_DIR, ignore_errors=True)
    (run_path / MODEL_FILE).unlink(missing_ok=True)  # written before the run was done: not trusted
    onnx_path(run_path / MODEL_FILE).unlink(missing_ok=True)  # its ONNX copy, exported right after it
    if run_path.is_dir():
        for partial in run_path.glob(f"{PARTIAL_PREFIX}*"):
            partial.unlink(missing_ok=True)


def fail_dead_runs(store: Store) -> list[str]:
    """Mark failed every running run whose process is gone and remove its leftovers; their ids."""
    dead = [r["id"] for r in table.running(store) if not _alive(store, r)]
    failed: list[str] = []
    for run_id in dead:
        if table.fail_if_running(store, run_id, DEAD_MESSAGE):  # a live process may have just finished it
            remove_leftovers(runs_dir(store) / run_id)
            failed.append(run_id)
    jobs.running_job(store, "train")  # a look: the dead worker's job row ends failed too, not at the next train
    return failed


def list_runs(store: Store) -> list[Run]:
    """Every run of the project (runs whose process died are marked failed first).

    Parameters
    ----------
    store
        The project.

    Returns
    -------
    list[Run]
        The runs, newest first.
    """
    fail_dead_runs(store)
    current = _current_id(store)
    return [_run(store, r, current) for r in table.all_rows(store)]


def get_run(store: Store, run_id: str) -> Run:
    fail_dead_runs(store)
    row = table.get_row(store, run_id)
    if row is None:
        known = ", ".join(r.id for r in list_runs(store)[:5]) or "none yet"
        raise NotFound(f"No run {run_id!r} in project {store.name!r}. Recent runs: {known}.")
    return _run(store, row, _current_id(store))


def current_run(store: Store) -> Run | None:
    """The run whose model predicts and reviews.

    Parameters
    ----------
    store
        The project.

    Returns
    -------
    Run or None
        None until a run has finished.
    """
    current = _current_id(store)
    return get_run(store, current) if current else None


def create_run(
    store: Store,
    params: dict[str, Any],
    *,
    source: str = "trained",
    job_id: int | None = None,
    run_id: str | None = None,
) -> Run:
    run_id = run_id or new_run_id()
    table.insert(
        store, run_id, source=source, params=params, job_id=job_id, pid=os.getpid(), pid_started=jobs.own_start()
    )
    (runs_dir(store) / run_id).mkdir(parents=True, exist_ok=True)
    return get_run(store, run_id)


def finish_run(
    store: Store,
    run_id: str,
    state: str,
    *,
    vocab: Sequence[str] | None = None,
    metrics: dict[str, Any] | None = None,
    message: str = "",
) -> Run:
    check_choice(state, RUN_STATES, "Run state")
    table.finish(store, run_id, state, vocab=vocab, metrics=metrics, message=message)
    return get_run(store, run_id)


def set_current(store: Store, run_id: str) -> Run:
    run = get_run(store, run_id)
    if run.state != "done":
        raise Conflict(f"Run {run_id} is {run.state}; only a finished run can be current.")
    table.set_current(store, run_id)
    return get_run(store, run_id)


def delete_run(store: Store, run_id: str, *, force: bool = False) -> None:
    """Remove a run's record, predictions and files (not undoable: a model can be retrained). The current
    run only with ``force`` (the page's "Confirm delete", the CLI's ``--force``): Predict, ``serve`` and
    ``export`` use it, and ``undo`` cannot bring it back (it would undo the last change of the data)."""
    run = get_run(store, run_id)
    if run.state == "running":
        raise Conflict(f"Run {run_id} is still running. Cancel it first.")
    if run.is_current and not force:
        raise Conflict(
            f"Run {run_id} is the current model (Predict, serve and export use it), and a deleted run cannot be "
            "undone. Make another run current first (`runs current RUN_ID`), or delete it with --force."
        )
    table.delete(store, run_id)
    shutil.rmtree(run.path, ignore_errors=True)


def save_predictions(
    store: Store, run_id: str, vocab: Sequence[str], rows: Iterable[tuple[int, Sequence[float]]]
) -> int:
    """Store per-image probabilities (aligned with ``vocab``) for a run, replacing earlier ones."""

    def checked() -> Iterator[tuple[int, str, str, float]]:
        for image_id, probs in rows:
            if len(probs) != len(vocab):
                raise InvalidInput(f"Image {image_id}: {len(probs)} probabilities for {len(vocab)} classes.")
            best = max(range(len(probs)), key=lambda i: probs[i])
            yield image_id, json.dumps([float(p) for p in probs]), vocab[best], float(probs[best])

    return table.replace_predictions(store, run_id, checked())


@dataclass(frozen=True)
class Prediction:
    image_id: int
    probs: list[float]
    predicted: str
    confidence: float


def predictions(store: Store, run_id: str) -> dict[int, Prediction]:
    rows = table.prediction_rows(store, run_id)
    return {r[0]: Prediction(r[0], json.loads(r[1]), r[2], r[3]) for r in rows}
