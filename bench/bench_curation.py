"""Oracle-driven curation benchmark (issue 12 "Measure"): actions and seconds to a clean set, in a browser.

    python bench/bench_curation.py [--today 57db8a9] [--new head|worktree|none] [--only search|review]
                                   [--retrain when-it-pays|never]

Two phases, each on a fresh project, data from bench/curation_data.py (scikit-learn's digits, upscaled):

1. **search**: 200 candidates over 4 classes (one query each, answered by the fake DuckDuckGo from a
   local image server), 20 % off-topic (digits 5-9 or noise). Clean = every off-topic candidate
   rejected and every other accepted under its class.
2. **review**: 200 images in 4 classes, 10 % filed under a wrong class, imported with the CLI and
   scored with the CLI (``review --compute``, random-init resnet18 at 64 px: no download), so the
   Review queue is ranked as a user's is. Clean = every image present with its true label.
   The product's loop is fix → "⚡ Retrain head" (the K-fold head refitted on the corrected labels, in the
   button's callback: seconds) → review again. Both UIs have that button, so with ``--retrain
   when-it-pays`` (the default) both scripted users may press it under one rule (``retrain_pays``: after
   5 corrections since the last fit, when the refreshed predictions could save more than its click);
   ``--retrain never`` keeps the first fit's scores throughout (the configuration before).
   A quick CPU training run as the scorer (``train --no-pretrained --size 64``, then ``--backbone run``)
   was measured and left out: 5 epochs took 147 s here and reached 34 % validation accuracy (4 classes),
   no sharper than the random-init embeddings, and past the bench's time budget for both UIs.

A scripted user drives the real app in Chromium (Playwright) with only what a person has: clicks on
visible buttons, select boxes, cards and key presses. An oracle tells it the truth of each picture
(the candidate's image URL / the image's original file name). It counts every click and key press
(an open + pick of a select box is 2); scrolling an element into view is free but counted apart.
"Clean" is checked from the database through the CLI of the checkout under test, not from the page.

The two UIs, each a checkout in a temp dir started like ``make run`` (tests/e2e/app_server.py):

- *today*: commit ``--today`` (57db8a9, before the issue 12 grids), from ``git archive``.
  Strategy = the cheapest a careful user does with its controls: Search — ✗ on each off-topic card,
  then "Accept page" (the pending view then shows the next page); Review — "→ predicted" on a wrong
  card whose prediction is right, else its Label select box (open + pick), "Next ▶" when the
  queue's next page still holds wrong labels.
- *new*: a clone of HEAD (the default: what is committed, reproducible), or with ``--new worktree`` the
  working tree's tracked files over it, as the e2e journey does.
  Its strategy (``GridUser``) runs only where the components-v2 card grid (``.cg-grid [data-card]``,
  lotr_labeler/ui/cards.js, read through Playwright locators: it renders in a shadow root) is on the
  page; elsewhere the page is the old one and the *today* strategy runs on it (said in the row's note).
  Grid: a click / Ctrl-click toggles a card, Shift-click selects the range from the last toggled one,
  P = each selected card to its own prediction (agreeing cards untouched), 1-9 = the n-th class, A/X
  accept/reject (Search). ``plan_rounds`` / ``plan_selection`` pick the fewest clicks + presses
  (ranges with the cards that must stay out Ctrl-clicked away; a lone card by its own button).
  Search (the pending view: a decided card leaves it): the off-topic cards selected → X, a round at a
  time (the cards move up after each), then Shift+A ("Accept page") once the page is all on-topic.
  Review: first the wrong cards whose prediction is wrong (by their true class, 1-9; they leave the
  queue), then those whose prediction is right (P).
- The scripted user has no think time: its seconds are the app's own latency summed over the actions.
- *fastai's ImageClassifierCleaner* cannot run here (Jupyter widgets): it is **modelled**, not run,
  as "one dropdown per image, 30 images per view": 2 actions per changed image + 1 per view
  (class x split for review; for search, where fastai has no pre-download step, the 200 downloaded
  images are cleaned the same way, <Delete> for each off-topic one).

Figures (JSON lines for bench/run_all.py): actions and seconds per phase and UI; ratio = today / new
(bigger is better for the new UI); goal on review: >= 3x fewer actions than today.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(BENCH)]

import curation_data as cd  # noqa: E402
from e2e.app_server import (  # noqa: E402
    FAKE_DDGS_ENV,
    AppServer,
    cli,
    fake_search_results,
    find_chromium,
    fresh_checkout,
    launch_chromium,
)
from e2e.streamlit_page import StreamlitPage  # noqa: E402

TODAY = "57db8a9"  # the last commit before the issue 12 grids
VIEWPORT = {"width": 1400, "height": 1000}
PROJECT = {"search": "bench-search", "review": "bench-review"}
CLEANER_VIEW = 30  # fastai's ImageClassifierCleaner: images per (class, split) view
GRID = ".cg-grid [data-card]"  # the new card grid (lotr_labeler/ui/cards.js)
MAX_ROUNDS = 400  # a strategy that loops this often is broken: stop, report not clean
ARTIFACTS = ROOT / "test-artifacts" / "bench-curation"
RERUN_WAIT_S = 10.0


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def emit(name: str, ours: float | None, anchor: float | None, goal: str, unit: str, note: str = "") -> None:
    """One figure; ``ratio`` = anchor / ours (actions, seconds: bigger is better for ours)."""
    ratio = round(anchor / ours, 3) if ours and anchor else None
    doc: dict[str, Any] = {"name": name, "ours": ours, "anchor": anchor, "ratio": ratio, "goal": goal, "unit": unit}
    if note:
        doc["note"] = note
    print(json.dumps(doc, ensure_ascii=False), flush=True)


# -- the local image server --------------------------------------------------------------------


def image_server(images: dict[int, bytes]) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                n = int(self.path.rsplit("/", 1)[-1].split(".")[0])
                body = images[n]
            except (ValueError, KeyError):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# -- checkouts and the CLI of each ---------------------------------------------------------------


def archive_checkout(commit: str, dest: Path) -> Path:
    """The tracked files of ``commit`` at ``dest`` (git archive: no worktree left in the repository)."""
    dest.mkdir(parents=True)
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True, timeout=120)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar.stdout, check=True, timeout=120)
    return dest


@dataclass
class Checkout:
    name: str  # "today" / "new"
    path: Path

    def cli(self, *args: str, project: str) -> str:
        """The checkout's own CLI (cwd = checkout, default ./data), so its own schema and code apply."""
        return cli(None, *args, project=project, cwd=self.path)

    def cli_json(self, *args: str, project: str) -> Any:
        return json.loads(self.cli(*args, "--json", project=project))

    def fresh_data(self) -> None:
        shutil.rmtree(self.path / "data", ignore_errors=True)


# -- the scripted user ---------------------------------------------------------------------------


@dataclass
class Tally:
    clicks: int = 0
    keys: int = 0
    scrolls: int = 0  # free, counted apart
    seconds: float = 0.0
    clean: bool = False
    left: list[str] = field(default_factory=list)  # what the DB still has wrong at the end
    strategy: str = ""
    steps: list[str] = field(default_factory=list)  # what the user did, one line per decision
    retrains: int = 0  # "⚡ Retrain head" presses (counted in clicks too)
    missed_reruns: int = 0  # actions whose rerun the page's counter missed (waited RERUN_WAIT_S, then idle)

    @property
    def actions(self) -> int:
        return self.clicks + self.keys


class User:
    """A person at the browser: every click and key press is counted; waits for the app after each."""

    def __init__(self, sp: StreamlitPage) -> None:
        self.sp = sp
        self.t = Tally()

    def _into_view(self, loc: Any) -> None:
        visible = bool(
            loc.evaluate(
                """e => { const r = e.getBoundingClientRect();
                          return r.top >= 0 && r.bottom <= window.innerHeight; }"""
            )
        )
        if not visible:
            loc.scroll_into_view_if_needed()
            self.t.scrolls += 1

    def _wait(self, n: int) -> None:
        """Wait for the rerun an action caused. The page's run counter can miss a very short run (two state
        changes in one observer batch), so after a while an idle app counts as done, and that is counted."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.sp.wait_idle(after=n, timeout_s=RERUN_WAIT_S)
        except PlaywrightTimeout:
            self.sp.wait_idle()
            self.t.missed_reruns += 1

    def click(self, loc: Any, *, rerun: bool = True, modifiers: list[str] | None = None) -> None:
        loc = loc.first
        self._into_view(loc)
        n = self.sp.run_count()
        loc.click(modifiers=modifiers or [])
        self.t.clicks += 1
        if rerun:
            self._wait(n)

    def select(self, scope: Any, label: str, option: str) -> None:
        """A select box: open it, pick the option (2 actions)."""
        box = scope.get_by_role("combobox", name=label, exact=True).first
        self._into_view(box)
        self.sp.select(label, option, within=scope)
        self.t.clicks += 2

    def press(self, key: str, *, rerun: bool = True) -> None:
        n = self.sp.run_count()
        self.sp.page.keyboard.press(key)
        self.t.keys += 1
        if rerun:
            self._wait(n)

    def retrain(self, why: str) -> None:
        """Review's "⚡ Retrain head" (1 click): the head is refitted on the corrected labels inside the
        button's callback, so the rerun it causes shows the refreshed scores."""
        before = self.t.actions
        self.click(self.sp.button("⚡ Retrain head"))
        self.t.retrains += 1
        self.t.steps.append(f"⚡ Retrain head: {why} (total {before + 1} actions)")


def has_grid(sp: StreamlitPage) -> bool:
    return bool(sp.page.locator(GRID).count())


# -- phase 1: search ------------------------------------------------------------------------------


def search_states(co: Checkout, s: cd.SearchSet) -> dict[int, tuple[str, str]]:
    rows = co.cli_json("candidates", "list", "--limit", "100000", project=PROJECT["search"])
    out: dict[int, tuple[str, str]] = {}
    for r in rows:
        url = r.get("image_url") or r.get("url") or ""
        out[s.truth_of_url(url).n] = (r["state"], r["label"])
    return out


def setup_search(co: Checkout, s: cd.SearchSet, image_base: str, fake: Path) -> None:
    project = PROJECT["search"]
    co.fresh_data()
    co.cli("init", "--template", "empty", project=project)
    for c in cd.CLASSES:
        co.cli("classes", "add", c, "--template", "{name}", project=project)
    fake_search_results(fake, image_base, s.queries())
    co.cli("search", "--max", "100", "--delay", "0", project=project)
    states = search_states(co, s)
    if len(states) != len(s.candidates) or any(st != "pending" for st, _ in states.values()):
        raise RuntimeError(f"search set up {len(states)} candidates, not {len(s.candidates)} pending")


def card_truth_today(sp: StreamlitPage, s: cd.SearchSet, cid: int) -> cd.Candidate:
    src = sp.page.locator(f".st-key-card_{cid} img").first.get_attribute("src") or ""
    return s.truth_of_url(src)


def search_today(user: User, s: cd.SearchSet, co: Checkout) -> None:
    """✗ on every off-topic card of the pending page, then "Accept page"; the next page comes by itself."""
    sp = user.sp
    user.t.strategy = "today: ✗ per off-topic card + Accept page"
    for _ in range(MAX_ROUNDS):
        ids = sp.key_numbers("acc_")
        if not ids:
            return
        for cid in ids:
            if not card_truth_today(sp, s, cid).on_topic:
                user.click(sp.keyed_button(f"rej_{cid}"))
        user.click(sp.button("Accept page"))


def grid_cards(sp: StreamlitPage) -> list[dict[str, Any]]:
    """The grid's cards in page order as a person sees them: id, picture, label, the → prediction.
    Read through a Playwright locator: it reaches into the component's shadow root, querySelector does not."""
    return list(
        sp.page.locator(GRID).evaluate_all(
            r"""cards => cards.map(c => {
                 const img = c.querySelector('img');
                 const pred = c.querySelector('[data-act="predict"]');
                 const label = c.querySelector('.cg-cap b');
                 const pct = pred ? /(\d+)%/.exec(pred.textContent) : null;
                 return {id: Number(c.dataset.card), src: img ? img.getAttribute('src') : '',
                         label: label ? label.textContent.trim() : '',
                         predicted: pred ? pred.textContent.replace('→', '').trim().split(' ')[0] : null,
                         pct: pct ? Number(pct[1]) : null,
                         deleted: c.classList.contains('cg-deleted'),
                         reviewed: c.classList.contains('cg-reviewed'),
                         state: ((/cg-st-(\w+)/.exec(c.className) || [])[1]) || ''};
               })"""
        )
    )


def plan_selection(ids: list[int], order: list[int], dont_care: frozenset[int] = frozenset()) -> list[tuple[str, int]]:
    """The fewest clicks selecting ``ids`` of the cards in grid ``order`` and no other card outside
    ``dont_care`` (cards the coming key leaves alone): ("click" | "shift" | "ctrl", card id); a click and a
    Ctrl-click both toggle. One card: a click. Else the cheaper of a click on each, or a click + Shift-click
    over their span + Ctrl-clicks taking out the cards inside it that must stay out."""
    if not ids:
        return []
    want = set(ids)
    pos = sorted(order.index(i) for i in ids)
    first, last = order[pos[0]], order[pos[-1]]
    outside = [i for i in order[pos[0] : pos[-1] + 1] if i not in want and i not in dont_care]
    if len(ids) > 1 and 2 + len(outside) < len(ids):
        return [("click", first), ("shift", last), *(("ctrl", i) for i in outside)]
    return [("click", first), *(("ctrl", order[p]) for p in pos[1:])]


def plan_rounds(
    ids: list[int], order: list[int], dont_care: frozenset[int] = frozenset(), *, button: bool = False
) -> list[list[int]]:
    """Split ``ids`` (all for the same key) into rounds of consecutive cards, each a selection + one key
    press, so that the clicks and presses together are fewest (one Shift-range per round). ``button``: a
    card has its own button for the action, so a round of one card costs one click."""
    seq = sorted(ids, key=order.index)

    def cost(part: list[int]) -> int:
        return 1 if button and len(part) == 1 else 1 + len(plan_selection(part, order, dont_care))

    best: list[tuple[int, list[list[int]]]] = [(0, [])]  # best[k]: the first k cards of seq
    for k in range(1, len(seq) + 1):
        options = [(best[j][0] + cost(seq[j:k]), [*best[j][1], seq[j:k]]) for j in range(k)]
        best.append(min(options, key=lambda o: o[0]))
    return best[-1][1]


THRESHOLD_START, THRESHOLD_STEP = 80, 5  # the grid toolbar's t (cards.js): starts at 80 %, [ / ] move it by 5


@dataclass(frozen=True)
class ThresholdPlan:
    """One use of the toolbar threshold: move t to ``t`` ([ / ] presses), then Shift+P (no false alarm) or
    S + Ctrl-click each false alarm out + P. ``cost`` counts those actions plus the per-card fixes of the
    right predictions left below t."""

    t: int
    false_alarms: tuple[int, ...]
    hits: tuple[int, ...]
    cost: int


def plan_threshold(
    doubted: dict[int, int], fix_p: list[int], order: list[int], current: int, agreeing: frozenset[int]
) -> ThresholdPlan | None:
    """The cheapest threshold round for the doubted cards shown (``{id: % shown}``), where ``fix_p`` are
    the wrong cards whose prediction is right (the others are false alarms), or None when none beats fixing
    ``fix_p`` card by card (``plan_rounds``)."""
    want = set(fix_p)
    best: ThresholdPlan | None = None
    for t in range(THRESHOLD_STEP, 100, THRESHOLD_STEP):
        hits = [i for i in order if i in doubted and doubted[i] >= t]
        if not want & set(hits):
            continue
        alarms = [i for i in hits if i not in want]
        bulk = 1 if not alarms else 2 + len(alarms)  # Shift+P, or S + Ctrl-clicks + P
        left = [i for i in fix_p if i not in hits]
        rest = sum(round_cost(part, order, agreeing) for part in plan_rounds(left, order, agreeing, button=True))
        cost = abs(t - current) // THRESHOLD_STEP + bulk + rest
        if best is None or cost < best.cost:
            best = ThresholdPlan(t, tuple(alarms), tuple(hits), cost)
    return best


def round_cost(part: list[int], order: list[int], dont_care: frozenset[int]) -> int:
    """Actions of one ``plan_rounds`` round: the card's own button, or a selection + one key."""
    return 1 if len(part) == 1 else 1 + len(plan_selection(part, order, dont_care))


class GridUser:
    """The new card grid: Shift-click ranges, Ctrl-click toggles, one key for the whole selection."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.sp = user.sp

    def card(self, cid: int) -> Any:
        return self.sp.page.locator(f'.cg-grid [data-card="{cid}"] [data-pick]')

    def select(self, ids: list[int], order: list[int], dont_care: frozenset[int] = frozenset()) -> None:
        """Select ``ids`` with the clicks ``plan_selection`` gives (Esc first if a selection is left over)."""
        if not ids:
            return
        has_selection = bool(self.sp.page.locator(".cg-grid .cg-sel").count())
        if len(ids) == 1 and not has_selection and self.focused() == ids[0]:
            self.user.t.steps.append("the card is the outlined one: no click")  # keys act on the focused card
            return
        if has_selection:
            self.user.press("Escape", rerun=False)
        plan = plan_selection(ids, order, dont_care)
        for how, cid in plan:
            mods = {"click": [], "shift": ["Shift"], "ctrl": ["Control"]}[how]
            self.user.click(self.card(cid), rerun=False, modifiers=mods)
        kinds = [how for how, _ in plan]
        self.user.t.steps.append(
            f"select {len(ids)} card(s): {kinds.count('click')} click, {kinds.count('shift')} Shift-click, "
            f"{kinds.count('ctrl')} Ctrl-click"
        )

    def focused(self) -> int | None:
        el = self.sp.page.locator(".cg-grid .cg-card.cg-focus")
        return int(el.first.get_attribute("data-card")) if el.count() else None

    def key(self, key: str, ids: list[int] | None = None) -> None:
        before = self.user.t.actions
        self.user.press(key)
        self.user.t.steps.append(f"{key} on {len(ids or [])} card(s) (total {before + 1} actions)")

    def card_button(self, cid: int, action: str) -> bool:
        """Click a card's own button for ``action`` (one click, no selection); False when it has none."""
        btn = self.sp.page.locator(f'.cg-grid [data-card="{cid}"] [data-act="{action}"]')
        if not btn.count():
            return False
        self.user.click(btn)
        self.user.t.steps.append(f"{action} button on card #{cid} (total {self.user.t.actions} actions)")
        return True


def search_new(user: User, s: cd.SearchSet, co: Checkout) -> None:
    """Grid on Search (the pending view). Where decided cards stay in place until the page turns (issue 18):
    the off-topic pending cards selected → X (a lone one by its own ✗; ranges may cross cards rejected
    already), Shift+A ("Accept page": the pending cards shown), then Shift+PageDown. On an older grid,
    where a decided card leaves the view and the next ones move up: the same rounds, then Shift+A."""
    g, sp = GridUser(user), user.sp
    user.t.strategy = "new grid: select off-topic → X (rounds), then Shift+A accepts the page"
    for _ in range(MAX_ROUNDS):
        cards = grid_cards(sp)
        if not cards:
            return
        order = [c["id"] for c in cards]
        pinned = any(c["state"] for c in cards)  # the grid marks each card's state: decided ones stay
        pending = [c for c in cards if not pinned or c["state"] == "pending"]
        off = [c["id"] for c in pending if not s.truth_of_url(c["src"]).on_topic]
        if not off and pending:
            before = user.t.actions
            user.press("Shift+A")
            user.t.steps.append(f"Shift+A: accept the page's {len(pending)} card(s) (total {before + 1} actions)")
            continue
        if not off:  # the page is decided: on to the next one, if any
            nxt = sp.page.get_by_role("button", name=re.compile("^Next ▶"))
            if not nxt.count() or nxt.first.is_disabled():
                return
            user.press("Shift+PageDown")
            continue
        rejected = frozenset(c["id"] for c in cards if c["state"] == "rejected")
        part = plan_rounds(off, order, rejected, button=True)[0]  # the cheapest first round; then look again
        if not (len(part) == 1 and g.card_button(part[0], "reject")):
            g.select(part, order, rejected)
            g.key("x", part)


# -- phase 2: review ------------------------------------------------------------------------------


# A person refits after a batch of corrections (one relabel barely moves a K-fold head), and only when the
# refreshed predictions could save more than the refit's own click. Same rule for both UIs.
RETRAIN_MIN_FIXES = 5


def retrain_pays(fixes_since_fit: int, saving_at_best: int) -> bool:
    """Press "⚡ Retrain head" now? After ``RETRAIN_MIN_FIXES`` corrections since the last fit, when the
    best the refreshed predictions could save (in actions) is more than the 1 click it costs."""
    return fixes_since_fit >= RETRAIN_MIN_FIXES and saving_at_best > 1


def review_labels(co: Checkout, r: cd.ReviewSet) -> tuple[dict[int, str], dict[int, cd.LabeledImage]]:
    """DB labels by benchmark index (live images), and the image of each store id."""
    rows = co.cli_json("images", "list", "--limit", "100000", project=PROJECT["review"])
    labels: dict[int, str] = {}
    by_id: dict[int, cd.LabeledImage] = {}
    for row in rows:
        img = r.truth_of_name(row.get("original_name") or "")
        by_id[int(row["id"])] = img
        labels[img.index] = row["label"]
    return labels, by_id


def setup_review(co: Checkout, r: cd.ReviewSet, work: Path) -> dict[int, cd.LabeledImage]:
    project = PROJECT["review"]
    co.fresh_data()
    co.cli("init", "--template", "empty", project=project)
    for c in cd.CLASSES:
        co.cli("classes", "add", c, "--template", "{name}", project=project)
    folder = work / "review-in"
    if not folder.exists():
        r.write(folder)
    co.cli("import", "folder", str(folder), project=project)
    co.cli("review", "--compute", "--backbone", "imagenet", "--no-pretrained", "--size", "64", project=project)
    labels, by_id = review_labels(co, r)
    wrong = sum(labels[i.index] != i.truth for i in r.images)
    if len(by_id) != len(r.images) or wrong != len(r.wrong()):
        raise RuntimeError(f"review set up {len(by_id)} images with {wrong} wrong labels")
    return by_id


def review_today(
    user: User, by_id: dict[int, cd.LabeledImage], co: Checkout, r: cd.ReviewSet, *, retrain: bool = False
) -> None:
    """Per wrong card: "→ predicted" when it is right, else the Label select box; Next ▶ while needed.
    With ``retrain``: the right → first, then "⚡ Retrain head" when ``retrain_pays`` (a select box is 2
    actions, a right → 1: the refit saves at most 1 per select-box card), then the page again."""
    sp = user.sp
    user.t.strategy = "today: → predicted or Label select per wrong card, Next ▶" + (
        "; ⚡ Retrain head when it can pay" if retrain else ""
    )
    labels, _ = review_labels(co, r)
    since_fit = 0  # corrections since the scores were fitted
    for _ in range(MAX_ROUNDS):
        fixed_here = False
        wrong = [cid for cid in sp.key_numbers("r_del_") if labels[by_id[cid].index] != by_id[cid].truth]

        def arrow(cid: int) -> Any:
            to = sp.keyed_button(f"r_to_{cid}")
            return to if to.count() and to.first.inner_text().strip() == f"→ {by_id[cid].truth}" else None

        by_arrow = [cid for cid in wrong if arrow(cid) is not None]
        by_select = [cid for cid in wrong if cid not in by_arrow]
        if not retrain:
            by_arrow, by_select = [], wrong  # page order, each card its cheapest way (the strategy before retrain)
        for cid in by_arrow:
            user.click(arrow(cid))
            labels[by_id[cid].index] = by_id[cid].truth
            since_fit += 1
            fixed_here = True
        if retrain and retrain_pays(since_fit, len(by_select)):
            user.retrain(f"{len(by_select)} card(s) left whose → is wrong")
            since_fit = 0
            continue
        for cid in by_select:
            img = by_id[cid]
            to = arrow(cid)
            if to is not None:
                user.click(to)
            else:
                key = next(
                    k
                    for k in sp.page.evaluate(
                        """p => Array.from(document.querySelectorAll(`[class*="${p}"]`))
                             .flatMap(e => Array.from(e.classList))
                             .filter(c => c.startsWith(`st-key-${p}`) || c.startsWith(`st-key-_choice_${p}`))""",
                        f"r_label_{cid}_",  # a selectbox's key, or ui/choice's element key
                    )
                )
                user.select(sp.page.locator("." + key), "Label", img.truth)
            labels[img.index] = img.truth
            since_fit += 1
            fixed_here = True
        if all(labels[i.index] == i.truth for i in r.images):
            return
        nxt = sp.page.locator(".st-key-next_review button:visible")
        if fixed_here or not nxt.count() or nxt.first.is_disabled():
            # the queue may have shifted under the fixed cards: a person looks again from the top
            if not fixed_here:
                return
            continue
        user.click(nxt)


def review_new(
    user: User, by_id: dict[int, cd.LabeledImage], co: Checkout, r: cd.ReviewSet, *, retrain: bool = False
) -> None:
    """Grid on Review: select the wrong cards whose → prediction is right, P; the others by their true
    class, 1-9; the pager's Next ▶ when the page has none left but the set is not clean. With ``retrain``:
    "⚡ Retrain head" before a P round when ``retrain_pays`` (at best the refreshed scores leave one
    Shift+P), then the cards again."""
    g, sp = GridUser(user), user.sp
    user.t.strategy = (
        "new grid: the rest per class → 1-9; wrong cards with a right prediction by the threshold t "
        "([ / ], then Shift+P, or S + Ctrl-click false alarms out + P) or selected → P, whichever is fewer; "
        "Shift+K keeps a clean page (the queue moves on)" + ("; ⚡ Retrain head when it can pay" if retrain else "")
    )
    labels, _ = review_labels(co, r)
    t_now = THRESHOLD_START
    since_fit = 0  # corrections since the scores were fitted
    for _ in range(MAX_ROUNDS):
        cards = [c for c in grid_cards(sp) if not c["deleted"]]
        order = [c["id"] for c in cards]
        wrong = [c for c in cards if by_id[c["id"]].truth != labels[by_id[c["id"]].index]]
        if wrong:
            fix_p = [c["id"] for c in wrong if c["predicted"] == by_id[c["id"]].truth]
            rest = [c["id"] for c in wrong if c["id"] not in fix_p]
            if rest:  # first the cards P cannot fix: relabeled, they leave the queue and no range must avoid them
                truth = by_id[rest[0]].truth
                group = [i for i in rest if by_id[i].truth == truth]
                for part in plan_rounds(group, order):
                    g.select(part, order)
                    g.key(str(cd.CLASSES.index(truth) + 1), part)
                for cid in group:
                    labels[by_id[cid].index] = truth
                since_fit += len(group)
                continue
            # P moves every selected card to its own prediction and leaves agreeing cards alone: a range may
            # hold those, but no card whose prediction is wrong.
            agreeing = frozenset(c["id"] for c in cards if not c["predicted"])
            by_hand = sum(round_cost(p, order, agreeing) for p in plan_rounds(fix_p, order, agreeing, button=True))
            doubted = {c["id"]: c["pct"] for c in cards if c["predicted"] and c["pct"] is not None}
            plan = plan_threshold(doubted, fix_p, order, t_now, agreeing)
            cost_now = min(by_hand, plan.cost) if plan is not None else by_hand
            if retrain and retrain_pays(since_fit, cost_now - 1):
                user.retrain(f"{len(fix_p)} wrong card(s) with a right → left, {cost_now} action(s) by these scores")
                since_fit = 0
                continue
            if plan is not None and plan.cost < by_hand:
                while t_now != plan.t:  # the oracle read the % on each card; t moves in the browser only
                    user.press("]" if plan.t > t_now else "[", rerun=False)
                    t_now += THRESHOLD_STEP if plan.t > t_now else -THRESHOLD_STEP
                shown_t = sp.page.locator(".cg-thr-val").first.inner_text().strip()
                if shown_t != f"{plan.t}%":
                    raise RuntimeError(f"the toolbar shows t = {shown_t}, the user set {plan.t}%")
                if plan.false_alarms:
                    user.press("s", rerun=False)
                    for cid in plan.false_alarms:
                        user.click(g.card(cid), rerun=False, modifiers=["Control"])
                    g.key("p", [i for i in plan.hits if i not in plan.false_alarms])
                else:
                    g.key("Shift+P", list(plan.hits))
                user.t.steps.append(
                    f"threshold {plan.t}%: {len(plan.hits)} doubted, {len(plan.false_alarms)} false alarm(s) taken out"
                )
                for cid in plan.hits:
                    if cid in fix_p:
                        labels[by_id[cid].index] = by_id[cid].truth
                        since_fit += 1
                continue
            for part in plan_rounds(fix_p, order, agreeing, button=True):
                if len(part) == 1 and g.card_button(part[0], "predict"):
                    continue
                g.select(part, order, agreeing)
                g.key("p", part)
            for cid in fix_p:
                labels[by_id[cid].index] = by_id[cid].truth
            since_fit += len(fix_p)
            continue
        if all(labels[i.index] == i.truth for i in r.images):
            return
        if any(not c["reviewed"] for c in cards):  # every label here is right: Shift+K keeps them, the queue moves on
            g.key("Shift+K", order)
            continue
        nxt = sp.page.locator(".st-key-next_review button:visible")
        if not nxt.count() or nxt.first.is_disabled():
            return
        user.click(nxt)


# -- fastai's cleaner, modelled -------------------------------------------------------------------


def cleaner_views(per_class_split: list[int]) -> int:
    return sum(max(1, math.ceil(n / CLEANER_VIEW)) for n in per_class_split)


def fastai_review(r: cd.ReviewSet, splits: dict[int, str]) -> int:
    """2 actions per changed image + 1 per view of (given class, split), 30 images a view."""
    counts: dict[tuple[str, str], int] = {}
    for img in r.images:
        k = (img.filed_as, splits[img.index])
        counts[k] = counts.get(k, 0) + 1
    return 2 * len(r.wrong()) + cleaner_views(list(counts.values()))


def fastai_search(s: cd.SearchSet) -> int:
    """fastai downloads every result; the cleaner then <Delete>s each off-topic one: 2 actions per off-topic
    image + 1 per view (the 80/20 split of each class, 30 images a view)."""
    per_class = {q: len(ns) for q, ns in s.queries().items()}
    sizes = [n for c in per_class.values() for n in (round(c * 0.8), c - round(c * 0.8))]
    return 2 * sum(not c.on_topic for c in s.candidates) + cleaner_views(sizes)


# -- running a phase ------------------------------------------------------------------------------


@contextlib.contextmanager
def app(co: Checkout, browser: Any, log: Path, fake: Path) -> Iterator[StreamlitPage]:
    server = AppServer.like_make_run(co.path, log, env={FAKE_DDGS_ENV: str(fake)})
    server.start()
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield StreamlitPage(context.new_page(), server.url, ARTIFACTS, timeout_s=60)
    finally:
        context.close()
        server.stop()


def run_phase(
    phase: str,
    co: Checkout,
    browser: Any,
    work: Path,
    fake: Path,
    strategy: Callable[[User], None],
    check: Callable[[], list[str]],
    use_grid: bool,
) -> Tally:
    with app(co, browser, work / f"{co.name}-{phase}.log", fake) as sp:
        sp.open("/Search" if phase == "search" else "/Review")
        # The grid mounts after the script run ends: wait for the cards of either UI before looking.
        old_cards = "[class*='st-key-acc_']" if phase == "search" else "[class*='st-key-r_del_']"
        sp.page.locator(f"{GRID}, {old_cards}").first.wait_for(timeout=60_000)
        if phase == "search" and has_grid(sp):  # the grid's thumbnails (a shadow root: a locator reaches them)
            sp.page.locator(f"{GRID} img").first.evaluate(
                "img => (img.complete && img.naturalWidth > 0) || new Promise(ok => img.addEventListener('load', ok))"
            )
        elif phase == "search":
            sp.wait_images(1, timeout_s=60)
        if use_grid and not has_grid(sp):
            raise LookupError("no card grid")
        sp.page.locator("h1").first.click()  # keys go to the page, as a person clicks into it first
        user = User(sp)
        started = time.monotonic()
        try:
            strategy(user)
        except Exception:
            sp.screenshot(f"FAILED-{co.name}-{phase}")  # the page as the user was stuck on it
            raise
        sp.wait_idle()
        user.t.seconds = round(time.monotonic() - started, 1)  # the DB check below is the bench's, not the user's
        user.t.left = check()
        user.t.clean = not user.t.left
        sp.screenshot(f"{co.name}-{phase}-done") if sp.artifacts else None
        return user.t


def phase_for(
    phase: str,
    co: Checkout,
    browser: Any,
    work: Path,
    fake: Path,
    image_base: str,
    s: cd.SearchSet,
    r: cd.ReviewSet,
    retrain: bool = True,
) -> Tally:
    """Set the phase up with the checkout's CLI, then the grid strategy if its page has the grid, else today's.
    ``retrain``: the review strategies may press "⚡ Retrain head" (both UIs, the same rule)."""
    for use_grid in [True, False] if co.name == "new" else [False]:
        if phase == "search":
            setup_search(co, s, image_base, fake)

            def strat(u: User, g: bool = use_grid) -> None:
                (search_new if g else search_today)(u, s, co)

            def check() -> list[str]:
                return cd.search_clean(search_states(co, s), s)
        else:
            by_id = setup_review(co, r, work)

            def strat(u: User, g: bool = use_grid, b: dict[int, cd.LabeledImage] = by_id) -> None:
                (review_new if g else review_today)(u, b, co, r, retrain=retrain)

            def check() -> list[str]:
                return cd.review_clean(review_labels(co, r)[0], r)

        try:
            t = run_phase(phase, co, browser, work, fake, strat, check, use_grid)
            if co.name == "new" and not use_grid:
                t.strategy = f"no card grid on this page, so {t.strategy}"
            return t
        except LookupError:
            say(f"{co.name} {phase}: no card grid on the page, running today's strategy on it")
    raise AssertionError("unreachable")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--today", default=TODAY, help="commit of today's UI")
    ap.add_argument("--new", default="head", choices=("head", "worktree", "none"))
    ap.add_argument("--only", choices=("search", "review"))
    ap.add_argument(
        "--retrain",
        default="when-it-pays",
        choices=("when-it-pays", "never"),
        help="review: press '⚡ Retrain head' after a batch of fixes when it can pay (the product's loop, both "
        "UIs), or never (the scores of the first fit throughout: the configuration before)",
    )
    args = ap.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("error: no Chromium (apt-get install chromium, or set LOTR_LABELER_CHROMIUM)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    s, r = cd.search_set(), cd.review_set()
    phases = [args.only] if args.only else ["search", "review"]
    server, base = image_server({c.n: c.data for c in s.candidates})
    results: dict[tuple[str, str], Tally] = {}
    with tempfile.TemporaryDirectory(prefix="bench-curation-") as tmp:
        work = Path(tmp)
        fake = work / "ddgs.json"
        fake.write_text("{}", encoding="utf-8")
        os.environ[FAKE_DDGS_ENV] = str(fake)  # the checkouts' CLI searches the fake DuckDuckGo too
        cos = [Checkout("today", archive_checkout(args.today, work / "today"))]
        if args.new != "none":
            env_before = os.environ.get("LOTR_LABELER_E2E_CHECKOUT")
            os.environ["LOTR_LABELER_E2E_CHECKOUT"] = "head" if args.new == "head" else ""
            fresh_checkout(work / "new")
            if env_before is None:
                os.environ.pop("LOTR_LABELER_E2E_CHECKOUT")
            cos.append(Checkout("new", work / "new"))
        with sync_playwright() as pw:
            browser = launch_chromium(pw, chromium)
            try:
                for phase in phases:
                    for co in cos:
                        say(f"== {co.name} {phase}")
                        t = phase_for(
                            phase, co, browser, work, fake, base, s, r, retrain=args.retrain == "when-it-pays"
                        )
                        results[(co.name, phase)] = t
                        say(
                            f"   {t.actions} actions ({t.clicks} clicks, {t.keys} keys, {t.scrolls} scrolls), "
                            f"{t.seconds} s, clean={t.clean}; {t.strategy}"
                        )
                        for step in t.steps:
                            say(f"     {step}")
            finally:
                browser.close()
    server.shutdown()
    report(results, phases, s, r, retrain=args.retrain == "when-it-pays")
    return 0 if all(t.clean for t in results.values()) else 1


def review_config(retrain: bool) -> str:
    """The review phase's configuration, part of its figures' names: each stays its own row in RESULTS.md."""
    return "random-init resnet18 64 px, " + ("⚡ Retrain head when it pays" if retrain else "first fit only")


def report(
    results: dict[tuple[str, str], Tally], phases: list[str], s: cd.SearchSet, r: cd.ReviewSet, retrain: bool = True
) -> None:
    splits = {i.index: "valid" if i.index % 5 == 0 else "train" for i in r.images}  # 80/20, as the store's split
    fastai = {"search": fastai_search(s), "review": fastai_review(r, splits)}
    what = {
        "search": f"{len(s.candidates)} candidates, {sum(not c.on_topic for c in s.candidates)} off-topic",
        "review": f"{len(r.images)} images, {len(r.wrong())} wrong labels",
    }
    for phase in phases:
        today, new = results.get(("today", phase)), results.get(("new", phase))
        for t in (today, new):
            if t is not None and not t.clean:
                say(f"!! {phase} not clean: {t.left[:5]}")

        def detail(t: Tally | None) -> str:
            if t is None:
                return "not run"
            state = "clean" if t.clean else f"NOT clean ({len(t.left)} left)"
            missed = f", {t.missed_reruns} rerun(s) missed by the counter" if t.missed_reruns else ""
            refits = f" ({t.retrains} of them ⚡ Retrain head)" if t.retrains else ""
            return (
                f"{t.clicks} clicks{refits} + {t.keys} keys, {t.scrolls} scrolls, {t.seconds} s{missed}, {state}; "
                f"{t.strategy}"
            )

        note = f"{what[phase]}; today: {detail(today)}; new: {detail(new)}"
        goal = ">= 3" if phase == "review" else "context"
        label = f"review ({review_config(retrain)})" if phase == "review" else phase
        emit(
            f"{label}: actions to a clean set, new UI vs today ({TODAY})",
            new.actions if new and new.clean else None,
            today.actions if today and today.clean else None,
            goal,
            "actions",
            note,
        )
        emit(
            f"{label}: seconds to a clean set, new UI vs today",
            new.seconds if new and new.clean else None,
            today.seconds if today and today.clean else None,
            "context",
            "s",
        )
        best = new if new and new.clean else today
        emit(
            f"{label}: actions, fastai cleaner MODELLED (not run) vs {'new' if best is new else 'today'}",
            best.actions if best and best.clean else None,
            fastai[phase],
            "context",
            "actions",
            "modelled: 2 actions per changed image + 1 per view of 30 (class x split)",
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
