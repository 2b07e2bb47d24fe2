"""Pieces the bench scripts share: what they print (progress on stderr with ``say``, one JSON object per
figure on stdout with ``emit``: the format bench/run_all.py reads), a local image server, planted label flips."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from lotr_labeler.store import Store

# Units where less is better: the ratio is then anchor / ours, so that bigger is better for us in every row.
LOWER_IS_BETTER = frozenset({"s", "actions", "error", "s/epoch"})


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def emit(name: str, ours: float, anchor: float | None, goal: str, unit: str, note: str = "") -> None:
    """One figure; ``ratio`` is oriented so that bigger is better for us (goals read on it)."""

    def r(v: float | None) -> float | None:
        return None if v is None else round(float(v), 4)

    ratio: float | None = None
    if anchor and ours:
        ratio = anchor / ours if unit in LOWER_IS_BETTER else ours / anchor
    doc: dict[str, Any] = {"name": name, "ours": r(ours), "anchor": r(anchor), "ratio": r(ratio), "goal": goal}
    doc["unit"] = unit
    if note:
        doc["note"] = note
    print(json.dumps(doc), flush=True)


def serve(bodies: dict[str, bytes], latency: float = 0.0) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``bodies`` by path on 127.0.0.1 (404 for others), each answer after ``latency`` seconds."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(latency)  # a search engine's thumbnail proxy is not local
            body = bodies.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def flip_labels(store: Store, fraction: float, seed: int) -> set[int]:
    """Move ``fraction`` of the images to another class, chosen at random; returns their ids."""
    rng = np.random.default_rng(seed)
    images = store.images()
    classes = store.class_names()
    chosen = rng.choice(len(images), round(fraction * len(images)), replace=False)
    moves: dict[str, list[int]] = {}
    for i in chosen:
        img = images[int(i)]
        others = [c for c in classes if c != img.label]
        moves.setdefault(others[int(rng.integers(len(others)))], []).append(img.id)
    for label, ids in moves.items():
        store.relabel(ids, label)
    return {int(images[int(i)].id) for i in chosen}
