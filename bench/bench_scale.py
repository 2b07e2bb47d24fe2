"""A 20,000-image project: import rate, status, pages in Chromium, review refit, embeddings, memory.

Data: scikit-learn's digits (real 8x8 scans) upscaled to 48 px and varied per copy (a colour
tint, a shift, a little noise), 20 classes of 1,000 images written as PNG (about 1 ms each), plus
5,000 pending candidates whose thumbnails a local server on 127.0.0.1 generates.

Figures (one JSON object per line, see bench/run_all.py):
- import: ms per image of the last 1,000 of 20,000 against the first 1,000 (``import_folder``:
  decode, normalise, sha256 + phash, near-duplicate lookup, manifest, files). Goal ratio <= 1.3.
- ``status``: ``lotr-labeler status --json`` as a process (what a user types), and ``Store.status``.
- Dataset, Review, Search: first load of the page in headless Chromium, timed in the page from the
  navigation's start to the script run finished (the page idle) and the first card's picture in the
  DOM (the component renders after the run), median of 3 fresh sessions; anchor: a one-line app on a
  server of its own, loaded just before each of ours, navigation start → its run finished and its
  title in the DOM; the ratio is the median of the pairs' (a noisy machine weighs on both sides of a
  pair alike). Goal: ours <= 2 s, or <= 1.5x the anchor on a slower machine. Also the first of the 3
  alone (the server's first session of the page).
- The scale alone: each of those loads (after the first round) over the same page's load just after
  it on a project of 1/100 the images and candidates (embedded and scored alike, its own server).
  Goal ratio <= 1.2: what the 20,000 images add to a page, without Streamlit's fixed cost of drawing it.
- Sidebar navigation, what a user does between pages: a click on the page's link from Home → the run
  finished, the title and the first card's picture drawn, in one window; anchor: the same click in a
  multipage app of one-line pages. Context (no goal of the issue's).
- Review: 5-fold head refit + every score stored for 20,000 images (``review.fit_scores``), warm.
- Embeddings: images/s of ``compute_embeddings`` (files read, decoded, cached) against the forward
  pass alone on the same batches (the limit), random-init resnet18 at ``--embed-size`` px.
- Memory: peak RSS of this process and of the Streamlit server after the page loads.

    python bench/bench_scale.py [--images 20000] [--classes 20] [--candidates 5000] [--embed-size 32]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from e2e.app_server import AppServer, find_chromium, launch_chromium  # noqa: E402
from e2e.streamlit_page import StreamlitPage  # noqa: E402
from helpers import ImageHandler  # noqa: E402  (the tests' generated-image server)

from lotr_labeler.collect.importers import import_folder  # noqa: E402
from lotr_labeler.progress import Progress  # noqa: E402
from lotr_labeler.store import CandidateIn, Store  # noqa: E402
from lotr_labeler.workspace import create_project  # noqa: E402

VIEWPORT = {"width": 1400, "height": 1000}
HELLO = "import streamlit as st\n\nst.title('hello')\n"
PAGES = ("Dataset", "Review", "Search")
# Loaded straight by URL: Home first, as a user starting the app lands there (its first load is the server's
# first session); its readiness is its title, the others' their first card.
LOADED = {"Home": "/", **{p: f"/{p}" for p in PAGES}}
TITLES = {"Dataset": "Dataset", "Review": "Review", "Search": "Search and review"}  # each page's st.title
HOME_TITLES = ("lotr_labeler", "home")  # ours, the anchor's
SMALL = 100  # the scale anchor: the same project at 1/SMALL of its images and candidates


def emit(**row: object) -> None:
    print(json.dumps(row, ensure_ascii=False), flush=True)


def paired(ours: list[float], anchor: list[float]) -> dict[str, float]:
    """``emit``'s ours and anchor as medians, and its ratio as the median of the pairs' ratios (each pair
    measured back to back, so a shared machine's load weighs on both sides of it alike)."""
    return {
        "ours": round(statistics.median(ours), 3),
        "anchor": round(statistics.median(anchor), 3),
        "ratio": round(statistics.median([a / b for a, b in zip(ours, anchor, strict=True)]), 2),
    }


def listed(values: list[float]) -> str:
    """Seconds (or ratios) as a note lists them: "1.23, 1.45"."""
    return ", ".join(f"{x:.2f}" for x in values)


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def generate(folder: Path, n: int, classes: int, size: int = 48) -> float:
    """``n`` images in ``classes`` folders: digits upscaled, tinted, shifted, noised. Returns seconds."""
    from sklearn.datasets import load_digits

    started = time.perf_counter()
    digits = load_digits()
    rng = np.random.default_rng(0)
    base = [
        np.asarray(
            Image.fromarray((d * (255 / 16)).astype(np.uint8), "L").resize((size, size), Image.Resampling.BILINEAR)
        )
        for d in digits.images
    ]
    for c in range(classes):
        (folder / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
    for k in range(n):
        c = k % classes
        grey = np.roll(base[(k * 7919) % len(base)], (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), (0, 1))
        tint = rng.uniform(0.3, 1.0, 3)
        rgb = grey[..., None] * tint + rng.normal(0, 6, (size, size, 3)) + (c * 11 % 60)
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(folder / f"class{c:02d}" / f"{k}.png")
    return time.perf_counter() - started


def import_rate(store: Store, folder: Path, n: int) -> tuple[float, float, float, float, float]:
    """One import_folder: (first 1,000 and last 1,000 median ms/image, the same as means, total s).

    Medians: each image's time includes an fsync, which other processes' disk bursts stretch
    now and then; the median of a thousand is what the code costs, the mean is shown too.
    """
    stamps: list[float] = []
    started = time.perf_counter()

    def progress(p: Progress) -> None:
        stamps.append(time.perf_counter())
        if p.done % 2000 == 0:
            say(f"  imported {p.done}/{p.total} ({stamps[-1] - started:.0f} s)")

    report = import_folder(store, folder, progress=progress)
    say(f"import: {report.summary()}")
    per = np.diff(np.array([started, *stamps])) * 1000
    first, last = per[:1000], per[n - 1000 : n]
    total = stamps[-1] - started
    return float(np.median(first)), float(np.median(last)), float(first.mean()), float(last.mean()), total


def add_candidates(store: Store, n: int, images: str) -> None:
    labels = [c.name for c in store.classes()]
    store.add_candidates(
        CandidateIn(
            labels[i % len(labels)],
            f"{images}/img/{i}.png",
            f"{images}/img/{i}.png",
            query="bench",
            width=96,
            height=96,
        )
        for i in range(n)
    )


def status_times(data: Path, name: str, store: Store) -> tuple[float, float]:
    """(CLI ``status --json`` wall seconds, ``Store.status`` seconds)."""
    cli = ROOT / ".venv" / "bin" / "lotr-labeler"
    argv = [str(cli)] if cli.exists() else [sys.executable, "-m", "lotr_labeler"]
    started = time.perf_counter()
    subprocess.run([*argv, "--data", str(data), "--project", name, "status", "--json"], check=True, capture_output=True)
    cli_s = time.perf_counter() - started
    started = time.perf_counter()
    store.status()
    return cli_s, time.perf_counter() - started


def review_and_embed(store: Store, size: int, refit: bool = True) -> tuple[float, float, float, int, str]:
    """(refit s, embed images/s, forward-only images/s, images embedded, how the engine was made)."""
    from lotr_labeler.model import embed
    from lotr_labeler.model.network import embed_arrays
    from lotr_labeler.review import fitting

    backbone = embed.resolve_backbone(store, "imagenet", pretrained=False, size=size)
    started = time.perf_counter()
    network = embed.load_network(backbone, store.cache_dir)  # ONNX export once per backbone: not in the rates
    made = f"{network.engine_detail}, export {time.perf_counter() - started:.1f} s (not counted)"
    rows = store.images()
    # The limit: the forward pass alone over every image, decoded beforehand, in the same batches of 64.
    # Over all of them (not a few batches), once before ours and once after: the load of a shared machine
    # drifts over a minute (one pass alone ranged 1,280-1,750 images/s from run to run while ours held at
    # 1,310-1,340), and the two passes around ours weigh it on both sides alike.
    paths = [store.path(r) for r in rows]
    batches = [embed.prepare(paths[i : i + 64], size) for i in range(0, len(paths), 64)]
    embed_arrays(network, batches[0])  # warm

    def forward_pass(batches: list[Any]) -> float:
        started = time.perf_counter()
        for batch in batches:
            embed_arrays(network, batch)
        return time.perf_counter() - started

    before = forward_pass(batches)
    started = time.perf_counter()
    embed.compute_embeddings(store, backbone, network=network, batch_size=64)
    embed_s = time.perf_counter() - started
    after = forward_pass(batches)
    del batches
    forward = 2 * len(rows) / (before + after)
    made += f"; forward pass alone {len(rows) / before:.0f} images/s before ours, {len(rows) / after:.0f} after"
    refit_s = float("nan")
    if refit:
        fitting.fit_scores(store, backbone)  # cold: imports scikit-learn
        started = time.perf_counter()
        fitting.fit_scores(store, backbone)
        refit_s = time.perf_counter() - started
    return refit_s, len(rows) / embed_s, forward, len(rows), made


# In the page, from the navigation's start (performance.now() counts from it): when the first card's
# picture entered the DOM (the grid lives in a shadow root, watched as it is attached), and when the
# one-line app's title did. Timed in the page: Playwright's own waits poll, with back-offs of up to
# half a second, which a timestamp taken outside the page would add to either side at random.
_MARKS = """(() => {
  const m = window.__marks = {}; const roots = [document];
  const seen = () => {
    if (!('grid' in m) && roots.some(r => r.querySelector('.cg-grid .cg-card img'))) m.grid = performance.now();
    if (!('title' in m) && document.querySelector('[data-testid=stMain] h1')) m.title = performance.now();
  };
  const watch = new MutationObserver(seen);
  const attach = Element.prototype.attachShadow;
  Element.prototype.attachShadow = function (init) {
    const root = attach.call(this, init); roots.push(root);
    watch.observe(root, {subtree: true, childList: true}); return root;
  };
  watch.observe(document, {subtree: true, childList: true});
})()"""


# Sidebar navigation timed in the page, from the link's click to the page's run finished, its title
# shown and (``grid``) the first card's picture drawn; shadow roots are watched as the _MARKS do.
_NAV = """(() => {
  const roots = [];
  const attach = Element.prototype.attachShadow;
  Element.prototype.attachShadow = function (init) {
    const root = attach.call(this, init); roots.push(root); return root;
  };
  window.__navTo = (path, title, grid) => new Promise((resolve, reject) => {
    const links = [...document.querySelectorAll('[data-testid=stSidebarNav] a[data-testid=stSidebarNavLink]')];
    const link = path ? links.find(a => new URL(a.href).pathname === path) : links[0];
    const app = document.querySelector('[data-testid=stApp]');
    const done = () => {
      const h = document.querySelector('[data-testid=stMain] h1');
      return h && h.textContent.trim() === title && app.getAttribute('data-test-script-state') === 'notRunning'
        && (!grid || roots.some(r => r.host.isConnected && r.querySelector('.cg-grid .cg-card img')));
    };
    const started = performance.now();
    const tick = () => done() ? resolve(performance.now() - started)
      : performance.now() - started > 60000 ? reject(new Error(`${path || 'Home'}: no "${title}" drawn in 60 s`))
      : requestAnimationFrame(tick);
    link.click();
    requestAnimationFrame(tick);
  });
})()"""


def small_project(root: Path, n: int, classes: int, candidates: int, size: int, images_url: str) -> Path:
    """The scale anchor: a project like the big one (same classes, embedded and scored) at ``n`` images
    and ``candidates`` candidates; returns its data folder."""
    generate(root / "src-small", n, classes)
    data = root / "small"
    store = create_project(data, "scale", "empty")
    try:
        import_folder(store, root / "src-small")
        add_candidates(store, candidates, images_url)
        review_and_embed(store, size)
    finally:
        store.close()
    return data


def write_anchor_pages(folder: Path) -> Path:
    """A multipage app of one-line pages with our pages' names and titles: the navigation anchor."""
    (folder / "pages").mkdir(parents=True)
    for i, page in enumerate(PAGES, 1):
        (folder / "pages" / f"{i}_{page}.py").write_text(f"import streamlit as st\n\nst.title({TITLES[page]!r})\n")
    app = folder / "anchor_app.py"
    app.write_text(f"import streamlit as st\n\nst.title({HOME_TITLES[1]!r})\n", encoding="utf-8")
    return app


@dataclass
class Navs:
    """Per page: seconds from a sidebar link's click (from Home) to the page interactive, ours and the
    anchor's (a one-line page of a multipage app, navigated to just before, the same way)."""

    ours: dict[str, list[float]]
    anchor: dict[str, list[float]]


def nav_loads(browser: Any, url: str, anchor_url: str, rounds: int = 3) -> Navs:
    """``rounds`` sidebar navigations Home → page for each page, in one window per app (what a user does
    between pages: no reload), each ours just after the anchor's, back to Home after each."""
    navs = Navs({p: [] for p in PAGES}, {p: [] for p in PAGES})
    contexts = []
    windows = []  # (page, grid drawn?, home title, into): the anchor's first
    apps = ((anchor_url, False, HOME_TITLES[1], navs.anchor), (url, True, HOME_TITLES[0], navs.ours))
    for base, grid, home, into in apps:
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.add_init_script(_NAV)
        sp = StreamlitPage(page, base, timeout_s=120)
        sp.open("/")
        sp.wait_idle()
        windows.append((page, grid, home, into))
    try:
        for _ in range(rounds):
            for name in PAGES:
                for page, grid, home, into in windows:
                    ms = page.evaluate("a => window.__navTo(...a)", [f"/{name}", TITLES[name], grid])
                    into[name].append(ms / 1000)
                    page.evaluate("a => window.__navTo(...a)", [None, home, False])
                    page.wait_for_timeout(300)  # as a user pauses: thumbnails and the warm-up settle
        return navs
    finally:
        for context in contexts:
            context.close()


@dataclass
class Loads:
    """Per page: seconds from navigation to interactive, in the page (see ``_MARKS``), and as
    Playwright's clock saw them (its polling included); the one-line app's load just before each
    (the anchor, paired: a shared machine's load weighs on both sides of a pair alike); and the one-line
    page of a multipage app at the same URL, loaded just before that (``same_url``): Streamlit's
    frontend, opened on a page's URL, first probes that path as the server's base and retries at the root
    100 ms later, which the one-line app, opened at the root, never pays."""

    inpage: dict[str, list[float]]
    outside: dict[str, list[float]]
    anchor: dict[str, list[float]]
    same_url: dict[str, list[float]]


def load(browser: Any, url: str, path: str, ready: str) -> tuple[float, float]:
    """One fresh session of ``path``: seconds in the page (navigation → the run finished and ``ready``
    marked) and as Playwright's clock saw them."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.add_init_script(_MARKS)
        sp = StreamlitPage(page, url, timeout_s=120)
        started = time.monotonic()
        sp.open(path)
        page.wait_for_function(f"() => window.__marks && '{ready}' in window.__marks", timeout=120_000)
        outside = time.monotonic() - started
        shown, idle = page.evaluate(f"[window.__marks.{ready}, window.__st.domIdleAt]")
        return max(shown, idle) / 1000, outside
    finally:
        context.close()


def page_loads(
    browser: Any, data: Path, small: Path, hello: Path, anchor_app: Path, paths: list[str], logs: Path
) -> tuple[Loads, list[float], Navs, int]:
    """3 rounds of a fresh session per page, each just after one of the one-line page of ``anchor_app``
    at the same URL and one of the one-line app (servers of their own, started alongside): navigation →
    the first script run finished (the page idle) and the card grid drawn (the component renders after
    the run), or the title shown (the one-line apps, and Home at "/"); in each, right after ours,
    the same page of the small project (``small``, a server of its own, only the first round's pages
    left out: they are its server's first); then the sidebar navigations (``nav_loads``, against the
    one-line pages of ``anchor_app``); and our server's RSS."""
    import psutil

    loads = Loads({p: [] for p in paths}, {p: [] for p in paths}, {p: [] for p in paths}, {p: [] for p in paths})
    scaled: list[tuple[float, float]] = []  # (ours, the small project's), page by page after the first round
    with (
        AppServer(hello.parent / "data", logs / "streamlit-hello.log", script=hello) as bare,
        AppServer(data, logs / "streamlit-scale.log") as app,
        AppServer(small, logs / "streamlit-small.log") as little,
        AppServer(anchor_app.parent / "data", logs / "streamlit-anchor-pages.log", script=anchor_app) as pages,
    ):
        for round_ in range(3):
            for path in paths:
                ready = "title" if path == "/" else "grid"
                loads.same_url[path].append(load(browser, pages.url, path, "title")[0])
                loads.anchor[path].append(load(browser, bare.url, "/", "title")[0])
                inpage, outside = load(browser, app.url, path, ready)
                loads.inpage[path].append(inpage)
                loads.outside[path].append(outside)
                tiny = load(browser, little.url, path, ready)[0]
                if round_:
                    scaled.append((inpage, tiny))
        navs = nav_loads(browser, app.url, pages.url)
        assert app.proc is not None
        rss = psutil.Process(app.proc.pid).memory_info().rss
        for child in psutil.Process(app.proc.pid).children(recursive=True):
            rss = max(rss, child.memory_info().rss)
    return loads, [a / b for a, b in scaled], navs, rss


def emit_embeddings(size: int, rate: float, forward: float, embedded: int, made: str) -> None:
    emit(
        name=f"embeddings: images/s, compute_embeddings vs forward pass alone ({size} px)",
        ours=round(rate, 1),
        anchor=round(forward, 1),
        ratio=round(rate / forward, 3),
        goal=">= 0.8",
        unit="images/s",
        note=f"{embedded:,} images, random-init resnet18, batch 64, {made}; anchor: embed_arrays over "
        "all of them, decoded beforehand (the limit), once before ours and once after (the rate over both); "
        "ours adds reading, decoding (a prefetch thread) and the cache",
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=5_000)
    parser.add_argument("--embed-size", type=int, default=32)
    parser.add_argument("--only", choices=("all", "embeddings"), default="all", help="embeddings: that figure alone")
    args = parser.parse_args()
    n = args.images
    chromium = find_chromium()
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    images_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            gen_s = generate(root / "src", n, args.classes)
            say(f"generated {n} images in {gen_s:.1f} s")
            data = root / "data"
            store = create_project(data, "scale", "empty")
            first, last, first_mean, last_mean, total = import_rate(store, root / "src", n)
            flagged = store.count(flagged=True)
            emit(
                name=f"import: median ms/image, last 1,000 of {n:,} vs first 1,000",
                ours=round(last, 3),
                anchor=round(first, 3),
                ratio=round(last / first, 3),
                goal="<= 1.3",
                unit="ms/image",
                note=f"import_folder of {n:,} generated {args.classes}-class digit PNGs (48 px) into an empty project, "
                f"{total:.0f} s in all ({n / total:.0f} images/s); means {first_mean:.2f} → {last_mean:.2f} ms/image "
                f"(ratio {last_mean / first_mean:.2f}); {flagged:,} images flagged near-duplicate; "
                "each insert looks up near duplicates in the incremental phash index",
            )
            if args.only == "embeddings":
                _, embed_rate, forward_rate, embedded, made = review_and_embed(store, args.embed_size, refit=False)
                emit_embeddings(args.embed_size, embed_rate, forward_rate, embedded, made)
                return 0
            add_candidates(store, args.candidates, images_url)
            cli_s, status_s = status_times(data, "scale", store)
            emit(
                name=f"status of a {n:,}-image project ({args.candidates:,} candidates)",
                ours=round(cli_s, 3),
                anchor=round(status_s, 4),
                ratio=round(cli_s / status_s, 1),
                goal="ours <= 2 s",
                unit="s",
                note="ours: `lotr-labeler status --json` as a process (Python start included); "
                "anchor: Store.status() in process",
            )

            # Before the pages: the Review page then ranks every image by its stored score.
            refit_s, embed_rate, forward_rate, embedded, made = review_and_embed(store, args.embed_size)
            if chromium is None:
                say("no Chromium (apt-get install chromium): page figures skipped")
            else:
                from playwright.sync_api import sync_playwright

                hello = root / "hello" / "hello_app.py"
                hello.parent.mkdir()
                hello.write_text(HELLO, encoding="utf-8")
                anchor_app = write_anchor_pages(root / "anchor-pages")
                small = small_project(
                    root, n // SMALL, args.classes, args.candidates // SMALL, args.embed_size, images_url
                )
                logs = ROOT / "test-artifacts" / "bench"
                with sync_playwright() as pw:
                    browser = launch_chromium(pw, chromium)
                    try:
                        ours, scaled, navs, rss = page_loads(
                            browser, data, small, hello, anchor_app, list(LOADED.values()), logs
                        )
                    finally:
                        browser.close()
                goal = "ours <= 2 s or <= 1.5"  # the issue's: 2 s, or 1.5x the one-line app on a slower machine
                for page, path in LOADED.items():
                    t, seen, bare = ours.inpage[path], ours.outside[path], ours.anchor[path]
                    ready = "its title" if path == "/" else "the first card's picture"
                    emit(
                        name=f"{page} page of a {n:,}-image project: load → interactive",
                        **paired(t, bare),
                        goal=goal,
                        unit="s",
                        note=f"headless Chromium, fresh session at {path}, in the page: navigation start → first "
                        f"script run finished (idle) and {ready} in the DOM, "
                        f"median of {len(t)} ({listed(t)}); anchor: one-line Streamlit app "
                        "loaded just before each, navigation start → idle and its title in the DOM "
                        f"({listed(bare)}); ratio: the median of the 3 pairs' ratios; "
                        f"as Playwright's polling waits saw ours: {listed(seen)}; "
                        f"{args.candidates:,} pending candidates",
                    )
                for page, path in LOADED.items():
                    t, same = ours.inpage[path], ours.same_url[path]
                    emit(
                        name=f"{page} page of a {n:,}-image project: load against a one-line page at its URL",
                        **paired(t, same),
                        goal="context",
                        unit="s",
                        note="what our page adds to Streamlit's own page at the same URL: the load above against "
                        f"the one-line page of a multipage app opened at {path}, loaded just before each "
                        f"({listed(same)}; at a page's URL Streamlit's frontend probes "
                        "that path as the server's base first and retries at the root 100 ms later); "
                        "ratio: the median of the 3 pairs' ratios",
                    )
                # The first session of each page after the server start pays its cold path (imports,
                # per-process memos; the Review queue read from disk): a figure of its own, not a median.
                for page, path in LOADED.items():
                    t, bare = ours.inpage[path], ours.anchor[path]
                    emit(
                        name=f"{page} page of a {n:,}-image project: first load after a server start",
                        ours=round(t[0], 3),
                        anchor=round(bare[0], 3),
                        ratio=round(t[0] / bare[0], 2),
                        goal=goal,
                        unit="s",
                        note="headless Chromium, in the page, the first of the 3 sessions above (the server's first "
                        f"sessions in the order {', '.join(LOADED)}: Home first, where a user lands); anchor: "
                        "the one-line app's load just before it",
                    )
                emit(
                    name=f"pages of a {n:,}-image project against the same pages at {n // SMALL:,} images",
                    ours=round(statistics.median(scaled), 3),
                    anchor=1.0,
                    ratio=round(statistics.median(scaled), 3),
                    goal="<= 1.2",
                    unit="ratio",
                    note="what the scale itself costs a page: each fresh load of Home, Dataset, Review and Search "
                    f"above (rounds 2 and 3) over the same page's load just after it on a project of "
                    f"{n // SMALL:,} images and {args.candidates // SMALL:,} candidates (same classes, embedded and "
                    f"scored), on a server of its own; median of the {len(scaled)} pairs' ratios "
                    f"({listed(scaled)})",
                )
                for page in PAGES:
                    t, bare = navs.ours[page], navs.anchor[page]
                    emit(
                        name=f"{page} page of a {n:,}-image project: sidebar navigation → interactive",
                        **paired(t, bare),
                        goal="context",
                        unit="s",
                        note="headless Chromium, one window: a click on the page's sidebar link from Home → the "
                        f"run finished (idle), the title and the first card's picture drawn, in the page; median of "
                        f"{len(t)} ({listed(t)}); anchor: the same click in a multipage app "
                        f"of one-line pages, just before ({listed(bare)})",
                    )
                emit(
                    name=f"Streamlit server memory after the pages of a {n:,}-image project",
                    ours=round(rss / 2**20),
                    anchor=None,
                    ratio=None,
                    goal="context",
                    unit="MiB",
                    note="RSS of the streamlit process after 3 loads of Home, Dataset, Review and Search",
                )

            emit_embeddings(args.embed_size, embed_rate, forward_rate, embedded, made)
            emit(
                name=f"review head refit + scoring of {embedded:,} images (warm)",
                ours=round(refit_s, 3),
                anchor=None,
                ratio=None,
                goal="ours <= 10 s",
                unit="s",
                note="review.fit_scores: 5-fold logistic head on cached embeddings, every score stored",
            )
            store.close()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            emit(
                name=f"bench process peak memory ({n:,} images imported, embedded, scored)",
                ours=round(peak),
                anchor=None,
                ratio=None,
                goal="context",
                unit="MiB",
                note="ru_maxrss of this process (import, embeddings, review refit)",
            )
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
