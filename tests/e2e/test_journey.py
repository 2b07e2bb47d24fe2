"""The new user's journey in a real browser (issue 7), one step per function, in order.

The app is started the way a new user starts it (issue 10): ``make run`` in a fresh clone of the
repository, default ``./data``, no data environment variable (the ``app`` fixture); the CLI and
``serve`` run from the clone the same way. Afterwards the data must be in ``<clone>/data`` and nowhere else.

Create a project → add 3 classes → search all classes (a background job) → review the grid (accept,
reject by keyboard, accept the page) → download the accepted (watch the progress) → see them on the Dataset page →
train a tiny model (watch the job to its end) → Review page: compute the scores, relabel and undo, delete,
retrain the head → Predict page: upload a picture, read the top class → the JSON API (``lotr-labeler
serve``) gives the same answer for the same picture → a second search, scored by the model before
download, triaged with the keyboard (Shift+H: accept all with p ≥ t; arrows to a card of the grid, P: accept it
as the predicted class).
Only DuckDuckGo is faked (``LOTR_LABELER_FAKE_DDGS``, results on a local image server); the server,
the job processes (search, download, training, embeddings), the downloads, the API and the browser are real.
No network: training and embeddings start from the bundled pretrained weights (they install with pip).

To extend it, write the next step as ``def step(j: Journey) -> None`` and append it to ``STEPS``.
Screenshots land in ``test-artifacts/e2e/journey-NN-<step>.png``; timings in ``timings.json``; the
API server's log in ``api.log``.
"""

from __future__ import annotations

import base64
import json
import re
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import shape_image  # tests/helpers.py: the generated pictures of the unit tests

from lotr_labeler.project import DEFAULT_PROJECT

from .app_server import ARTIFACTS, ROOT, AppServer, fake_search_results, free_port, stop_process
from .streamlit_page import PROGRESS, SUCCESS, StreamlitPage
from .timings import record

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROJECT = "shapes"
# The image server draws shape n % 3 for /img/<n>.png, so each class gets pictures of its own shape.
CLASSES = ("circle", "square", "triangle")
PER_QUERY = 20  # 60 candidates: a full 48-card first page, and a second page


@dataclass
class Journey:
    """What the steps share: the browser tab, the app, and what earlier steps left behind."""

    sp: StreamlitPage
    app: AppServer
    image_server: str
    fake_ddgs: Path
    work: Path  # a scratch folder for files the user brings (the picture to predict, logs)
    accepted: int = 0
    downloaded: int = 0
    run_id: str = ""  # the finished training run
    picture: Path | None = None  # the picture given to the Predict page
    predicted: tuple[str, float] = ("", 0.0)  # what the page showed for it: top class, probability
    notes: dict[str, object] = field(default_factory=dict)

    def status(self) -> dict[str, int]:
        """Totals from ``lotr-labeler status --json``: the ground truth the pages should agree with."""
        doc = json.loads(self.app.cli("status", "--json", project=PROJECT))
        return {k: int(v) for k, v in doc["totals"].items()}


# -- helpers the steps (and later steps) share ------------------------------------------------


def card_ids(sp: StreamlitPage) -> list[int]:
    """Candidate ids of the cards in the Search card grid (lotr_labeler/ui/cards.py), in page order."""
    ids = sp.page.locator(".cg-grid [data-card]").evaluate_all("els => els.map(e => Number(e.dataset.card))")
    return [int(i) for i in ids]


def focused(sp: StreamlitPage) -> int | None:
    """The grid card the keys act on (outlined)."""
    el = sp.page.locator(".cg-grid .cg-card.cg-focus")
    return int(el.get_attribute("data-card")) if el.count() else None


def wait_thumbnails(sp: StreamlitPage, n: int, timeout_s: float = 30.0) -> int:
    """Wait until ``n`` grid thumbnails are fetched and decoded (the browser loads the search URLs)."""
    imgs = sp.page.locator(".cg-grid .cg-card img")
    deadline = time.monotonic() + timeout_s
    while True:
        done = int(imgs.evaluate_all("els => els.filter(i => i.complete && i.naturalWidth > 0).length"))
        if done >= n or time.monotonic() > deadline:
            return done
        sp.page.wait_for_timeout(100)


def wait_job_done(sp: StreamlitPage, kind: str, timeout_s: float = 90.0) -> tuple[str, list[str]]:
    """Watch a job panel (``job_panel(project, kind, …)``) to its end.

    Returns the final "Last <kind> …" message and the progress texts seen on the way (the panel
    polls every second while the job runs, then a full rerun shows the result).
    """
    seen: list[str] = []
    # A panel beside the grid says it in one caption line (Search), the others in a success box.
    done = sp.page.locator(f'{SUCCESS}, [data-testid="stCaptionContainer"]', has_text=f"Last {kind}")
    failed = sp.page.locator('[data-testid="stAlertContentError"]', has_text=f"Last {kind}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done.count():
            sp.wait_idle()
            return done.first.inner_text(), seen
        if failed.count():
            raise AssertionError(f"the {kind} job failed: {failed.first.inner_text()}")
        bar = sp.page.locator(PROGRESS)
        if bar.count():
            try:
                text = bar.first.inner_text(timeout=500)
            except Exception:  # the bar went away between count() and inner_text()
                continue
            if text and (not seen or seen[-1] != text):
                seen.append(text)
        sp.page.wait_for_timeout(100)
    raise AssertionError(f"the {kind} job did not finish within {timeout_s:.0f} s; progress seen: {seen}")


# -- the steps ---------------------------------------------------------------------------------


def create_project(j: Journey) -> None:
    """Home page, "New project" form, no class names (added on Classes next)."""
    sp = j.sp
    sp.open("/")
    form = sp.expand("New project")
    sp.fill("Project name", PROJECT, within=form)
    sp.click(sp.button("Create project"))
    sp.wait_text(f"Created project '{PROJECT}' with 0 classes.")
    assert sp.chosen("Project") == PROJECT
    sp.wait_text("This project has no classes yet.")


def add_classes(j: Journey) -> None:
    """Classes page, the "Add a class" form once per class."""
    sp = j.sp
    sp.go("Classes")
    sp.wait_text("No classes yet")
    for name in CLASSES:
        sp.fill("Name", name)
        sp.click(sp.button("Add class"))
        sp.wait_text(f"Added class '{name}'.")
    for name in CLASSES:
        sp.page.locator('[data-testid="stExpander"] summary', has_text=f"{name} · 0 images").wait_for()
    # Downloads from 127.0.0.1 (the test image server) need the project's opt-in, as on a LAN; no pause
    # between the fake search's queries. A user sets these from the terminal:
    j.app.cli("settings", "set", "allow_private_hosts", "true", project=PROJECT)
    j.app.cli("settings", "set", "search_delay", "0", project=PROJECT)
    # The review step leaves 8 triangles (the first grid page holds 8 of them): enough for a tiny run.
    j.app.cli("settings", "set", "min_images_per_class", "5", project=PROJECT)


def search_all(j: Journey) -> None:
    """Search page: one search for all classes, run as a background job; the grid fills when it ends."""
    sp = j.sp
    # The class names are the queries (template "{name}"); answers point at the local image server.
    fake_search_results(
        j.fake_ddgs, j.image_server, {c: [i * 3 + k for i in range(PER_QUERY)] for k, c in enumerate(CLASSES)}
    )
    sp.go("Search")
    sp.wait_text("3 queries: circle · square · triangle")
    sp.click(sp.button("Search"))
    # "Started 3 search queries", unless the (fake, fast) search ended first: the page follows its job and
    # shows how it ended instead.
    sp.wait_text(re.compile("Started 3 search queries|Last search"))
    message, _ = wait_job_done(sp, "search")
    assert f"{3 * PER_QUERY} new" in message, message
    sp.wait_text(f"{3 * PER_QUERY} candidates · page 1")
    assert len(card_ids(sp)) == 48
    srcs = sp.page.locator(".cg-grid .cg-card img").evaluate_all("els => els.map(e => e.getAttribute('src'))")
    assert len(srcs) == 48 and all(str(u).startswith(j.image_server) for u in srcs), srcs[:3]  # the browser's job
    assert wait_thumbnails(sp, 12) >= 12  # the cards in view are fetched and decoded (the rest load lazily)


def review_grid(j: Journey) -> None:
    """Keyboard on the card grid: A A A accept the first three cards (the focus moves on), X X reject the
    next two; then the All view and "Accept page" (its pending cards only), back to the pending view."""
    sp = j.sp
    ids = card_ids(sp)
    assert len(ids) == 48 and focused(sp) == ids[0]
    sp.page.mouse.click(5, 5)  # the keyboard to the page, not a widget
    keys = []
    for k, cid in zip("aaaxx", ids[:5], strict=True):
        assert focused(sp) == cid
        start = time.perf_counter()
        press(sp, k)
        keys.append(time.perf_counter() - start)
    sp.page.locator(".cg-msg", has_text="Rejected 1 candidate.").wait_for()
    # The pending view keeps the decided cards in place, marked, until the page turns.
    assert card_ids(sp) == ids
    sp.select("State", "All")
    start = time.perf_counter()
    n = sp.run_count()
    sp.page.locator('[data-tool="accept-page"]').click()  # the grid's Accept page (Shift+A): the ids shown
    sp.wait_idle(after=n)
    sp.page.locator(".cg-msg", has_text="Accepted 43 candidates.").wait_for()  # under All: the pending ones only
    full_rerun = time.perf_counter() - start
    record(
        "e2e grid key → idle, 48-card Search page (A/X on the card grid, full rerun)",
        statistics.median(keys),
        anchor=full_rerun,
        goal="ours <= 0.5 s",
        note=f"median of {len(keys)} key presses {[round(c, 3) for c in keys]} (press → rerun finished, timed in "
        "the test; the card changes at once, the queue goes at a 300 ms pause); anchor: the grid's 'Accept page' "
        "on the same page, click → its message, timed the same way",
    )
    sp.select("State", "pending")
    j.accepted = 46
    sp.wait_text(f"{3 * PER_QUERY - 48} candidates · page 1")  # the pending filter now shows the rest
    totals = j.status()
    assert (totals["accepted"], totals["rejected"], totals["pending"]) == (46, 2, 12), totals


def download_accepted(j: Journey) -> None:
    """ "Download 46 accepted", then watch the job's progress panel to the end."""
    sp = j.sp
    sp.click(sp.button(f"Download {j.accepted} accepted"))
    sp.wait_text("Download started.")
    message, progress = wait_job_done(sp, "download")
    j.notes["download progress seen"] = progress
    assert progress and "Download running" in progress[0], progress  # the panel showed the running job
    assert f"Downloaded {j.accepted} of {j.accepted} image(s): 0 failed" in message, message
    j.downloaded = j.accepted
    assert j.status()["images"] == j.downloaded


def dataset_shows_images(j: Journey) -> None:
    """Dataset page: the downloaded pictures as thumbnails (served by the app from its cache)."""
    sp = j.sp
    sp.go("Dataset")
    cards = sp.page.locator(".cg-grid .cg-card")  # the card grid (lotr_labeler/ui/cards.py)
    cards.nth(j.downloaded - 1).wait_for()  # (Playwright's locators see inside the component's shadow root)
    assert cards.count() == j.downloaded
    assert sp.page.locator(".cg-grid .cg-card img").count() == j.downloaded  # every thumbnail there
    captions = sp.page.locator(".cg-grid .cg-cap").all_inner_texts()
    for name in CLASSES:
        assert any(re.fullmatch(rf"{name} #\d+ · (train|valid)", c.strip()) for c in captions), captions


# Bounds, not expectations: each of these took 4-15 s on 2 CPU cores, most of it importing fastai/torch in
# a fresh process (the job worker, the Streamlit server's first prediction, `serve`).
TRAIN_TIMEOUT_S = 180.0  # 46 images at 64 px, 1 frozen + 1 fine-tune epoch of 5 batches
REVIEW_TIMEOUT_S = 120.0  # embedding 46 images with the run's body
MODEL_LOAD_TIMEOUT_S = 90.0  # the first prediction in the app loads the model
SERVE_TIMEOUT_S = 90.0  # `serve` loads the model before it listens


def cli_json(j: Journey, *args: str) -> Any:
    return json.loads(j.app.cli(*args, "--json", project=PROJECT))


def image_labels(j: Journey, *, deleted: bool = False) -> dict[int, str]:
    """id → class of the active images (or of the trash), from ``lotr-labeler images list --json``."""
    rows = cli_json(j, "images", "list", *(["--deleted"] if deleted else []))
    assert isinstance(rows, list)
    return {int(r["id"]): str(r["label"]) for r in rows}


def wait_until(sp: StreamlitPage, ready: Any, *, failed: Any = None, timeout_s: float, what: str) -> None:
    """Poll the page (bounded) until the locator ``ready`` shows; fail at once if ``failed`` shows."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready.count():
            return
        if failed is not None and failed.count():
            raise AssertionError(f"{what}: {failed.first.inner_text()}")
        sp.check_no_exception()
        sp.page.wait_for_timeout(100)
    raise AssertionError(f"{what}: nothing after {timeout_s:.0f} s")


def train_model(j: Journey) -> None:
    """Train page: preset Quick (its 2 epochs at 128 px), batch 8, Pretrained left ticked: the bundled
    network's ImageNet weights need no network. "Start training", watch the job panel to the end; the run
    table shows it as current, and the model is better than chance."""
    sp = j.sp
    sp.go("Train")
    sp.wait_text(f"Ready: {j.downloaded} images in {len(CLASSES)} classes")
    sp.set_checked("radio", "Quick")
    box = sp.expand("Settings (override the preset)")
    assert box.locator('input[type="number"][aria-label="Epochs"]').first.input_value() == "2"  # the preset's
    sp.set_number("Batch size", 8, within=box)
    sp.wait_text("ImageNet weights bundled with the install")  # the line next to Start training
    started = time.monotonic()
    sp.click(sp.button("Start training"))
    sp.wait_text("Training started in the background")
    message, progress = wait_job_done(sp, "train", timeout_s=TRAIN_TIMEOUT_S)
    seconds = time.monotonic() - started
    j.notes["train progress seen"] = progress
    record(f"e2e train job: click → done ({j.downloaded} images, 2 epochs, 128 px, CPU)", seconds, note=message)
    assert progress and "Training running" in progress[0], progress
    found = re.search(r"Run (\S+) finished: error rate ([0-9]+\.[0-9]+)", message)
    assert found, message
    run_id = found.group(1)
    # Better than chance (2/3 wrong for 3 classes): the pretrained network sees the shapes.
    assert float(found.group(2)) <= 0.5, message
    # The run table: the run, finished, marked current (★).
    rows = {r["run"]: r for r in sp.dataframe_rows()}
    assert run_id in rows, rows
    assert (rows[run_id]["current"], rows[run_id]["state"]) == ("★", "done"), rows[run_id]
    runs = cli_json(j, "runs", "list")
    assert isinstance(runs, list) and len(runs) == 1, runs
    run = runs[0]
    assert (run["id"], run["state"], run["current"]) == (run_id, "done", True), run
    assert (run["epochs"], run["size"]) == (2, 128), run
    j.run_id = run_id


def grid_ids(sp: StreamlitPage) -> list[int]:
    """The ids of the card grid's cards, in order."""
    ids = sp.page.locator(".cg-grid [data-card]").evaluate_all("els => els.map(e => Number(e.dataset.card))")
    return [int(i) for i in ids]


def grid_key(sp: StreamlitPage, key: str) -> None:
    """Press a grid key that sends an action and wait until the store has it: the grid shows the change at
    once and says "Saving…" until Python answered its queue (a job poller's reruns do not count)."""
    n = sp.run_count()
    sp.page.keyboard.press(key)
    sp.wait_idle(after=n)
    drained(sp)


def drained(sp: StreamlitPage) -> None:
    """Wait until the card grid's queue is answered (its "Saving N…" line gone), then for the app's idle."""
    sp.page.locator(".cg-msg.cg-info", has_text="Saving").wait_for(state="detached", timeout=30_000)
    sp.wait_idle()


def review_labels(j: Journey) -> None:
    """Review page: the scores are there already (the download scored each image as it landed, with the
    bundled pretrained network: no model, no download of weights), relabel a card then Undo, delete a card,
    then "Retrain head" (seconds, on the cached embeddings): the scores count the deleted one out."""
    sp = j.sp
    sp.go("Review")
    started = time.monotonic()
    wait_until(
        sp,
        sp.page.locator('[data-testid="stMarkdownContainer"]', has_text=f"Scores of {j.downloaded} image(s)"),
        failed=sp.page.locator('[data-testid="stAlertContentWarning"]', has_text="Last embedding job"),
        timeout_s=REVIEW_TIMEOUT_S,
        what="the review scores of the download",
    )
    sp.wait_text("EfficientNet-Lite0")  # the backbone the scores came from: the bundled network
    sp.wait_idle()
    record(
        f"e2e review: page → scores shown ({j.downloaded} images, scored during the download)",
        time.monotonic() - started,
    )
    ids = grid_ids(sp)
    assert len(ids) == j.downloaded, ids
    labels = image_labels(j)

    # Relabel the first (focused) card with its class's number key (a fragment rerun), then Z undoes it.
    first = ids[0]
    given = labels[first]
    other = next(c for c in CLASSES if c != given)
    sp.page.mouse.click(5, 5)  # the keyboard to the page, not a widget
    assert sp.page.locator(".cg-card.cg-focus").get_attribute("data-card") == str(first)
    legend = sp.page.locator(".cg-legend .cg-key", has_text=other).first  # "<n> <class>": the key to press
    grid_key(sp, legend.locator("kbd").inner_text())
    assert image_labels(j)[first] == other
    # corrected = reviewed: out of the queue, but in place (marked) until the page turns
    assert first in grid_ids(sp) and "cg-reviewed" in str(
        sp.page.locator(f'.cg-card[data-card="{first}"]').get_attribute("class")
    )
    grid_key(sp, "z")
    assert sp.page.locator(".cg-msg").inner_text().startswith("Undid")
    assert image_labels(j)[first] == given, "undo did not bring the label back"
    assert first in grid_ids(sp)
    history = cli_json(j, "history")
    assert history[0]["kind"] == "relabel" and history[0]["undone"], history[:2]

    # Delete the second card with D (to the trash, a fragment rerun): it leaves the queue.
    gone = ids[1]
    assert sp.page.locator(".cg-card.cg-focus").get_attribute("data-card") == str(gone)  # Z kept the focus on
    grid_key(sp, "d")
    assert gone in image_labels(j, deleted=True) and gone not in image_labels(j)
    assert gone in grid_ids(sp)  # greyed in place until the page turns (or the scores change)

    # Quick head refit on the cached embeddings: fresh scores for the images left.
    left = j.downloaded - 1
    retrain = sp.timed(
        lambda: sp.button("⚡ Retrain head").click(),
        """return window.__st.idle() && Array.from(document.querySelectorAll('[data-testid="stAlertContentSuccess"]'))
                  .some(e => e.innerText.startsWith(arg));""",
        arg=f"Scored {left} image(s) in",
    )
    record("e2e review: ⚡ Retrain head click → new scores shown", retrain)
    sp.wait_idle()
    sp.page.locator('[data-testid="stMarkdownContainer"]', has_text=f"Scores of {left} image(s)").wait_for()
    shown = grid_ids(sp)  # new scores rank the queue anew: the deleted card is gone
    assert gone not in shown and len(shown) == left, shown
    j.notes["retrain head"] = sp.page.locator(SUCCESS).first.inner_text()
    # The deployed model changes only when asked: the instant model's valid error shows beside the current
    # run's, and "Make it current" builds it and deploys it.
    before = [r["id"] for r in cli_json(j, "runs", "list") if r["current"]]
    assert before and all(r["source"] != "instant" for r in cli_json(j, "runs", "list")), before
    sp.page.locator('[data-testid="stMarkdownContainer"]', has_text="Instant model").first.wait_for()
    deploy = sp.timed(
        lambda: sp.button("Make it current").click(),
        """return window.__st.idle() && Array.from(document.querySelectorAll('[data-testid="stAlertContentSuccess"]'))
                  .some(e => e.innerText.includes(arg));""",
        arg="now the current model",
    )
    record("e2e review: Make it current click → instant model built and current", deploy)
    current = [r for r in cli_json(j, "runs", "list") if r["current"]]
    assert len(current) == 1 and current[0]["source"] == "instant" and current[0]["state"] == "done", current
    j.run_id = current[0]["id"]  # what Predict and the API answer with from here on


def predict_photo(j: Journey) -> None:
    """Predict page: upload a new picture (a generated circle), read the top class and its probability."""
    sp = j.sp
    path = j.work / "new-photo.png"
    shape_image("circle", 424242, size=96).save(path)
    sp.go("Predict")
    assert sp.page.get_by_role("radio", name="Upload").is_checked()
    started = time.monotonic()
    sp.upload("predict_upload", path)
    top = sp.metric("Top class", timeout_s=MODEL_LOAD_TIMEOUT_S)
    sp.wait_idle()
    probability = sp.metric("Probability")
    record("e2e predict: upload → top class shown (first load of the model)", time.monotonic() - started)
    assert top in CLASSES, top
    found = re.fullmatch(r"([0-9.]+)%", probability)
    assert found, probability
    assert 100 / len(CLASSES) - 0.05 <= float(found.group(1)) <= 100, probability  # the top of 3: ≥ 1/3
    sp.wait_text(f"Run {j.run_id}")
    j.picture, j.predicted = path, (top, float(found.group(1)) / 100)


def api_predict(j: Journey) -> None:
    """`lotr-labeler serve` on the same project: POST /predict with the same picture, the same answer."""
    assert j.picture is not None, "predict_photo comes first"
    top, probability = j.predicted
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv, where = j.app.cli_popen("serve", "--host", "127.0.0.1", "--port", str(port), project=PROJECT)
    log_path = ARTIFACTS / "api.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            **where,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        health = wait_health(proc, url, log_path)
        record("e2e API: `serve` start → /health answers (loads the model first)", time.monotonic() - started)
        assert (health["project"], health["model"], health["loaded"]) == (PROJECT, j.run_id, True), health
        body = json.dumps({"image": base64.b64encode(j.picture.read_bytes()).decode()}).encode()
        request = urllib.request.Request(
            f"{url}/predict", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 200
            doc = json.loads(r.read())
    finally:
        stop_process(proc)
    assert doc["model"] == j.run_id, doc
    assert doc["top"] == top, (doc, top)  # the same model and picture: the same answer as the page
    assert abs(doc["probability"] - probability) <= 0.0006, (doc, probability)  # the page rounds to 0.1 %
    assert set(doc["predictions"]) == set(CLASSES), doc
    assert abs(sum(doc["predictions"].values()) - 1) < 1e-4, doc
    j.notes["api"] = {"top": doc["top"], "probability": round(doc["probability"], 4), "ms": doc["latency_ms"]}
    # Evidence next to the screenshots (the API has no page to capture).
    (ARTIFACTS / "journey-api-predict.json").write_text(
        json.dumps({"health": health, "predict": doc, "page": {"top": top, "probability": probability}}, indent=1)
    )


def wait_health(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> dict[str, object]:
    """GET /health until it answers (bounded); fail early if the server process ends."""
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`serve` exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                doc = json.loads(r.read())
                assert isinstance(doc, dict)
                return doc
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"`serve` did not answer /health within {SERVE_TIMEOUT_S:.0f} s")


SCORE_TIMEOUT_S = 120.0  # the chained scoring job: a fresh process loads the backbone, fetches 24 thumbnails


def press_only(sp: StreamlitPage, key: str) -> None:
    """Press a key the grid handles in the browser (a focus move: no rerun)."""
    sp.page.keyboard.press(key)


def press(sp: StreamlitPage, key: str) -> None:
    """Press a key on the page (not in a field: Streamlit ignores shortcuts typed into inputs); wait for the rerun
    (and for the grid's queue to be answered, when the key was the grid's)."""
    n = sp.run_count()
    sp.page.keyboard.press(key)
    sp.wait_idle(after=n)
    drained(sp)


def triage_with_keyboard(j: Journey) -> None:
    """Search page once a model exists: a second search (class circle; the answers hold 8 circles and 4
    squares) chains the scoring job, so each candidate shows p(class) before anything is downloaded.
    Then the keyboard only: Shift+H accepts every pending candidate with p ≥ the suggested threshold,
    the arrows move the grid's focus to one the model places in another class, P accepts it there."""
    sp = j.sp
    new = [60 + 3 * i for i in range(8)] + [61 + 3 * i for i in range(4)]  # n % 3: 0 circle, 1 square
    fake_search_results(j.fake_ddgs, j.image_server, {"circle": new})
    sp.go("Search")
    box = sp.expand("Search images")  # collapsed once the project has candidates
    sp.select("Class", "circle", within=box)
    sp.wait_text("1 query: circle")
    sp.click(sp.button("Search"))
    wait_until(
        sp,
        sp.page.locator(SUCCESS, has_text="Last score-candidates"),
        failed=sp.page.locator('[data-testid="stAlertContentError"]', has_text="Last score-candidates"),
        timeout_s=SCORE_TIMEOUT_S,
        what="scoring the new candidates (chained by the search)",
    )
    sp.wait_idle()
    pending = {int(c["id"]): c for c in cli_json(j, "candidates", "list", "--state", "pending", "--limit", "1000")}
    assert len(pending) == 12 + len(new), len(pending)  # the first search's last 12, and the new ones
    assert all(c["score"] is not None for c in pending.values()), [c for c in pending.values() if c["score"] is None]
    accept = sp.keyed_button("bulk_t_accept")
    accept.wait_for()
    # The slider starts at the suggested threshold: the lowest p whose precision on the labeled images,
    # out-of-sample, is >= 98 %; the button counts the pending candidates at or above it.
    shown = re.match(r"Accept (\d+) with p ≥ ([0-9]\.[0-9]+)", accept.inner_text())
    assert shown, accept.inner_text()
    t = float(shown.group(2))
    sp.wait_text(f"Suggested ≥ {t:.2f}: expected precision")
    sure = {cid for cid, c in pending.items() if c["score"] >= t}
    assert int(shown.group(1)) == len(sure) and 0.5 <= t < 1, (accept.inner_text(), sure)
    assert sure, "the model is sure of no candidate: nothing for 'accept all with p ≥ t' to show"
    sp.page.locator(".cg-grid .cg-card").first.wait_for()
    sp.page.locator("h1").first.click()  # the keys go to the page, not to the last select box
    press(sp, "Shift+H")
    sp.wait_text(f"Accepted {len(sure)} candidate(s)")
    states = {int(c["id"]): c for c in cli_json(j, "candidates", "list", "--limit", "1000")}
    assert {cid for cid in pending if states[cid]["state"] == "accepted"} == sure, states

    # A card the model places in another class (its "→ class" line): walk the focus to it with the arrows, then P.
    grid = card_ids(sp)  # the page as drawn: the accepted ones stay in place, marked, until the page turns
    assert set(grid) == set(pending), (grid, pending, sure)
    accepted = sp.page.locator(".cg-grid .cg-card.cg-st-accepted").evaluate_all(
        "els => els.map(e => Number(e.dataset.card))"
    )
    assert set(accepted) == sure, (accepted, sure)
    target = next(
        (cid for cid in grid if cid not in sure and pending[cid]["predicted"] not in (None, pending[cid]["label"])),
        None,
    )
    assert target is not None, f"the model places no pending candidate in another class: {pending}"
    sp.page.mouse.click(5, 5)
    assert focused(sp) == grid[0]  # the first card has the focus at first
    press_only(sp, "ArrowRight")
    assert focused(sp) == grid[1]
    press_only(sp, "ArrowLeft")
    assert focused(sp) == grid[0]
    for _ in range(grid.index(target)):
        press_only(sp, "ArrowRight")
    assert focused(sp) == target
    predicted = str(pending[target]["predicted"])
    hint = sp.page.locator(f'.cg-grid [data-card="{target}"] .cg-verdict').inner_text()
    assert hint.strip().startswith(f"→ {predicted}"), hint
    sp.screenshot("journey-triage-keyboard")  # the focused card, the triage panel: docs/img/triage.jpg
    press(sp, "p")
    sp.page.locator(".cg-msg", has_text=f"Accepted 1 candidate as the model's class ({predicted}).").wait_for()
    moved = next(c for c in cli_json(j, "candidates", "list", "--limit", "1000") if int(c["id"]) == target)
    assert (moved["label"], moved["state"]) == (predicted, "accepted"), moved
    assert target in card_ids(sp) and focused(sp) not in (None, target)  # marked in place; the focus moved on
    history = cli_json(j, "history")
    assert history[0]["kind"] == "decide" and not history[0]["undone"], history[:2]
    j.notes["triage"] = {
        "accepted >= 0.90": len(sure),
        "moved": [target, predicted],
        "pending": len(grid) - len(sure) - 1,
    }


def data_stayed_in_checkout(j: Journey) -> None:
    """Everything the journey made is in ``<clone>/data`` (the default ``./data`` of ``make run``): the
    model where the run table says, no doubled ``data/<project>/data/…``, no data dir anywhere else."""
    clone = j.app.checkout
    assert clone is not None, "the app fixture starts the app like `make run`, in a clone"
    data = clone / "data"
    model = data / PROJECT / "runs" / j.run_id / "model.pkl"
    assert model.is_file() and model.stat().st_size > 0, f"no trained model at {model}"
    # The scratch area holds the clone, the fake search file and the picture: any project or model
    # elsewhere in it (a relative path resolved twice, or against another folder) is a stray data dir.
    scratch = j.work
    projects = sorted(str(p.parent.relative_to(scratch)) for p in scratch.rglob("project.sqlite"))
    assert projects == [f"clone/data/{DEFAULT_PROJECT}", f"clone/data/{PROJECT}"], projects
    # One model.pkl per finished run (the trained one and the instant model of "Retrain head"), each in
    # its run folder under the clone's data/, and none anywhere else.
    done = [r["id"] for r in cli_json(j, "runs", "list") if r["state"] == "done"]
    assert j.run_id in done and len(done) >= 2, done
    models = sorted(str(p.relative_to(scratch)) for p in scratch.rglob("model.pkl"))
    assert models == sorted(f"clone/data/{PROJECT}/runs/{run_id}/model.pkl" for run_id in done), models
    # Nothing written in the clone outside data/ but bytecode (git lists what is not in HEAD).
    out = subprocess.run(
        ["git", "-C", str(clone), "status", "--porcelain", "-z", "--ignored", "--untracked-files=all"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.decode()
    added = [e[3:] for e in out.split("\0") if e[:2] in ("??", "!!")]
    stray = [name for name in added if not name.startswith("data/") and "__pycache__/" not in name]
    assert not stray, f"written in the clone outside data/: {stray}"
    # The processes ran the clone's code, from the clone (the training worker compiled its train.py there).
    assert list((clone / "lotr_labeler" / "model" / "__pycache__").glob("train.*.pyc")), (
        "the clone's train.py never ran"
    )
    # Not in the default data dir of the checkout running the tests, nor of the test's own cwd.
    for other in {ROOT / "data", Path.cwd() / "data"}:
        assert not list(other.glob(f"*/runs/{j.run_id}")), f"run {j.run_id} also written under {other}"
    j.notes["data"] = {"model": str(model.relative_to(clone)), "bytes": model.stat().st_size}


STEPS: list[Callable[[Journey], None]] = [
    create_project,
    add_classes,
    search_all,
    review_grid,
    download_accepted,
    dataset_shows_images,
    train_model,
    review_labels,
    predict_photo,
    api_predict,
    triage_with_keyboard,
]


def test_new_user_journey(
    page: StreamlitPage, app: AppServer, image_server: str, fake_ddgs_file: Path, e2e_dir: Path
) -> None:
    j = Journey(page, app, image_server, fake_ddgs_file, e2e_dir)
    journey_started = time.monotonic()
    for n, step in enumerate(STEPS, 1):
        started = time.monotonic()
        try:
            step(j)
        finally:
            page.screenshot(f"journey-{n:02d}-{step.__name__}")
        page.check_no_exception()
        print(f"step {step.__name__}: {time.monotonic() - started:.1f} s")
    data_stayed_in_checkout(j)
    print(f"journey: {time.monotonic() - journey_started:.1f} s")
    print(f"journey notes: {j.notes}")
