"""Image search: turn class queries into review candidates.

One small interface, ``ImageSource``, sits in front of the search engine so the
rest of the app (and the tests) never talk to DuckDuckGo directly. ``run_search``
stores each query's results as soon as they arrive, so a later failure (rate
limit, timeout) never loses what was already fetched.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import ddgs
from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

from lotr_labeler.errors import (
    InvalidInput,
    NoResults,
    SearchError,
    SearchRateLimited,
    SearchTimeout,
    SearchUnreachable,
)
from lotr_labeler.explain import is_connection_failure
from lotr_labeler.progress import Cancel, Progress, Report, pause, stopped
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.urls import clean_url

log = logging.getLogger(__name__)
# Where an offline user goes instead of the search (pages and the CLI show the same sentence).
IMPORT_HINT = "a folder or zip of class folders (Dataset page, Import; or `lotr-labeler import folder PATH`)"

SAFESEARCH = ("on", "moderate", "off")
TYPE_IMAGE = ("photo", "clipart", "gif", "transparent", "line")
SIZE = ("Small", "Medium", "Large", "Wallpaper")
LAYOUT = ("Square", "Tall", "Wide")
LICENSE_IMAGE = ("any", "Public", "Share", "ShareCommercially", "Modify", "ModifyCommercially")
TIMELIMIT = ("d", "w", "m", "y")
# DuckDuckGo region codes look like "us-en", "uk-en", "wt-wt" (no region).
_REGION = re.compile(r"^[a-z]{2}-[a-z]{2,4}$")
# DuckDuckGo serves about 100 results per page; 10 pages is far more than anyone reviews.
MAX_PAGES = 10


def _check_choice(field_name: str, value: str | None, allowed: tuple[str, ...], optional: bool) -> None:
    if value is None and optional:
        return
    if value not in allowed:
        extra = " or None" if optional else ""
        raise InvalidInput(
            f"Search option {field_name}={value!r} is not valid. Must be one of: {', '.join(allowed)}{extra}."
        )


@dataclass(frozen=True)
class SearchOptions:
    """Filters passed to the search engine. Validated on creation."""

    region: str = "us-en"
    safesearch: str = "moderate"
    type_image: str | None = "photo"
    size: str | None = None
    layout: str | None = None
    license_image: str | None = None
    timelimit: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.region, str) or not _REGION.match(self.region):
            raise InvalidInput(
                f"Search option region={self.region!r} is not valid. Use a DuckDuckGo region code "
                "such as 'us-en', 'uk-en' or 'wt-wt' (no region)."
            )
        _check_choice("safesearch", self.safesearch, SAFESEARCH, optional=False)
        _check_choice("type_image", self.type_image, TYPE_IMAGE, optional=True)
        _check_choice("size", self.size, SIZE, optional=True)
        _check_choice("layout", self.layout, LAYOUT, optional=True)
        _check_choice("license_image", self.license_image, LICENSE_IMAGE, optional=True)
        _check_choice("timelimit", self.timelimit, TIMELIMIT, optional=True)


@dataclass(frozen=True)
class SearchHit:
    """One image result: the original file, a preview, and the page it came from."""

    image_url: str
    thumbnail_url: str | None = None
    page_url: str | None = None
    title: str | None = None
    width: int | None = None
    height: int | None = None


class ImageSource(ABC):
    """Something that finds images for a text query."""

    name: str = "source"

    @abstractmethod
    def search(self, query: str, max_results: int, options: SearchOptions) -> list[SearchHit]:
        """Up to ``max_results`` hits, unique by image URL. Raises SearchError subclasses."""


def _int_or_none(value: Any) -> int | None:
    # DuckDuckGo gives ints; other ddgs backends give strings, sometimes empty.
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _is_web_url(value: Any) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def hit_from_ddg(row: dict[str, Any]) -> SearchHit | None:
    """A SearchHit from one ddgs result dict, or None when it has no usable image URL."""
    image = row.get("image")
    if not _is_web_url(image):
        return None
    thumb = row.get("thumbnail")
    page = row.get("url")
    return SearchHit(
        image_url=str(image),
        thumbnail_url=str(thumb) if _is_web_url(thumb) else None,
        page_url=str(page) if _is_web_url(page) else None,
        title=_str_or_none(row.get("title")),
        width=_int_or_none(row.get("width")),
        height=_int_or_none(row.get("height")),
    )


class DuckDuckGoSource(ImageSource):
    """DuckDuckGo image search through the ``ddgs`` package."""

    name = "ddg"

    def __init__(self, timeout: int = 10, backend: str = "duckduckgo") -> None:
        # backend="duckduckgo": the type/size/layout/license filters and the
        # 100-per-page paging are DuckDuckGo's; "auto" may answer from Bing, which ignores them.
        self.timeout = timeout
        self.backend = backend

    def search(self, query: str, max_results: int, options: SearchOptions) -> list[SearchHit]:
        # Looked up at call time so tests can replace ddgs.DDGS.
        client = ddgs.DDGS(timeout=self.timeout)
        hits: dict[str, SearchHit] = {}
        for page in range(1, MAX_PAGES + 1):
            try:
                rows = self._page(client, query, max_results - len(hits), options, page)
            except NoResults:
                if page == 1:
                    raise
                break  # a later page with nothing is just the end of the results
            before = len(hits)
            for row in rows:
                hit = hit_from_ddg(row)
                if hit is not None and hit.image_url not in hits:
                    hits[hit.image_url] = hit
            if len(hits) >= max_results or len(hits) == before:
                break
        return list(hits.values())[:max_results]

    def _page(self, client: Any, query: str, wanted: int, options: SearchOptions, page: int) -> list[dict[str, Any]]:
        try:
            rows: list[dict[str, Any]] = client.images(
                query,
                region=options.region,
                safesearch=options.safesearch,
                timelimit=options.timelimit,
                max_results=wanted,
                page=page,
                backend=self.backend,
                type_image=options.type_image,
                size=options.size,
                layout=options.layout,
                license_image=options.license_image,
            )
        except DDGSException as exc:
            raise _map_error(exc, query) from exc
        return rows or []


def _map_error(exc: Exception, query: str) -> SearchError:
    """The domain error for a ddgs exception (subclasses checked before their base).

    ddgs 9.16 never raises RatelimitException itself: a blocked client shows up as a
    failed "vqd" token extraction (DuckDuckGo serves a challenge page instead), so
    that is treated as a rate limit too.
    """
    if isinstance(exc, RatelimitException) or "could not extract vqd" in str(exc).lower():
        return SearchRateLimited(
            f"DuckDuckGo rate-limited the search for {query!r}. "
            "Wait a few minutes, lower max results, or raise search_delay."
        )
    if isinstance(exc, TimeoutException):
        return SearchTimeout(
            f"DuckDuckGo did not answer in time for {query!r}. Check your connection and search again; "
            "lower max results if it keeps happening."
        )
    if is_connection_failure(str(exc)):
        # DNS, refused connection, proxy: every other query would fail the same way.
        return SearchUnreachable("DuckDuckGo cannot be reached: check the connection or proxy.")
    if "no results" in str(exc).lower():
        return NoResults(f"No results for {query!r}. Try another query or fewer filters (type/size/layout/license).")
    return SearchError(f"DuckDuckGo search for {query!r} failed: {exc}")


# -- planning and running ---------------------------------------------------------------


def plan_queries(store: Store, label: str | None = None, free_text: str | None = None) -> list[tuple[str, str]]:
    """(class name, query) pairs: every class's queries, one class's, or a free-text query for one class.

    Parameters
    ----------
    store
        The project.
    label
        One class; None: every class.
    free_text
        A query of the user's own, for ``label`` (required then).

    Returns
    -------
    list[tuple[str, str]]
        The jobs for ``run_search``, each query once.

    Raises
    ------
    InvalidInput
        Free text without a class, or a project without classes.
    NotFound
        ``label`` is not a class of the project.
    """
    text = free_text.strip() if free_text else ""
    if text:
        if not label:
            raise InvalidInput(f"Free-text query {text!r} needs a class. Pick the class its results belong to.")
        return [(store.get_class(label).name, text)]
    classes = [store.get_class(label)] if label else store.classes()
    if not classes:
        raise InvalidInput(f"Project {store.name!r} has no classes. Add a class before searching.")
    jobs: list[tuple[str, str]] = []
    for cls in classes:
        jobs.extend((cls.name, q) for q in dict.fromkeys(cls.queries))
    return jobs


@dataclass(frozen=True, kw_only=True)
class SearchProgress(Progress):
    """``done``: the 1-based position of the query being reported, of ``total`` queries."""

    query: str
    label: str
    results_so_far: int  # new candidates added so far, over all queries


@dataclass(frozen=True)
class QueryOutcome:
    label: str
    query: str
    hits: int
    added: int
    known: int = 0
    error: str | None = None
    error_kind: str | None = None  # rate_limited | unreachable | timeout | no_results | error


@dataclass
class SearchReport:
    """What a search run did, for the UI and the CLI."""

    added: int = 0
    known: int = 0
    queries: list[QueryOutcome] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (label, query) never run
    stopped_early: bool = False
    stop_reason: str | None = None

    @property
    def errors(self) -> list[QueryOutcome]:
        return [q for q in self.queries if q.error]

    @property
    def unreachable(self) -> bool:
        """The search engine could not be reached at all (the search ended at the first such query)."""
        return any(q.error_kind == "unreachable" for q in self.queries)

    @property
    def failed(self) -> bool:
        """An error, not a result: the engine was unreachable, or every query failed."""
        return self.unreachable or bool(self.queries and all(q.error for q in self.queries))

    def summary(self) -> str:
        if self.unreachable:
            # One sentence: the DNS/connect error of the engine says nothing more to the user.
            text = "DuckDuckGo cannot be reached: check the connection or proxy"
            if self.added:
                return f"{text}; the {self.added} candidate(s) found so far are kept."
            return f"{text}. Offline, import the pictures you have instead: {IMPORT_HINT}."
        text = (
            f"Searched {len(self.queries)} quer{'y' if len(self.queries) == 1 else 'ies'}: "
            f"{self.added} new candidate(s), {self.known} already known."
        )
        for q in self.errors:
            text += f" {q.error}"
        if self.stopped_early:
            text += f" Stopped early ({self.stop_reason}); {len(self.skipped)} quer(ies) not run."
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "known": self.known,
            "queries": [asdict(q) for q in self.queries],
            "skipped": [{"label": label, "query": query} for label, query in self.skipped],
            "stopped_early": self.stopped_early,
            "stop_reason": self.stop_reason,
            "unreachable": self.unreachable,
            "summary": self.summary(),
        }


def _candidates(label: str, query: str, hits: Sequence[SearchHit], source: str) -> list[CandidateIn]:
    return [
        CandidateIn(
            label=label,
            image_url=clean_url(h.image_url) or h.image_url,
            thumbnail_url=clean_url(h.thumbnail_url),
            page_url=clean_url(h.page_url),
            title=h.title,
            query=query,
            width=h.width,
            height=h.height,
            source=source,
        )
        for h in hits
    ]


def run_search(
    store: Store,
    jobs: Sequence[tuple[str, str]],
    *,
    max_results: int,
    options: SearchOptions,
    delay_s: float,
    source: ImageSource | None = None,
    progress: Report | None = None,
    sleep: Callable[[float], None] = time.sleep,
    cancel: Cancel | None = None,
) -> SearchReport:
    """Run each (class, query) job and store its hits as candidates right away.

    Search errors are recorded per query, never raised: a rate limit or no connection at all
    (DNS, connect, proxy) stops the remaining queries (they would fail too, each after the
    polite pause), other errors skip one query.

    Parameters
    ----------
    store
        The project.
    jobs
        (class, query) pairs, e.g. from ``plan_queries``.
    max_results
        Results wanted per query.
    options
        Region, safe search and the image filters.
    delay_s
        Pause between queries (be polite to the engine).
    source
        Where images come from; None: DuckDuckGo.
    progress
        Called with a ``SearchProgress`` before and after each query.
    sleep
        The pause function (tests pass a fake).
    cancel
        Looked at between queries and during the pause; once set, the search stops early.

    Returns
    -------
    SearchReport
        Candidates added, duplicates, and each query's outcome or error.

    Raises
    ------
    InvalidInput
        ``max_results`` below 1 or a negative ``delay_s``.
    NotFound
        A job names a class that does not exist (before anything is searched).
    """
    if max_results < 1:
        raise InvalidInput(f"max_results={max_results} is too small. Ask for at least 1 result per query.")
    if delay_s < 0:
        raise InvalidInput(f"delay_s={delay_s} is negative. Use 0 or more seconds between queries.")
    # Fail before searching anything if a job names a class that does not exist.
    jobs = [(store.get_class(label).name, query) for label, query in jobs]
    source = source or DuckDuckGoSource()
    report = SearchReport()
    total = len(jobs)

    def tell(index: int, label: str, query: str, message: str) -> None:
        if progress:
            progress(
                SearchProgress(
                    done=index, total=total, query=query, label=label, results_so_far=report.added, message=message
                )
            )

    for index, (label, query) in enumerate(jobs, start=1):
        if stopped(cancel):
            _stop(report, jobs[index - 1 :], "stopped by the user")
            break
        if index > 1 and delay_s:
            _pause(delay_s, sleep, cancel)  # be polite to the search engine between queries
            if stopped(cancel):
                _stop(report, jobs[index - 1 :], "stopped by the user")
                break
        tell(index, label, query, f"Searching {query!r} for {label} ({index}/{total})…")
        outcome = _one_query(store, source, label, query, max_results, options)
        report.queries.append(outcome)
        report.added += outcome.added
        report.known += outcome.known
        tell(index, label, query, outcome.error or f"{query!r}: {outcome.hits} result(s), {outcome.added} new.")
        if outcome.error_kind == "rate_limited":
            _stop(report, jobs[index:], "DuckDuckGo rate limit")
            break
        if outcome.error_kind == "unreachable":
            _stop(report, jobs[index:], "DuckDuckGo cannot be reached")
            break
    log.info("search: %s", report.summary())
    return report


def _pause(seconds: float, sleep: Callable[[float], None], cancel: Cancel | None) -> None:
    """``sleep(seconds)``; the real sleep ends early on a stop (Cancel, Ctrl-C)."""
    if sleep is not time.sleep:
        sleep(seconds)
        return
    pause(cancel, seconds)


_ERROR_KINDS: tuple[tuple[type[SearchError], str], ...] = (
    (SearchRateLimited, "rate_limited"),
    (SearchUnreachable, "unreachable"),
    (SearchTimeout, "timeout"),
    (NoResults, "no_results"),
    (SearchError, "error"),
)


def _one_query(
    store: Store, source: ImageSource, label: str, query: str, max_results: int, options: SearchOptions
) -> QueryOutcome:
    try:
        hits = source.search(query, max_results, options)
    except SearchError as exc:
        kind = next(k for cls, k in _ERROR_KINDS if isinstance(exc, cls))
        # Unreachable ends the search with one sentence of its own: no warning line before it.
        log.log(logging.INFO if kind == "unreachable" else logging.WARNING, "search %r: %s", query, exc)
        return QueryOutcome(label, query, 0, 0, error=str(exc), error_kind=kind)
    added, known = store.add_candidates(_candidates(label, query, hits, source.name))
    return QueryOutcome(label, query, len(hits), added, known)


def _stop(report: SearchReport, remaining: Sequence[tuple[str, str]], reason: str) -> None:
    report.stopped_early = True
    report.stop_reason = reason
    report.skipped.extend(remaining)
