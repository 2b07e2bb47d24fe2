"""Search: DuckDuckGo is faked only at the ``ddgs.DDGS`` boundary."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ddgs
import pytest
from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

from lotr_labeler.collect.search import (
    DuckDuckGoSource,
    SearchOptions,
    SearchProgress,
    plan_queries,
    run_search,
)
from lotr_labeler.errors import InvalidInput, NoResults, NotFound
from lotr_labeler.jobs.specs import SearchJob
from lotr_labeler.progress import Progress
from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project

PAGE = 100  # DuckDuckGo's page size, mimicked by the fake


def ddg_row(query: str, i: int) -> dict[str, Any]:
    slug = query.replace(" ", "-")
    return {
        "title": f"{query} #{i}",
        "image": f"https://img.example.org/{slug}/{i}.jpg",
        "thumbnail": f"https://tse.example.org/th?id={slug}-{i}",
        "url": f"https://pages.example.org/{slug}/{i}.html",
        "height": 480 + i,
        "width": 640,
        "source": "Bing",
    }


class FakeDDG:
    """Stands in for ddgs.DDGS: per-query result lists served 100 per page, or an error."""

    def __init__(self) -> None:
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.errors: dict[str, Exception] = {}
        self.calls: list[dict[str, Any]] = []
        self.timeouts: list[Any] = []
        self.same_page_every_time = False

    def factory(self, *args: Any, **kwargs: Any) -> FakeDDG._Client:
        self.timeouts.append(kwargs.get("timeout"))
        return FakeDDG._Client(self)

    class _Client:
        def __init__(self, fake: FakeDDG) -> None:
            self.fake = fake

        def images(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
            fake = self.fake
            fake.calls.append({"query": query, **kwargs})
            if query in fake.errors:
                raise fake.errors[query]
            rows = fake.results.get(query, [])
            page = kwargs.get("page", 1)
            if not fake.same_page_every_time:
                rows = rows[(page - 1) * PAGE : page * PAGE]
            rows = rows[: min(PAGE, kwargs.get("max_results") or PAGE)]
            if not rows:
                raise DDGSException("No results found.")  # what ddgs raises on an empty page
            return rows

    def pages_asked(self, query: str) -> list[int]:
        return [c["page"] for c in self.calls if c["query"] == query]


@pytest.fixture
def fake_ddg(monkeypatch: pytest.MonkeyPatch) -> FakeDDG:
    fake = FakeDDG()
    monkeypatch.setattr(ddgs, "DDGS", fake.factory)
    return fake


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Store]:
    store = create_project(tmp_path, "t", "empty")
    store.add_class("Elves", ["Legolas", "Galadriel"], "{name} lotr face")
    store.add_class("Dwarves", ["Gimli"], "{name} lotr face")
    yield store
    store.close()


def fill(fake: FakeDDG, query: str, n: int) -> None:
    fake.results[query] = [ddg_row(query, i) for i in range(n)]


def no_sleep(_: float) -> None:
    raise AssertionError("sleep must not be called")


def run(store: Store, jobs: list[tuple[str, str]], **kw: Any) -> Any:
    kw.setdefault("max_results", 10)
    kw.setdefault("options", SearchOptions())
    kw.setdefault("delay_s", 0)
    kw.setdefault("sleep", no_sleep)
    return run_search(store, jobs, **kw)


# -- options and planning ------------------------------------------------------------------


def test_default_options_are_valid_and_none_filters_allowed() -> None:
    opts = SearchOptions(type_image=None, size="Large", layout="Square", license_image="Public", timelimit="m")
    assert opts.type_image is None and opts.size == "Large"
    assert SearchOptions().type_image == "photo"


@pytest.mark.parametrize(
    ("field", "value", "allowed_hint"),
    [
        ("safesearch", "strict", "on, moderate, off"),
        ("type_image", "photograph", "photo, clipart"),
        ("size", "large", "Small, Medium, Large, Wallpaper"),
        ("layout", "Round", "Square, Tall, Wide"),
        ("license_image", "free", "ShareCommercially"),
        ("timelimit", "year", "d, w, m, y"),
        ("region", "USA", "us-en"),
    ],
)
def test_invalid_option_names_value_and_allowed(field: str, value: str, allowed_hint: str) -> None:
    with pytest.raises(InvalidInput) as info:
        SearchOptions(**{field: value})
    assert repr(value) in str(info.value)
    assert allowed_hint in str(info.value)


def test_safesearch_cannot_be_none() -> None:
    with pytest.raises(InvalidInput, match="safesearch=None"):
        SearchOptions(safesearch=None)  # type: ignore[arg-type]


def test_plan_queries_all_one_and_free_text(proj: Store) -> None:
    assert plan_queries(proj) == [
        ("Elves", "Legolas lotr face"),
        ("Elves", "Galadriel lotr face"),
        ("Dwarves", "Gimli lotr face"),
    ]
    assert plan_queries(proj, "dwarves") == [("Dwarves", "Gimli lotr face")]
    assert plan_queries(proj, "Elves", "  elf ears  ") == [("Elves", "elf ears")]
    # A blank text box means "use the class's queries".
    assert plan_queries(proj, "Dwarves", "  ") == [("Dwarves", "Gimli lotr face")]


def test_plan_queries_errors(proj: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="needs a class"):
        plan_queries(proj, None, "elf ears")
    with pytest.raises(NotFound, match="Hobbits"):
        plan_queries(proj, "Hobbits")
    empty = create_project(tmp_path, "empty", "empty")
    try:
        with pytest.raises(InvalidInput, match="no classes"):
            plan_queries(empty)
    finally:
        empty.close()


def test_class_without_search_names_uses_its_name(proj: Store) -> None:
    proj.add_class("Orcs")
    assert plan_queries(proj, "Orcs") == [("Orcs", "Orcs")]


# -- running -------------------------------------------------------------------------------


def test_hits_become_candidates_with_all_fields(proj: Store, fake_ddg: FakeDDG) -> None:
    fill(fake_ddg, "Gimli lotr face", 5)
    opts = SearchOptions(region="uk-en", safesearch="off", size="Medium", layout="Tall", license_image="Share")
    report = run(proj, [("Dwarves", "Gimli lotr face")], max_results=5, options=opts)

    assert (report.added, report.known) == (5, 0)
    rows = proj.candidates("Dwarves")
    assert len(rows) == 5
    first = rows[0]
    assert first.image_url == "https://img.example.org/Gimli-lotr-face/0.jpg"
    assert first.thumbnail_url == "https://tse.example.org/th?id=Gimli-lotr-face-0"
    assert first.page_url == "https://pages.example.org/Gimli-lotr-face/0.html"
    assert first.title == "Gimli lotr face #0"
    assert first.query == "Gimli lotr face"
    assert (first.width, first.height) == (640, 480)
    assert first.source == "ddg"
    assert first.state == "pending"
    call = fake_ddg.calls[0]
    assert call["region"] == "uk-en" and call["safesearch"] == "off" and call["type_image"] == "photo"
    assert call["size"] == "Medium" and call["layout"] == "Tall" and call["license_image"] == "Share"
    assert call["max_results"] == 5 and call["page"] == 1
    assert fake_ddg.timeouts and fake_ddg.timeouts[0] is not None


def test_second_run_skips_known_urls(proj: Store, fake_ddg: FakeDDG) -> None:
    fill(fake_ddg, "Gimli lotr face", 8)
    run(proj, [("Dwarves", "Gimli lotr face")], max_results=5)
    report = run(proj, [("Dwarves", "Gimli lotr face")], max_results=8)
    assert (report.added, report.known) == (3, 5)
    assert proj.count_candidates() == 8
    assert report.queries[0].hits == 8


def test_paging_asks_next_pages_until_enough(proj: Store, fake_ddg: FakeDDG) -> None:
    fill(fake_ddg, "Gimli lotr face", 250)
    report = run(proj, [("Dwarves", "Gimli lotr face")], max_results=230)
    assert fake_ddg.pages_asked("Gimli lotr face") == [1, 2, 3]
    assert report.added == 230
    assert proj.count_candidates() == 230


def test_no_paging_when_first_page_is_enough(proj: Store, fake_ddg: FakeDDG) -> None:
    fill(fake_ddg, "Gimli lotr face", 250)
    run(proj, [("Dwarves", "Gimli lotr face")], max_results=40)
    assert fake_ddg.pages_asked("Gimli lotr face") == [1]


def test_paging_ends_quietly_when_results_run_out(proj: Store, fake_ddg: FakeDDG) -> None:
    fill(fake_ddg, "Gimli lotr face", 120)  # page 2 has 20, page 3 raises "No results"
    report = run(proj, [("Dwarves", "Gimli lotr face")], max_results=300)
    assert fake_ddg.pages_asked("Gimli lotr face") == [1, 2, 3]
    assert report.added == 120
    assert report.queries[0].error is None


def test_paging_stops_when_a_page_adds_nothing_new(proj: Store, fake_ddg: FakeDDG) -> None:
    fill(fake_ddg, "Gimli lotr face", 100)
    fake_ddg.same_page_every_time = True  # an engine that ignores `page`
    report = run(proj, [("Dwarves", "Gimli lotr face")], max_results=500)
    assert fake_ddg.pages_asked("Gimli lotr face") == [1, 2]
    assert report.added == 100


def test_hits_without_web_image_url_are_dropped(proj: Store, fake_ddg: FakeDDG) -> None:
    rows = [ddg_row("Gimli lotr face", i) for i in range(4)]
    rows[0]["image"] = "data:image/png;base64,AAAA"
    rows[1]["image"] = None
    rows[2]["thumbnail"] = "javascript:alert(1)"
    rows[2]["width"], rows[2]["height"] = "", "300"  # other backends send strings
    fake_ddg.results["Gimli lotr face"] = rows
    report = run(proj, [("Dwarves", "Gimli lotr face")])
    assert report.added == 2
    by_url = {c.image_url: c for c in proj.candidates()}
    odd = by_url["https://img.example.org/Gimli-lotr-face/2.jpg"]
    assert odd.thumbnail_url is None
    assert (odd.width, odd.height) == (None, 300)


def test_rate_limit_stops_remaining_queries_and_keeps_earlier(proj: Store, fake_ddg: FakeDDG) -> None:
    jobs = plan_queries(proj)
    fill(fake_ddg, "Legolas lotr face", 4)
    fake_ddg.errors["Galadriel lotr face"] = RatelimitException("202 Ratelimit")
    fill(fake_ddg, "Gimli lotr face", 4)
    slept: list[float] = []
    report = run(proj, jobs, delay_s=1.5, sleep=slept.append)

    assert proj.count_candidates("Elves") == 4  # first query's results were kept
    assert proj.count_candidates("Dwarves") == 0
    assert "Gimli lotr face" not in {c["query"] for c in fake_ddg.calls}
    assert report.stopped_early and report.stop_reason and "rate limit" in report.stop_reason
    assert report.skipped == [("Dwarves", "Gimli lotr face")]
    failed = report.queries[1]
    assert failed.error_kind == "rate_limited"
    assert failed.error and "rate-limited" in failed.error and "search_delay" in failed.error
    assert "'Galadriel lotr face'" in failed.error
    assert slept == [1.5]  # only between query 1 and 2
    assert "not run" in report.summary()


def test_timeout_and_no_results_continue(proj: Store, fake_ddg: FakeDDG) -> None:
    fake_ddg.errors["Legolas lotr face"] = TimeoutException("timed out")
    # "Galadriel lotr face" has no results at all: the fake raises "No results found."
    fill(fake_ddg, "Gimli lotr face", 3)
    report = run(proj, plan_queries(proj))

    kinds = [q.error_kind for q in report.queries]
    assert kinds == ["timeout", "no_results", None]
    assert not report.stopped_early
    assert proj.count_candidates("Dwarves") == 3
    assert report.queries[0].error and "did not answer in time" in report.queries[0].error
    no_results = report.queries[1].error
    assert no_results == (
        "No results for 'Galadriel lotr face'. Try another query or fewer filters (type/size/layout/license)."
    )


def test_vqd_failure_counts_as_rate_limit(proj: Store, fake_ddg: FakeDDG) -> None:
    # What ddgs 9.16 raises when DuckDuckGo blocks the client (it never raises RatelimitException).
    fake_ddg.errors["Legolas lotr face"] = DDGSException("_extract_vqd() query='x' Could not extract vqd.")
    report = run(proj, plan_queries(proj))
    assert report.queries[0].error_kind == "rate_limited"
    assert report.stopped_early and len(report.skipped) == 2


def test_other_ddgs_error_is_a_search_error_with_its_message(proj: Store, fake_ddg: FakeDDG) -> None:
    fake_ddg.errors["Gimli lotr face"] = DDGSException("vqd extraction failed")
    report = run(proj, [("Dwarves", "Gimli lotr face")])
    assert report.queries[0].error_kind == "error"
    assert "vqd extraction failed" in (report.queries[0].error or "")


def test_source_raises_no_results_when_first_page_empty(fake_ddg: FakeDDG) -> None:
    with pytest.raises(NoResults, match="'nothing here'"):
        DuckDuckGoSource().search("nothing here", 10, SearchOptions())


def test_delay_between_queries_only(proj: Store, fake_ddg: FakeDDG) -> None:
    for _, q in plan_queries(proj):
        fill(fake_ddg, q, 2)
    slept: list[float] = []
    run(proj, plan_queries(proj), delay_s=0.25, sleep=slept.append)
    assert slept == [0.25, 0.25]  # 3 queries: not before the first, not after the last
    run(proj, plan_queries(proj), delay_s=0)  # no_sleep would raise if called


def test_progress_reports_each_query_with_running_total(proj: Store, fake_ddg: FakeDDG) -> None:
    for n, (_, q) in enumerate(plan_queries(proj), start=1):
        fill(fake_ddg, q, n)
    seen: list[SearchProgress] = []
    report = run(proj, plan_queries(proj), progress=seen.append)
    finals = seen[1::2]  # one "searching" and one "done" message per query
    assert [p.done for p in finals] == [1, 2, 3]
    assert all(p.total == 3 for p in seen)
    assert [p.results_so_far for p in finals] == [1, 3, 6]
    assert finals[-1].results_so_far == report.added == 6
    assert finals[0].label == "Elves" and finals[0].query == "Legolas lotr face"
    assert "Searching" in seen[0].message


def test_cancel_ends_before_next_query(proj: Store, fake_ddg: FakeDDG) -> None:
    for _, q in plan_queries(proj):
        fill(fake_ddg, q, 2)
    cancel = threading.Event()

    def progress(p: Progress) -> None:
        if not p.message.startswith("Searching"):  # the first query is done: stop
            cancel.set()

    report = run(proj, plan_queries(proj), progress=progress, cancel=cancel)
    assert {c["query"] for c in fake_ddg.calls} == {"Legolas lotr face"}
    assert report.stopped_early and report.stop_reason == "stopped by the user"
    assert len(report.skipped) == 2


def test_search_job_body_runs_from_the_library(proj: Store, fake_ddg: FakeDDG) -> None:
    # What `lotr-labeler search` and the page's job do, called as a notebook would.
    for n, (_, q) in enumerate(plan_queries(proj), start=1):
        fill(fake_ddg, q, n)
    seen: list[Progress] = []
    ran = SearchJob(delay=0, score=False).run(proj, seen.append)
    assert ran.state == "done" and ran.report.added == 6 and ran.summary == ran.report.summary()
    assert [p.done for p in seen if isinstance(p, SearchProgress)][1::2] == [1, 2, 3]
    assert SearchJob(score=False).score_after(proj, ran.report) is None  # not asked to
    cancel = threading.Event()
    cancel.set()
    stopped = SearchJob(delay=0).run(proj, cancel=cancel)
    assert stopped.state == "cancelled" and stopped.report.stop_reason == "stopped by the user"
    fake_ddg.errors["Legolas lotr face"] = RatelimitException("202 Ratelimit")
    limited = SearchJob(label="Elves", query="Legolas lotr face", delay=0).run(proj)
    assert limited.state == "failed" and limited.report.failed


def test_unknown_class_fails_before_any_search(proj: Store, fake_ddg: FakeDDG) -> None:
    fill(fake_ddg, "Gimli lotr face", 2)
    with pytest.raises(NotFound, match="Hobbits"):
        run(proj, [("Dwarves", "Gimli lotr face"), ("Hobbits", "Frodo")])
    assert fake_ddg.calls == []


def test_bad_run_arguments(proj: Store, fake_ddg: FakeDDG) -> None:
    with pytest.raises(InvalidInput, match="max_results=0"):
        run(proj, [("Dwarves", "x")], max_results=0)
    with pytest.raises(InvalidInput, match="delay_s=-1"):
        run(proj, [("Dwarves", "x")], delay_s=-1)


def test_report_as_dict_is_json(proj: Store, fake_ddg: FakeDDG) -> None:
    fill(fake_ddg, "Gimli lotr face", 3)
    fake_ddg.errors["Legolas lotr face"] = TimeoutException("timed out")
    report = run(proj, [("Elves", "Legolas lotr face"), ("Dwarves", "Gimli lotr face")])
    data: dict[str, Callable[..., Any] | Any] = json.loads(json.dumps(report.as_dict()))
    assert data["added"] == 3
    assert data["queries"][0]["error_kind"] == "timeout"
    assert data["queries"][1] == {
        "label": "Dwarves",
        "query": "Gimli lotr face",
        "hits": 3,
        "added": 3,
        "known": 0,
        "error": None,
        "error_kind": None,
    }
    assert "3 new candidate(s)" in report.summary()
