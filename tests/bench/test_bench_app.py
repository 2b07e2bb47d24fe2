"""bench/bench_app.py runs against the app of today and gives its figures: it had gone on timing Search's
per-card Streamlit buttons after the card grid replaced them, and failed in ``make bench`` with a timeout
that no test saw."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from e2e.app_server import find_chromium

BENCH = Path(__file__).resolve().parents[2] / "bench"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # Chromium and four app servers, in a subprocess


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium: apt-get install chromium")
def test_bench_app_times_a_card_click_and_the_cold_start() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_app.py"), "--clicks", "2", "--starts", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {row["name"]: row for row in map(json.loads, done.stdout.splitlines())}
    shown = rows["grid click → card shown, 48-card page (card grid vs full-page rerun)"]
    saved = rows["grid click → saved, 48-card page (card grid vs full-page rerun)"]
    cold = rows["cold start: process start → first page rendered (ours vs one-line Streamlit app)"]
    assert len(rows) == 3
    # The card is drawn before Python hears of it; saved after the grid's pause and one fragment run.
    assert 0 < shown["ours"] < saved["ours"] < 30
    assert shown["anchor"] == saved["anchor"] > 0  # the same full reruns
    assert cold["ours"] > 0 and cold["anchor"] > 0
