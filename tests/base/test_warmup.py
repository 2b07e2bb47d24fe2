"""The server's warm-up as it starts and once its first page is drawn (warmup.py; issue 22).

Review's first visit after a server start paid ~190 ms of imports and ~150 ms ranking its queue at
20,000 images. A daemon thread now does that in the server's idle time: these tests pin what it
imports (the package modules a page imports at module level: neither those the page defers nor a
library it imports itself), its order, that it waits for the process to be idle, that one server starts
it once, and that the app starts it after its first run. The Review queue half is pinned in
tests/review/test_review_cache.py.

The server's first session (Home) paid 0.5-0.9 s of imports and counting: the app's ``st.App`` starts a
warm-up of that as the server starts (``lifespan``), before a browser connects; pinned here too, down to
the real server, as ``make run`` starts it.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from helpers import fresh_python

from lotr_labeler import warmup
from lotr_labeler.store import Store

ROOT = Path(__file__).resolve().parents[2]

PAGE = '''"""A page."""

from __future__ import annotations

import mailbox
from lotr_labeler.review import duplicates, fitting as fit
from lotr_labeler.review.embedding_map import Point as P


def later() -> None:
    from lotr_labeler.review import backbone_choice  # deferred: an action needs it, not the page
'''


def test_page_imports_are_the_module_level_ones(tmp_path: Path) -> None:
    page = tmp_path / "1_Page.py"
    page.write_text(PAGE, encoding="utf-8")
    assert warmup.page_imports(page) == [
        ("mailbox", ()),
        ("lotr_labeler.review", ("duplicates", "fitting")),
        ("lotr_labeler.review.embedding_map", ("Point",)),
    ]


def test_every_app_page_is_parsed(tmp_path: Path) -> None:
    found = {p.name: warmup.page_imports(p) for p in sorted((ROOT / "pages").glob("[!_]*.py"))}
    assert len(found) == 7 and all(found.values())
    assert ("lotr_labeler.review.trust", ("run_body_worth_trying", "scores_trust")) in found["5_Review.py"]


WARM = """
import json, sys
from pathlib import Path
from lotr_labeler import warmup
watched = ("mailbox", "lotr_labeler.review.duplicates", "lotr_labeler.review.fitting",
           "lotr_labeler.review.embedding_map", "lotr_labeler.review.backbone_choice")
before = [m for m in watched if m in sys.modules]
steps = []
done = warmup.warm([Path(p) for p in sys.argv[1:]], None, idle=steps.append)
print(json.dumps({"before": before, "after": [m for m in watched if m in sys.modules], "done": done,
                  "steps": steps}))
"""


@pytest.mark.slow  # a fresh interpreter, so that nothing is imported yet
def test_warm_imports_the_package_modules_the_pages_import_and_nothing_they_defer(tmp_path: Path) -> None:
    page = tmp_path / "1_Page.py"
    page.write_text(PAGE, encoding="utf-8")
    broken = tmp_path / "2_Broken.py"
    broken.write_text("import lotr_labeler.no_such_module\n", encoding="utf-8")
    doc, stderr = fresh_python(WARM, str(broken), str(page))
    assert doc["before"] == []
    assert doc["after"] == [
        "lotr_labeler.review.duplicates",
        "lotr_labeler.review.fitting",
        "lotr_labeler.review.embedding_map",
    ]  # not backbone_choice, which the page imports inside a function, nor a library the page imports itself
    # A page whose import fails is logged and skipped; the next one is still warmed.
    assert "importing what 2_Broken.py imports failed" in stderr
    assert [line.split(":")[0] for line in doc["done"]] == ["imports of 1_Page.py"]
    assert doc["steps"] == [warmup.PAGE_QUIET_S] * 2  # a wait for a person's pause before each page


def test_the_pages_that_show_the_review_queue_come_first_in_the_short_pause(tmp_path: Path) -> None:
    plain, review, unreadable = tmp_path / "1_Plain.py", tmp_path / "2_Review.py", tmp_path / "3_Gone.py"
    plain.write_text("from lotr_labeler.errors import LabelerError\n", encoding="utf-8")
    review.write_text("from lotr_labeler.review import decisions, queue\n", encoding="utf-8")
    quiet: list[float] = []
    done = warmup.warm([plain, unreadable, review], None, idle=quiet.append)
    assert [line.split(":")[0] for line in done] == ["imports of 2_Review.py", "imports of 1_Plain.py"]
    assert quiet == [warmup.QUEUE_QUIET_S, warmup.PAGE_QUIET_S]


def test_a_project_without_a_database_is_skipped(tmp_path: Path) -> None:
    assert warmup.warm([], tmp_path / "gone", idle=lambda quiet: None) == []
    assert warmup.warm([], None, idle=lambda quiet: None) == []


def test_a_failing_ranking_is_logged_not_raised(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    from lotr_labeler.review import queue

    def broken(store: Store) -> int:
        raise OSError("disk gone")

    with pytest.MonkeyPatch.context() as m, caplog.at_level(logging.WARNING, logger=warmup.__name__):
        m.setattr(queue, "warm", broken)
        assert warmup.warm([], store.root, idle=lambda quiet: None) == []
    assert f"ranking the Review queue of {store.name} failed: disk gone" in caplog.text


def test_wait_idle_waits_for_the_rest_of_the_process() -> None:
    """A thread busy on the CPU (a page run) holds the warm-up back until it has been quiet a while."""
    spun = threading.Event()

    def spin() -> None:
        end = time.thread_time() + 0.4  # CPU time, so a loaded machine only makes it last longer
        while time.thread_time() < end:
            pass
        spun.set()

    busy = threading.Thread(target=spin)
    busy.start()
    try:
        time.sleep(0.05)  # the spinner has used CPU before the wait starts
        # Only this process is watched here: other processes of the machine are the next test's.
        waited = threading.Thread(target=warmup.wait_idle, args=(0.3,), kwargs={"machine_busy": float("inf")})
        waited.start()
        waited.join(timeout=60)
        assert not waited.is_alive()
        assert spun.is_set()  # it returned only after the busy thread was done
    finally:
        busy.join(timeout=60)


def test_wait_idle_waits_for_the_rest_of_the_machine(tmp_path: Path) -> None:
    """Another process busy on the CPU (the browser drawing the page just sent) holds the warm-up back too."""
    done = tmp_path / "done"
    spin = (
        "import time, pathlib\n"
        "end = time.process_time() + 1.0\n"  # CPU time: a loaded machine only makes it last longer
        "while time.process_time() < end: pass\n"
        f"pathlib.Path({str(done)!r}).write_text('x')\n"
    )
    busy = subprocess.Popen([sys.executable, "-c", spin])
    try:
        deadline = time.monotonic() + 30
        while psutil.Process(busy.pid).cpu_times().user < 0.1 and time.monotonic() < deadline:
            time.sleep(0.02)  # the spinner is on the CPU before the wait starts
        waited = threading.Thread(target=warmup.wait_idle, args=(0.3,))
        waited.start()
        waited.join(timeout=60)
        assert not waited.is_alive()
        assert done.exists()  # it returned only after the other process was done
    finally:
        busy.kill()
        busy.wait(timeout=60)


def test_start_runs_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[list[Path], Path]] = []
    monkeypatch.setattr(warmup, "_thread", None)
    monkeypatch.setattr(warmup, "_run", lambda pages, project, compile_page: ran.append((pages, project)))
    first = warmup.start([Path("a.py")], Path("p"))
    assert first is not None
    first.join(timeout=10)
    assert first.daemon and first.name == "lotr_labeler-warmup"
    assert warmup.start([Path("b.py")], Path("q")) is None
    assert ran == [([Path("a.py")], Path("p"))]


def test_the_app_starts_it_after_its_first_run(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    started: list[tuple[list[Path], Path]] = []
    compilers: list[Callable[[str], object] | None] = []

    def start(pages: list[Path], project: Path, compile_page: Callable[[str], object] | None) -> None:
        started.append((list(pages), project))
        compilers.append(compile_page)

    monkeypatch.setattr(warmup, "start", start)
    at = AppTest.from_file(str(ROOT / "home.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert started == [(sorted((ROOT / "pages").glob("[!_]*.py")), store.root)]
    # The compiler it was given is Streamlit's script cache: a page's first visit finds its bytecode there.
    compile_page = compilers[0]
    assert compile_page is not None
    review = str(ROOT / "pages" / "5_Review.py")
    code = compile_page(review)
    assert isinstance(code, types.CodeType) and code.co_filename == review
    assert compile_page(review) is code  # cached: compiled once per server, whichever session asks


def test_each_page_is_compiled_after_its_imports_and_a_failure_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = tmp_path / "1_Good.py", tmp_path / "2_Bad.py"
    good.write_text("from lotr_labeler.errors import LabelerError\n", encoding="utf-8")
    bad.write_text("from lotr_labeler.errors import LabelerError\n", encoding="utf-8")
    compiled: list[str] = []

    def compile_page(path: str) -> object:
        if path == str(bad):
            raise SyntaxError("invalid syntax")
        compiled.append(path)
        return compile(Path(path).read_text(encoding="utf-8"), path, "exec")

    with caplog.at_level(logging.WARNING, logger="lotr_labeler.warmup"):
        done = warmup.warm([good, bad], None, idle=lambda quiet: None, compile_page=compile_page)
    assert compiled == [str(good)]
    assert [line.split(":")[0] for line in done] == ["imports and script of 1_Good.py", "imports of 2_Bad.py"]
    assert "compiling 2_Bad.py failed: invalid syntax" in caplog.text


FIRST = """
import json, sys
from pathlib import Path
from lotr_labeler import warmup
watched = ("mailbox", "wave", "lotr_labeler.review.duplicates", "lotr_labeler.review.backbone_choice")
before = [m for m in watched if m in sys.modules]
done = warmup.warm_first_page(Path(sys.argv[1]), ["wave"], None)
print(json.dumps({"before": before, "after": [m for m in watched if m in sys.modules], "done": done}))
"""


@pytest.mark.slow  # a fresh interpreter, so that nothing is imported yet
def test_at_start_it_imports_all_the_first_page_imports_and_the_modules_named(tmp_path: Path) -> None:
    page = tmp_path / "home.py"
    page.write_text(PAGE, encoding="utf-8")
    doc, _ = fresh_python(FIRST, str(page))
    assert doc["before"] == []
    # A library the page imports itself too (the first run needs it now), and the named module; not what
    # the page defers to a function.
    assert doc["after"] == ["mailbox", "wave", "lotr_labeler.review.duplicates"]
    assert [line.split(":")[0] for line in doc["done"]] == ["imports of home.py"]


def test_at_start_it_counts_what_home_shows_into_the_memo_of_the_first_run(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lotr_labeler.review import queue

    ranked: list[object] = []
    rank = queue._rank
    monkeypatch.setattr(queue, "_rank", lambda *args: ranked.append(args[1:]) or rank(*args))
    page = tmp_path / "home.py"
    page.write_text("from lotr_labeler import overview\n", encoding="utf-8")
    done = warmup.warm_first_page(page, (), store.root)
    assert [line.split(":")[0] for line in done] == ["imports of home.py", f"home figures of {store.name}"]
    assert len(ranked) == 1
    with Store(store.root) as again:  # Home's first run, with a store of its own
        rows = queue.class_rows(again)
    assert len(ranked) == 1  # found in the memo, not ranked again
    assert sorted(r["class"] for r in rows) == sorted(store.class_names())
    assert all(isinstance(r["flagged"], int) for r in rows)


def test_at_start_a_failure_is_logged_and_no_project_is_skipped(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from lotr_labeler.review import queue

    def broken(store: Store) -> list[dict[str, object]]:
        raise OSError("disk gone")

    page = tmp_path / "home.py"
    page.write_text("import lotr_labeler.no_such_module\n", encoding="utf-8")
    monkeypatch.setattr(queue, "class_rows", broken)
    with caplog.at_level(logging.WARNING, logger=warmup.__name__):
        assert warmup.warm_first_page(page, (), store.root) == []
        assert warmup.warm_first_page(page, (), None) == []
        assert warmup.warm_first_page(page, (), tmp_path / "gone") == []
    assert "importing what home.py imports failed" in caplog.text
    assert f"the home figures of {store.name} failed: disk gone" in caplog.text


def test_the_server_lifespan_starts_it_once_and_the_page_warm_up_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order: list[tuple[object, ...]] = []

    def first(page: Path, modules: list[str], project: Path | None) -> list[str]:
        time.sleep(0.3)  # still at work when the first page's warm-up is started
        order.append(("start", page, tuple(modules), project))
        return []

    monkeypatch.setattr(warmup, "_at_start", None)
    monkeypatch.setattr(warmup, "warm_first_page", first)
    monkeypatch.setattr(warmup, "warm", lambda pages, project, compile_page=None: order.append(("pages", project)))
    hook = warmup.lifespan(Path("home.py"), ["streamlit.emojis"], lambda: Path("p"))

    async def serve() -> None:
        async with hook(None):
            pass
        async with hook(None):  # a second start in the process starts nothing more
            pass

    asyncio.run(serve())
    thread = warmup._at_start
    assert thread is not None and thread.daemon and thread.name == "lotr_labeler-warmup-start"
    warmup._run([], Path("p"), None)  # the first page's warm-up, from the thread ``start`` makes
    assert order == [("start", Path("home.py"), ("streamlit.emojis",), Path("p")), ("pages", Path("p"))]


def test_a_project_that_cannot_be_found_at_start_is_logged_and_the_imports_still_warmed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    warmed: list[Path | None] = []
    monkeypatch.setattr(warmup, "warm_first_page", lambda page, modules, project: warmed.append(project) or [])

    def unreadable() -> Path | None:
        raise PermissionError("data: permission denied")

    with caplog.at_level(logging.WARNING, logger=warmup.__name__):
        warmup._run_at_start(Path("home.py"), (), unreadable)
    assert warmed == [None]
    assert "finding the project to warm failed: data: permission denied" in caplog.text


@pytest.mark.slow  # the real server
def test_the_app_server_warms_the_first_page_before_any_browser_connects(tmp_path: Path) -> None:
    from e2e.app_server import AppServer, cli

    data = tmp_path / "data"
    cli(data, "init", project="demo")
    with AppServer(data, tmp_path / "streamlit.log") as app:
        assert app.proc is not None
        server = psutil.Process(app.proc.pid)
        # numpy, which Home's flag counts need and no part of Streamlit's start imports: loaded with no
        # session yet (bounded wait, the warm-up's thread runs beside the server).
        deadline = time.monotonic() + 60
        while not (numpy := any("_multiarray_umath" in m.path for m in server.memory_maps())):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert numpy, app.log_tail()
