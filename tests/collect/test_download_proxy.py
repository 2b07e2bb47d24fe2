"""Downloads through the environment's HTTP proxy (a user behind a corporate proxy).

The proxy here is a tiny forwarding server on 127.0.0.1 that answers absolute-form
requests itself, so the image host never has to resolve: only the proxy knows it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image

from lotr_labeler.collect.fetch import env_proxy, fetch, make_client
from lotr_labeler.errors import BlockedHost

PUBLIC = ["93.184.216.34"]  # what the (fake) resolver says the image host is


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


IMAGE = _jpeg()


class Proxy(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.seen: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ProxyHandler(BaseHTTPRequestHandler):
    server: Proxy

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        if not self.path.startswith("http://"):  # not a proxy request: refuse, as a proxy would
            self.send_error(400)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(IMAGE)))
        self.end_headers()
        self.wfile.write(IMAGE)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    server = Proxy()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


TIMEOUT = httpx.Timeout(5.0)


def test_download_goes_through_the_environment_proxy(
    proxy: Proxy, no_env_proxy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    assert env_proxy() == proxy.url
    with make_client(TIMEOUT) as client:
        url = "http://images.example/cat.jpg"
        got = fetch(client, url, max_bytes=1 << 20, allow_private=False, resolver=lambda h, p: PUBLIC)
    assert got.data == IMAGE
    assert proxy.seen == ["http://images.example/cat.jpg"]


def test_proxy_still_refuses_private_hosts(proxy: Proxy, no_env_proxy: None) -> None:
    with make_client(TIMEOUT, proxy=proxy.url) as client, pytest.raises(BlockedHost):
        fetch(client, "http://10.0.0.1/x.jpg", max_bytes=1 << 20, allow_private=False)
    assert proxy.seen == []  # refused before any request left


def test_no_proxy_hosts_go_direct(proxy: Proxy, no_env_proxy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # A direct server on loopback; NO_PROXY exempts it, so the proxy sees nothing.
    direct = Proxy()  # answers a plain (origin-form) GET with 400: enough to tell who was asked
    thread = threading.Thread(target=direct.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        with make_client(TIMEOUT) as client, pytest.raises(Exception, match="400"):
            fetch(client, f"{direct.url}/x.jpg", max_bytes=1 << 20, allow_private=True)
        assert direct.seen == ["/x.jpg"]
        assert proxy.seen == []
    finally:
        direct.shutdown()
        direct.server_close()
        thread.join(timeout=5)
