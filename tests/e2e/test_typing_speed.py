"""Typing at human speed on the card grids (issue 18): on Search, Review and Dataset, 40 keys typed 100 ms
apart (decisions, relabels, moves, undo). Each key must change the page at once, in the browser (the
grid applies it first and sends the queue to Python in order), and every key must land in the store on
the card it was meant for: the expected store is computed by replaying the keys on the cards the page
showed (``Sim``), then compared with SQLite.

Measured in the page: key → visible change (the keydown event's timestamp to the first animation frame
after the grid's DOM changed, a MutationObserver installed in the window's capture phase, before the
grid's own listener runs); and last key → the store holding every decision. The figures go to the e2e
timings (goal p95 ≤ 50 ms and ≤ 2 s, reported in bench/RESULTS.md, not asserted: a shared CPU); the test
itself fails on what the issue found wrong: a lost key, a key applied to another card, a key whose change
did not happen in its own key event (it waited for a rerun), a store that never catches up."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from helpers import shape_image

from lotr_labeler.collect.importers import import_folder
from lotr_labeler.model import embed
from lotr_labeler.review import decisions, fitting
from lotr_labeler.store import CandidateIn
from lotr_labeler.workspace import create_project, open_project

from .app_server import ROOT, VIEWPORT, AppServer
from .streamlit_page import StreamlitPage
from .timings import record

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SHOTS = ROOT / "test-artifacts" / "typing"
SHAPES = ("circle", "square", "triangle")
KEYS = 40
GAP_MS = 100
STORE_WAIT_S = 15.0  # the test's bound; the goal (2 s) is reported, not asserted (a shared CPU)

# Installed before the page's scripts: each key's latency to the first frame after the grid changed.
_PROBE = """
(() => {
  const t = window.__typing = {lat: [], sync: [], keys: 0};
  let root = null;
  const find = () => {  // the grid renders in a shadow root (components v2 isolates its styles)
    for (const el of document.querySelectorAll("*"))
      if (el.shadowRoot && el.shadowRoot.querySelector(".cg-root")) return el.shadowRoot.querySelector(".cg-root");
    return document.querySelector(".cg-root");
  };
  window.addEventListener("keydown", (e) => {
    if (!root || !root.isConnected) root = find();
    if (!root) return;
    const t0 = e.timeStamp, n = t.keys++;
    let done = false;
    const shown = () => {
      done = true;
      mo.disconnect();
      requestAnimationFrame(() => { t.lat[n] = performance.now() - t0; });
    };
    // The grid changed in this key's own task (its handler: no server round trip) iff the observer fires
    // before a task queued now runs; a change that waited for a rerun arrives in a later task.
    let inTask = true;
    setTimeout(() => { inTask = false; }, 0);
    const mo = new MutationObserver(() => { if (!done) { t.sync[n] = inTask; shown(); } });
    mo.observe(root, {subtree: true, childList: true, attributes: true, characterData: true});
    setTimeout(() => { if (!done) { done = true; mo.disconnect(); t.lat[n] = -1; } }, 3000);
  }, true);
})();
"""


def _png(shape: str, seed: int) -> str:
    buf = io.BytesIO()
    shape_image(shape, seed, 96).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@pytest.fixture(scope="module")
def typing_app(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """3 shape classes x 20 images scored by a head (random-init embeddings), and 60 pending candidates."""
    base = tmp_path_factory.mktemp("typing")
    src = base / "src"
    for n, shape in enumerate(SHAPES):
        (src / shape).mkdir(parents=True)
        for i in range(20):
            shape_image(shape, 100 * n + i, 96).save(src / shape / f"{i}.png")
    data = base / "data"
    with create_project(data, "shapes", "empty") as store:
        import_folder(store, src)
        fitting.refresh(store, embed.resolve_backbone(store, "imagenet", pretrained=False, size=32))
        store.add_candidates(
            CandidateIn(
                "circle",
                f"http://img.invalid/{i}.jpg",
                _png(SHAPES[i % 3], 700 + i),
                page_url=f"http://page.invalid/{i}",
                query="circle shape",
                width=96,
                height=96,
            )
            for i in range(60)
        )
    with AppServer(data, SHOTS / "streamlit.log") as server:
        yield server


@pytest.fixture
def sp(browser: Any, typing_app: AppServer) -> Iterator[StreamlitPage]:
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(_PROBE)
    try:
        yield StreamlitPage(context.new_page(), typing_app.url, SHOTS)
    finally:
        context.close()


# -- the keys replayed on the cards as shown: what the store must hold after them -------------------------


@dataclass(frozen=True)
class CardState:
    label: str
    state: str = ""  # a candidate's decision
    deleted: bool = False
    reviewed: bool = False


@dataclass
class Sim:
    """The grid's rules for these keys: a decision acts on the focused card and moves the focus on; the
    arrows move it; Z restores the cards of the newest step. ``kind``: search, review or dataset."""

    kind: str
    ids: list[int]
    cards: dict[int, CardState]
    focus: int = 0
    undo: list[dict[int, CardState]] = field(default_factory=list)

    def press(self, key: str) -> None:
        if key == "ArrowRight":
            self.focus = min(self.focus + 1, len(self.ids) - 1)
            return
        if key == "ArrowLeft":
            self.focus = max(self.focus - 1, 0)
            return
        if key == "k" and self.kind == "dataset":  # no review state on Dataset: K = fine, next card
            self.focus += 1
            return
        if key == "z":
            self.cards.update(self.undo.pop())
            return
        cid = self.ids[self.focus]
        c = self.cards[cid]
        if key in ("a", "x"):
            new = replace(c, state="accepted" if key == "a" else "rejected")
        elif key == "k":
            new = replace(c, reviewed=True)
        elif key == "d":
            new = replace(c, deleted=True)
        else:
            new = replace(c, label=SHAPES[int(key) - 1], reviewed=c.reviewed or self.kind == "review")
        assert new != c and not c.deleted, f"{key!r} on card #{cid} would change nothing: fix the key list"
        self.undo.append({cid: c})
        self.cards[cid] = new
        self.focus = min(self.focus + 1, len(self.ids) - 1)

    def relabel_key(self) -> str:
        """A digit that moves the focused card to another class than its own."""
        label = self.cards[self.ids[self.focus]].label
        return str(next(i for i, s in enumerate(SHAPES, 1) if s != label))


def plan(sim: Sim, pattern: list[str]) -> list[str]:
    """``KEYS`` keys from ``pattern`` repeated ("R": a relabel to another class), replayed on ``sim``."""
    keys: list[str] = []
    while len(keys) < KEYS:
        for k in pattern:
            if len(keys) == KEYS:
                break
            key = sim.relabel_key() if k == "R" else k
            sim.press(key)
            keys.append(key)
    return keys


# -- the run ----------------------------------------------------------------------------------------------


def shown(sp: StreamlitPage) -> list[int]:
    return [int(x) for x in sp.page.locator(".cg-grid [data-card]").evaluate_all("els => els.map(e => e.dataset.card)")]


def type_keys(sp: StreamlitPage, keys: list[str]) -> float:
    """Type ``keys`` GAP_MS apart (the gap measured from each key's start, as a person's rhythm);
    returns the monotonic time of the last key."""
    t = time.monotonic()
    for k in keys:
        sp.page.keyboard.press(k)
        t += GAP_MS / 1000
        time.sleep(max(0.0, t - time.monotonic()))
    return time.monotonic()


def until_stored(
    read: Callable[[], dict[int, CardState]], want: dict[int, CardState], since: float, typed: str
) -> float:
    """Seconds from ``since`` until the store holds ``want`` (polled every 20 ms); fails with the
    cards that differ after STORE_WAIT_S."""
    got = read()
    while got != want and time.monotonic() - since < STORE_WAIT_S:
        time.sleep(0.02)
        got = read()
    wrong = {i: (got.get(i), w) for i, w in want.items() if got.get(i) != w}
    assert not wrong, f"{len(wrong)} card(s) differ from the keys typed (stored, meant): {wrong}; {typed}"
    return time.monotonic() - since


def measure(sp: StreamlitPage, page: str, sim: Sim, keys: list[str], read: Callable[[], dict[int, CardState]]) -> None:
    before = sp.run_count()
    last = type_keys(sp, keys)
    lat = sp.page.evaluate("() => window.__typing.lat")
    stored_s = until_stored(read, sim.cards, last, f"keys {keys}, ms to show each: {lat}")
    lat = sp.page.evaluate("() => window.__typing.lat")
    assert len(lat) == KEYS and all(x is not None and x >= 0 for x in lat), f"a key changed nothing: {lat}"
    lat_ms = sorted(float(x) for x in lat)
    p95 = lat_ms[int(0.95 * (len(lat_ms) - 1) + 0.5)]
    sync = sp.page.evaluate("() => window.__typing.sync")
    late = [k for k, ok in zip(keys, sync, strict=True) if not ok]
    assert not late, f"{len(late)} key(s) did not change the grid in their own key event (a rerun): {late}"
    sp.wait_idle()
    runs = sp.run_count() - before
    sp.screenshot(f"typed-{page.lower()}")
    note = (
        f"{KEYS} keys {GAP_MS} ms apart: key → visible p50 {lat_ms[len(lat_ms) // 2]:.1f} ms, "
        f"p95 {p95:.1f} ms, max {lat_ms[-1]:.1f} ms (goal p95 ≤ 50 ms); 0 lost or misapplied; "
        f"{runs} rerun(s) for {KEYS} keys"
    )
    record(f"typing {page}: last key → every decision stored", stored_s, goal="≤ 2 s", note=note)
    record(f"typing {page}: key → visible change p95", p95 / 1000, goal="≤ 0.05 s", note=note)
    sp.check_no_exception()


def open_grid(sp: StreamlitPage, path: str) -> list[int]:
    sp.open(path)
    sp.page.locator(".cg-grid .cg-card").first.wait_for()
    sp.wait_idle()
    sp.page.mouse.click(5, 5)  # the document has the keyboard, no widget
    return shown(sp)


def test_typing_on_search(sp: StreamlitPage, typing_app: AppServer) -> None:
    ids = open_grid(sp, "/Search")
    assert len(ids) == 48

    def read() -> dict[int, CardState]:
        with open_project(typing_app.data_dir, "shapes") as s:
            return {i: CardState(c.label, c.state) for i in ids for c in [s.get_candidate(i)]}

    sim = Sim("search", ids, read())
    keys = plan(sim, ["a", "x", "ArrowRight", "R", "a", "z", "x", "ArrowLeft", "R", "a"])
    measure(sp, "Search", sim, keys, read)
    assert shown(sp) == ids  # decided cards stayed in place until the page turns


def _images(app: AppServer, ids: list[int], with_review: bool = True) -> dict[int, CardState]:
    with open_project(app.data_dir, "shapes") as s:
        reviewed = decisions.reviewed_ids(s) if with_review else set()
        return {i: CardState(img.label, "", img.deleted, i in reviewed) for i in ids for img in [s.get_image(i)]}


def test_typing_on_review(sp: StreamlitPage, typing_app: AppServer) -> None:
    ids = open_grid(sp, "/Review")
    sim = Sim("review", ids, _images(typing_app, ids))
    keys = plan(sim, ["k", "R", "ArrowRight", "d", "k", "z", "R", "ArrowLeft", "R", "k"])
    measure(sp, "Review", sim, keys, lambda: _images(typing_app, ids))
    assert shown(sp) == ids


def test_typing_on_dataset(sp: StreamlitPage, typing_app: AppServer) -> None:
    ids = open_grid(sp, "/Dataset")
    sim = Sim("dataset", ids, _images(typing_app, ids, with_review=False))  # Review's marks are not its business
    keys = plan(sim, ["R", "d", "ArrowRight", "R", "z", "R", "ArrowLeft", "R", "d", "k"])
    measure(sp, "Dataset", sim, keys, lambda: _images(typing_app, ids, with_review=False))
    assert shown(sp) == ids


def test_search_follows_a_chained_job_without_a_reload(sp: StreamlitPage, typing_app: AppServer) -> None:
    """Point 3 of issue 18: a search ends, its scoring job starts a moment later and ends: the open page
    shows what each brought (here: candidates, as the grid's count) without a reload. The page used to
    rerun once when the search ended, before the chained job existed, and then stayed stale."""
    import os

    from lotr_labeler.jobs import table as jobs

    with open_project(typing_app.data_dir, "shapes") as s:
        total = s.count_candidates(state="pending")  # the page's view: the pending candidates
        search = jobs.insert(s, "search", {}, os.getpid(), jobs.own_start())  # this process: alive
    sp.open("/Search")  # the page as its Search button leaves it: the search running
    counts = sp.page.locator(".cg-counts")
    counts.first.wait_for()

    def add(s: Any, n: int, tag: str) -> None:
        s.add_candidates(
            CandidateIn("square", f"http://img.invalid/{tag}{i}.jpg", _png("square", 900 + i)) for i in range(n)
        )

    with open_project(typing_app.data_dir, "shapes") as s:
        add(s, 4, "a")
        jobs.finish(s, search.id, "done", "4 new candidates")
    sp.page.wait_for_timeout(1500)  # the search's end is shown; the chained job is not there yet
    with open_project(typing_app.data_dir, "shapes") as s:
        score = jobs.insert(s, "score-candidates", {}, os.getpid(), jobs.own_start())
    sp.page.wait_for_timeout(1200)
    with open_project(typing_app.data_dir, "shapes") as s:
        add(s, 3, "b")
        jobs.finish(s, score.id, "done", "scored")
    expect = pytest.importorskip("playwright.sync_api").expect
    expect(counts.first).to_contain_text(f"{total + 7} candidates", timeout=10_000)
    sp.check_no_exception()


def test_train_page_notices_a_training_started_and_ended_elsewhere(sp: StreamlitPage, typing_app: AppServer) -> None:
    """A second tab (or the CLI) starts a training while this Train page shows none: within seconds the
    page shows it running, with its Cancel, and then how it ended, without a reload. The page used to
    poll only for a job it had drawn running, so it stayed on "Start training" until a reload."""
    import os

    from lotr_labeler.jobs import table as jobs

    expect = pytest.importorskip("playwright.sync_api").expect
    sp.open("/Train")
    sp.page.get_by_role("button", name="Start training").wait_for()
    sp.wait_idle()
    with open_project(typing_app.data_dir, "shapes") as s:
        job = jobs.insert(s, "train", {}, os.getpid(), jobs.own_start())  # this process: alive
    try:
        # Nothing else reruns an idle Train page: only its poll can show it.
        expect(sp.page.get_by_text("Training running")).to_be_visible(timeout=15_000)
        expect(sp.page.get_by_role("button", name="Cancel train")).to_be_visible()
    finally:
        with open_project(typing_app.data_dir, "shapes") as s:
            jobs.finish(s, job.id, "failed", "stopped by the test")
    expect(sp.page.get_by_text("stopped by the test")).to_be_visible(timeout=15_000)
    expect(sp.page.get_by_text("Training running")).to_be_hidden()
    sp.check_no_exception()


# -- a labeling surface: the grid above the fold, nothing cut (point 4) ----------------------------------

# Every label a person reads on the page, in the document and in the grid's shadow root: Streamlit's
# buttons (their text), the grid's buttons and card captions. Hidden ones (a closed popover) are skipped.
_CUT = """
() => {
  const LABELS = "button, button *, .cg-cap, .cg-btn, .cg-counts, [data-testid=stCaptionContainer]";
  const roots = [document];
  for (const el of document.querySelectorAll("*")) if (el.shadowRoot) roots.push(el.shadowRoot);
  const cut = [];
  for (const r of roots)
    for (const el of r.querySelectorAll(LABELS)) {
      if (!el.getClientRects().length || getComputedStyle(el).visibility === "hidden") continue;
      const text = (el.innerText || "").trim().slice(0, 60);
      const name = el.className || el.tagName;
      if (el.scrollWidth > el.clientWidth + 1) cut.push(`${name}: ${text} (${el.scrollWidth} > ${el.clientWidth})`);
    }
  return cut;
}
"""


@pytest.mark.parametrize("size", [(1000, 800), (1400, 1000)], ids=["1000x800", "1400x1000"])
def test_the_grid_is_above_the_fold_and_nothing_is_cut(
    browser: Any, typing_app: AppServer, size: tuple[int, int]
) -> None:
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        sp = StreamlitPage(context.new_page(), typing_app.url, SHOTS)
        problems: list[str] = []
        for path in ("/Search", "/Review", "/Dataset"):
            sp.open(path)
            first = sp.page.locator(".cg-grid .cg-card").first
            first.wait_for()
            sp.wait_idle()
            sp.page.wait_for_timeout(300)  # the grid's columns fit the width (a ResizeObserver)
            shot = SHOTS / f"fold-{path.strip('/').lower()}-{width}.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            sp.page.screenshot(path=str(shot))
            box = first.bounding_box()
            assert box is not None
            if box["y"] + box["height"] > height:
                problems.append(f"{path}: the first card row ends at {box['y'] + box['height']:.0f} px > {height}")
            problems += [f"{path}: {c}" for c in sp.page.evaluate(_CUT)]
        assert not problems, "\n".join(problems)
    finally:
        context.close()
