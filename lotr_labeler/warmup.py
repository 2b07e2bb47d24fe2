"""Warm the server as it starts, then once its first page is drawn, so that no page's first visit is slow.

As it starts (``lifespan``, the hook of the app's ``st.App``), before any browser has connected: what the
first page imports and the Review queue its flag counts come off (``warm_first_page``). The server's first
session, Home at 20,000 images, spent 0.5-0.9 s of its run on that (numpy alone 0.15 s); after the warm-up
0.15-0.45 s, and its load took 1.66 s instead of 1.97 s (medians of 6 alternating fresh servers). A browser
takes about a second to load Streamlit's JavaScript before it asks for a page, so the work is done by then.

Then a page's first visit in a fresh server process paid, at 20,000 images, about 190 ms importing what
its file imports (numpy and the review modules for Review) and 150 ms ranking the Review queue from
its disk cache, on top of what every visit pays: Review's first load after a server start was the
slowest load of the app. Once the first page is drawn the server has nothing to do while the browser
renders it, so one daemon thread per process does that work then, a step at a time, each begun only
once the rest of the process, and the rest of the machine, have been idle a while (``wait_idle``: no
page run, no thumbnail served, no browser drawing a page), so that it seldom competes with a load:

- the Review queue of the project the first page showed, with the page's default filters, into the
  process's memo (``review.queue.warm``), and the counts the page's trust line reads off it;
- every page file's module-level imports of this package's modules, with what those import, the
  Review page's right after its queue (the pages defer what is heavy, scikit-learn and torch, to the
  functions that need it), then the page file itself compiled into Streamlit's script cache
  (``compile_page``), which every session shares while one is connected: a profiled first visit of
  Review spent 29 ms compiling it while the browser drew the page before (5 ms on an idle machine).
  A library a page imports itself is left to that page: pandas, for the Train and Predict tables, is
  half a second in one piece, too long to slip into a pause between two clicks.

It does only what the pages would do themselves, with the same imports and the same memo, so a failure
is logged and nothing more: the page then does the work and reports any error itself.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from lotr_labeler.store import DB_NAME, Store

log = logging.getLogger(__name__)

# The Review queue (its imports and its ranking, ~0.35 s at 20,000 images) is worth doing in the short
# gap after the first page; another page's imports (0.1-0.3 s each) wait for a pause of someone reading,
# longer than a quick walk through the pages leaves: begun in such a gap, a step delayed the next load.
QUEUE_QUIET_S = 0.3
PAGE_QUIET_S = 2.0
# Other processes using more than this many cores (a browser drawing a page uses about one) keep it waiting.
MACHINE_BUSY = 0.5

_PACKAGE = __name__.partition(".")[0]

_lock = threading.Lock()
_thread: threading.Thread | None = None
_at_start: threading.Thread | None = None


def page_imports(page: Path) -> list[tuple[str, tuple[str, ...]]]:
    """A page file's module-level imports as ``(module, names)``: ``from module import names``, or no
    names for ``import module``. Imports inside functions are left out on purpose (see the module doc)."""
    tree = ast.parse(page.read_text(encoding="utf-8"), str(page))
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level and node.module != "__future__":
            found.append((node.module, tuple(alias.name for alias in node.names)))
    return found


def wait_idle(quiet_s: float, busy: float = 0.1, poll_s: float = 0.05, machine_busy: float = MACHINE_BUSY) -> None:
    """Return once the process's other threads have used under ``busy`` of a core, and the other processes
    of the machine under ``machine_busy`` cores, for ``quiet_s`` in a row: no page run, no thumbnail being
    served, and no browser drawing a page. A person reading a page leaves the machine that idle for seconds;
    pages loaded back to back (a script, the bench) leave gaps of a few tenths, and a step begun in one would
    compete with the next load. The browser is most often on the same machine (a local tool): while it
    draws the page just sent, a warm-up step took the cores it needed (a page's first load, right after
    the server's first, took 0.3-0.5 s longer). Sleeps between looks, so waiting costs nothing."""

    def others() -> float:  # CPU seconds of the whole process but this thread
        return time.process_time() - time.thread_time()

    def machine() -> float:  # CPU seconds of every process, this one included
        t = psutil.cpu_times()
        return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))

    last, last_all, last_own, at = others(), machine(), time.process_time(), time.monotonic()
    quiet_since = at
    while at - quiet_since < quiet_s:
        time.sleep(poll_s)
        used, used_all, own, now = others(), machine(), time.process_time(), time.monotonic()
        window = now - at
        elsewhere = (used_all - last_all) - (own - last_own)  # the machine's CPU outside this process
        if used - last > busy * window or elsewhere > machine_busy * window:
            quiet_since = now
        last, last_all, last_own, at = used, used_all, own, now


def warm(
    pages: Sequence[Path],
    project: Path | None,
    idle: Callable[[float], None] = wait_idle,
    compile_page: Callable[[str], object] | None = None,
) -> list[str]:
    """Rank ``project``'s default Review queue (a project folder; None or no database: skipped), the
    costliest first visit, then import every page's module-level imports of this package and compile
    the page with ``compile_page`` (its path; None: not compiled): first the pages that show that
    queue, then the others. Before each step ``idle`` is called with the quiet the step needs
    (``QUEUE_QUIET_S`` for the queue and its pages, ``PAGE_QUIET_S`` for the rest). Returns what was
    warmed, one line each, as logged (debug) step by step."""
    done: list[str] = []
    if project is not None and (project / DB_NAME).is_file():
        idle(QUEUE_QUIET_S)
        started = time.perf_counter()
        try:
            from lotr_labeler.review import queue, trust

            with Store(project) as store:
                n = queue.warm(store)
                if n is not None:
                    trust.scores_trust(store)  # its counts come off the same queue, sorted by margin
        except Exception as exc:  # the Review page ranks it again and shows the error there
            log.warning("warm-up: ranking the Review queue of %s failed: %s", project.name, exc)
        else:
            ranked = "left to the page" if n is None else f"{n} images"
            _record(done, f"review queue of {project.name}: {ranked}, {_since(started)}")
    imports: dict[Path, list[tuple[str, tuple[str, ...]]]] = {}
    for page in pages:
        try:
            imports[page] = page_imports(page)
        except (OSError, SyntaxError, ValueError) as exc:  # the page fails the same way when opened
            log.warning("warm-up: reading %s failed: %s", page.name, exc)
    first = {page for page, found in imports.items() if _shows_queue(found)}
    for page in sorted(imports, key=lambda p: p not in first):  # stable: else in the given order
        idle(QUEUE_QUIET_S if page in first else PAGE_QUIET_S)
        started = time.perf_counter()
        try:
            for module, names in imports[page]:
                if module.partition(".")[0] == _PACKAGE:
                    __import__(module, fromlist=names)  # as the statement does: the submodules named too
        except Exception as exc:  # the page imports it again and shows the error there
            log.warning("warm-up: importing what %s imports failed: %s", page.name, exc)
            continue
        what = "imports"
        if compile_page is not None:
            try:
                compile_page(str(page))
            except Exception as exc:  # the page's visit compiles it again and shows the error there
                log.warning("warm-up: compiling %s failed: %s", page.name, exc)
            else:
                what = "imports and script"
        _record(done, f"{what} of {page.name}: {_since(started)}")
    return done


def _record(done: list[str], line: str) -> None:
    """One step warmed: kept for the caller, logged at debug."""
    done.append(line)
    log.debug("warm-up: %s", line)


def _since(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.0f} ms"


def _shows_queue(imports: list[tuple[str, tuple[str, ...]]]) -> bool:
    queue = f"{_PACKAGE}.review.queue"
    return any(m == queue or f"{m}.{n}" == queue for m, names in imports for n in names or ("",))


def start(
    pages: Sequence[Path], project: Path, compile_page: Callable[[str], object] | None = None
) -> threading.Thread | None:
    """``warm`` in a daemon thread, once per process: the thread, or None when it was started before."""
    global _thread
    with _lock:
        if _thread is not None:
            return None
        _thread = threading.Thread(
            target=_run, args=(list(pages), project, compile_page), name="lotr_labeler-warmup", daemon=True
        )
        _thread.start()
        return _thread


def _run(pages: list[Path], project: Path, compile_page: Callable[[str], object] | None) -> None:
    if _at_start is not None:  # its steps first: the same memo, and no two threads importing at once
        _at_start.join()
    warm(pages, project, compile_page=compile_page)


def warm_first_page(first: Path, modules: Sequence[str], project: Path | None) -> list[str]:
    """What the server's first session needs, before it comes: ``first``'s module-level imports (the
    file of the page a browser lands on) and ``modules`` (what it imports later in its run), then
    ``project``'s figures Home shows (``review.queue.class_rows``: the per-class counts and the flags of the
    Review queue, ranked into the process's memo; the current run), a project folder; None or no
    database: skipped. No idle wait: no session runs yet, and each step is work the first session would do.
    Returns what was warmed, one line each (logged at debug)."""
    done: list[str] = []
    started = time.perf_counter()
    try:
        for module, names in page_imports(first):
            __import__(module, fromlist=names)
        for module in modules:
            __import__(module)
    except Exception as exc:  # the page imports it again and shows the error there
        log.warning("warm-up: importing what %s imports failed: %s", first.name, exc)
    else:
        _record(done, f"imports of {first.name}: {_since(started)}")
    if project is not None and (project / DB_NAME).is_file():
        started = time.perf_counter()
        try:
            from lotr_labeler.model.runs import current_run
            from lotr_labeler.review import queue

            with Store(project) as store:
                queue.class_rows(store)
                current_run(store)
        except Exception as exc:  # the page counts them again and shows the error there
            log.warning("warm-up: the home figures of %s failed: %s", project.name, exc)
        else:
            _record(done, f"home figures of {project.name}: {_since(started)}")
    return done


def lifespan(first: Path, modules: Sequence[str], project: Callable[[], Path | None]) -> Callable[[Any], Any]:
    """A server lifespan (``st.App(lifespan=...)``) that starts ``warm_first_page`` in a daemon thread
    as the server starts, for the project ``project()`` names then: while a browser loads Streamlit's
    JavaScript (about a second) the server has nothing else to do."""

    @contextlib.asynccontextmanager
    async def hook(_app: Any) -> AsyncIterator[None]:
        global _at_start
        with _lock:
            if _at_start is None:
                _at_start = threading.Thread(
                    target=_run_at_start, args=(first, modules, project), name="lotr_labeler-warmup-start", daemon=True
                )
                _at_start.start()
        yield

    return hook


def _run_at_start(first: Path, modules: Sequence[str], project: Callable[[], Path | None]) -> None:
    try:
        chosen = project()
    except Exception as exc:  # an unreadable data folder: the first page says so itself
        log.warning("warm-up: finding the project to warm failed: %s", exc)
        chosen = None
    warm_first_page(first, modules, chosen)
