"""Safe concurrent downloading of accepted candidates.

Every hop (the first URL and each redirect target) is checked before any
connection: http(s) only, and the host must resolve to public addresses unless
private hosts are allowed. Bodies are streamed with a byte cap, then decoded and
re-encoded by ``imaging.normalize`` (the decode is the validation). Network and
decoding run in worker threads; every store write happens on the calling thread
because the SQLite connection is not shared across threads.

Known limit: the address check and httpx resolve the host separately, so a DNS
record that changes in between (rebinding) is not caught.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from . import project as proj
from .errors import BlockedHost, FetchError, ImageRejected, NotFound
from .imaging import Normalized, normalize
from .store import CandidateRow, Store

log = logging.getLogger(__name__)

# Some image hosts refuse clients that do not look like a browser.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
HEADERS = {"User-Agent": USER_AGENT, "Accept": "image/avif,image/webp,image/*,*/*;q=0.8"}
MAX_REDIRECTS = 5
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
# How often the main loop looks at the cancel flag while downloads are in flight.
_POLL_S = 0.1

Resolver = Callable[[str, int], list[str]]
"""(host, port) -> IP address strings. Replaceable so the address check is testable offline."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _blocked(address: str) -> bool:
    """True for any address that is not a public unicast one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global  # e.g. carrier-grade NAT 100.64.0.0/10
    )


def check_url(url: str, allow_private: bool, *, resolver: Resolver | None = None) -> None:
    """Raise FetchError ("bad url", "dns") or BlockedHost unless ``url`` may be fetched."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError(f"{url!r} is not a valid URL.", "bad url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url!r} is not an http(s) URL with a host. Only http and https are fetched.", "bad url")
    host = parts.hostname
    try:
        addresses = (resolver or system_resolver)(host, port)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"Cannot resolve host {host!r} of {url} ({exc}).", "dns") from None
    if not addresses:
        raise FetchError(f"Host {host!r} of {url} resolves to no address.", "dns")
    if allow_private:
        return
    for address in addresses:
        if _blocked(address):
            raise BlockedHost(
                f"Refused {url}: host {host!r} resolves to non-public address {address}. "
                "To download from local or private hosts, set allow_private_hosts "
                "(or pass --allow-private-hosts)."
            )


@dataclass(frozen=True)
class Fetched:
    data: bytes
    final_url: str


def fetch(
    client: httpx.Client,
    url: str,
    *,
    max_bytes: int,
    allow_private: bool,
    timeout: httpx.Timeout | None = None,
    deadline_s: float | None = None,
    resolver: Resolver | None = None,
) -> Fetched:
    """GET ``url`` into memory, following at most MAX_REDIRECTS checked redirects.

    ``timeout`` applies per request (httpx connect/read); ``deadline_s`` bounds the
    whole fetch, so a server trickling bytes cannot hold a worker forever.
    """
    started = time.monotonic()
    current = url
    for hop in range(MAX_REDIRECTS + 1):
        check_url(current, allow_private, resolver=resolver)
        try:
            location = _get(client, current, max_bytes, timeout, started, deadline_s)
        except httpx.TimeoutException:
            raise FetchError(f"Timed out fetching {current}.", "timeout") from None
        except httpx.InvalidURL as exc:
            raise FetchError(f"{current!r} is not a valid URL ({exc}).", "bad url") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"Network error fetching {current}: {exc}.", "network") from None
        if isinstance(location, Fetched):
            return location
        if hop == MAX_REDIRECTS:
            break
        current = urljoin(current, location)
    raise FetchError(f"{url} redirected more than {MAX_REDIRECTS} times.", "too many redirects")


def _get(
    client: httpx.Client,
    url: str,
    max_bytes: int,
    timeout: httpx.Timeout | None,
    started: float,
    deadline_s: float | None,
) -> Fetched | str:
    """One request: the body, or the Location to go to next."""
    kwargs: dict[str, Any] = {"headers": HEADERS, "follow_redirects": False}
    if timeout is not None:
        kwargs["timeout"] = timeout
    with client.stream("GET", url, **kwargs) as resp:
        status = resp.status_code
        location: str | None = resp.headers.get("location")
        if status in _REDIRECT_CODES and location:
            return location
        if status >= 300:
            raise FetchError(f"HTTP {status} from {url}", reason=f"http {status}")
        length = resp.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise FetchError(f"{url} is {int(length):,} bytes, over the max_bytes limit of {max_bytes:,}.", "too large")
        return Fetched(_read_capped(resp, url, max_bytes, started, deadline_s), str(resp.url))


def _read_capped(resp: httpx.Response, url: str, max_bytes: int, started: float, deadline_s: float | None) -> bytes:
    # The cap also covers bodies without Content-Length (chunked) and decompressed gzip.
    buf = bytearray()
    for chunk in resp.iter_bytes(_CHUNK):
        buf += chunk
        if len(buf) > max_bytes:
            raise FetchError(f"{url} sent more than the max_bytes limit of {max_bytes:,} bytes.", "too large")
        if deadline_s is not None and time.monotonic() - started > deadline_s:
            raise FetchError(f"{url} took more than {deadline_s:.0f} s to download.", "timeout")
    return bytes(buf)


# -- batch download -----------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadProgress:
    done: int
    total: int
    ok: int
    failed: int
    duplicates: int
    near_duplicates: int
    previously_deleted: int
    elapsed_s: float
    eta_s: float | None  # None until something is done
    message: str


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
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (candidate id, url, reason)
    cancelled: bool = False
    elapsed_s: float = 0.0

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.duplicates + self.previously_deleted

    def summary(self) -> str:
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
            "summary": self.summary(),
        }


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
    connect, read = float(s["connect_timeout"]), float(s["read_timeout"])
    return _Config(
        workers=int(proj.setting("download_workers").parse(workers if workers is not None else s["download_workers"])),
        allow_private=bool(s["allow_private_hosts"] if allow_private is None else allow_private),
        max_bytes=int(s["max_bytes"]),
        timeout=httpx.Timeout(connect=connect, read=read, write=read, pool=connect + read),
        # Generous overall bound: slow links are fine, endless trickles are not.
        deadline_s=connect + 10 * read,
        max_side=int(s["max_side"]),
        max_pixels=int(s["max_pixels"]),
        quality=int(s["jpeg_quality"]),
    )


_ELIGIBLE = ("accepted", "failed")


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


def _work(client: httpx.Client, cand: CandidateRow, cfg: _Config, resolver: Resolver | None) -> _Outcome:
    """Fetch and normalize one candidate (runs in a worker thread: no store access here)."""
    try:
        got = fetch(
            client,
            cand.image_url,
            max_bytes=cfg.max_bytes,
            allow_private=cfg.allow_private,
            timeout=cfg.timeout,
            deadline_s=cfg.deadline_s,
            resolver=resolver,
        )
        return _Outcome(image=_decode(got.data, cand, cfg))
    except (FetchError, ImageRejected) as exc:
        return _Outcome(error=exc)


def _decode(data: bytes, cand: CandidateRow, cfg: _Config) -> Normalized:
    name = f"candidate {cand.id} ({cand.image_url})"
    try:
        return normalize(data, max_side=cfg.max_side, max_pixels=cfg.max_pixels, quality=cfg.quality, name=name)
    except ImageRejected:
        raise
    except Exception as exc:
        # Bytes from the internet can trip decoder bugs PIL does not wrap; one such
        # file must not abort a batch of hundreds. Logged with traceback to stay visible.
        log.exception("unexpected decoder error on %s", name)
        raise ImageRejected(f"{name} could not be decoded ({exc!r}).", "corrupt") from exc


def _record(store: Store, cand: CandidateRow, outcome: _Outcome, report: DownloadReport) -> str:
    """Write one result to the store (calling thread only). Returns a progress message."""
    if outcome.image is None:
        reason = outcome.error.reason if outcome.error else "unknown"
        return _fail(store, cand, reason, str(outcome.error), report)
    try:
        res = store.add_image(
            outcome.image,
            cand.label,
            source="download",
            source_url=cand.image_url,
            page_url=cand.page_url,
            title=cand.title,
            query=cand.query,
            original_name=None,
            candidate_id=cand.id,
        )
    except NotFound as exc:  # the class was deleted or renamed while downloading
        return _fail(store, cand, "class gone", str(exc), report)
    image = res.image
    if not res.duplicate:
        report.ok += 1
        report.image_ids.append(image.id)
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
    progress: Callable[[DownloadProgress], None] | None = None,
    cancel: threading.Event | None = None,
    client: httpx.Client | None = None,
    resolver: Resolver | None = None,
) -> DownloadReport:
    """Download accepted candidates (plus failed ones with ``retry_failed``, or exactly ``ids``).

    Cancelling stops new downloads, lets the ones in flight finish and returns;
    candidates not reached stay ``accepted`` so running again resumes.
    """
    cfg = _config(store, workers, allow_private)
    report = DownloadReport()
    todo = _select(store, ids, retry_failed, report)
    report.total = len(todo)
    started = time.monotonic()
    own_client = client is None
    http = client or httpx.Client(
        headers=HEADERS, timeout=cfg.timeout, limits=httpx.Limits(max_connections=cfg.workers)
    )
    pool = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="download")
    try:
        _drive(store, pool, http, iter(todo), cfg, resolver, report, started, progress, cancel)
    finally:
        # On an unexpected error (or Ctrl-C) drop queued work instead of running it all.
        pool.shutdown(wait=True, cancel_futures=True)
        if own_client:
            http.close()
    report.elapsed_s = time.monotonic() - started
    # One history entry per run, so undo can take a whole download back like an import.
    store.record_import(report.image_ids, f"downloaded {len(report.image_ids)} image(s)")
    log.info("download: %s", report.summary())
    return report


def _drive(
    store: Store,
    pool: ThreadPoolExecutor,
    http: httpx.Client,
    todo: Iterator[CandidateRow],
    cfg: _Config,
    resolver: Resolver | None,
    report: DownloadReport,
    started: float,
    progress: Callable[[DownloadProgress], None] | None,
    cancel: threading.Event | None,
) -> None:
    """Keep at most 2x workers submitted (so cancel is prompt) and record results as they finish."""
    pending: dict[Future[_Outcome], CandidateRow] = {}

    def cancelled() -> bool:
        return cancel is not None and cancel.is_set()

    def refill() -> None:
        while len(pending) < 2 * cfg.workers and not cancelled():
            cand = next(todo, None)
            if cand is None:
                return
            pending[pool.submit(_work, http, cand, cfg, resolver)] = cand

    refill()
    while pending:
        finished, _ = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
        for fut in finished:
            cand = pending.pop(fut)
            message = _record(store, cand, fut.result(), report)
            if progress:
                progress(_progress(report, started, message))
        if cancelled():
            # Not-started futures are dropped; running ones finish and are recorded.
            for fut in [f for f in pending if f.cancel()]:
                del pending[fut]
        else:
            refill()
    report.cancelled = cancelled() and report.done < report.total


def _progress(report: DownloadReport, started: float, message: str) -> DownloadProgress:
    elapsed = time.monotonic() - started
    done = report.done
    eta = elapsed / done * (report.total - done) if done else None
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
