"""Prediction benchmark: our one-pass inference against fastai's ``learn.predict``, and the HTTP API.

A tiny resnet18 (3 classes of drawn shapes, from scratch, 1 epoch; Normalize with ImageNet stats as a
pretrained model has) is trained for each image size and exported as training does it: ``model.pkl``
plus ``model.onnx`` (``onnx_export``). For each size, single-image latency of ``predict.decode_image`` +
``Predictor.predict_one`` on ONNX Runtime ("ours"), of the same on the torch fast path (context: the
engine when model.onnx is missing), and of ``learn.predict(PILImage.create(bytes))`` is measured on the
same model file and image bytes, rotating the order so a noisy neighbour hurts all alike. Then
``lotr-labeler serve`` runs in a subprocess (uvicorn, one worker, 127.0.0.1) on the ``--api-size``
model and 1 and 4 clients post the seed's JSON body ``{"image": base64}`` in a bounded loop.

Prints one JSON object per figure per line on stdout (progress goes to stderr):

    python bench/bench_predict.py [--sizes 128,224] [--api-size 224] [--n 100] [--requests 200]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lotr_labeler.model import onnx_export, runs  # noqa: E402
from lotr_labeler.model import predict as pr  # noqa: E402
from lotr_labeler.workspace import create_project  # noqa: E402

SHAPES = ("circle", "square", "triangle")


def emit(**row: object) -> None:
    print(json.dumps(row), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def shape_image(shape: str, seed: int, size: int = 96) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 80, (size, size, 3), dtype=np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    colour = tuple(int(v) for v in rng.integers(120, 256, 3))
    lo, hi = int(size * 0.2), int(size * 0.8)
    if shape == "circle":
        draw.ellipse((lo, lo, hi, hi), fill=colour)
    elif shape == "square":
        draw.rectangle((lo, lo, hi, hi), fill=colour)
    else:
        draw.polygon([(size // 2, lo), (lo, hi), (hi, hi)], fill=colour)
    return img


def train_tiny(root: Path, size: int) -> Any:
    """The test suite's tiny model at ``size`` px; returns the Learner (exported to root/model.pkl)."""
    from fastai.vision.all import ImageDataLoaders, Normalize, Resize, imagenet_stats, resnet18, vision_learner

    for shape in SHAPES:
        (root / "train" / shape).mkdir(parents=True)
        for i in range(8):
            shape_image(shape, 100 * SHAPES.index(shape) + i).save(root / "train" / shape / f"{i}.png")
    dls = ImageDataLoaders.from_folder(
        root / "train",
        valid_pct=0.25,
        seed=0,
        item_tfms=Resize(size),
        batch_tfms=Normalize.from_stats(*imagenet_stats),
        bs=8,
        num_workers=0,
    )
    learn = vision_learner(dls, resnet18, pretrained=False)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
    learn.export(root / "model.pkl")
    onnx_export.export_onnx(learn, root / "model.pkl")  # as a training run does
    return learn


def samples() -> list[bytes]:
    """Photo-like inputs: JPEGs of a few sizes (decoding is part of both paths)."""
    out = []
    for i, side in enumerate((160, 320, 480, 640)):
        buf = io.BytesIO()
        shape_image(SHAPES[i % 3], 9000 + i, size=side).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def torch_only(model_path: Path) -> Path:
    """A copy of the model.pkl without its model.onnx beside it: the torch fast path loads it."""
    folder = model_path.parent / "torch-only"
    folder.mkdir(exist_ok=True)
    shutil.copyfile(model_path, folder / model_path.name)
    return folder / model_path.name


def latency(model_path: Path, images: list[bytes], n: int) -> dict[str, list[float]]:
    """Per-call seconds of ours (ONNX Runtime), the torch fast path and learn.predict, in rotating
    order, on the same model file and bytes."""
    from fastai.vision.all import PILImage, load_learner

    predictor = pr.load_predictor(model_path)
    if predictor.engine != "onnx":
        raise SystemExit(f"expected the ONNX engine for {model_path}: {predictor.engine_note}")
    on_torch = pr.load_predictor(torch_only(model_path))
    learn = load_learner(model_path, cpu=True)
    limits = pr.Limits.default()

    def ours(data: bytes) -> None:
        predictor.predict_one(pr.decode_image(data, limits))

    def torch_path(data: bytes) -> None:
        on_torch.predict_one(pr.decode_image(data, limits))

    def anchor(data: bytes) -> None:
        learn.predict(PILImage.create(data))

    fns: dict[str, Callable[[bytes], None]] = {"ours": ours, "torch": torch_path, "anchor": anchor}
    timed: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    with learn.no_bar():
        for i in range(n + 5):
            data = images[i % len(images)]
            for name in order[i % 3 :] + order[: i % 3]:
                started = time.perf_counter()
                fns[name](data)
                if i >= 5:  # warm-up calls are not counted
                    timed[name].append(time.perf_counter() - started)
    return timed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_rates(
    model_path: Path, vocab: list[str], images: list[bytes], requests: int, clients: int, rounds: int = 4
) -> tuple[float, float]:
    """(requests/s of POST /predict against `lotr-labeler serve` on loopback with one uvicorn worker,
    learn.predict calls/s in this process), measured in alternating blocks so both see the same load."""
    from fastai.vision.all import PILImage, load_learner

    learn = load_learner(model_path, cpu=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        store = create_project(data, "bench", "empty")
        run = runs.create_run(store, {"arch": "resnet18"})
        shutil.copyfile(model_path, run.model_path)
        shutil.copyfile(onnx_export.onnx_path(model_path), onnx_export.onnx_path(run.model_path))
        runs.finish_run(store, run.id, "done", vocab=vocab, metrics={})
        store.close()
        port = free_port()
        cmd = [sys.executable, "-m", "lotr_labeler", "--data", str(data), "serve", "--port", str(port)]
        server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"serve exited with {server.returncode}")
                try:
                    if httpx.get(f"{base}/health", timeout=2).json().get("loaded"):
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("serve did not become ready in 120 s")
                time.sleep(0.2)
            bodies = [json.dumps({"image": base64.b64encode(b).decode()}).encode() for b in images]
            headers = {"content-type": "application/json"}

            def worker(count: int) -> int:
                ok = 0
                with httpx.Client(base_url=base, timeout=60) as http:
                    for i in range(count):
                        resp = http.post("/predict", content=bodies[i % len(bodies)], headers=headers)
                        ok += resp.status_code == 200
                return ok

            worker(5)  # warm-up
            engine = httpx.post(f"{base}/predict", content=bodies[0], headers=headers, timeout=60).json()["engine"]
            if engine != "onnx":
                raise SystemExit(f"the API answered with engine {engine!r}, not onnx")
            per_block = max(1, requests // rounds // clients)
            api_s = anchor_s = 0.0
            api_n = anchor_n = 0
            with ThreadPoolExecutor(clients) as pool, learn.no_bar():
                for _ in range(rounds):
                    started = time.perf_counter()
                    ok = sum(pool.map(worker, [per_block] * clients))
                    api_s += time.perf_counter() - started
                    if ok != per_block * clients:
                        raise SystemExit(f"only {ok} of {per_block * clients} requests succeeded")
                    api_n += ok
                    started = time.perf_counter()
                    for i in range(per_block):
                        learn.predict(PILImage.create(images[i % len(images)]))
                    anchor_s += time.perf_counter() - started
                    anchor_n += per_block
            return api_n / api_s, anchor_n / anchor_s
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="128,224", help="model input sizes to measure (px)")
    parser.add_argument("--api-size", type=int, default=224, help="model input size for the API figures (px)")
    parser.add_argument("--n", type=int, default=100, help="timed predictions per path and size")
    parser.add_argument("--requests", type=int, default=200, help="API requests per measurement")
    args = parser.parse_args()
    images = samples()
    sizes = [int(s) for s in args.sizes.split(",")]
    load_at_start = os.getloadavg()[0]
    threads = onnx_export.physical_cores()
    with tempfile.TemporaryDirectory() as tmp:
        models: dict[int, tuple[Path, list[str]]] = {}
        for size in sorted({*sizes, args.api_size}):
            log(f"training the tiny model at {size} px …")
            learn = train_tiny(Path(tmp) / str(size), size)
            models[size] = (Path(tmp) / str(size) / "model.pkl", list(learn.dls.vocab))
        for size in sizes:
            log(f"timing {args.n} predictions per path at {size} px …")
            timed = latency(models[size][0], images, args.n)
            note = (
                f"resnet18 at {size} px, CPU, {os.cpu_count()} cores, load average {load_at_start:.1f} at start, "
                f"{os.getloadavg()[0]:.1f} after; ours: ONNX Runtime, {threads} intra-op thread(s), preprocessing "
                "by the learner's validation transforms; single JPEG 160-640 px incl. decoding; "
                f"{args.n} calls per path, rotating order; anchor learn.predict(PILImage.create(bytes)) without bar"
            )
            for q in (50, 95):
                a, o = percentile(timed["anchor"], q) * 1000, percentile(timed["ours"], q) * 1000
                emit(
                    name=f"predict latency p{q} @{size}px (ms, ours onnx vs learn.predict)",
                    ours=round(o, 2),
                    anchor=round(a, 2),
                    ratio=round(o / a, 3),
                    goal="<= 0.5",
                    unit="ms",
                    note=note,
                )
            a, t = percentile(timed["anchor"], 50) * 1000, percentile(timed["torch"], 50) * 1000
            emit(
                name=f"predict latency p50 @{size}px, torch fast path (ms, the fallback vs learn.predict)",
                ours=round(t, 2),
                anchor=round(a, 2),
                ratio=round(t / a, 3),
                goal="context",
                unit="ms",
                note=f"same calls as the onnx rows; model.pkl without model.onnx (BatchNorm folded, channels-last); "
                f"onnx p50 / torch p50 = {percentile(timed['ours'], 50) / percentile(timed['torch'], 50):.2f}",
            )
        size = args.api_size
        for clients in (1, 4):
            log(f"API at {size} px: {args.requests} requests, {clients} client(s) …")
            rate, anchor_rate = api_rates(models[size][0], models[size][1], images, args.requests, clients)
            emit(
                name=f"API POST /predict @{size}px, {clients} client(s) (req/s, onnx, vs in-process learn.predict)",
                ours=round(rate, 1),
                anchor=round(anchor_rate, 1),
                ratio=round(rate / anchor_rate, 3),
                goal=">= 1.0",
                unit="req/s",
                note=(
                    "lotr-labeler serve (uvicorn, 1 worker) on 127.0.0.1 answering with engine onnx, JSON base64 "
                    "bodies, clients on the same machine; anchor: learn.predict calls/s in-process, timed in "
                    f"alternating blocks (the seed's Django view can do no better); load average {load_at_start:.1f} "
                    f"at start, {os.getloadavg()[0]:.1f} after"
                ),
            )


if __name__ == "__main__":
    main()
