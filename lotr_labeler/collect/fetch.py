"""The guarded HTTP fetcher: one image (or thumbnail) from the internet, safely.

Every hop (the first URL and each redirect target) is checked before any
connection: http(s) only, no credentials in the URL, and the host must resolve to
public addresses unless private hosts are allowed (addresses embedding an IPv4 one,
e.g. 6to4 or NAT64, are judged by it). Bodies are streamed with a byte cap on the
decoded bytes (gzip/deflate undone in bounded steps). Used by the batch download
(``collect.download``), candidate triage (``review.candidates``) and prediction from a
URL (``model.predict``).

Time: each fetch has one deadline for the whole request, redirects included. With a
client from ``make_client`` every socket operation (connect, TLS, each read) is
bounded by what is left of it and a read wakes every ``POLL_S`` to look at the
cancel flag, so neither a server trickling one byte a second nor a stalled one can
hold a fetch past its deadline, and Cancel stops a fetch in flight within a fraction
of a second. That client also connects only to the addresses the guard checked (a DNS
record that changes in between is not followed). Any other client gets the deadline
checked between network reads.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from lotr_labeler.errors import BlockedHost, FetchError
from lotr_labeler.progress import Cancel
from lotr_labeler.urls import redact

# Some image hosts refuse clients that do not look like a browser. Only the encodings
# this module decodes itself (with a bound on each step) are offered.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "image/avif,image/webp,image/*,*/*;q=0.8",
    "Accept-Encoding": "gzip, deflate",
}
MAX_REDIRECTS = 5
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024  # most decompressed bytes produced by one inflate step
# How often a blocked read (and the batch download's loop) look at the cancel flag and the deadline.
POLL_S = 0.1


Resolver = Callable[[str, int], list[str]]
"""(host, port) -> IP address strings. Replaceable so the address check is testable offline."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# -- the host guard ---------------------------------------------------------------------------

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known prefix: IPv4 in the last 32 bits
_SIIT = ipaddress.IPv6Network("::ffff:0:0:0/96")  # IPv4-translated addresses
_COMPAT = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible addresses


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (and may be routed to)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)  # (server, client)
    if ip in _NAT64 or ip in _SIIT or (ip in _COMPAT and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _blocked(address: str) -> bool:
    """True for any address that is not a public unicast one, also behind an IPv6 wrapping."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if any(_blocked(str(v4)) for v4 in inner):
            return True  # e.g. 6to4 2002:a00:1:: is 10.0.0.1
        if ip.ipv4_mapped is not None or ip in _NAT64:
            return False  # only a spelling (or a translation) of a public IPv4 address
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global  # e.g. carrier-grade NAT 100.64.0.0/10
    )


def wire_host(url: str) -> str:
    """The host name as it goes on the wire: an IDN in its ``xn--`` form (IDNA, as httpx encodes it),
    so the name checked and pinned is the one the connection asks for, never resolved again."""
    try:
        return httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return urlsplit(url).hostname or ""


def check_url(url: str, allow_private: bool, *, resolver: Resolver | None = None) -> list[str]:
    """Raise FetchError ("bad url", "dns") or BlockedHost unless ``url`` may be fetched.

    Returns the addresses the host resolved to (the ones that were checked).
    """
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError(f"{redact(url)!r} is not a valid URL.", "bad url") from None
    shown = redact(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{shown!r} is not an http(s) URL with a host. Only http and https are fetched.", "bad url")
    if "@" in parts.netloc:
        # A password in a URL ends up in logs, the manifest and exports; image hosts never need one.
        raise FetchError(
            f"Refused {shown}: the URL carries a user name or password (user:password@host). "
            "Use the image's address without credentials.",
            "bad url",
        )
    host = wire_host(url)
    try:
        addresses = (resolver or system_resolver)(host, port)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"Cannot resolve host {host!r} of {url} ({exc}).", "dns") from None
    if not addresses:
        raise FetchError(f"Host {host!r} of {url} resolves to no address.", "dns")
    if allow_private:
        return addresses
    for address in addresses:
        if _blocked(address):
            raise BlockedHost(
                f"Refused {url}: host {host!r} resolves to non-public address {address}. "
                "To download from local or private hosts, set allow_private_hosts "
                "(or pass --allow-private-hosts)."
            )
    return addresses


# -- one deadline per fetch, enforced at the socket ------------------------------------------


class _Stopped(Exception):
    """Raised inside the network stack when a fetch's deadline passed or it was cancelled.

    Not an httpcore/httpx error, so it passes through both untouched (httpcore drops the
    connection on the way)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "timeout" | "cancelled"


@dataclass
class _Guard:
    """What bounds the fetch running on this thread."""

    deadline: float | None  # time.monotonic() value
    cancel: Cancel | None
    pins: dict[str, list[str]] = field(default_factory=dict)  # host name -> checked addresses

    def left(self) -> float | None:
        """Seconds left (raises _Stopped when none, or when cancelled)."""
        if self.cancel is not None and self.cancel.is_set():
            raise _Stopped("cancelled")
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Stopped("timeout")
        return left

    def bound(self, timeout: float | None) -> float | None:
        left = self.left()
        if left is None:
            return timeout
        return left if timeout is None else min(timeout, left)


_local = threading.local()


def _guard() -> _Guard | None:
    guard: _Guard | None = getattr(_local, "guard", None)
    return guard


@contextmanager
def _guarding(guard: _Guard) -> Iterator[_Guard]:
    outer = _guard()
    _local.guard = guard
    try:
        yield guard
    finally:
        _local.guard = outer


# Linux only (elsewhere None): see _GuardedStream.read.
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class _GuardedStream(httpcore.NetworkStream):
    """A socket stream whose every operation obeys the current thread's _Guard."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        sock = inner.get_extra_info("socket")
        self._sock: socket.socket | None = sock if isinstance(sock, socket.socket) else None

    def _ack_at_once(self) -> None:
        """Acknowledge what arrives next at once instead of after up to 40 ms.

        On a kept-alive connection Linux delays ACKs ("interactive" mode), and a server that
        writes a response in two parts (headers, then the body: Python's http.server, many small
        servers) holds the body back under Nagle until the headers are acknowledged: every
        request after the first couple on a connection then waits ~40 ms for nothing (measured
        here: 300 sequential fetches from such a server took 10.5 s instead of 0.9 s). The flag
        does not stick (the kernel returns to delayed ACKs), so it is set before each read.
        """
        if _QUICKACK is not None and self._sock is not None:
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:  # not TCP (a test double), or closed: nothing to speed up
                self._sock = None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._ack_at_once()
        guard = _guard()
        if guard is None:
            return self._inner.read(max_bytes, timeout)
        # Wait in short slices (a timed-out recv consumed nothing, so it can be retried):
        # the read still ends after ``timeout`` of silence, but also at the deadline or on cancel.
        silence_ends = None if timeout is None else time.monotonic() + timeout
        while True:
            left = guard.bound(None if silence_ends is None else silence_ends - time.monotonic())
            step = POLL_S if left is None else min(POLL_S, left)
            if step <= 0:
                raise httpcore.ReadTimeout("read timed out")
            try:
                return self._inner.read(max_bytes, step)
            except httpcore.ReadTimeout:
                if silence_ends is not None and time.monotonic() >= silence_ends:
                    raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        guard = _guard()
        self._inner.write(buffer, guard.bound(timeout) if guard else timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        guard = _guard()
        inner = self._inner.start_tls(ssl_context, server_hostname, guard.bound(timeout) if guard else timeout)
        return _GuardedStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Connects to the checked addresses within the deadline; streams obey the guard."""

    def __init__(self) -> None:
        self._sync = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        guard = _guard()
        if guard is None:
            return _GuardedStream(self._sync.connect_tcp(host, port, timeout, local_address, socket_options))
        last: Exception | None = None
        for address in guard.pins.get(host, [host]):
            try:
                stream = self._sync.connect_tcp(address, port, guard.bound(timeout), local_address, socket_options)
                return _GuardedStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc  # try the next checked address, as create_connection does
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not used for downloads")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """httpx's default certificate checks, built once per process: loading the CA bundle costs
    ~40 ms of CPU (0.2 s seen under load) and each client used to load it twice."""
    return httpx.create_ssl_context(trust_env=False)


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext | None, proxy: str | None) -> None:
        ssl_context = ssl_context or _default_ssl_context()
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)  # a context: nothing loaded
        # httpx has no public hook for the network backend; its pool is rebuilt with ours.
        if proxy is None:
            self._pool = httpcore.ConnectionPool(
                ssl_context=ssl_context,
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=_GuardedBackend(),
            )
            return
        url = httpx.URL(proxy)
        self._pool = httpcore.HTTPProxy(
            proxy_url=str(url.copy_with(username=None, password=None)),
            proxy_auth=(url.username, url.password) if url.username else None,
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(),
        )


class _ProxyOrDirect(httpx.BaseTransport):
    """The environment's proxy, except for hosts NO_PROXY exempts (e.g. localhost), as httpx does."""

    def __init__(self, direct: _GuardedTransport, proxied: _GuardedTransport) -> None:
        self._direct = direct
        self._proxied = proxied

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        bypass = urllib.request.proxy_bypass(request.url.host)
        return (self._direct if bypass else self._proxied).handle_request(request)

    def close(self) -> None:
        self._direct.close()
        self._proxied.close()


def env_proxy() -> str | None:
    """The proxy the environment names for downloads (HTTPS_PROXY, else HTTP_PROXY or ALL_PROXY)."""
    proxies = urllib.request.getproxies()
    return proxies.get("https") or proxies.get("http") or proxies.get("all") or None


def make_client(
    timeout: httpx.Timeout,
    max_connections: int = 10,
    *,
    ssl_context: ssl.SSLContext | None = None,
    proxy: str | None = None,
) -> httpx.Client:
    """An httpx client for ``fetch`` whose deadline and cancel act between any two bytes.

    ``ssl_context`` replaces the default certificate checks (e.g. to trust a test CA).
    Without a proxy, connections go only to the addresses the guard checked. With one
    (``proxy``, default: the environment's, see ``env_proxy``; hosts in NO_PROXY go
    direct) the proxy resolves the names, so the address check happens here but the proxy
    makes the connection; the deadline and cancel still hold on the socket to the proxy.
    """
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    direct = _GuardedTransport(limits, ssl_context, None)
    proxy = proxy if proxy is not None else env_proxy()
    transport: httpx.BaseTransport = direct
    if proxy:
        transport = _ProxyOrDirect(direct, _GuardedTransport(limits, ssl_context, proxy))
    return httpx.Client(headers=HEADERS, timeout=timeout, transport=transport)


# -- fetch ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    data: bytes
    final_url: str


def fetch(
    client: httpx.Client,
    url: str,
    *,
    max_bytes: int,
    allow_private: bool,
    timeout: httpx.Timeout | None = None,
    deadline_s: float | None = None,
    resolver: Resolver | None = None,
    cancel: Cancel | None = None,
) -> Fetched:
    """GET ``url`` into memory, following at most MAX_REDIRECTS checked redirects.

    ``timeout`` applies per request (httpx connect/read); ``deadline_s`` bounds the
    whole fetch, redirects included; setting ``cancel`` ends it early (reason
    ``cancelled``). ``max_bytes`` caps the body after Content-Encoding is undone,
    checked as the bytes arrive. Use a client from ``make_client`` (see module doc).
    """
    started = time.monotonic()
    guard = _Guard(None if deadline_s is None else started + deadline_s, cancel)
    current = url
    with _guarding(guard):
        for hop in range(MAX_REDIRECTS + 1):
            addresses = check_url(current, allow_private, resolver=resolver)
            host = wire_host(current)
            if not _is_ip(host):
                guard.pins[host] = addresses  # connect where the check looked, under the name httpx connects to
            try:
                location = _get(client, current, max_bytes, timeout, guard)
            except _Stopped as stop:
                raise _stopped(stop.reason, current, deadline_s) from None
            except httpx.TimeoutException:
                raise FetchError(f"Timed out fetching {current}.", "timeout") from None
            except httpx.InvalidURL as exc:
                raise FetchError(f"{current!r} is not a valid URL ({exc}).", "bad url") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"Network error fetching {current}: {exc}.", "network") from None
            if isinstance(location, Fetched):
                return location
            if hop == MAX_REDIRECTS:
                break
            current = urljoin(current, location)
    raise FetchError(f"{url} redirected more than {MAX_REDIRECTS} times.", "too many redirects")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _stopped(reason: str, url: str, deadline_s: float | None) -> FetchError:
    if reason == "cancelled":
        return FetchError(f"Fetching {url} was cancelled.", "cancelled")
    return FetchError(
        f"{url} took more than {deadline_s or 0:.0f} s to download. Try again later or raise read_timeout.", "timeout"
    )


def _get(client: httpx.Client, url: str, max_bytes: int, timeout: httpx.Timeout | None, guard: _Guard) -> Fetched | str:
    """One request: the body, or the Location to go to next."""
    kwargs: dict[str, Any] = {"headers": HEADERS, "follow_redirects": False}
    if timeout is not None:
        kwargs["timeout"] = timeout
    guard.left()  # no new request once the deadline passed or cancel is set
    with client.stream("GET", url, **kwargs) as resp:
        status = resp.status_code
        location: str | None = resp.headers.get("location")
        if status in _REDIRECT_CODES and location:
            return location
        if status >= 300:
            raise FetchError(f"HTTP {status} from {url}", reason=f"http {status}")
        length = resp.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise FetchError(f"{url} is {int(length):,} bytes, over the max_bytes limit of {max_bytes:,}.", "too large")
        return Fetched(_read_capped(resp, url, max_bytes, guard), str(resp.url))


def _read_capped(resp: httpx.Response, url: str, max_bytes: int, guard: _Guard) -> bytes:
    """The decoded body, refused as soon as it passes ``max_bytes`` (raw or decoded)."""
    inflate = _Inflater.for_encoding(resp.headers.get("content-encoding", ""), url)
    buf = bytearray()
    raw_bytes = 0

    def add(piece: bytes) -> None:
        buf.extend(piece)
        if len(buf) > max_bytes:
            raise FetchError(f"{url} sent more than the max_bytes limit of {max_bytes:,} bytes.", "too large")

    for raw in resp.iter_raw():  # each network read as it arrives: no 64 KiB batching
        guard.left()  # also for clients without the guarded transport
        raw_bytes += len(raw)
        if raw_bytes > max_bytes:
            raise FetchError(f"{url} sent more than the max_bytes limit of {max_bytes:,} bytes.", "too large")
        if inflate is None:
            add(raw)
            continue
        for piece in inflate.feed(raw):
            add(piece)
    if inflate is not None:
        for piece in inflate.finish():
            add(piece)
    return bytes(buf)


class _Inflater:
    """Undo gzip/deflate in bounded steps: no single step yields more than _CHUNK bytes,
    so a gzip bomb is refused at the cap instead of being expanded in one read."""

    def __init__(self, encoding: str, url: str) -> None:
        self._url = url
        self._deflate = encoding == "deflate"
        self._z = zlib.decompressobj(zlib.MAX_WBITS if self._deflate else 16 + zlib.MAX_WBITS)
        self._started = False

    @classmethod
    def for_encoding(cls, header: str, url: str) -> _Inflater | None:
        codings = [c.strip().lower() for c in header.split(",") if c.strip().lower() not in ("", "identity")]
        if not codings:
            return None
        if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
            return cls("deflate" if codings[0] == "deflate" else "gzip", url)
        raise FetchError(f"{url} sent Content-Encoding {header!r}; only gzip and deflate are accepted.", "bad encoding")

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._deflate and not self._started and data:
            self._started = True
            try:  # "deflate" is zlib-wrapped by the standard, raw in practice (as httpx handles it)
                zlib.decompressobj().decompress(data[:2])
            except zlib.error:
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
        while not self._z.eof:
            try:
                out = self._z.decompress(data, _CHUNK)
            except zlib.error as exc:
                raise FetchError(f"{self._url} sent a damaged {self._kind} body ({exc}).", "bad encoding") from None
            if out:
                yield out
            data = self._z.unconsumed_tail
            if not data and len(out) < _CHUNK:
                return

    def finish(self) -> Iterator[bytes]:
        # A body cut short is left for the image decoder to judge, as httpx does.
        yield from self.feed(b"")

    @property
    def _kind(self) -> str:
        return "deflate" if self._deflate else "gzip"
