"""A thumbnail still loading (issue 18, point 7): the card shows a placeholder, and a decision key on it
waits for the picture, since the user cannot have judged what they have not seen. The thumbnails come
from an HTTP server on 127.0.0.1 that holds one picture until the test lets it go (bounded waits); the
decision is checked in the store, not only on the page."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from helpers import shape_image

from lotr_labeler.store import CandidateIn
from lotr_labeler.workspace import create_project, open_project

from .app_server import ROOT, VIEWPORT, AppServer
from .streamlit_page import StreamlitPage

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SHOTS = ROOT / "test-artifacts" / "thumbnail-wait"
HELD = "/held.png"  # the picture the server holds back until the test lets it go
HUNG = "/hung.png"  # the picture the server holds back until the end (a host that never answers)
HOLD_LIMIT_S = 20.0  # the server's own bound: it answers by then whatever the test does
# The grid's root (components v2 render it in a shadow root), then how many cards show the placeholder.
LOADING = (
    "() => { const r = [...document.querySelectorAll('*')].map(e => e.shadowRoot)"
    ".find(s => s && s.querySelector('.cg-root')) || document;"
    " return r.querySelectorAll('.cg-card.cg-loading').length; }"
)


class _Images(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.release = threading.Event()
        self.closing = threading.Event()
        self.png = _png()


class _Handler(BaseHTTPRequestHandler):
    server: _Images

    def do_GET(self) -> None:
        if self.path == HELD:
            self.server.release.wait(HOLD_LIMIT_S)
        elif self.path == HUNG:
            self.server.closing.wait(HOLD_LIMIT_S)
        body = self.server.png
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _png() -> bytes:
    buf = io.BytesIO()
    shape_image("circle", 5, 96).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def images() -> Iterator[_Images]:
    server = _Images()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.closing.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def wait_app(browser: Any, images: _Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """Five pending candidates: the first one's thumbnail is held until the test lets it go, the last one's
    hangs, the others load at once."""
    data = tmp_path_factory.mktemp("thumbwait") / "data"
    base = f"http://127.0.0.1:{images.server_address[1]}"
    with create_project(data, "shapes", "empty") as store:
        store.add_class("circle")
        store.add_candidates(
            CandidateIn(
                "circle",
                f"http://img.invalid/{i}.jpg",
                f"{base}{HELD}" if i == 0 else f"{base}{HUNG}" if i == 4 else f"{base}/{i}.png",
                page_url=f"http://page.invalid/{i}",
                query="circle",
                width=96,
                height=96,
            )
            for i in range(5)
        )
    with AppServer(data, SHOTS / "streamlit.log") as server:
        yield server


def _states(app: AppServer) -> list[str]:
    with open_project(app.data_dir, "shapes") as store:
        return [c.state for c in sorted(store.candidates(), key=lambda c: c.id)]


def _until(done: Any, limit_s: float = 15.0) -> None:
    deadline = time.monotonic() + limit_s
    while not done() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_key_on_a_loading_thumbnail_waits_for_it(browser: Any, images: _Images, wait_app: AppServer) -> None:
    context = browser.new_context(viewport=VIEWPORT)
    try:
        sp = StreamlitPage(context.new_page(), wait_app.url, SHOTS)
        sp.open("/Search")
        first = sp.page.locator(".cg-grid .cg-card").first
        first.wait_for()
        sp.wait_idle()
        sp.page.mouse.click(5, 5)  # the document has the keyboard
        # The others loaded; the held and the hung ones show the placeholder, not an empty frame.
        sp.page.wait_for_function(f"() => ({LOADING})() === 2", timeout=30_000)
        assert "cg-loading" in (first.get_attribute("class") or "")
        sp.screenshot("placeholder")
        assert first.get_attribute("class") and "cg-focus" in str(first.get_attribute("class"))

        sp.page.keyboard.press("x")  # reject the card whose picture has not come
        time.sleep(1.0)  # well past a key's own frame: a key that did not wait would show and store by now
        assert "cg-st-rejected" not in (first.get_attribute("class") or "")
        assert _states(wait_app)[0] == "pending"

        images.release.set()  # the picture arrives: the held key goes on, to the card it was meant for
        sp.page.wait_for_function(f"() => ({LOADING})() === 1", timeout=30_000)
        _until(lambda: _states(wait_app)[0] == "rejected")
        assert _states(wait_app) == ["rejected", "pending", "pending", "pending", "pending"]

        # A host that never answers: the key waits its 3 s, then goes on (the card as it is).
        for _ in range(3):  # the focus moved on to card 2 with the x; to the hung card 5
            sp.page.keyboard.press("ArrowRight")
        sp.page.keyboard.press("x")
        time.sleep(1.0)
        assert _states(wait_app)[4] == "pending"
        _until(lambda: _states(wait_app)[4] == "rejected")
        assert _states(wait_app) == ["rejected", "pending", "pending", "pending", "rejected"]
        sp.check_no_exception()
    finally:
        context.close()
