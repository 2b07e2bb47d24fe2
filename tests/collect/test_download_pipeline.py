"""Downloads overlap network waits with CPU: fetch threads hand bodies to processing threads, and
reads ask for immediate ACKs (no 40 ms delayed-ACK stall against servers that write twice)."""

from __future__ import annotations

import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpcore
import httpx
import pytest

from lotr_labeler.collect import download as dl
from lotr_labeler.collect import fetch as guarded
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.workspace import create_project


@pytest.fixture
def proj(tmp_path: Any) -> Store:
    store = create_project(tmp_path, "pipe", "empty")
    store.add_class("a")
    store.set_setting("allow_private_hosts", True)  # the test server is on 127.0.0.1
    return store


def test_fetch_threads_keep_downloading_while_bodies_are_processed(
    proj: Store, image_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2 download threads, 4 candidates: every processing waits until all 4 bodies are in. When the
    # thread that fetched a body also decoded it (before), only 2 could ever be fetched: it hangs.
    n = 4
    proj.add_candidates(CandidateIn("a", f"{image_server}/img/{k}.png") for k in range(n))
    proj.decide([c.id for c in proj.candidates()], "accepted")
    fetched = threading.Semaphore(0)
    real_fetch, real_work = dl.fetch, dl._work
    all_in = threading.Event()
    threads: set[str] = set()

    def fetch(*args: Any, **kwargs: Any) -> Any:
        threads.add(threading.current_thread().name)
        got = real_fetch(*args, **kwargs)
        fetched.release()
        return got

    def work(*args: Any) -> Any:
        assert all_in.wait(timeout=60), "the other bodies were not fetched while this one waited"
        return real_work(*args)

    monkeypatch.setattr(dl, "fetch", fetch)
    monkeypatch.setattr(dl, "_work", work)

    def release_when_all_fetched() -> None:
        for _ in range(n):
            fetched.acquire(timeout=60)
        all_in.set()

    watcher = threading.Thread(target=release_when_all_fetched, daemon=True)
    watcher.start()
    report = dl.download_candidates(proj, workers=2)
    watcher.join(timeout=5)
    assert all_in.is_set() and report.ok == n, report.summary()
    assert all(name.startswith("download") for name in threads), threads  # not the processing threads


class _SpySocket(socket.socket):
    """A real TCP socket that records its setsockopt calls."""

    calls: list[tuple[Any, ...]]

    def setsockopt(self, *args: Any) -> None:
        self.calls.append(args)
        super().setsockopt(*args)


class _Inner(httpcore.NetworkStream):
    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.reads = 0

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.reads += 1
        return b"x"

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def get_extra_info(self, info: str) -> Any:
        return self.sock if info == "socket" else None


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux only")
def test_every_read_asks_for_an_immediate_ack() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    sock = _SpySocket(socket.AF_INET, socket.SOCK_STREAM)
    sock.calls = []
    try:
        sock.connect(server.getsockname())
        stream = guarded._GuardedStream(_Inner(sock))
        for _ in range(3):
            assert stream.read(10) == b"x"
        with guarded._guarding(guarded._Guard(None, None)):  # the guarded path (deadline, cancel) too
            assert stream.read(10) == b"x"
        quick = (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        assert sock.calls == [quick] * 4
    finally:
        sock.close()
        server.close()


def test_reads_work_on_streams_without_a_tcp_socket() -> None:
    a, b = socket.socketpair()  # AF_UNIX: TCP options fail, the read goes on
    try:
        for sock in (None, a):
            inner = _Inner(sock)
            stream = guarded._GuardedStream(inner)
            assert stream.read(10) == stream.read(10) == b"x" and inner.reads == 2
    finally:
        a.close()
        b.close()


def test_clients_share_one_ssl_context(monkeypatch: pytest.MonkeyPatch) -> None:
    # Loading the CA bundle is the costly part of a client (each one loaded it twice before).
    loads: list[Any] = []
    real = ssl.SSLContext.load_verify_locations

    def spy(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args)
        real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", spy)
    guarded._default_ssl_context.cache_clear()
    with (
        guarded.make_client(httpx.Timeout(5.0)) as one,
        guarded.make_client(httpx.Timeout(5.0), proxy="http://127.0.0.1:9"),
    ):
        assert one is not None
    assert len(loads) == 1, loads


def test_candidates_in_flight_stay_within_workers_plus_processors(
    proj: Store, image_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each candidate in flight holds at most one body: fetching, fetched and queued, or processed.
    monkeypatch.setattr(dl, "_PROCESSORS", 1)
    entered = 0
    real_fetch_job = dl._fetch_job

    def fetch_job(*args: Any) -> Any:
        nonlocal entered
        entered += 1  # counted when it runs; submitted ones may wait, so this is a lower bound
        return real_fetch_job(*args)

    submitted = 0

    class CountingPool(ThreadPoolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            fn = args[0]
            nonlocal submitted
            submitted += fn is fetch_job
            return super().submit(*args, **kwargs)

    monkeypatch.setattr(dl, "_fetch_job", fetch_job)
    monkeypatch.setattr(dl, "ThreadPoolExecutor", CountingPool)
    proj.add_candidates(CandidateIn("a", f"{image_server}/img/{k}.png") for k in range(12))
    proj.decide([c.id for c in proj.candidates()], "accepted")
    outstanding: list[int] = []
    report = dl.download_candidates(proj, workers=3, progress=lambda p: outstanding.append(submitted - p.done))
    assert report.ok == submitted == entered == 12
    assert max(outstanding) <= 3 + 1  # 3 download threads + 1 processing thread, not 2 x 3
