"""Downloads against a real HTTP server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import socket
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw, ImageFile, ImageStat

from lotr_labeler.collect import download as dl
from lotr_labeler.collect.download import DownloadProgress, download_candidates
from lotr_labeler.collect.fetch import USER_AGENT, check_url, fetch, system_resolver
from lotr_labeler.errors import BlockedHost, FetchError, ImageRejected, InvalidInput, NotFound
from lotr_labeler.imaging import hamming, normalize
from lotr_labeler.jobs.specs import DownloadJob
from lotr_labeler.progress import Progress
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.workspace import create_project

MAX_BYTES = 200_000
PUBLIC_IP = "93.184.215.14"  # any global unicast address; never connected to

# -- generated pictures ------------------------------------------------------------------------


def picture(seed: int, size: int = 160) -> Image.Image:
    """A gradient with a few shapes: smooth (stable phash) and distinct per seed."""
    rng = random.Random(seed)
    lo = [rng.randrange(256) for _ in range(3)]
    hi = [rng.randrange(256) for _ in range(3)]
    ramp = Image.linear_gradient("L").resize((size, size)).rotate(rng.choice([0, 90, 180, 270]))
    bands = [ramp.point(lambda v, a=a, b=b: a + (b - a) * v // 255) for a, b in zip(lo, hi, strict=True)]
    img = Image.merge("RGB", bands)
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x, y, r = rng.randrange(size), rng.randrange(size), rng.randrange(size // 8, size // 3)
        box = (x - r, y - r, x + r, y + r)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    return img


def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = 10_000) -> bytes:
    """A valid all-black greyscale PNG of side x side (100 Mpx) that compresses to ~100 KB."""
    comp = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


JPEG_A = encode(picture(1), "JPEG", quality=95)
PNG_B = encode(picture(2), "PNG")
JPEG_C = encode(picture(3), "JPEG", quality=95)
# The same picture as A, smaller and at a much lower quality: a near duplicate, not an exact one.
JPEG_A_LOW = encode(picture(1).resize((120, 120)), "JPEG", quality=40)
BOMB_PNG = bomb_png()  # built once here: building it in the handler would eat the read timeout
WEBP_D = encode(picture(4), "WEBP", quality=90)
JPEG_E = encode(picture(5), "JPEG", quality=95)  # served as text/plain
FRAME0, FRAME1 = (220, 30, 30), (30, 30, 220)


def animated_gif() -> bytes:
    """Two frames: red, then blue. Only the first one is kept."""
    frames = [Image.new("RGB", (96, 64), FRAME0), Image.new("RGB", (96, 64), FRAME1)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


ANIMATED_GIF = animated_gif()
SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
    b'<rect width="64" height="64" fill="red"/></svg>'
)
TRUNCATED_JPEG = JPEG_C[: len(JPEG_C) // 2]  # cut in half: header and part of the scan, no EOI

# -- the test server -------------------------------------------------------------------------


class Site(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[str] = []
        self.user_agents: set[str] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.flaky_broken = True

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str) -> int:
        with self.lock:
            return self.requests.count(path)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up on purpose (caps, timeouts): not worth a traceback


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Site

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        site = self.server
        with site.lock:
            site.requests.append(self.path)
            site.user_agents.add(self.headers.get("User-Agent", ""))
        path = self.path
        images = {"/a.jpg": JPEG_A, "/copy-of-a.jpg": JPEG_A, "/b.png": PNG_B, "/c.jpg": JPEG_C}
        if path in images:
            self.send_body(images[path], "image/png" if path.endswith(".png") else "image/jpeg")
        elif path == "/a-low.jpg":
            self.send_body(JPEG_A_LOW, "image/jpeg")
        elif path.startswith("/gen/"):
            self.send_body(encode(picture(100 + int(path.split("/")[2].split(".")[0])), "JPEG"), "image/jpeg")
        elif path == "/d.webp":
            self.send_body(WEBP_D, "image/webp")
        elif path == "/anim.gif":
            self.send_body(ANIMATED_GIF, "image/gif")
        elif path == "/vector.svg":
            self.send_body(SVG, "image/svg+xml")
        elif path == "/truncated.jpg":
            self.send_body(TRUNCATED_JPEG, "image/jpeg")
        elif path == "/empty.jpg":
            self.send_body(b"", "image/jpeg")
        elif path == "/loop":
            self.redirect("/loop")
        elif path == "/text-plain.jpg":
            self.send_body(JPEG_E, "text/plain")
        elif path == "/html.jpg":
            self.send_body(b"<!doctype html><html><body>Access denied</body></html>", "image/jpeg")
        elif path == "/bomb.png":
            self.send_body(BOMB_PNG, "image/png")
        elif path == "/slow.jpg":
            site.stop.wait(5.0)  # far beyond the 1 s read timeout, even on a loaded machine
            self.send_body(JPEG_C, "image/jpeg")
        elif path == "/chunked-big":
            self.send_chunked(chunks=20, size=64 * 1024)  # 1.3 MB, no Content-Length
        elif path == "/huge-length":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            site.stop.wait(2.0)  # a client that waited for the body would time out first
        elif path == "/redirect":
            self.redirect("/c.jpg")  # relative Location
        elif path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            if left:
                self.redirect(f"{site.base}/chain/{left - 1}")
            else:
                self.send_body(JPEG_C, "image/jpeg")
        elif path == "/to-private":
            self.redirect("http://10.0.0.1/x.jpg")
        elif path == "/flaky.jpg":
            if site.flaky_broken:
                self.send_body(b"maintenance", "text/plain", status=503)
            else:
                self.send_body(JPEG_C, "image/jpeg")
        else:
            self.send_body(b"not found", "text/plain", status=404)

    def send_body(self, body: bytes, ctype: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_chunked(self, chunks: int, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for _ in range(chunks):
            self.wfile.write(f"{size:x}\r\n".encode() + b"\xff" * size + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.stop.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Store]:
    store = create_project(tmp_path, "t", "empty")
    store.add_class("Elves")
    store.add_class("Dwarves")
    store.set_setting("allow_private_hosts", True)  # the test server is on 127.0.0.1
    # Short enough for /slow.jpg to time out, long enough for a loaded CI machine to read the rest.
    store.set_setting("read_timeout", 1.0)
    store.set_setting("connect_timeout", 2)
    store.set_setting("max_bytes", MAX_BYTES)
    yield store
    store.close()


def accept(store: Store, label: str, *urls: str, state: str = "accepted") -> list[int]:
    """Add ``urls`` as candidates of ``label`` with provenance, accepted; returns their ids in order."""
    store.add_candidates(
        CandidateIn(label, u, page_url=u + ".html", title=f"title of {u}", query=f"{label} query") for u in urls
    )
    by_url = {c.image_url: c.id for c in store.candidates()}
    ids = [by_url[u] for u in urls]
    if state != "pending":
        store.decide(ids, state)
    return ids


def by_url(store: Store) -> dict[str, Any]:
    return {c.image_url: c for c in store.candidates()}


def image_files(store: Store) -> set[str]:
    return {str(p.relative_to(store.root)) for p in (store.root / "images").rglob("*") if p.is_file()}


def pretend_public(host: str, port: int) -> list[str]:
    """A resolver that says the test server's 127.0.0.1 is a public host; everything else is real."""
    return [PUBLIC_IP] if host == "127.0.0.1" else system_resolver(host, port)


# -- check_url ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://example.org/a.jpg", "file:///etc/passwd", "not a url", "http:///a.jpg"])
def test_check_url_refuses_non_http(url: str) -> None:
    with pytest.raises(FetchError) as info:
        check_url(url, allow_private=True)
    assert info.value.reason == "bad url"
    assert not isinstance(info.value, BlockedHost)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.5.4",
        "192.168.1.10",
        "169.254.169.254",  # cloud metadata
        "0.0.0.0",
        "224.0.0.1",
        "100.64.0.1",  # carrier-grade NAT
        "240.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped loopback
        "[fe80::1]",
        "[fc00::1]",
        "[2002:a00:1::]",  # 6to4 of 10.0.0.1
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
        "[2001:0:4136:e378:8000:63bf:f5ff:fffe]",  # Teredo, client 10.0.0.1
        "[::ffff:0:a00:1]",  # IPv4-translated 10.0.0.1
        "[::7f00:1]",  # IPv4-compatible 127.0.0.1
    ],
)
def test_check_url_blocks_non_public_addresses(host: str) -> None:
    with pytest.raises(BlockedHost) as info:
        check_url(f"http://{host}:8080/x.jpg", allow_private=False)
    message = str(info.value)
    assert host.strip("[]") in message
    assert "allow_private_hosts" in message and "--allow-private-hosts" in message
    assert info.value.reason == "blocked host"
    check_url(f"http://{host}:8080/x.jpg", allow_private=True)  # the setting lifts the guard


def test_check_url_public_address_and_any_private_record_blocks() -> None:
    check_url(f"https://{PUBLIC_IP}/x.jpg", allow_private=False)
    check_url(f"https://[::ffff:{PUBLIC_IP}]/x.jpg", allow_private=False)  # IPv4-mapped public address
    check_url("https://[64:ff9b::5db8:d70e]/x.jpg", allow_private=False)  # NAT64 of the public address
    check_url("https://[2002:5db8:d70e::]/x.jpg", allow_private=False)  # 6to4 of the public address

    def mixed(host: str, port: int) -> list[str]:
        return [PUBLIC_IP, "10.0.0.7"]

    with pytest.raises(BlockedHost, match=r"10\.0\.0\.7"):
        check_url("https://cdn.example.test/x.jpg", allow_private=False, resolver=mixed)


def test_check_url_blocks_a_name_resolving_to_a_wrapped_private_address() -> None:
    with pytest.raises(BlockedHost, match=r"2002:a00:1::"):
        check_url("https://cdn.example.test/x.jpg", allow_private=False, resolver=lambda h, p: ["2002:a00:1::"])


@pytest.mark.parametrize("userinfo", ["user:s3cret@", "s3cret@", ":s3cret@"])
def test_check_url_refuses_credentials_without_echoing_them(userinfo: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(FetchError) as info:
            check_url(f"https://{userinfo}{PUBLIC_IP}/x.jpg", allow_private=allow_private)
        message = str(info.value)
        assert info.value.reason == "bad url" and not isinstance(info.value, BlockedHost)
        assert "s3cret" not in message
        assert f"https://***@{PUBLIC_IP}/x.jpg" in message and "user:password@" in message


def test_credentials_in_a_redirect_are_refused_before_any_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": f"http://u:s3cret@{PUBLIC_IP}/y.jpg"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as mock, pytest.raises(FetchError) as info:
        fetch(mock, f"http://{PUBLIC_IP}/x.jpg", max_bytes=MAX_BYTES, allow_private=False)
    assert info.value.reason == "bad url" and "s3cret" not in str(info.value)


def test_check_url_dns_failure() -> None:
    def broken(host: str, port: int) -> list[str]:
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(FetchError) as info:
        check_url("https://nowhere.example.test/x.jpg", allow_private=False, resolver=broken)
    assert info.value.reason == "dns"
    assert "nowhere.example.test" in str(info.value)


# -- fetch -----------------------------------------------------------------------------------


def test_blocked_first_url_sends_no_request(site: Site, client: httpx.Client) -> None:
    with pytest.raises(BlockedHost, match=r"127\.0\.0\.1"):
        fetch(client, site.url("/a.jpg"), max_bytes=MAX_BYTES, allow_private=False)
    assert site.requests == []


def test_redirect_to_private_address_is_refused(site: Site, client: httpx.Client) -> None:
    with pytest.raises(BlockedHost, match=r"10\.0\.0\.1"):
        fetch(client, site.url("/to-private"), max_bytes=MAX_BYTES, allow_private=False, resolver=pretend_public)
    assert site.requests == ["/to-private"]


def test_fetch_follows_relative_redirect(site: Site, client: httpx.Client) -> None:
    got = fetch(client, site.url("/redirect"), max_bytes=MAX_BYTES, allow_private=True)
    assert got.data == JPEG_C
    assert got.final_url == site.url("/c.jpg")


def test_redirect_limit_is_five(site: Site, client: httpx.Client) -> None:
    got = fetch(client, site.url("/chain/5"), max_bytes=MAX_BYTES, allow_private=True)
    assert got.data == JPEG_C and got.final_url == site.url("/chain/0")
    site.requests.clear()
    with pytest.raises(FetchError) as info:
        fetch(client, site.url("/chain/6"), max_bytes=MAX_BYTES, allow_private=True)
    assert info.value.reason == "too many redirects"
    # 6 requests (the first plus 5 redirects); the 6th Location is not followed.
    assert site.requests == [f"/chain/{n}" for n in (6, 5, 4, 3, 2, 1)]


def test_fetch_http_error(site: Site, client: httpx.Client) -> None:
    url = site.url("/missing.jpg")
    with pytest.raises(FetchError) as info:
        fetch(client, url, max_bytes=MAX_BYTES, allow_private=True)
    assert info.value.reason == "http 404"
    assert str(info.value) == f"HTTP 404 from {url}"


def test_fetch_refuses_large_content_length_without_reading(site: Site, client: httpx.Client) -> None:
    with pytest.raises(FetchError) as info:
        timeout = httpx.Timeout(1.0, read=0.5)
        fetch(client, site.url("/huge-length"), max_bytes=MAX_BYTES, allow_private=True, timeout=timeout)
    # Reading the (never sent) body would have ended in a read timeout instead.
    assert info.value.reason == "too large"


def test_fetch_caps_chunked_body(site: Site, client: httpx.Client) -> None:
    with pytest.raises(FetchError) as info:
        fetch(client, site.url("/chunked-big"), max_bytes=MAX_BYTES, allow_private=True)
    assert info.value.reason == "too large"


def test_fetch_stops_reading_at_the_cap() -> None:
    pulled = 0

    def endless() -> Iterator[bytes]:
        nonlocal pulled
        for _ in range(10_000):  # 100 MB if read to the end
            pulled += 1
            yield b"x" * 10_000

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=endless()))
    with httpx.Client(transport=transport) as mock_client, pytest.raises(FetchError) as info:
        fetch(mock_client, f"http://{PUBLIC_IP}/big", max_bytes=50_000, allow_private=False)
    assert info.value.reason == "too large"
    assert pulled < 20


@pytest.mark.slow
def test_fetch_read_timeout(site: Site, client: httpx.Client) -> None:
    with pytest.raises(FetchError) as info:
        fetch(
            client,
            site.url("/slow.jpg"),
            max_bytes=MAX_BYTES,
            allow_private=True,
            timeout=httpx.Timeout(2.0, read=1.0),
        )
    assert info.value.reason == "timeout"


def test_fetch_connection_refused_is_network(client: httpx.Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError) as info:
        fetch(client, f"http://127.0.0.1:{port}/a.jpg", max_bytes=MAX_BYTES, allow_private=True)
    assert info.value.reason == "network"


# -- download_candidates ---------------------------------------------------------------------


@pytest.mark.slow
def test_mixed_batch_states_files_and_provenance(proj: Store, site: Site) -> None:
    good = {"/a.jpg": "Elves", "/b.png": "Dwarves", "/redirect": "Dwarves"}
    bad = {
        "/missing.jpg": "http 404",
        "/slow.jpg": "timeout",
        "/chunked-big": "too large",
        "/huge-length": "too large",
        "/html.jpg": "not an image",
        "/bomb.png": "bomb",
        "/chain/6": "too many redirects",
    }
    for path, label in good.items():
        accept(proj, label, site.url(path))
    accept(proj, "Elves", site.url("/copy-of-a.jpg"), *(site.url(p) for p in bad))
    accept(proj, "Elves", site.url("/gen/1.jpg"), state="pending")  # not accepted: left alone

    report = download_candidates(proj)

    assert (report.total, report.ok, report.duplicates, report.failed) == (11, 3, 1, 7)
    assert report.near_duplicates == 0 and not report.cancelled
    rows = by_url(proj)
    for path, reason in bad.items():
        row = rows[site.url(path)]
        assert (row.state, row.error, row.image_id) == ("failed", reason, None), path
        assert (row.id, site.url(path), reason) in report.failures
    assert rows[site.url("/gen/1.jpg")].state == "pending"
    assert site.hits("/gen/1.jpg") == 0

    images = proj.images()
    assert len(images) == 3  # the copy of A is not stored twice
    assert image_files(proj) == {f"images/{i.label}/{i.id}.jpg" for i in images}
    assert list((proj.root / "tmp").iterdir()) == []
    for path, label in good.items():
        row = rows[site.url(path)]
        assert row.state == "downloaded" and row.error is None
        img = proj.get_image(row.image_id) if row.image_id else None
        assert img is not None and img.label == label

    # Exact duplicate: both candidates point at the one stored image, whichever finished first.
    a_row, copy_row = rows[site.url("/a.jpg")], rows[site.url("/copy-of-a.jpg")]
    assert copy_row.state == "downloaded" and copy_row.image_id == a_row.image_id
    stored = proj.get_image(a_row.image_id or 0)
    origin = rows[stored.source_url or ""]
    assert stored.source == "download"
    assert (stored.page_url, stored.title, stored.query) == (origin.page_url, origin.title, origin.query)
    assert stored.query == "Elves query" and stored.title == f"title of {stored.source_url}"

    redirected = proj.get_image(rows[site.url("/redirect")].image_id or 0)
    assert redirected.source_url == site.url("/redirect")  # provenance is the candidate's URL
    assert site.user_agents == {USER_AGENT}


# What every endpoint of the test server must end as after download_candidates: "ok" (stored,
# candidate downloaded) or the failure reason recorded on the candidate.
ENDPOINT_OUTCOMES: dict[str, str] = {
    "/a.jpg": "ok",
    "/b.png": "ok",
    "/d.webp": "ok",  # WebP
    "/anim.gif": "ok",  # animated GIF: the first frame is kept
    "/text-plain.jpg": "ok",  # valid JPEG with Content-Type text/plain: the decode decides, not the header
    "/redirect": "ok",  # relative Location
    "/missing.jpg": "http 404",
    "/slow.jpg": "timeout",
    "/html.jpg": "not an image",  # HTML error page sent as image/jpeg
    "/vector.svg": "not an image",  # SVG is not rasterised
    "/truncated.jpg": "corrupt",  # JPEG cut in half
    "/empty.jpg": "empty",  # 200 with a 0-byte body
    "/chunked-big": "too large",  # over max_bytes, no Content-Length
    "/huge-length": "too large",  # Content-Length over max_bytes
    "/bomb.png": "bomb",  # 100 Mpx PNG of ~100 KB
    "/chain/6": "too many redirects",
    "/loop": "too many redirects",  # /loop -> /loop
}


def test_truncated_jpeg_is_rejected_as_corrupt() -> None:
    # PIL decodes a truncated JPEG partially (grey bottom) when this global is True; it must stay off.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageRejected) as info:
        normalize(TRUNCATED_JPEG)
    assert info.value.reason == "corrupt"
    assert "truncated" in str(info.value)


@pytest.mark.slow
def test_every_endpoint_ends_as_documented(proj: Store, site: Site) -> None:
    accept(proj, "Elves", *(site.url(path) for path in ENDPOINT_OUTCOMES))

    report = download_candidates(proj)

    rows = by_url(proj)
    outcomes = {
        path: "ok" if rows[site.url(path)].state == "downloaded" else rows[site.url(path)].error
        for path in ENDPOINT_OUTCOMES
    }
    assert outcomes == ENDPOINT_OUTCOMES
    ok = [path for path, outcome in ENDPOINT_OUTCOMES.items() if outcome == "ok"]
    failed = {path: reason for path, reason in ENDPOINT_OUTCOMES.items() if reason != "ok"}
    assert (report.total, report.ok, report.failed, report.duplicates) == (
        len(ENDPOINT_OUTCOMES),
        len(ok),
        len(failed),
        0,
    )
    assert sorted(report.failures) == sorted((rows[site.url(p)].id, site.url(p), r) for p, r in failed.items())
    for path in failed:
        row = rows[site.url(path)]
        assert (row.state, row.image_id) == ("failed", None), path

    # DB and folders agree: one file per stored image, at its class path, holding the stored bytes.
    images = proj.images()
    assert sorted(img.id for img in images) == sorted(rows[site.url(p)].image_id or 0 for p in ok)
    assert image_files(proj) == {f"images/{img.label}/{img.id}.jpg" for img in images}
    for img in images:
        data = (proj.root / "images" / img.label / f"{img.id}.jpg").read_bytes()
        assert hashlib.sha256(data).hexdigest() == img.sha256
        with Image.open(io.BytesIO(data)) as stored:
            assert stored.format == "JPEG" and stored.size == (img.width, img.height)
    # No temp file left anywhere (store tmp/ nor write_atomic's .tmp-* next to the images).
    assert list((proj.root / "tmp").iterdir()) == []
    assert [p for p in proj.root.rglob("*") if p.name.startswith(".tmp-")] == []

    # The animated GIF is stored as its first frame (red), not the second (blue).
    gif = proj.get_image(rows[site.url("/anim.gif")].image_id or 0)
    with Image.open(proj.root / "images" / gif.label / f"{gif.id}.jpg") as stored:
        assert stored.size == (96, 64)
        mean = ImageStat.Stat(stored.convert("RGB")).mean
    assert all(abs(m - c) <= 8 for m, c in zip(mean, FRAME0, strict=True)), mean


def test_near_duplicate_is_stored_and_flagged(proj: Store, site: Site) -> None:
    assert hamming(normalize(JPEG_A).phash, normalize(PNG_B).phash) > 8  # precondition: A and B differ
    accept(proj, "Elves", site.url("/a.jpg"), site.url("/b.png"))
    download_candidates(proj)
    accept(proj, "Elves", site.url("/a-low.jpg"))
    report = download_candidates(proj)

    assert (report.ok, report.near_duplicates, report.duplicates) == (1, 1, 0)
    rows = by_url(proj)
    first = proj.get_image(rows[site.url("/a.jpg")].image_id or 0)
    second = proj.get_image(rows[site.url("/a-low.jpg")].image_id or 0)
    assert second.sha256 != first.sha256
    assert second.dup_of == first.id
    assert "near-duplicate" in second.flags and "near-duplicate" in first.flags
    assert proj.get_image(rows[site.url("/b.png")].image_id or 0).flags == ()


def test_copy_of_deleted_image_is_rejected(proj: Store, site: Site) -> None:
    accept(proj, "Elves", site.url("/a.jpg"))
    download_candidates(proj)
    image_id = by_url(proj)[site.url("/a.jpg")].image_id or 0
    proj.delete_images([image_id])
    (cid,) = accept(proj, "Dwarves", site.url("/copy-of-a.jpg"))

    report = download_candidates(proj)
    row = proj.get_candidate(cid)
    assert (row.state, row.error, row.image_id) == ("rejected", f"previously deleted image {image_id}", image_id)
    assert report.previously_deleted == 1 and report.ok == 0 and report.duplicates == 0
    assert image_files(proj) == set()
    assert proj.get_image(image_id).deleted


def test_retry_failed_after_server_fixed(proj: Store, site: Site) -> None:
    (cid,) = accept(proj, "Elves", site.url("/flaky.jpg"))
    first = download_candidates(proj)
    assert first.failures == [(cid, site.url("/flaky.jpg"), "http 503")]
    assert proj.get_candidate(cid).state == "failed"

    site.flaky_broken = False
    assert download_candidates(proj).total == 0  # failed ones wait for an explicit retry
    report = download_candidates(proj, retry_failed=True)
    row = proj.get_candidate(cid)
    assert report.ok == 1
    assert (row.state, row.error, row.attempts) == ("downloaded", None, 2)
    assert image_files(proj) == {f"images/Elves/{row.image_id}.jpg"}


def test_cancel_leaves_rest_accepted_and_rerun_finishes(proj: Store, site: Site) -> None:
    ids = accept(proj, "Elves", *(site.url(f"/gen/{n}.jpg") for n in range(10)))
    cancel = threading.Event()
    seen: list[DownloadProgress] = []

    def on_progress(p: DownloadProgress) -> None:
        seen.append(p)
        cancel.set()  # cancel as soon as the first result is in

    report = download_candidates(proj, workers=1, progress=on_progress, cancel=cancel)
    states = [proj.get_candidate(i).state for i in ids]
    assert report.cancelled
    assert 1 <= report.done <= 3  # the one running plus at most the 2*workers queue
    assert states.count("downloaded") == report.ok == report.done
    assert states.count("accepted") == 10 - report.done
    # Dropped work never reached the server; the one in flight (workers=1) may have, and was aborted.
    assert report.done <= sum(site.hits(f"/gen/{n}.jpg") for n in range(10)) <= report.done + 1
    assert "resume" in report.summary()

    again = download_candidates(proj)
    assert again.total == again.ok == 10 - report.done and not again.cancelled
    assert all(proj.get_candidate(i).state == "downloaded" for i in ids)
    assert len(image_files(proj)) == 10


def test_at_most_twice_workers_queued(proj: Store, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    submitted = 0

    processed = 0

    class CountingPool(ThreadPoolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            fn = args[0]
            nonlocal submitted, processed
            if fn is dl._fetch_job:  # a candidate enters; its processing (_work) is the same one
                submitted += 1
            else:
                processed += 1
            return super().submit(*args, **kwargs)

    monkeypatch.setattr(dl, "ThreadPoolExecutor", CountingPool)
    accept(proj, "Elves", *(site.url(f"/gen/{n}.jpg") for n in range(12)))
    outstanding: list[int] = []
    report = download_candidates(proj, workers=2, progress=lambda p: outstanding.append(submitted - p.done))
    assert report.ok == submitted == processed == 12
    assert max(outstanding) <= 4  # never the whole list at once: cancel and memory stay bounded


def test_cancel_before_start_downloads_nothing(proj: Store, site: Site) -> None:
    accept(proj, "Elves", site.url("/a.jpg"))
    cancel = threading.Event()
    cancel.set()
    report = download_candidates(proj, cancel=cancel)
    assert report.cancelled and report.done == 0 and site.requests == []


def test_progress_counts_are_consistent(proj: Store, site: Site) -> None:
    accept(proj, "Elves", *(site.url(p) for p in ("/a.jpg", "/copy-of-a.jpg", "/missing.jpg", "/b.png", "/c.jpg")))
    seen: list[DownloadProgress] = []
    report = download_candidates(proj, workers=2, progress=seen.append)
    assert [p.done for p in seen] == [1, 2, 3, 4, 5]
    for p in seen:
        assert p.total == 5
        assert p.ok + p.failed + p.duplicates + p.previously_deleted == p.done
        assert p.eta_s is not None and p.eta_s >= 0 and p.elapsed_s >= 0
        assert p.message
    last = seen[-1]
    assert (last.ok, last.failed, last.duplicates) == (report.ok, report.failed, report.duplicates) == (3, 1, 1)
    assert last.eta_s == 0


def test_candidates_accepted_during_a_download_join_it(proj: Store, site: Site) -> None:
    """The Search page keeps deciding while a download runs: what is accepted meanwhile goes in this run
    (the total grows), not the next one."""
    accept(proj, "Elves", site.url("/a.jpg"), site.url("/b.png"))
    (late,) = accept(proj, "Dwarves", site.url("/c.jpg"), state="pending")
    seen: list[DownloadProgress] = []

    def progress(p: DownloadProgress) -> None:
        seen.append(p)
        if len(seen) == 1:
            proj.decide([late], "accepted")  # accepted in another window, mid-run

    report = download_candidates(proj, workers=1, progress=progress)
    assert (report.total, report.ok) == (3, 3) and proj.get_candidate(late).state == "downloaded"
    assert seen[0].total == 2 and seen[-1].total == 3 and seen[-1].done == 3
    assert site.hits("/c.jpg") == 1


def test_a_candidate_accepted_as_the_last_image_lands_still_joins(proj: Store, site: Site) -> None:
    accept(proj, "Elves", site.url("/a.jpg"), site.url("/b.png"))
    (late,) = accept(proj, "Elves", site.url("/c.jpg"), state="pending")

    def progress(p: DownloadProgress) -> None:
        if p.done == 2 and proj.get_candidate(late).state == "pending":
            proj.decide([late], "accepted")  # just as the run would end: its last look takes it in

    report = download_candidates(proj, workers=2, progress=progress)
    assert report.total == 3 and proj.get_candidate(late).state == "downloaded"


def test_a_download_of_given_ids_takes_no_latecomer(proj: Store, site: Site) -> None:
    (a,) = accept(proj, "Elves", site.url("/a.jpg"))
    (late,) = accept(proj, "Elves", site.url("/b.png"), state="pending")
    report = download_candidates(proj, [a], progress=lambda p: proj.decide([late], "accepted"))
    assert report.total == 1 and proj.get_candidate(late).state == "accepted"


def test_the_eta_follows_the_recent_rate() -> None:
    """100 to do: 10 from a slow host (one every 10 s), then 30 at one a second. At 130 s the remaining 60
    at the recent 1/s is about 60 s; the run's average (40 in 130 s) would say 195 s."""
    from lotr_labeler.collect.download import DownloadReport, _progress

    report = DownloadReport(total=100)
    steps = [(10.0 * k, k) for k in range(1, 11)] + [(100.0 + k, 10 + k) for k in range(1, 31)]
    for at, done in steps:
        report.ok = done
        last = _progress(report, 0.0, "", now=at)
    assert last.eta_s is not None and 50 <= last.eta_s <= 75, last.eta_s


def test_the_eta_counts_the_wait_before_a_burst() -> None:
    """A group commit reports 32 images at once after 3 s: the rate is 32 in 3 s (about 91 s for the other
    968), not 31 in no time."""
    from lotr_labeler.collect.download import DownloadReport, _progress

    report = DownloadReport(total=1000)
    for done in range(1, 33):
        report.ok = done
        last = _progress(report, 0.0, "", now=3.0 + done * 1e-4)
    assert last.eta_s is not None and 80 <= last.eta_s <= 100, last.eta_s
    first = _progress(DownloadReport(total=4, ok=1), 0.0, "", now=5.0)  # one report: the run's own rate
    assert first.eta_s == pytest.approx(15.0)


def test_ids_select_exactly_and_skip_ineligible(proj: Store, site: Site) -> None:
    a, b = accept(proj, "Elves", site.url("/a.jpg"), site.url("/b.png"))
    (pending,) = accept(proj, "Elves", site.url("/c.jpg"), state="pending")
    report = download_candidates(proj, [a, pending])
    assert (report.total, report.ok, report.skipped) == (1, 1, 1)
    assert proj.get_candidate(b).state == "accepted"
    assert proj.get_candidate(pending).state == "pending"
    assert site.hits("/b.png") == site.hits("/c.jpg") == 0
    with pytest.raises(NotFound, match="9999"):
        download_candidates(proj, [9999])


def test_private_hosts_refused_unless_allowed(proj: Store, site: Site) -> None:
    (cid,) = accept(proj, "Elves", site.url("/a.jpg"))
    report = download_candidates(proj, allow_private=False)
    row = proj.get_candidate(cid)
    assert (row.state, row.error) == ("failed", "blocked host")
    assert report.failures == [(cid, site.url("/a.jpg"), "blocked host")]
    assert site.requests == []


def test_redirect_guard_applies_inside_batch(proj: Store, site: Site) -> None:
    (cid,) = accept(proj, "Elves", site.url("/to-private"))
    download_candidates(proj, allow_private=False, resolver=pretend_public)
    assert proj.get_candidate(cid).error == "blocked host"
    assert site.requests == ["/to-private"]


def test_bad_workers_rejected(proj: Store) -> None:
    with pytest.raises(InvalidInput, match="download_workers"):
        download_candidates(proj, workers=0)


def test_report_as_dict_is_json(proj: Store, site: Site) -> None:
    accept(proj, "Elves", site.url("/a.jpg"), site.url("/missing.jpg"))
    report = download_candidates(proj)
    data = json.loads(json.dumps(report.as_dict()))
    assert data["ok"] == 1 and data["failed"] == 1 and data["done"] == 2
    assert data["failures"][0]["reason"] == "http 404"
    assert "http 404 x1" in data["summary"]


def test_download_job_body_runs_from_the_library(proj: Store, site: Site) -> None:
    # What `lotr-labeler download` and the page's job do, called as a notebook would.
    accept(proj, "Elves", site.url("/a.jpg"), site.url("/b.png"))
    seen: list[Progress] = []
    ran = DownloadJob(score=False).run(proj, seen.append)
    assert ran.state == "done" and ran.report.ok == 2 and ran.summary == ran.report.summary()
    assert all(isinstance(p, DownloadProgress) for p in seen) and seen[-1].done == seen[-1].total == 2
    accept(proj, "Dwarves", site.url("/missing.jpg"), site.url("/html.jpg"))
    failed = DownloadJob(score=False).run(proj)
    assert failed.state == "failed" and failed.report.mostly_failed  # the page shows it as an error
    accept(proj, "Dwarves", site.url("/c.jpg"))
    cancel = threading.Event()
    cancel.set()
    stopped = DownloadJob(score=False).run(proj, cancel=cancel)
    assert stopped.state == "cancelled" and stopped.report.ok == 0


def test_unexpected_decoder_error_fails_one_candidate(proj: Store, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    real: Callable[..., Any] = dl.normalize

    def flaky_normalize(data: bytes, **kw: Any) -> Any:
        if data == PNG_B:
            raise struct.error("unpack requires a buffer of 4 bytes")  # the kind PIL leaks
        return real(data, **kw)

    monkeypatch.setattr(dl, "normalize", flaky_normalize)
    a, b = accept(proj, "Elves", site.url("/a.jpg"), site.url("/b.png"))
    report = download_candidates(proj)
    assert report.ok == 1
    assert proj.get_candidate(b).error == "corrupt"
    assert proj.get_candidate(a).state == "downloaded"
