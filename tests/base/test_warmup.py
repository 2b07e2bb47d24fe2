"""The server's warm-up once its first page is drawn (warmup.py; issue 22).

Review's first visit after a server start paid ~190 ms of imports and ~150 ms ranking its queue at
20,000 images. A daemon thread now does that in the server's idle time: these tests pin what it
imports (the package modules a page imports at module level: neither those the page defers nor a
library it imports itself), its order, that it waits for the process to be idle, that one server starts
it once, and that the app starts it after its first run. The Review queue half is pinned in
tests/review/test_review_cache.py.
"""

from __future__ import annotations

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
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
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
