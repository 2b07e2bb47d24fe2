"""The phone page of `serve` (GET /) in Chromium with a phone viewport: token, pick a photo, probabilities."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from helpers import TOL, TinyModel, reference

from lotr_labeler.api import create_app
from lotr_labeler.model import runs
from lotr_labeler.store import Store

from .app_server import ARTIFACTS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TOKEN = "phone-page-token-123"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}


@pytest.fixture
def api_url(project: tuple[Store, runs.Run], data_root: Path) -> Iterator[str]:
    """The API with a token, under uvicorn on a free loopback port, in a thread."""
    app = create_app(data_root, "demo", token=TOKEN)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)


def _shown(page: Any) -> dict[str, float]:
    rows = page.locator("#results .row")
    rows.first.wait_for(timeout=60_000)
    return {
        rows.nth(i).get_attribute("data-class"): float(rows.nth(i).locator(".pct").inner_text().rstrip("%")) / 100
        for i in range(rows.count())
    }


def test_phone_page_token_photo_probabilities(browser: Any, api_url: str, tiny_model: TinyModel) -> None:
    context = browser.new_context(**PHONE)
    page = context.new_page()
    try:
        page.goto(api_url)
        picker = page.locator("input#photo")
        assert picker.get_attribute("accept") == "image/*" and picker.get_attribute("capture") == "environment"
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"

        # No token yet: the page refuses before sending, then the server's 401 is shown too.
        token = page.locator("#token")
        assert token.is_visible()
        picker.set_input_files(str(tiny_model.samples[0]))
        page.get_by_text("Enter the access token first.").wait_for()
        token.fill("wrong-token-xyz")
        token.dispatch_event("change")
        picker.set_input_files(str(tiny_model.samples[0]))
        page.get_by_text("access token").last.wait_for()
        assert "error" in (page.locator("#status").get_attribute("class") or "")

        token.fill(TOKEN)
        token.dispatch_event("change")
        sample = tiny_model.samples[2]  # a non-square jpg
        picker.set_input_files(str(sample))
        shown = _shown(page)
        expected = reference(tiny_model.learn, sample)
        assert set(shown) == set(expected)
        assert max(abs(shown[c] - expected[c]) for c in expected) <= 0.0005 + TOL  # shown with one decimal in %
        top = max(expected, key=expected.__getitem__)
        assert page.locator("#results .row.top").get_attribute("data-class") == top
        assert page.locator("#preview").is_visible()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "phone-page.png"), full_page=True)

        page.reload()  # the token is remembered on the phone
        assert page.locator("#token").input_value() == TOKEN
    finally:
        context.close()


def test_token_link_fills_in_the_token(browser: Any, api_url: str) -> None:
    """The #token= link serve prints: a new phone opens it and is ready; the token leaves the address bar."""
    context = browser.new_context(**PHONE)
    page = context.new_page()
    try:
        page.goto(api_url + "#token=" + TOKEN)
        assert page.locator("#token").input_value() == TOKEN
        assert "#token" not in page.url
    finally:
        context.close()
