"""A bounded read-ahead: a thread produces the next items while the caller works on the current one.

Embeddings use it to decode the next batches of images while the network runs on this one (PIL's
decoding and resizing and ONNX Runtime / torch all release the GIL, so the two overlap on the cores).
At most ``depth`` items wait in memory; an error in the producer is raised in the caller, and leaving
the ``with`` block early (a cancel, an error) stops the producer after the item it is making.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _End:
    pass


@dataclass(frozen=True)
class _Item(Generic[T]):
    value: T


@contextmanager
def ahead(items: Iterable[T], depth: int = 2) -> Iterator[Iterator[T]]:
    """``items`` produced by a background thread, at most ``depth`` ahead of the consumer."""
    if depth < 1:
        raise ValueError(f"depth={depth}: read-ahead needs at least 1")
    slots: queue.Queue[_Item[T] | _Failed | _End] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: _Item[T] | _Failed | _End) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for value in items:
                if not put(_Item(value)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failed(exc))
            return
        put(_End())

    def consume() -> Iterator[T]:
        while True:
            entry = slots.get()
            if isinstance(entry, _End):
                return
            if isinstance(entry, _Failed):
                raise entry.error
            yield entry.value

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        yield consume()
    finally:
        stop.set()
        worker.join()
