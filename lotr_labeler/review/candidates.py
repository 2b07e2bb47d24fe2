"""Candidate scoring: the model triages search results before anything is downloaded.

For each pending (or accepted, not yet downloaded) candidate:

1. its search thumbnail (``thumbnail_url``, else the image itself, capped) is fetched through the
   guarded downloader (``collect.fetch``: private-host guard, deadline, size cap) and
   cached as bytes under ``cache/thumbs-candidates/<sha256 of the URL>`` — never stored as an image;
2. it is embedded with the review backbone (the one of the last Review fit, else the current
   run's body), vectors cached by thumbnail content under ``cache/embeddings/thumbs-<backbone>.npz``;
3. a head (``head.default_head``) fitted on **every** labeled image's embedding gives its
   class probabilities, stored per class id (``store.candidate_scores``), so moving a candidate
   to another class changes its p(class) without rescoring;
4. its thumbnail's phash is compared with the dataset's: "near-duplicate of image #N".

Read side (``triage``): p(class) = probability of the candidate's current class; "looks like X"
when another class is predicted with p ≥ ``LOOKS_LIKE_AT``; "likely off-topic" when p(class) ≤
the reject threshold and no other class claims it. Bulk threshold decisions go through
``Store.decide``: one undoable event each.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from lotr_labeler.errors import Conflict, FetchError, InvalidInput
from lotr_labeler.imaging import write_atomic
from lotr_labeler.model import embed, onnx_embed
from lotr_labeler.model.network import Network, embed_arrays
from lotr_labeler.progress import Cancel, Progress, Report, stopped
from lotr_labeler.review import head, last_fit
from lotr_labeler.store import CandidateRow, Store, candidate_scores, now, version
from lotr_labeler.store.candidate_scores import CandidateScore
from lotr_labeler.store.phash import PhashIndex

log = logging.getLogger(__name__)

# Default thresholds of the bulk actions. Measured on bench/bench_triage.py (digits 0/1/2 with 25% wrong
# candidates, random-init resnet18): see bench/RESULTS.md.
ACCEPT_AT = 0.9
REJECT_AT = 0.2
# Another class "claims" a candidate when its probability is at least this (and above the own class's).
LOOKS_LIKE_AT = 0.5
THUMB_DIR = "thumbs-candidates"
# Search thumbnails are a few kB; the cap only matters when the full image is the fallback.
THUMB_MAX_BYTES = 2_000_000
# A decoded thumbnail larger than this is refused (decompression bomb): thumbnails are tiny.
THUMB_MAX_PIXELS = 40_000_000
SCORED_STATES = ("pending", "accepted")
NOTHING_TO_LEARN = (
    "Project {project!r} has no images of 2 classes for the scoring head to learn from yet. Accept a few "
    "candidates per class and download them (or import images); then every search is scored."
)
SORTS = ("id", "score", "score-desc")  # score: lowest p(class) first; score-desc: highest first
FILTERS = ("off-topic", "looks-like", "near-duplicate", "unscored")
_BATCH = 32


# -- which backbone ----------------------------------------------------------------------------


def scoring_backbone(store: Store) -> embed.Backbone | None:
    """The backbone candidates are scored with: ``last_fit.fit_backbone`` (the last Review fit's, else
    the default one); None while the head has nothing to learn from (no fit, images of fewer than 2
    classes)."""
    if last_fit.fit_info(store) is None and len({img.class_id for img in store.images()}) < 2:
        return None
    return last_fit.fit_backbone(store)


# -- the job -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ScoreProgress(Progress):
    """Candidates scored (``done``, failures included) of ``total``; ``failed``: thumbnails not fetched or read."""

    failed: int


@dataclass
class ScoreReport:
    backbone: str
    total: int = 0
    scored: int = 0
    failed: int = 0
    fetched: int = 0  # thumbnails fetched over the network (the rest came from the cache)
    labeled: int = 0  # images the head was fitted on
    cancelled: bool = False
    seconds: float = 0.0
    failures: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"Scored {self.scored} of {self.total} candidate(s) in {self.seconds:.1f} s "
            f"({self.fetched} thumbnail(s) fetched, head fitted on {self.labeled} image(s), {self.backbone})."
        )
        if self.failed:
            text += f" {self.failed} thumbnail(s) could not be fetched or read."
        if self.cancelled:
            text += " Cancelled: run it again to continue."
        return text

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["failures"] = [{"candidate_id": c, "reason": r} for c, r in self.failures]
        doc["summary"] = self.summary()
        return doc


@dataclass(frozen=True)
class _Head:
    model: Any
    class_ids: list[int]

    def probs(self, vectors: npt.NDArray[np.float32]) -> list[dict[int, float]]:
        p = head.head_probabilities(self.model, vectors)
        cols = [self.class_ids[int(c)] for c in self.model.classes_]
        return [dict(zip(cols, (float(v) for v in row), strict=True)) for row in p]


def fit_head(store: Store, backbone: embed.Backbone) -> tuple[_Head, int]:
    """The head on every labeled image that has an embedding; returns it and how many it saw."""
    have, X = embed.embeddings(store, backbone, store.images())
    class_ids = sorted({img.class_id for img in have})
    if len(class_ids) < 2:
        raise Conflict(
            f"Scoring candidates needs embedded images of at least 2 classes; found {len(class_ids)}. "
            "Download or import images of more classes, then compute embeddings on the Review page."
        )
    index = {cid: i for i, cid in enumerate(class_ids)}
    y = np.array([index[img.class_id] for img in have], dtype=np.int64)
    return _Head(head.fit_head(X, y), class_ids), len(have)


def thumb_url(c: CandidateRow) -> str:
    return c.thumbnail_url or c.image_url


def thumb_cache_path(store: Store, url: str) -> Path:
    return store.cache_dir / THUMB_DIR / hashlib.sha256(url.encode("utf-8")).hexdigest()


def _thumb_cache(store: Store, backbone: embed.Backbone) -> embed.EmbeddingCache:
    path = embed.cache_path(store, backbone)
    return embed.EmbeddingCache(path.with_name(f"thumbs-{path.name}"))


def _decode(data: bytes, size: int) -> tuple[npt.NDArray[np.float32], str]:
    """The thumbnail as a (3, size, size) array in 0..1 (squashed like ``embed.prepare``) and its phash."""
    import imagehash

    with Image.open(io.BytesIO(data)) as img:
        if img.width * img.height > THUMB_MAX_PIXELS:
            raise ValueError(f"{img.width}x{img.height} pixels is too large for a thumbnail")
        img.draft("RGB", (size, size))
        rgb = img.convert("RGB")
    arr = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32).transpose(2, 0, 1)
    return arr / 255.0, str(imagehash.phash(rgb))


def _selected(store: Store, ids: Sequence[int] | None) -> list[CandidateRow]:
    if ids:
        rows = [store.get_candidate(int(i)) for i in dict.fromkeys(ids)]
        return [r for r in rows if r.state in SCORED_STATES]
    return sorted((r for s in SCORED_STATES for r in store.candidates(state=s)), key=lambda r: r.id)


def score_candidates(
    store: Store,
    ids: Sequence[int] | None = None,
    *,
    backbone: embed.Backbone | None = None,
    workers: int | None = None,
    allow_private: bool | None = None,
    progress: Report | None = None,
    cancel: Cancel | None = None,
    resolver: Any = None,
) -> ScoreReport:
    """Score the pending and accepted candidates (or ``ids``) and store the scores.

    Parameters
    ----------
    store
        The project.
    ids
        Only these candidates (those not pending/accepted are skipped); None: all of them.
    backbone
        Default ``scoring_backbone(store)``.
    workers
        Parallel thumbnail fetches (default: setting ``download_workers``).
    allow_private
        Allow loopback/private hosts (default: setting ``allow_private_hosts``).
    progress
        Called with a ``ScoreProgress`` as candidates are scored.
    cancel
        Set to stop; the scores stored so far stay.
    resolver
        DNS resolver for the host guard (tests).

    Returns
    -------
    ScoreReport
        Counts, failures and timing.

    Raises
    ------
    Conflict
        No backbone to score with (no run, no embeddings), or fewer than 2 embedded classes.
    """
    from lotr_labeler.collect import fetch

    started = time.monotonic()
    backbone = backbone or scoring_backbone(store)
    if backbone is None:
        raise Conflict(NOTHING_TO_LEARN.format(project=store.name))
    report = ScoreReport(backbone=backbone.describe())
    rows = _selected(store, ids)
    report.total = len(rows)

    def tell(message: str) -> None:
        if progress is not None:
            done = report.scored + report.failed
            progress(ScoreProgress(done=done, total=report.total, failed=report.failed, message=message))

    tell("Embedding the dataset…")
    embed.compute_embeddings(store, backbone, cancel=cancel)
    fitted, report.labeled = fit_head(store, backbone)
    if not rows:
        report.seconds = time.monotonic() - started
        return report
    s = store.settings()
    near = PhashIndex(s.near_dup_distance)
    for img in store.images():
        near.add(img.id, img.phash)
    cache = _thumb_cache(store, backbone)
    network: Network | None = None
    import httpx

    read = s.read_timeout
    timeout = httpx.Timeout(connect=s.connect_timeout, read=read, write=read, pool=s.connect_timeout + read)
    deadline = s.connect_timeout + 10 * s.read_timeout
    private = s.allow_private_hosts if allow_private is None else allow_private
    n_workers = max(1, int(workers or s.download_workers))

    def get(c: CandidateRow, client: Any) -> bytes:
        """Runs in a worker thread: the network and the cache file only, no store."""
        url = thumb_url(c)
        path = thumb_cache_path(store, url)
        if path.is_file():
            return path.read_bytes()
        got = fetch.fetch(
            client,
            url,
            max_bytes=THUMB_MAX_BYTES if c.thumbnail_url else s.max_bytes,
            allow_private=private,
            timeout=timeout,
            deadline_s=deadline,
            resolver=resolver,
            cancel=cancel,
        )
        write_atomic(path, got.data)
        with lock:
            report.fetched += 1
        return got.data

    lock = threading.Lock()
    pending: list[tuple[CandidateRow, str, npt.NDArray[np.float32] | None, str]] = []  # row, sha, array, phash
    results: list[CandidateScore] = []

    def flush(final: bool = False) -> None:
        nonlocal network
        if not pending or (len(pending) < _BATCH and not final):
            return
        todo = [(sha, arr) for _, sha, arr, _ in pending if arr is not None and sha not in cache]
        if todo:
            export = report.total >= onnx_embed.EXPORT_MIN  # a few thumbnails: torch, unless exported before
            network = network or embed.load_network(backbone, store.cache_dir, export=export)
            keys = list(dict.fromkeys(sha for sha, _ in todo))
            first = {sha: arr for sha, arr in todo}
            cache.add(keys, embed_arrays(network, np.stack([first[k] for k in keys])))
        vectors = cache.matrix([sha for _, sha, _, _ in pending])
        stamp = now()
        for (c, _, _, phash), p in zip(pending, fitted.probs(vectors), strict=True):
            dup = near.near(phash)
            results.append(
                CandidateScore(
                    c.id, p, dup[0][1] if dup else None, dup[0][0] if dup else None, None, backbone.id, stamp
                )
            )
        report.scored += len(pending)
        pending.clear()
        candidate_scores.save(store, results)
        results.clear()
        cache.save()
        tell(f"Scored {report.scored} of {report.total} candidate(s)")

    def failed(c: CandidateRow, reason: str) -> None:
        report.failed += 1
        report.failures.append((c.id, reason))
        candidate_scores.save(store, [CandidateScore(c.id, {}, None, None, reason, backbone.id, now())])

    with fetch.make_client(timeout, n_workers) as client, ThreadPoolExecutor(n_workers) as pool:
        futures: dict[Future[bytes], CandidateRow] = {pool.submit(get, c, client): c for c in rows}
        waiting = set(futures)
        while waiting:
            if stopped(cancel):
                report.cancelled = True
                for f in waiting:
                    f.cancel()
                break
            ready, waiting = wait(waiting, timeout=0.2, return_when=FIRST_COMPLETED)
            for f in ready:
                c = futures[f]
                try:
                    data = f.result()
                    sha = hashlib.sha256(data).hexdigest()
                    arr, phash = _decode(data, backbone.size) if sha not in cache else (None, "")
                    if arr is None:
                        phash = _phash_only(data)
                    pending.append((c, sha, arr, phash))
                except FetchError as exc:
                    if not stopped(cancel):  # a fetch the cancel cut short is not the thumbnail's failure
                        failed(c, exc.reason)
                except (OSError, ValueError, Image.DecompressionBombError) as exc:
                    failed(c, f"unreadable thumbnail ({exc})")
            flush()
    # The cancel may land while the last fetches end (cut short by it): the loop then ran out, not stopped.
    report.cancelled = report.cancelled or stopped(cancel)
    if not report.cancelled:
        flush(final=True)
    else:
        pending.clear()
    report.seconds = time.monotonic() - started
    tell(report.summary())
    return report


def _phash_only(data: bytes) -> str:
    import imagehash

    with Image.open(io.BytesIO(data)) as img:
        if img.width * img.height > THUMB_MAX_PIXELS:
            raise ValueError(f"{img.width}x{img.height} pixels is too large for a thumbnail")
        return str(imagehash.phash(img.convert("RGB")))


# -- the read side -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Triage:
    """A candidate with the model's opinion of it (``p_class`` None: not scored yet)."""

    candidate: CandidateRow
    p_class: float | None
    predicted: str | None
    p_predicted: float | None
    looks_like: str | None  # another class that claims it
    dup_of: int | None  # nearest dataset image by thumbnail phash
    error: str | None  # why it could not be scored

    @property
    def id(self) -> int:
        return self.candidate.id

    def off_topic(self, reject_at: float = REJECT_AT) -> bool:
        """Low p(class) and no other class claims it: probably none of the classes."""
        return self.p_class is not None and self.p_class <= reject_at and self.looks_like is None

    def as_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {
            **asdict(c),
            "score": None if self.p_class is None else round(self.p_class, 4),
            "predicted": self.predicted,
            "p_predicted": None if self.p_predicted is None else round(self.p_predicted, 4),
            "looks_like": self.looks_like,
            "near_duplicate_of": self.dup_of,
            "off_topic": self.off_topic(),
            "score_error": self.error,
        }


def _triage(c: CandidateRow, score: CandidateScore | None, names: dict[int, str]) -> Triage:
    if score is None or not score.probs:
        return Triage(c, None, None, None, None, score.dup_image_id if score else None, score.error if score else None)
    live = {cid: p for cid, p in score.probs.items() if cid in names}
    p_class = live.get(c.class_id)
    if p_class is None or not live:  # a class added after the fit: the head knows nothing of it
        return Triage(c, None, None, None, None, score.dup_image_id, None)
    best = max(live, key=lambda cid: live[cid])
    looks = best != c.class_id and live[best] >= LOOKS_LIKE_AT and live[best] > p_class
    return Triage(c, p_class, names[best], live[best], names[best] if looks else None, score.dup_image_id, score.error)


def triage(
    store: Store,
    label: str | None = None,
    *,
    state: str | None = None,
    query: str | None = None,
    sort: str = "id",
    only: str | None = None,
    reject_at: float = REJECT_AT,
) -> list[Triage]:
    """Candidates with their scores, sorted (``SORTS``) and filtered (``FILTERS``).

    ``score`` puts the lowest p(class) first, ``score-desc`` the highest; unscored ones come last (by id).
    """
    if sort not in SORTS:
        raise InvalidInput(f"Sort {sort!r} is not valid. Must be one of: {', '.join(SORTS)}.")
    if only is not None and only not in FILTERS:
        raise InvalidInput(f"Filter {only!r} is not valid. Must be one of: {', '.join(FILTERS)}.")
    # Every Search page run asks for all pending candidates: memoized per data version (issue 14).
    key = ("triage", label, state, query, sort, only, reject_at)
    return list(version.memo(store, key, lambda: _triage_all(store, label, state, query, sort, only, reject_at)))


def _triage_all(
    store: Store, label: str | None, state: str | None, query: str | None, sort: str, only: str | None, reject_at: float
) -> list[Triage]:
    rows = store.candidates(label, state=state, query=query)
    scores = candidate_scores.load(store, None if len(rows) > 500 else [r.id for r in rows])
    names = {c.id: c.name for c in store.classes()}
    items = [_triage(r, scores.get(r.id), names) for r in rows]
    if only == "off-topic":
        items = [t for t in items if t.off_topic(reject_at)]
    elif only == "looks-like":
        items = [t for t in items if t.looks_like is not None]
    elif only == "near-duplicate":
        items = [t for t in items if t.dup_of is not None]
    elif only == "unscored":
        items = [t for t in items if t.p_class is None]
    if sort != "id":
        sign = 1.0 if sort == "score" else -1.0
        items.sort(key=lambda t: (0, sign * t.p_class, t.id) if t.p_class is not None else (1, 0.0, t.id))
    return items


def item(store: Store, candidate_id: int) -> Triage:
    """One candidate's triage (for a card that reruns alone)."""
    c = store.get_candidate(candidate_id)
    names = {k.id: k.name for k in store.classes()}
    return _triage(c, candidate_scores.load(store, [c.id]).get(c.id), names)


# -- bulk thresholds from the head's own out-of-sample precision -----------------------------------

TARGET_PRECISION = 0.98
# Never accept in bulk below 0.5 nor reject above it: the labeled images say nothing of off-topic pictures,
# and a candidate the head places elsewhere at p > 0.5 is no bulk decision (measured: bench_backbone.py).
_ACCEPT_GRID = np.round(np.arange(0.5, 0.995, 0.01), 2)
_REJECT_GRID = np.round(np.arange(0.02, 0.505, 0.01), 2)


@dataclass(frozen=True)
class Thresholds:
    """Suggested bulk thresholds and the precision each is expected to give (None: none reaches the target,
    so the fixed default stands), estimated on ``labeled`` images."""

    accept_at: float
    accept_precision: float | None
    reject_at: float
    reject_precision: float | None
    labeled: int
    target: float = TARGET_PRECISION

    def describe(self) -> str:
        if self.accept_precision is None and self.reject_precision is None:
            return (
                f"Default thresholds ({self.accept_at:g} / {self.reject_at:g}): the head's out-of-sample "
                f"predictions on {self.labeled} labeled image(s) reach no {self.target:.0%} precision yet."
            )
        parts = []
        if self.accept_precision is not None:
            parts.append(f"accept p ≥ {self.accept_at:.2f} (expected precision {self.accept_precision:.1%})")
        if self.reject_precision is not None:
            parts.append(f"reject p ≤ {self.reject_at:.2f} (expected precision {self.reject_precision:.1%})")
        return f"Suggested from the head's out-of-sample predictions on {self.labeled} labeled images: " + (
            "; ".join(parts)
        )


def thresholds_from_oof(
    probs: npt.ArrayLike, labels: npt.ArrayLike, target: float = TARGET_PRECISION
) -> tuple[float | None, float | None, float | None, float | None]:
    """(accept_at, its precision, reject_at, its precision) from out-of-sample probabilities; pure.

    Each labeled image stands for two candidates: one searched under its own class (it belongs; p = its own
    class's probability) and one searched under another class (it does not; the other classes' probabilities,
    weighted 1/(K-1) each). That pool is half wrong, more than a usual search, so the estimates are
    conservative. Accept: the lowest p (at least 0.5) whose "p ≥ t" keeps ``target`` precision; reject: the
    highest p (at most 0.5) whose "p ≤ t" does. None where no threshold reaches it.
    """
    P = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n, k = P.shape
    if n == 0 or k < 2:
        return None, None, None, None
    own = P[np.arange(n), y]
    mask = np.ones_like(P, dtype=bool)
    mask[np.arange(n), y] = False
    other = P[mask]
    w = 1.0 / (k - 1)
    accept_at = accept_p = reject_at = reject_p = None
    for t in _ACCEPT_GRID:  # lowest first: the first that holds lets most through
        tp, fp = float((own >= t).sum()), w * float((other >= t).sum())
        if tp > 0 and tp / (tp + fp) >= target:
            accept_at, accept_p = float(t), tp / (tp + fp)
            break
    for t in _REJECT_GRID[::-1]:  # highest first
        tn, fn = w * float((other <= t).sum()), float((own <= t).sum())
        if tn > 0 and tn / (tn + fn) >= target:
            reject_at, reject_p = float(t), tn / (tn + fn)
            break
    return accept_at, accept_p, reject_at, reject_p


# Suggestions by (project, backbone, embeddings file state, labels digest): a decision on a candidate changes
# the data version but neither the labels nor the embeddings, so Search's reruns reuse the K-fold.
_suggested: dict[tuple[str, str, object, str], Thresholds] = {}
_suggested_lock = threading.Lock()
# Enough images for a precision estimate at 0.98; bounds the K-fold's cost in a 20,000-image project.
THRESHOLD_SAMPLE = 3000


def suggest_thresholds(store: Store, backbone: embed.Backbone | None = None) -> Thresholds:
    """Bulk thresholds for the scoring head, from its K-fold predictions on the labeled images (at most
    ``THRESHOLD_SAMPLE`` of them, a seeded sample); the fixed defaults where nothing reaches ``TARGET_PRECISION``.
    Recomputed only when the labels or the embeddings change."""
    backbone = backbone or scoring_backbone(store)
    if backbone is None:
        return Thresholds(ACCEPT_AT, None, REJECT_AT, None, 0)
    images = store.images()
    labels = np.array([(img.id, img.class_id) for img in images], dtype=np.int64)
    key = (
        str(store.root),
        backbone.id,
        version.file_state(embed.cache_path(store, backbone)),
        hashlib.sha256(labels.tobytes()).hexdigest(),
    )
    with _suggested_lock:
        hit = _suggested.get(key)
    if hit is not None:
        return hit
    have, X = embed.embeddings(store, backbone, images)
    if len(have) > THRESHOLD_SAMPLE:
        keep = np.sort(np.random.default_rng(0).choice(len(have), THRESHOLD_SAMPLE, replace=False))
        have, X = [have[int(i)] for i in keep], X[keep]
    class_ids = sorted({img.class_id for img in have})
    if len(class_ids) < 2:
        result = Thresholds(ACCEPT_AT, None, REJECT_AT, None, len(have))
    else:
        index = {cid: i for i, cid in enumerate(class_ids)}
        y = np.array([index[img.class_id] for img in have], dtype=np.int64)
        a, ap, r, rp = thresholds_from_oof(head.oof_probabilities(X, y, len(class_ids)), y)
        result = Thresholds(a if a is not None else ACCEPT_AT, ap, r if r is not None else REJECT_AT, rp, len(have))
    with _suggested_lock:
        _suggested.clear()  # one entry per process is enough: the page asks about its project
        _suggested[key] = result
    return result


def check_threshold(value: float, name: str) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidInput(f"{name} {value} is out of range. Give a probability from 0 to 1, e.g. 0.9.")
    return float(value)


def at_least(store: Store, threshold: float, label: str | None = None, *, query: str | None = None) -> list[Triage]:
    """Pending candidates with p(class) ≥ ``threshold``, highest first (what "Accept all" would accept)."""
    t = check_threshold(threshold, "Accept threshold")
    items = triage(store, label, state="pending", query=query, sort="score-desc")
    return [i for i in items if i.p_class is not None and i.p_class >= t]


def at_most(store: Store, threshold: float, label: str | None = None, *, query: str | None = None) -> list[Triage]:
    """Pending candidates with p(class) ≤ ``threshold``, lowest first (what "Reject all" would reject)."""
    t = check_threshold(threshold, "Reject threshold")
    items = triage(store, label, state="pending", query=query, sort="score")
    return [i for i in items if i.p_class is not None and i.p_class <= t]


def accept_at_least(store: Store, threshold: float, label: str | None = None, *, query: str | None = None) -> int:
    """Accept every pending candidate with p(class) ≥ ``threshold``: one undoable event."""
    return store.decide([i.id for i in at_least(store, threshold, label, query=query)], "accepted", only_pending=True)


def reject_at_most(store: Store, threshold: float, label: str | None = None, *, query: str | None = None) -> int:
    """Reject every pending candidate with p(class) ≤ ``threshold``: one undoable event."""
    return store.decide([i.id for i in at_most(store, threshold, label, query=query)], "rejected", only_pending=True)
