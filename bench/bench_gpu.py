"""GPU benchmark: training, embeddings and the single-GPU distributed path, each row naming the GPU.

- Training: our run (``train_run``: its GPU settings, model/hardware.py) against a plain fastai script
  at its defaults (a worker per core, fp32) on the same images at 224 px, img/s of the fit, with the
  GPU utilisation sampled by ``nvidia-smi`` during each. Goal: ours >= 1.0x.
- Embeddings: ``compute_embeddings`` on the GPU against the forward pass alone (goal >= 0.8) and
  against the CPU path (ONNX Runtime on the CPU, goal >= 5x).
- ``accelerate launch --num_processes 1 -m lotr_labeler … train --distributed`` on one GPU: done or not,
  wall time.

Without a CUDA GPU it prints one line starting ``skipped:`` and exits 0 (run_all.py keeps the rows
measured elsewhere). ``../shared/gpu/`` has the wheels a bare GPU machine may lack.

``--dry-run`` goes through every row on the CPU at a toy size (60 images of 64 px, 1 epoch): the rows
name "CPU (dry run)" and mean nothing as figures. A test of the suite runs it, so the script a GPU
session gets a few minutes for does not fail there on a renamed function or option.

    python bench/bench_gpu.py [--images 1700] [--epochs 2] [--embed-images 5000] [--dry-run]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]


def emit(**row: object) -> None:
    print(json.dumps(row), flush=True)


def gpu_name() -> str | None:
    """The CUDA GPU's name, None without one (torch is imported only to ask)."""
    try:
        import torch
    except ImportError:
        return None
    return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None


class Utilisation:
    """GPU utilisation samples (%, every 0.5 s) from nvidia-smi while the block runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        smi = shutil.which("nvidia-smi")
        while smi and not self._stop.wait(0.5):
            out = subprocess.run(
                [smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "--id=0"],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(float(out.stdout.split()[0]))

    def __enter__(self) -> Utilisation:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def plain_fastai(folder: Path, size: int, epochs: int, bs: int = 64) -> tuple[float, int, int]:
    """A student's script at fastai's defaults (workers = cores). Returns (fit s, training images, workers)."""
    import fastai.vision.all as fv
    import torchvision

    dls = fv.ImageDataLoaders.from_folder(
        folder, valid_pct=0.2, seed=42, item_tfms=fv.Resize(size), batch_tfms=fv.aug_transforms(size=size), bs=bs
    )
    learn = fv.vision_learner(dls, torchvision.models.resnet18, pretrained=False, metrics=fv.error_rate)
    started = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(epochs, base_lr=2e-3, freeze_epochs=1)
    return time.perf_counter() - started, len(dls.train_ds), dls.train.fake_l.num_workers


def launched(done: subprocess.CompletedProcess[str]) -> str:
    """ "done (run N)" when ``train --json`` exited 0 and its run's model.pkl is there, else why not."""
    if done.returncode != 0:
        return f"FAILED (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}"
    try:  # the command's last output: one JSON object, indented over several lines
        run = json.loads(done.stdout[done.stdout.rindex("\n{") if "\n{" in done.stdout else done.stdout.index("{") :])
        run_id, model = run["id"], Path(run["path"])
    except (ValueError, KeyError, TypeError):
        return f"FAILED: no run record in its output {done.stdout[-200:]!r}"
    if not model.is_file():
        return f"FAILED: run {run_id} has no model at {model}"
    return f"done (run {run_id})"


def cpu_network(backbone: object) -> object:
    """The CPU embedding path of ``backbone`` (a random-init resnet18): ONNX Runtime on the CPU."""
    from lotr_labeler.model import embed, onnx_embed, onnx_export
    from lotr_labeler.model.network import Network, OnnxEmbedder

    assert isinstance(backbone, embed.Backbone)
    body = embed._resnet18_body(backbone).cpu().eval()
    net = Network(body=body, mean=embed.IMAGENET_MEAN, std=embed.IMAGENET_STD, size=backbone.size)
    data, _ = onnx_embed.export_bytes(net)
    net.onnx = OnnxEmbedder(onnx_export.make_session(data), Path("<cpu>"))  # the CPU provider only
    return net


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1700)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--embed-images", type=int, default=5000)
    parser.add_argument("--dry-run", action="store_true", help="every row on the CPU at a toy size (a check)")
    args = parser.parse_args()
    size, bs = 224, 64
    gpu = gpu_name()
    if args.dry_run:
        gpu, size, bs = "CPU (dry run)", 64, 16
        args.images, args.epochs, args.embed_images = min(args.images, 60), 1, min(args.embed_images, 64)
    elif gpu is None:
        print("skipped: no CUDA GPU here (torch.cuda.is_available() is False)", flush=True)
        return 0
    goal = (lambda g: "dry run") if args.dry_run else (lambda g: g)

    from bench_train import digits_folder

    from lotr_labeler.collect.importers import import_folder
    from lotr_labeler.model import embed, hardware
    from lotr_labeler.model.learner import TrainParams, device_name
    from lotr_labeler.model.network import embed_arrays
    from lotr_labeler.model.train import train_run
    from lotr_labeler.workspace import create_project

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = digits_folder(root / "digits", args.images, side=size)
        data = root / "data"
        store = create_project(data, "gpu", "empty")
        import_folder(store, folder)
        store.set_setting("min_images_per_class", 1)
        hw = hardware.detect(device_name())

        with Utilisation() as plain_util:
            plain_s, plain_n, plain_workers = plain_fastai(folder, size, args.epochs, bs)
        with Utilisation() as our_util:
            # resnet18, as the plain script's (the default arch is EfficientNet-Lite0)
            params = TrainParams(arch="resnet18", epochs=args.epochs, size=size, batch_size=bs, pretrained=False)
            run = train_run(store, params)
        metrics = run.full_metrics()
        our_s = sum(h["seconds"] for h in metrics["history"])
        our_n = sum(1 for img in store.images() if img.split == "train")
        epochs = args.epochs + 1
        ours, anchor = our_n * epochs / our_s, plain_n * epochs / plain_s
        emit(
            name=f"GPU training img/s, ours vs plain fastai ({size} px) on {gpu}",
            ours=round(ours, 1),
            anchor=round(anchor, 1),
            ratio=round(ours / anchor, 3),
            goal=goal(">= 1.0"),
            unit="img/s",
            note=f"{args.images} digits, resnet18 from scratch, bs {bs}, fine_tune({args.epochs}); "
            f"ours: {hw.num_workers} workers, {hw.precision}, channels-last {hw.channels_last}, "
            f"GPU utilisation mean {our_util.mean}%; "
            f"plain fastai: {plain_workers} workers, fp32, GPU utilisation mean {plain_util.mean}%",
        )

        backbone = embed.resolve_backbone(store, "imagenet", pretrained=False, size=size)
        gpu_net = embed.load_network(backbone, store.cache_dir)
        rows = store.images()[: args.embed_images]
        started = time.perf_counter()
        report = embed.compute_embeddings(store, backbone, rows, network=gpu_net, batch_size=64)
        gpu_rate = report.computed / (time.perf_counter() - started)
        batch = embed.prepare([store.path(r) for r in rows[:64]], size)
        embed_arrays(gpu_net, batch)
        started = time.perf_counter()
        for _ in range(5):
            embed_arrays(gpu_net, batch)
        forward = 5 * len(batch) / (time.perf_counter() - started)
        emit(
            name=f"GPU embeddings img/s, compute_embeddings vs forward pass alone ({size} px) on {gpu}",
            ours=round(gpu_rate, 1),
            anchor=round(forward, 1),
            ratio=round(gpu_rate / forward, 3),
            goal=goal(">= 0.8"),
            unit="images/s",
            note=f"{report.computed} images, random-init resnet18, batch 64, {report.engine}",
        )
        # The CPU path on the same images: the torch body on the CPU through ONNX Runtime's CPU provider.
        embed.cache_path(store, backbone).unlink(missing_ok=True)
        cpu_net = cpu_network(backbone)
        started = time.perf_counter()
        cpu_report = embed.compute_embeddings(store, backbone, rows[:500], network=cpu_net, batch_size=64)
        cpu_rate = cpu_report.computed / (time.perf_counter() - started)
        emit(
            name=f"GPU embeddings img/s vs the CPU path ({size} px) on {gpu}",
            ours=round(gpu_rate, 1),
            anchor=round(cpu_rate, 1),
            ratio=round(gpu_rate / cpu_rate, 2),
            goal=goal(">= 5"),
            unit="images/s",
            note=f"anchor: {cpu_report.computed} images with {cpu_report.engine}",
        )

        # `accelerate launch`, by its module: a pip --target install (../shared/gpu) puts no script on PATH.
        if importlib.util.find_spec("accelerate") is None:
            print("accelerate is not installed: its row is left out", file=sys.stderr, flush=True)
        else:
            started = time.perf_counter()
            launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1"]
            launch += ["-m", "lotr_labeler", "--data", str(data)]
            train_args = ["train", "--distributed", "--no-pretrained", "--size", str(size), "--epochs", "1"]
            train_args += ["--bs", str(bs), "--arch", "resnet18"]
            done = subprocess.run(
                [*launch, "--project", "gpu", *train_args, "--lr", "2e-3", "--json"],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"},
            )
            wall = time.perf_counter() - started
            emit(
                name=f"accelerate launch, 1 GPU: train --distributed wall time on {gpu}",
                ours=round(wall, 1),
                anchor=None,
                ratio=None,
                goal=goal("context"),
                unit="s",
                note=f"{launched(done)}; {args.images} images at {size} px, fine_tune(1)",
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
