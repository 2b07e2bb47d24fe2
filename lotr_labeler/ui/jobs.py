"""The one job panel: live progress of a background job, polled by a fragment, then its outcome."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import streamlit as st

from lotr_labeler.jobs import table as jobs
from lotr_labeler.store import Store
from lotr_labeler.ui.context import act, project_store


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _describe(job: jobs.Job) -> tuple[float, str]:
    """Fraction done and one line of text from a job's progress record (a ``progress.Progress`` as stored:
    ``done``, ``total`` and ``message`` in every one; a stage's own fields where the panel shows more)."""
    p = job.progress
    if job.kind == "download" and p.get("total"):
        frac = p["done"] / p["total"]
        text = (
            f"{p['done']}/{p['total']} · ✓ {p['ok']} · ✗ {p['failed']} · duplicates {p['duplicates']}"
            f" · ETA {_eta(p.get('eta_s'))}"
        )
        return frac, text
    if job.kind == "train" and p.get("epochs"):
        from lotr_labeler.model.train import progress_stage  # here: 9 ms off a page's first load

        return (p["done"] / p["total"] if p.get("total") else 0.0), (
            f"{progress_stage(p.get('phase', ''), p['epoch'], p['epochs'])} · batch {p['batch']}/{p['batches']}"
            f" · {p.get('device', '')} · elapsed {_eta(p.get('elapsed_s'))} · ETA {_eta(p.get('eta_s'))}"
        )
    if job.kind == "search" and p.get("total"):
        return p["done"] / p["total"], (
            f"query {p['done']} of {p['total']}: “{p['query']}” · {p['results_so_far']} new candidates so far"
        )
    if job.kind == "review":
        if p.get("total"):
            # Embeddings, not images: "auto" embeds a sample with each backbone it compares, then the rest.
            return p["done"] / p["total"], f"{p['done']}/{p['total']} embeddings · {p.get('backbone', '')}"
        return 0.0, "Loading the network…"
    if p.get("total"):  # any stage's Progress record: done of total, and its message
        return min(1.0, p.get("done", 0) / p["total"]), p.get("message") or f"{p.get('done', 0)}/{p['total']}"
    return 0.0, job.message or "starting…"


def _cancel(store: Store, job_id: int) -> None:
    jobs.request_cancel(store, job_id)


Detail = Callable[[jobs.Job], None]


def when(iso: str, now: datetime | None = None) -> str:
    """A stored UTC timestamp as a person reads it: "just now", "12 min ago", "3 h ago", else the date and
    time ("2026-12-02 07:13 UTC"); the text itself when it is not a timestamp."""
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    seconds = ((now or datetime.now(UTC)) - at).total_seconds()
    if 0 <= seconds < 60:
        return "just now"
    if 0 <= seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if 0 <= seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ended_text(job: jobs.Job) -> str:
    return f"Last {job.kind} ({when(job.finished_at or job.updated_at)}): {job.message}"


def last_box(job: jobs.Job, note: str = "") -> None:
    """A finished job in the box of its end state (done green, cancelled yellow, failed red), ``note``
    after its message."""
    shown = {"done": st.success, "cancelled": st.warning, "failed": st.error}[job.state]
    shown(_ended_text(job) + (f" {note}" if note else ""))


def last_line(job: jobs.Job) -> None:
    """A finished job in one line, for a panel that sits beside the grid: a caption when it went well
    (the grid shows what it did), the red box when it failed (the user must see it)."""
    text = _ended_text(job)
    if job.state == "failed":
        st.error(text)
    else:
        st.caption(("⏹️ " if job.state == "cancelled" else "✅ ") + text)


def _panel(project: str, kind: str, title: str, detail: Detail | None, ended: Detail) -> bool:
    """Render the latest ``kind`` job; returns whether it is running."""
    with project_store(project) as store:
        job = jobs.latest_job(store, kind)
    if job is None:
        return False
    if job.running:
        frac, text = _describe(job)
        with st.container(border=True):
            st.progress(min(frac, 1.0), text=f"**{title} running** · {text}")
            st.button(
                "Cancelling…" if job.cancel_requested else f"Cancel {kind}",
                key=f"cancel_{kind}_{job.id}",
                disabled=job.cancel_requested,
                on_click=act,
                args=(_cancel, job.id),
            )
            if detail is not None:
                detail(job)
        return True
    ended(job)
    return False


def job_panel(project: str, kind: str, title: str, detail: Detail | None = None, *, ended: Detail = last_box) -> None:
    """The latest ``kind`` job of ``project``: a 1 s poller with a Cancel button while it runs (a full
    rerun when it ends refreshes the page), then ``ended(job)``, by default a "Last <kind> …" message.

    Parameters
    ----------
    project, kind, title
        Whose job, which kind ("search", "download", "train", "review"), and its name in the panel.
    detail
        Extra rendering under the progress bar of a running job (the Train page's live chart).
    ended
        Shows a finished job; the default colours the message by its end state.
    """
    with project_store(project) as store:
        active = jobs.running_job(store, kind) is not None
    if not active:
        _panel(project, kind, title, detail, ended)
        return

    @st.fragment(run_every=1.0)
    def poll() -> None:
        if not _panel(project, kind, title, detail, ended):
            st.rerun(scope="app")

    poll()


def job_panels(project: str, panels: Sequence[tuple[str, str]], *, ended: Detail = last_box) -> None:
    """``job_panel`` for each ``(kind, title)`` side by side, those with a job only: a download's error sat
    in the right half of the row beside an empty left half when the project had never searched."""
    with project_store(project) as store:
        shown = [(kind, title) for kind, title in panels if jobs.latest_job(store, kind) is not None]
    if not shown:
        return
    for column, (kind, title) in zip(st.columns(len(shown)), shown, strict=True):
        with column:
            job_panel(project, kind, title, ended=ended)


# -- the page follows its jobs ------------------------------------------------------------------------

IDLE_POLL_S = 3.0  # a page that follows jobs while none runs (Train): how soon one started elsewhere shows
FOLLOW_GRACE_S = 20.0  # after a job ends, a chained one (a search's scoring) may start a moment later
Marks = tuple[tuple[str, int | None, str | None], ...]


def job_marks(store: Store, kinds: Sequence[str]) -> Marks:
    """The latest job of each kind as (kind, id, state): a job started or ended changes it."""
    marks = []
    for kind in kinds:
        job = jobs.latest_job(store, kind)
        marks.append((kind, job.id if job else None, job.state if job else None))
    return tuple(marks)


def worth_following(store: Store, kinds: Sequence[str], now: datetime | None = None) -> bool:
    """Whether a job of ``kinds`` runs, or ended less than FOLLOW_GRACE_S ago (another may follow it)."""
    moment = now or datetime.now(UTC)
    for kind in kinds:
        job = jobs.latest_job(store, kind)
        if job is None:
            continue
        if job.running:
            return True
        try:
            ended = datetime.fromisoformat(job.finished_at or job.updated_at)
        except ValueError:
            continue
        if ended.tzinfo is None:
            ended = ended.replace(tzinfo=UTC)
        if (moment - ended).total_seconds() < FOLLOW_GRACE_S:
            return True
    return False


def follow_jobs(project: str, kinds: Sequence[str], *, idle_s: float | None = None) -> None:
    """Rerun the whole page when a job of ``kinds`` starts or ends, so its grid and counts follow the
    background work without a reload (a search's chained scoring job too, which starts after the search
    ended). Polls once a second while such a job runs or has just ended; with ``idle_s``, also every
    ``idle_s`` seconds when none does, for one started elsewhere (another tab, the CLI). The grid pages
    go without: a poll is a run, and keys typed then wait behind it."""
    key = f"_follow_{'_'.join(kinds)}"
    with project_store(project) as store:
        st.session_state[key] = job_marks(store, kinds)  # what this run of the page shows
        busy = worth_following(store, kinds)
    if not busy and idle_s is None:
        return

    @st.fragment(run_every=1.0 if busy else idle_s)
    def watch() -> None:
        with project_store(project) as store:
            now = job_marks(store, kinds)
            keep = worth_following(store, kinds)
        if now != st.session_state.get(key) or keep != busy:
            st.rerun(scope="app")  # shows the new state; polls at the pace the new state needs

    watch()
