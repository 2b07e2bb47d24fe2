"""Embeddings decode the next batches while the network runs on this one (a bounded read-ahead)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from lotr_labeler.model import embed, prefetch
from lotr_labeler.model.network import Network
from lotr_labeler.store import Store

SIZE = 16
BATCH = 4


def test_ahead_yields_everything_in_order_within_its_depth() -> None:
    made: list[int] = []
    seen: list[tuple[int, int]] = []

    def items() -> Iterator[int]:
        for i in range(20):
            made.append(i)
            yield i

    with prefetch.ahead(items(), depth=2) as got:
        for value in got:
            seen.append((value, len(made)))
    assert [v for v, _ in seen] == list(range(20))
    # Never more than the depth waiting, plus the one the producer holds while the queue is full.
    assert all(produced <= value + 1 + 2 + 1 for value, produced in seen)


def test_ahead_raises_the_producers_error_and_stops_when_left() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"), prefetch.ahead(broken()) as got:
        list(got)

    made: list[int] = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            made.append(i)
            yield i
            i += 1

    with prefetch.ahead(endless(), depth=2) as got:
        assert next(got) == 0
    count = len(made)
    assert count <= 4  # it stopped: the thread is joined, nothing more is made
    assert len(made) == count
    with pytest.raises(ValueError, match="depth=0"), prefetch.ahead(iter([1]), depth=0):
        pass


class _Waiting:
    """A torch body whose first batch waits (bounded) until a file of the next batch has been opened."""

    def __init__(self, opened: list[int], next_batch_started: threading.Event) -> None:
        import torch

        class Body(torch.nn.Module):
            calls = 0
            overlapped: bool | None = None

            def forward(self, x: Any) -> Any:
                if Body.calls == 0:
                    Body.overlapped = next_batch_started.wait(timeout=10)
                Body.calls += 1
                return x.mean(dim=(2, 3), keepdim=True)

        self.body = Body()


def test_compute_embeddings_decodes_the_next_batch_during_the_forward_pass(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[int] = []
    next_batch_started = threading.Event()
    real_pixels = embed._pixels  # one image read and decoded

    def counting_pixels(*args: Any, **kwargs: Any) -> Any:
        opened.append(threading.get_ident())
        if len(opened) > BATCH:
            next_batch_started.set()
        return real_pixels(*args, **kwargs)

    monkeypatch.setattr(embed, "_pixels", counting_pixels)
    waiting = _Waiting(opened, next_batch_started)
    network = Network(body=waiting.body, mean=None, std=None, size=SIZE)
    backbone = embed.Backbone("resnet18", SIZE, pretrained=False)
    report = embed.compute_embeddings(store, backbone, network=network, batch_size=BATCH)
    assert report.computed == len(store.images()) and not report.failed
    assert type(waiting.body).overlapped is True  # the next batch was being read while this one ran
    assert threading.get_ident() not in set(opened)  # decoding happens off the calling thread
    # The vectors are the ones a plain pass gives.
    rows = store.images()
    cache = embed.cache_for(store, backbone)
    expected = embed.prepare([store.path(r) for r in rows], SIZE).mean(axis=(2, 3))
    assert np.allclose(cache.matrix([r.sha256 for r in rows]), expected, atol=1e-6)


def test_unreadable_files_are_skipped_with_prefetch(store: Store) -> None:
    import torch

    rows = store.images()
    store.path(rows[1]).write_bytes(b"not an image")
    network = Network(body=torch.nn.Identity(), mean=None, std=None, size=SIZE)
    backbone = embed.Backbone("resnet18", SIZE, pretrained=False)
    report = embed.compute_embeddings(store, backbone, network=network, batch_size=BATCH)
    assert [i for i, _ in report.failed] == [rows[1].id]
    assert report.computed == len({r.sha256 for r in rows}) - 1
