"""The new user's journey in a real browser (issue 7), one step per function, in order.

Create a project → add 3 classes → search all classes (a background job) → review the grid (accept,
reject, accept the page) → download the accepted (watch the progress) → see them on the Dataset page.
Only DuckDuckGo is faked (``LOTR_LABELER_FAKE_DDGS``, results on a local image server); the server,
the job processes, the downloads and the browser are real.

To extend it, write the next step as ``def step(j: Journey) -> None`` and append it to ``STEPS``;
the TODO block at the end names the steps still to come and the helpers they can use.
Screenshots land in ``test-artifacts/e2e/journey-NN-<step>.png``; timings in ``timings.json``.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .app_server import AppServer, cli, fake_search_results
from .conftest import record
from .streamlit_page import PROGRESS, SUCCESS, StreamlitPage

pytestmark = pytest.mark.e2e

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
    accepted: int = 0
    downloaded: int = 0
    notes: dict[str, object] = field(default_factory=dict)

    def status(self) -> dict[str, int]:
        """Totals from ``lotr-labeler status --json``: the ground truth the pages should agree with."""
        doc = json.loads(cli(self.app.data_dir, "status", "--json", project=PROJECT))
        return {k: int(v) for k, v in doc["totals"].items()}


# -- helpers the steps (and later steps) share ------------------------------------------------


def card_ids(sp: StreamlitPage) -> list[int]:
    """Candidate ids of the cards in the review grid, in page order (from the ✓ buttons' keys)."""
    return sp.key_numbers("acc_")


def decide_card(sp: StreamlitPage, cid: int, verdict: str) -> float:
    """Click ✓ (``acc``) or ✗ (``rej``) on one card; seconds until it shows its new state and the app is idle."""
    key = f"{verdict}_{cid}"
    return sp.timed(
        lambda: sp.keyed_button(key).click(),
        "const b = window.__st.button(arg); return !!b && b.getAttribute('kind') === 'primary' && window.__st.idle();",
        arg=key,
    )


def wait_job_done(sp: StreamlitPage, kind: str, timeout_s: float = 90.0) -> tuple[str, list[str]]:
    """Watch a job panel (``job_panel(project, kind, …)``) to its end.

    Returns the final "Last <kind> …" message and the progress texts seen on the way (the panel
    polls every second while the job runs, then a full rerun shows the result).
    """
    seen: list[str] = []
    done = sp.page.locator(SUCCESS, has_text=f"Last {kind}")
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
    """Home page, "New project" form, template empty."""
    sp = j.sp
    sp.open("/")
    form = sp.expand("New project")
    sp.fill("Project name", PROJECT, within=form)
    sp.select("Start from", "empty", within=form, rerun=False)  # inside a form: no rerun until submit
    sp.click(sp.button("Create project"))
    sp.wait_text(f"Created project '{PROJECT}'.")
    assert sp.page.locator('input[role="combobox"][aria-label="Project"]').input_value() == PROJECT
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
    cli(j.app.data_dir, "settings", "set", "allow_private_hosts", "true", project=PROJECT)
    cli(j.app.data_dir, "settings", "set", "search_delay", "0", project=PROJECT)


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
    sp.wait_text("Started 3 search queries")
    message, _ = wait_job_done(sp, "search")
    assert f"{3 * PER_QUERY} new" in message, message
    sp.wait_text(f"{3 * PER_QUERY} candidate(s) · page 1")
    assert sp.wait_images(48) >= 48
    assert len(card_ids(sp)) == 48


def review_grid(j: Journey) -> None:
    """Accept 3 cards, reject 2 (each a fragment rerun of one card), then "Accept page" (a full rerun)."""
    sp = j.sp
    ids = card_ids(sp)
    assert len(ids) == 48
    clicks = [decide_card(sp, cid, "acc") for cid in ids[:3]]
    clicks += [decide_card(sp, cid, "rej") for cid in ids[3:5]]
    # The decided cards stay on the page until the next full rerun, showing their state.
    assert len(card_ids(sp)) == 48
    # The same page, one full rerun: the anchor of the card click.
    full_rerun = sp.timed(
        lambda: sp.button("Accept page").click(),
        """return window.__st.idle() && Array.from(document.querySelectorAll('[data-testid="stAlertContentSuccess"]'))
                  .some(e => e.innerText.includes('Accepted 43 candidate(s).'));""",
    )
    record(
        "e2e grid click → idle, 48-card page (card ✓/✗, fragment rerun)",
        statistics.median(clicks),
        anchor=full_rerun,
        goal="ours <= 0.5 s",
        note=f"median of {len(clicks)} clicks {[round(c, 3) for c in clicks]}; anchor: 'Accept page' on the same "
        "page (full rerun: click → idle with its message)",
    )
    j.accepted = 46
    sp.wait_text(f"{3 * PER_QUERY - 48} candidate(s) · page 1")  # the pending filter now shows the rest
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
    assert sp.wait_images(j.downloaded) == j.downloaded
    for name in CLASSES:
        assert sp.page.get_by_text(re.compile(rf"#\d+ · {name} · (train|valid)")).count() > 0


STEPS: list[Callable[[Journey], None]] = [
    create_project,
    add_classes,
    search_all,
    review_grid,
    download_accepted,
    dataset_shows_images,
]

# TODO(issue 7): the steps still to come, appended to STEPS when their pages land:
#   train_model(j)      Train page: start a run with pretrained weights off (no network), then
#                       wait_job_done(sp, "train", timeout_s=...) and check the run's metrics show.
#   review_labels(j)    Review page: the ranked suspects; relabel one, retrain the head, the change sticks.
#   predict_photo(j)    Predict page: upload a generated picture (conftest.shape_image) with
#                       sp.page.set_input_files(...) and read the predicted class.
#   api_predict(j)      `lotr-labeler serve` on app_server.free_port(), POST the same picture, same answer.


def test_new_user_journey(page: StreamlitPage, app: AppServer, image_server: str, fake_ddgs_file: Path) -> None:
    j = Journey(page, app, image_server, fake_ddgs_file)
    for n, step in enumerate(STEPS, 1):
        started = time.monotonic()
        try:
            step(j)
        finally:
            page.screenshot(f"journey-{n:02d}-{step.__name__}")
        page.check_no_exception()
        print(f"step {step.__name__}: {time.monotonic() - started:.1f} s")
    print(f"journey notes: {j.notes}")
