"""The batch download of accepted candidates: fetch, validate, normalise and store them.

Each candidate's image is fetched with the guarded fetcher (``collect.fetch``), then decoded and
re-encoded by ``imaging.normalize`` (the decode is the validation). Download threads only fetch
and hand each body to processing threads (decode, normalise, staged write), so network waits and
CPU overlap; every store write happens on the calling thread because the SQLite connection is not
shared across threads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lotr_labeler.collect.fetch import POLL_S, Resolver, fetch, make_client
from lotr_labeler.errors import DiskFull, FetchError, ImageRejected, InvalidInput, NotFound, is_disk_full
from lotr_labeler.imaging import Normalized, normalize
from lotr_labeler.progress import Cancel, Progress, Report, stopped
from lotr_labeler.settings import setting
from lotr_labeler.store import AddResult, CandidateRow, Store
from lotr_labeler.store.images import ImageIn, ImportRecord
from lotr_labeler.urls import redact

log = logging.getLogger(__name__)

# Most downloaded images committed in one transaction (see _drive: group commit).
_BATCH = 32
# Threads that decode, normalise and stage fetched bodies (CPU, then an fsync), apart from the
# download threads, so a download thread starts its next request as soon as its body is in. More
# than the cores: a disk under load can hold an fsync for 50-100 ms, and the others go on meanwhile.
_PROCESSORS = max(8, 4 * (os.cpu_count() or 1))


def _processor_count(workers: int) -> int:
    return min(workers, _PROCESSORS)


@dataclass(frozen=True, kw_only=True)
class DownloadProgress(Progress):
    """``done`` of ``total`` candidates (downloaded, failed or found a duplicate), with the counts."""

    ok: int
    failed: int
    duplicates: int
    near_duplicates: int
    previously_deleted: int
    elapsed_s: float
    eta_s: float | None  # None until something is done


@dataclass
class DownloadReport:
    """What a download run did, for the UI and the CLI."""

    total: int = 0
    ok: int = 0
    failed: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    previously_deleted: int = 0  # exact copies of an image the user deleted: candidate rejected
    skipped: int = 0  # requested ids that are not accepted/failed
    image_ids: list[int] = field(default_factory=list)  # images added by this run
    # The run's one history event, written by each batch's commit (a killed run stays undoable).
    history: ImportRecord = field(
        default_factory=lambda: ImportRecord("downloaded {n} image(s)"), repr=False, compare=False
    )
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (candidate id, url, reason)
    cancelled: bool = False
    elapsed_s: float = 0.0
    # (time, done) of the recent progress reports: the ETA follows the recent rate (``_progress``).
    rate_marks: deque[tuple[float, int]] = field(default_factory=deque, repr=False, compare=False)

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.duplicates + self.previously_deleted

    def reason_counts(self) -> dict[str, int]:
        """How many downloads failed for each reason, most common first."""
        counts: dict[str, int] = {}
        for _, _, reason in self.failures:
            counts[reason] = counts.get(reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def all_failed(self) -> bool:
        """Every URL tried failed (nothing downloaded, no duplicate found)."""
        return bool(self.failed) and self.failed == self.done and not self.cancelled

    @property
    def mostly_failed(self) -> bool:
        """More than half of the URLs tried failed: an error to show, not a success."""
        return not self.cancelled and self.failed * 2 > self.done > 0

    def verdict(self) -> str | None:
        """One sentence when all or most URLs failed: how many, why (reason counts), and the fix
        for the most common reason. None when the run mostly worked."""
        if not self.mostly_failed:
            return None
        counts = self.reason_counts()
        top = next(iter(counts))
        _, verb, fix = _failure_help(top)
        verb = verb if len(counts) == 1 else "failed"
        how_many = f"All {self.failed}" if self.all_failed else f"{self.failed} of {self.done}"
        reasons = ", ".join(f"{_failure_help(r)[0]} ×{n}" for r, n in counts.items())
        return f"{how_many} URLs {verb}: {reasons}. {fix}"

    def summary(self) -> str:
        verdict = self.verdict()
        if verdict:
            return f"{verdict} Downloaded {self.ok} of {self.total} image(s) in {self.elapsed_s:.1f} s."
        text = (
            f"Downloaded {self.ok} of {self.total} image(s): {self.failed} failed, "
            f"{self.duplicates} duplicate(s), {self.near_duplicates} flagged as near duplicate"
        )
        if self.previously_deleted:
            text += f", {self.previously_deleted} previously deleted (rejected)"
        if self.skipped:
            text += f", {self.skipped} skipped (not accepted or failed)"
        text += f" in {self.elapsed_s:.1f} s."
        if self.failures:
            reasons: dict[str, int] = {}
            for _, _, reason in self.failures:
                reasons[reason] = reasons.get(reason, 0) + 1
            text += " Failures: " + ", ".join(f"{r} x{n}" for r, n in sorted(reasons.items())) + "."
        if self.cancelled:
            text += f" Cancelled: {self.total - self.done} left accepted; run download again to resume."
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "done": self.done,
            "ok": self.ok,
            "failed": self.failed,
            "duplicates": self.duplicates,
            "near_duplicates": self.near_duplicates,
            "previously_deleted": self.previously_deleted,
            "skipped": self.skipped,
            "image_ids": list(self.image_ids),
            "failures": [{"candidate_id": c, "url": u, "reason": r} for c, u, r in self.failures],
            "cancelled": self.cancelled,
            "elapsed_s": round(self.elapsed_s, 3),
            "reasons": self.reason_counts(),
            "mostly_failed": self.mostly_failed,
            "summary": self.summary(),
        }


_RETRY = "The URLs stay in the failed state: use Retry failed (CLI: download --retry-failed) later."


def _failure_help(reason: str) -> tuple[str, str, str]:
    """(what the reason means, the verb for the URLs, what to do) for a failure reason tag."""
    if reason == "blocked host":
        return (
            "blocked host (private/loopback address)",
            "were refused",
            "If these are your own local servers, turn on allow_private_hosts in Settings, then Retry failed "
            "(CLI: download --allow-private-hosts --retry-failed).",
        )
    if reason in ("dns", "network"):
        return (
            "host not found" if reason == "dns" else "network error",
            "could not be reached",
            f"Check the network connection or proxy. {_RETRY}",
        )
    if reason == "timeout":
        return ("timed out", "timed out", f"Raise connect_timeout/read_timeout in Settings or try later. {_RETRY}")
    if reason == "too large":
        return ("over max_bytes", "were too large", "Raise max_bytes in Settings, or reject these candidates.")
    if reason.startswith("http "):
        return (
            reason.upper(),
            "were refused by their servers",
            "Those sites do not serve their images to other programs: reject these candidates and accept others.",
        )
    if reason in ("not an image", "corrupt", "bomb", "bad encoding"):
        return (reason, "were not usable images", "Reject these candidates and accept others.")
    if reason == "write failed":
        return (reason, "could not be saved", "Free disk space, then use Retry failed.")
    return (reason, "failed", "See the failed candidates on the Search page (State: failed) for each reason.")


@dataclass(frozen=True)
class _Config:
    workers: int
    allow_private: bool
    max_bytes: int
    timeout: httpx.Timeout
    deadline_s: float
    max_side: int
    max_pixels: int
    quality: int


def _config(store: Store, workers: int | None, allow_private: bool | None) -> _Config:
    s = store.settings()
    connect, read = s.connect_timeout, s.read_timeout
    return _Config(
        workers=s.download_workers if workers is None else int(setting("download_workers").parse(workers)),
        allow_private=s.allow_private_hosts if allow_private is None else allow_private,
        max_bytes=s.max_bytes,
        timeout=httpx.Timeout(connect=connect, read=read, write=read, pool=connect + read),
        # Generous overall bound: slow links are fine, endless trickles are not.
        deadline_s=connect + 10 * read,
        max_side=s.max_side,
        max_pixels=s.max_pixels,
        quality=s.jpeg_quality,
    )


_ELIGIBLE = ("accepted", "failed")


class _Joining(Iterator[CandidateRow]):
    """The accepted candidates of a run, then those accepted while it runs: once the first list is
    taken, each ask looks for newly accepted ones (at most every ``JOIN_POLL_S``) and counts them in."""

    def __init__(self, store: Store, first: list[CandidateRow], report: DownloadReport) -> None:
        self._store = store
        self._queue = list(reversed(first))
        self._seen = {c.id for c in first}
        self._report = report
        self._looked = 0.0

    def __next__(self) -> CandidateRow:
        if not self._queue and time.monotonic() - self._looked >= JOIN_POLL_S:
            self._looked = time.monotonic()
            late = [c for c in self._store.candidates(state="accepted") if c.id not in self._seen]
            self._seen.update(c.id for c in late)
            self._report.total += len(late)
            self._queue = list(reversed(late))
        if not self._queue:
            raise StopIteration
        return self._queue.pop()

    def look_now(self) -> None:
        """The next ask looks for newly accepted candidates whenever the last look was."""
        self._looked = 0.0


JOIN_POLL_S = 0.5


def _select(store: Store, ids: list[int] | None, retry_failed: bool, report: DownloadReport) -> list[CandidateRow]:
    if ids is not None:
        rows = [store.get_candidate(int(i)) for i in dict.fromkeys(ids)]  # NotFound before any work
        eligible = [r for r in rows if r.state in _ELIGIBLE]
        report.skipped = len(rows) - len(eligible)
        return eligible
    rows = store.candidates(state="accepted")
    if retry_failed:
        rows += store.candidates(state="failed")
    return sorted(rows, key=lambda r: r.id)


@dataclass(frozen=True)
class _Outcome:
    image: Normalized | None = None
    error: FetchError | ImageRejected | None = None
    staged: Path | None = None  # the image written durably to tmp/ by the worker, not yet committed


def _fetch_job(
    client: httpx.Client,
    cand: CandidateRow,
    cfg: _Config,
    resolver: Resolver | None,
    cancel: Cancel | None,
    then: Callable[[bytes], Future[_Outcome]],
) -> _Outcome | Future[_Outcome]:
    """Fetch one candidate (a download thread); hand its body on with ``then``.

    Returns the failure, or the future of the processing ``then`` queued: the thread is free for
    the next request while another thread decodes this body (network waits and CPU overlap)."""
    try:
        got = fetch(
            client,
            cand.image_url,
            max_bytes=cfg.max_bytes,
            allow_private=cfg.allow_private,
            timeout=cfg.timeout,
            deadline_s=cfg.deadline_s,
            resolver=resolver,
            cancel=cancel,
        )
    except FetchError as exc:
        return _Outcome(error=exc)
    return then(got.data)


def _work(
    cand: CandidateRow,
    data: bytes,
    cfg: _Config,
    cancel: Cancel | None,
    stage: Callable[[Normalized], Path],
) -> _Outcome:
    """Normalize and stage one fetched body (a processing thread: files only, no database)."""
    try:
        image = _decode(data, cand, cfg, cancel)
        # The temp file and its fsync happen here, in parallel; the writer thread only commits.
        try:
            return _Outcome(image=image, staged=stage(image))
        except OSError as exc:
            if is_disk_full(exc):  # not this URL's fault: the run stops (``_record_failure``), it stays accepted
                raise FetchError(
                    f"Could not write candidate {cand.id} to the project's tmp/ folder.", "disk full"
                ) from None
            raise FetchError(
                f"Could not write candidate {cand.id} to the project's tmp/ folder ({exc}). "
                "Free some disk space, then retry the failed downloads.",
                "write failed",
            ) from None
    except (FetchError, ImageRejected) as exc:
        return _Outcome(error=exc)


def _processing(
    processors: ThreadPoolExecutor,
    cand: CandidateRow,
    cfg: _Config,
    cancel: Cancel | None,
    stage: Callable[[Normalized], Path],
) -> Callable[[bytes], Future[_Outcome]]:
    """What a fetch of ``cand`` calls with its body: queue ``_work`` on it to ``processors``."""

    def then(data: bytes) -> Future[_Outcome]:
        return processors.submit(_work, cand, data, cfg, cancel, stage)

    return then


def _decode(data: bytes, cand: CandidateRow, cfg: _Config, cancel: Cancel | None) -> Normalized:
    name = f"candidate {cand.id} ({redact(cand.image_url)})"
    try:
        return normalize(
            data, max_side=cfg.max_side, max_pixels=cfg.max_pixels, quality=cfg.quality, name=name, cancel=cancel
        )
    except ImageRejected:
        raise
    except Exception as exc:
        # Bytes from the internet can trip decoder bugs PIL does not wrap; one such
        # file must not abort a batch of hundreds. Logged with traceback to stay visible.
        log.exception("unexpected decoder error on %s", name)
        raise ImageRejected(f"{name} could not be decoded ({exc!r}).", "corrupt") from exc


def _record_failure(store: Store, cand: CandidateRow, outcome: _Outcome, report: DownloadReport) -> str:
    """Write one failed fetch to the store (calling thread only). Returns a progress message."""
    reason = outcome.error.reason if outcome.error else "unknown"
    if reason == "disk full":
        raise DiskFull(
            f"The disk is full: {outcome.error} Free some space (empty the trash, delete old runs), then run the "
            "download again; the candidates not downloaded stay accepted."
        )
    if reason == "cancelled":
        return f"Candidate {cand.id} was cancelled; it stays {cand.state}."  # a rerun resumes it
    return _fail(store, cand, reason, str(outcome.error), report)


def _record_images(
    store: Store,
    batch: list[tuple[CandidateRow, _Outcome]],
    report: DownloadReport,
    each: Callable[[str], None] | None = None,
) -> list[str]:
    """Commit a batch of staged images in one transaction (calling thread only); one message each.

    ``each(message)`` runs after each image is counted in ``report``, so progress reported from it
    advances one image at a time even though the batch was committed at once.

    Every image the commit stored joins ``report.image_ids`` before anything else runs (a
    callback, a per-item write), so an error or Ctrl-C after the commit still leaves them in the
    run's import event and one undo takes them all back. Their candidates are ``downloaded`` by
    the same commit; the others (duplicates, class gone) are written one by one after it.
    """
    items = [
        ImageIn(
            outcome.image,
            cand.label,
            "download",
            source_url=cand.image_url,
            page_url=cand.page_url,
            title=cand.title,
            query=cand.query,
            candidate_id=cand.id,
            staged=outcome.staged,
        )
        for cand, outcome in batch
        if outcome.image is not None
    ]
    try:
        results = store.add_images(items, record=report.history)
    except BaseException:
        # Ctrl-C (or an error) after the commit, while the files were being moved: the rows are
        # stored, so the run's event must name them. The commit marked their candidates downloaded.
        _recover_committed(store, batch, report)
        raise
    report.image_ids.extend(r.image.id for r in results if isinstance(r, AddResult) and not r.duplicate)
    messages = []
    for (cand, _), res in zip(batch, results, strict=True):
        messages.append(_record_one(store, cand, res, report))
        if each is not None:
            each(messages[-1])
    return messages


def _recover_committed(store: Store, batch: list[tuple[CandidateRow, _Outcome]], report: DownloadReport) -> None:
    """Add to ``report.image_ids`` the images of ``batch`` a commit stored although ``add_images``
    raised afterwards: the candidates it turned ``downloaded`` (they were accepted or failed)."""
    try:
        for cand, outcome in batch:
            if outcome.image is None:
                continue
            row = store.get_candidate(cand.id)
            if row.state == "downloaded" and row.image_id is not None and row.image_id not in report.image_ids:
                report.image_ids.append(row.image_id)
    except Exception as exc:  # cannot tell (e.g. the database is locked): the original error goes on
        log.warning("download: could not tell which images the last commit stored (%s)", exc)


def _record_one(
    store: Store, cand: CandidateRow, res: AddResult | NotFound | InvalidInput, report: DownloadReport
) -> str:
    """Count one result of a committed batch (its image, if new, is in ``report.image_ids`` already)."""
    if isinstance(res, (NotFound, InvalidInput)):  # the class was deleted or renamed while downloading
        return _fail(store, cand, "class gone", str(res), report)
    image = res.image
    if not res.duplicate:
        report.ok += 1
        if res.near_duplicate_of is not None:
            report.near_duplicates += 1
            return f"Added image {image.id} to {cand.label} (near duplicate of {res.near_duplicate_of})."
        return f"Added image {image.id} to {cand.label}."
    if image.deleted:
        # The user deleted this exact picture before: do not bring it back.
        report.previously_deleted += 1
        store.finish_candidate(
            cand.id, image_id=image.id, error=f"previously deleted image {image.id}", state="rejected"
        )
        return f"Candidate {cand.id} is a copy of deleted image {image.id}: rejected."
    report.duplicates += 1
    store.finish_candidate(cand.id, image_id=image.id, error=None, state="downloaded")
    return f"Candidate {cand.id} is a duplicate of image {image.id}."


def _fail(store: Store, cand: CandidateRow, reason: str, detail: str, report: DownloadReport) -> str:
    report.failed += 1
    report.failures.append((cand.id, cand.image_url, reason))
    store.finish_candidate(cand.id, error=reason)
    log.info("download failed for candidate %s: %s", cand.id, detail)
    return f"Failed {cand.image_url}: {reason}."


def download_candidates(
    store: Store,
    ids: list[int] | None = None,
    *,
    retry_failed: bool = False,
    workers: int | None = None,
    allow_private: bool | None = None,
    progress: Report | None = None,
    cancel: Cancel | None = None,
    client: httpx.Client | None = None,
    resolver: Resolver | None = None,
) -> DownloadReport:
    """Download accepted candidates (plus failed ones with ``retry_failed``, or exactly ``ids``).

    Cancelling stops new downloads and aborts the ones in flight (within about ``POLL_S``
    once connected; a connect in progress within ``connect_timeout``), then returns;
    candidates not finished stay ``accepted`` so running again resumes. An error or Ctrl-C
    (also one raised by ``progress``) aborts them the same way before it propagates: the
    call does not wait for fetches in flight to reach their deadline.

    Parameters
    ----------
    store
        The project.
    ids
        Exactly these candidates; None: every accepted one.
    retry_failed
        Also retry the candidates whose download failed before.
    workers, allow_private
        Parallel downloads and whether private hosts may be fetched; None: the project's settings.
    progress
        Called with a ``DownloadProgress`` after each candidate.
    cancel
        Set it to stop (from another thread).
    client, resolver
        An httpx client and a DNS resolver to use instead of the defaults (tests).

    Returns
    -------
    DownloadReport
        Counts, and the reason of each failure (also stored with the candidate).
    """
    cfg = _config(store, workers, allow_private)
    report = DownloadReport()
    first = _select(store, ids, retry_failed, report)
    report.total = len(first)
    # Every accepted one (no ids): candidates accepted while it runs join it (the Search page keeps
    # deciding during a download); exactly ``ids``: those only.
    todo: Iterator[CandidateRow] = iter(first) if ids is not None else _Joining(store, first, report)
    started = time.monotonic()
    own_client = client is None
    http = client or make_client(cfg.timeout, cfg.workers)
    pool = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="download")
    processors = ThreadPoolExecutor(max_workers=_processor_count(cfg.workers), thread_name_prefix="normalize")
    try:
        _drive(store, pool, processors, http, todo, cfg, resolver, report, started, progress, cancel)
    finally:
        # One history entry per run (``report.history``), so undo takes a whole download back like an
        # import: each batch's commit wrote it, also for a run an error, Ctrl-C or kill -9 ended.
        if own_client:
            http.close()
    report.elapsed_s = time.monotonic() - started
    log.info("download: %s", report.summary())
    return report


def _drive(
    store: Store,
    pool: ThreadPoolExecutor,
    processors: ThreadPoolExecutor,
    http: httpx.Client,
    todo: Iterator[CandidateRow],
    cfg: _Config,
    resolver: Resolver | None,
    report: DownloadReport,
    started: float,
    progress: Report | None,
    cancel: Cancel | None,
) -> None:
    """Keep at most workers + processors (<= 2x workers) candidates in flight, each holding at most
    one body (so cancel is prompt and memory bounded), and record results as they finish. Shuts
    both pools down before it returns or raises.

    Two stages: ``pool`` fetches (waits on the network), ``processors`` decode, normalise and stage
    (CPU and an fsync). A fetch queues its body to ``processors`` itself and its future resolves to
    the processing's future, which then counts in flight in its place.

    Group commit: every image that finished while the previous batch was being written is
    committed in one transaction (at most ``_BATCH``), so under load there is one commit and
    one journal replay per batch instead of per image, and when results trickle in each is
    recorded at once (progress and cancel stay prompt).
    """
    pending: dict[Future[Any], CandidateRow] = {}  # a fetch's future, or its processing's
    batch: list[tuple[CandidateRow, _Outcome]] = []
    stop = _Stop(cancel)  # what the fetches and decodes obey: the caller's cancel, or our own on an error

    limit = cfg.workers + _processor_count(cfg.workers)

    def refill() -> None:
        while len(pending) < limit and not stopped(cancel):
            cand = next(todo, None)
            if cand is None:
                return
            then = _processing(processors, cand, cfg, stop, store.stage_image)
            pending[pool.submit(_fetch_job, http, cand, cfg, resolver, stop, then)] = cand

    def flush() -> None:
        nonlocal batch
        taken, batch = batch[:_BATCH], batch[_BATCH:]
        _record_images(store, taken, report, (lambda m: progress(_progress(report, started, m))) if progress else None)

    try:
        refill()
        while pending or batch:
            finished, _ = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            for fut in finished:
                cand = pending.pop(fut)
                outcome = fut.result()
                if isinstance(outcome, Future):  # fetched: being processed (or done: recorded now)
                    if not outcome.done():
                        pending[outcome] = cand
                        continue
                    outcome = outcome.result()
                if outcome.image is None:
                    message = _record_failure(store, cand, outcome, report)
                    if progress:
                        progress(_progress(report, started, message))
                    continue
                batch.append((cand, outcome))
            if batch:
                flush()
            if stopped(cancel):
                # Not-started futures are dropped; running ones stop at their next read and are recorded.
                for fut in [f for f in pending if f.cancel()]:
                    del pending[fut]
            else:
                refill()
                if not pending and not batch and isinstance(todo, _Joining):
                    todo.look_now()  # the run would end: one last look for candidates accepted just now
                    refill()
    finally:
        # Nothing is left in flight after a normal end; on an error (or Ctrl-C) the fetches still
        # running stop at their next read (within POLL_S) instead of at their deadline, and
        # queued work is dropped. The download threads first: a fetch finishing meanwhile still
        # queues its body to the processors.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        processors.shutdown(wait=True, cancel_futures=True)
        # Staged but never committed (an error above): nothing refers to these files.
        unrecorded = [outcome for _, outcome in batch] + [o for o in map(_outcome_of, pending) if o is not None]
        for outcome in unrecorded:
            if outcome.staged is not None:
                outcome.staged.unlink(missing_ok=True)
    report.cancelled = stopped(cancel) and report.done < report.total


class _Stop(threading.Event):
    """Set by the download itself (an error or Ctrl-C ends the run), or when the caller's cancel is.

    Only ``is_set`` looks at the caller's event, which is all the fetches and decodes use."""

    def __init__(self, outer: Cancel | None) -> None:
        super().__init__()
        self._outer = outer

    def is_set(self) -> bool:
        return super().is_set() or (self._outer is not None and self._outer.is_set())


def _outcome_of(fut: Future[Any]) -> _Outcome | None:
    """The outcome a finished fetch (through its processing) or processing came to, else None."""
    while fut.done() and not fut.cancelled() and fut.exception() is None:
        result = fut.result()
        if not isinstance(result, Future):
            return result if isinstance(result, _Outcome) else None
        fut = result
    return None


RATE_WINDOW_S = 15.0
"""The ETA follows the rate over the last RATE_WINDOW_S or so (a slow host early on, or a faster one later,
moves it); group commits report many images at once, so the window always reaches back past a burst."""


def _progress(report: DownloadReport, started: float, message: str, now: float | None = None) -> DownloadProgress:
    now = time.monotonic() if now is None else now
    elapsed = now - started
    done = report.done
    marks = report.rate_marks
    if not marks:
        marks.append((started, 0))  # the run's start counts: the first images' wait is part of the rate
    marks.append((now, done))
    while len(marks) > 2 and now - marks[1][0] >= RATE_WINDOW_S:
        marks.popleft()  # marks[0] stays the newest mark at least RATE_WINDOW_S old (or the start)
    t0, d0 = marks[0]
    eta = (now - t0) / (done - d0) * (report.total - done) if done > d0 else None
    return DownloadProgress(
        done=done,
        total=report.total,
        ok=report.ok,
        failed=report.failed,
        duplicates=report.duplicates,
        near_duplicates=report.near_duplicates,
        previously_deleted=report.previously_deleted,
        elapsed_s=elapsed,
        eta_s=eta,
        message=message,
    )
