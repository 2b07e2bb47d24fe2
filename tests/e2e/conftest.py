"""Browser test fixtures: one Chromium and one app server for the session, a fresh tab per test.

No Chromium (or no Playwright) → the e2e tests skip with one line, except under CI=true, where they
fail: CI must run them (``make test`` installs Debian's chromium when it is missing).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .app_server import (
    ARTIFACTS,
    FAKE_DDGS_ENV,
    VIEWPORT,
    AppServer,
    find_chromium,
    fresh_checkout,
    launch_chromium,
    write_timings,
)
from .streamlit_page import StreamlitPage
from .timings import TIMINGS, TIMINGS_NOTES, record


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"e2e: {reason} (required under CI=true)", pytrace=False)
    pytest.skip(f"e2e: {reason}")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install -r requirements-dev.txt)")
    path = find_chromium()
    if path is None:
        _unavailable("no Chromium found: apt-get install chromium, or set LOTR_LABELER_CHROMIUM=/path/to/chromium")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_chromium(pw, chromium_path)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def fake_ddgs_file(e2e_dir: Path) -> Path:
    """Where the fake DuckDuckGo answers live; the journey writes them once it knows its queries."""
    path = e2e_dir / "ddgs.json"
    path.write_text("{}", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def checkout(browser: Any, e2e_dir: Path) -> Path:
    """A fresh clone of this repository (with the working tree's tracked edits, see ``fresh_checkout``)."""
    dest = e2e_dir / "clone"
    changed = fresh_checkout(dest)
    # Said in the summary: a local run with uncommitted edits tests them, not HEAD alone.
    TIMINGS_NOTES.append(f"app in a fresh clone; {len(changed)} uncommitted file(s) copied over HEAD: {changed}")
    return dest


@pytest.fixture(scope="session")
def app(browser: Any, checkout: Path, fake_ddgs_file: Path) -> Iterator[AppServer]:
    """The real app started as ``make run`` does, in a fresh clone with its default ``./data``; cold
    start measured on the way up. The fake search file is a test hook, not a data dir."""
    # Evidence of this run only: screenshots, the API answer and log, timings.
    stale = [*ARTIFACTS.glob("*.png"), *ARTIFACTS.glob("journey-*.json"), ARTIFACTS / "api.log"]
    for old in [*stale, ARTIFACTS / "timings.json"]:
        old.unlink(missing_ok=True)
    server = AppServer.like_make_run(checkout, ARTIFACTS / "streamlit.log", env={FAKE_DDGS_ENV: str(fake_ddgs_file)})
    server.start()
    try:
        # Cold start: process start → health OK → first page rendered (the first start creates a project).
        context = browser.new_context(viewport=VIEWPORT)
        try:
            sp = StreamlitPage(context.new_page(), server.url)
            sp.open("/")
            sp.page.get_by_role("heading", name="lotr_labeler").wait_for()
            first_render = time.monotonic() - server.started_at
        finally:
            context.close()
        record(
            "e2e cold start: process start → first page rendered",
            first_render,
            note=f"health OK after {server.health_s:.2f} s; first run creates the default project",
        )
        yield server
    finally:
        server.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser: Any, app: AppServer, request: pytest.FixtureRequest) -> Iterator[StreamlitPage]:
    """A new browser tab (its own Streamlit session) on the app; a screenshot if the test fails."""
    context = browser.new_context(viewport=VIEWPORT)
    sp = StreamlitPage(context.new_page(), app.url, ARTIFACTS)
    try:
        yield sp
    finally:
        if request.node.stash.get(_FAILED, False):
            with contextlib.suppress(Exception):  # best-effort evidence; the failure itself is reported
                sp.screenshot(f"FAILED-{request.node.name}")
        context.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMINGS:
        return
    path = write_timings(TIMINGS)
    terminalreporter.section("e2e timings")
    for note in TIMINGS_NOTES:
        terminalreporter.write_line(note)
    for row in TIMINGS:
        terminalreporter.write_line(json.dumps(row, ensure_ascii=False))
    terminalreporter.write_line(
        f"(also in {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path})"
    )
