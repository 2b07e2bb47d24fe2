"""Backbone embeddings, computed once per image content and cached on disk.

A *backbone* turns an image into a vector: the bundled EfficientNet-Lite0 with ImageNet weights
that install with pip (``model/backbones.py``: no download, the default), the body of the current
training run (``load_learner(run.model_path).model[0]``), torchvision's resnet18 with the ImageNet
weights, a local weights file, or a seeded random init (weaker; kept for comparison). Images are
resized to a square of ``size`` pixels and normalised as the network expects (ImageNet
statistics; for a run, whatever its fastai pipeline normalises with), and the body's
feature map is average-pooled.

The cache is one ``cache/embeddings/<backbone id>.npz`` per backbone holding the content
hashes and a float32 matrix, so a relabel, a rename or a re-import of the same file never
recomputes anything. torch, torchvision and fastai are imported inside functions only.

Given the project's cache folder, ``load_network`` runs the body through ONNX Runtime
(``model/onnx_embed.py``: exported once per backbone, checked against torch within 1e-4 relative,
about twice torch's speed on a CPU), falling back to torch with a logged reason; the vectors are the
same within that tolerance, so the cache stays valid across both engines.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import simplejpeg
from PIL import Image

from lotr_labeler.errors import InvalidInput, NotFound, WeightsUnavailable, check_choice
from lotr_labeler.explain import explain, is_connection_failure, not_weights_file, wrong_weights
from lotr_labeler.imaging import write_atomic
from lotr_labeler.model import backbones, hardware, onnx_embed, prefetch, runs
from lotr_labeler.model.network import CUDA_PROVIDER, Matrix, Network, embed_arrays
from lotr_labeler.progress import Cancel, Progress, Report, stopped
from lotr_labeler.store import ImageRow, Store, version

log = logging.getLogger(__name__)


EMBED_DIR = "embeddings"
# auto: a pretrained backbone (the current run's body when that run started from pretrained weights, else the
# bundled EfficientNet-Lite0); run: the current run's body; bundled: EfficientNet-Lite0; imagenet: resnet18.
SOURCES = ("auto", "run", "bundled", "imagenet")
KINDS = ("run", backbones.BUNDLED, "resnet18")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Seed of the random-init backbone: the same seed gives the same network in every process,
# so its cached embeddings stay valid.
RANDOM_SEED = 0
# ``Run.source`` of an instant model (review/instant.py): a backbone plus a head fitted on its embeddings.
INSTANT_SOURCE = "instant"
# Write the cache at least this often (seconds), so a crashed job keeps most of its work (a cancelled one
# saves all of it). Each save rewrites the whole file: every few batches it cost O(n²) at 20,000 images.
_SAVE_EVERY_S = 30.0
# Decoded batches waiting for the network: 2 keep it fed while one is decoded, at 2 x 64 images of memory.
_PREFETCH = 2


@dataclass(frozen=True)
class Backbone:
    """Which network embeds the images, and at which size.

    ``kind`` is ``run`` (a training run's body), ``efficientnet_lite0`` (the bundled ImageNet weights
    when ``pretrained``, else a seeded random init) or ``resnet18`` (torchvision: ImageNet weights when
    ``pretrained``, else ``weights`` file, else a seeded random init).
    """

    kind: str
    size: int
    run_id: str | None = None
    model_path: str | None = None
    pretrained: bool = True
    weights: str | None = None
    weights_digest: str | None = None

    @property
    def id(self) -> str:
        """Cache key: changes whenever the vectors would."""
        if self.kind == "run":
            return f"run-{self.run_id}-{self.size}"
        if self.kind == backbones.BUNDLED:
            return f"{self.kind}-{'bundled' if self.pretrained else f'random{RANDOM_SEED}'}-{self.size}"
        if self.weights:
            return f"resnet18-file-{self.weights_digest}-{self.size}"
        return f"resnet18-{'imagenet' if self.pretrained else f'random{RANDOM_SEED}'}-{self.size}"

    @property
    def short(self) -> str:
        """A few words for comparisons ("run body: CV accuracy 0.91 vs random init 0.62")."""
        if self.kind == "run":
            return f"run {self.run_id} body"
        if self.kind == backbones.BUNDLED:
            return "EfficientNet-Lite0 (bundled)" if self.pretrained else "random-init EfficientNet-Lite0"
        if self.weights:
            return f"weights file {Path(self.weights).name}"
        return "ImageNet resnet18" if self.pretrained else "random init"

    def describe(self) -> str:
        if self.kind == "run":
            return f"body of model run {self.run_id} at {self.size} px"
        if self.kind == backbones.BUNDLED:
            if self.pretrained:
                return f"EfficientNet-Lite0 with its bundled ImageNet weights at {self.size} px"
            return f"EfficientNet-Lite0 with random weights (seed {RANDOM_SEED}; weaker) at {self.size} px"
        if self.weights:
            return f"resnet18 with weights {Path(self.weights).name} at {self.size} px"
        if self.pretrained:
            return f"resnet18 with ImageNet weights at {self.size} px"
        return f"resnet18 with random weights (seed {RANDOM_SEED}, no download; weaker) at {self.size} px"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Backbone:
        fields = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in fields})


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def resolve_backbone(
    store: Store,
    source: str = "auto",
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    size: int | None = None,
) -> Backbone:
    """The backbone to use. ``auto``: the current run's body when that run started from pretrained
    weights, else the bundled EfficientNet-Lite0 (a body trained from scratch on a few hundred images
    sees less than ImageNet features).

    ``pretrained=False`` (random init) applies to the bundled network and resnet18; ``weights`` (a
    torchvision resnet18 state-dict file) to resnet18, which otherwise takes the user's weights folder's
    file, else torchvision's download.

    Parameters
    ----------
    store
        The project.
    source
        ``auto``, ``run`` (the current run's body), ``bundled`` (EfficientNet-Lite0) or ``imagenet`` (resnet18).
    pretrained, weights
        ImageNet weights or random init; for resnet18 a local state-dict file instead.
    size
        Input size in pixels; None: the run's size, else the ``embed_size`` setting.

    Returns
    -------
    Backbone
        What to embed with, the key of the embedding cache.

    Raises
    ------
    InvalidInput
        Unknown source, size out of range, or a missing weights file.
    NotFound
        ``source="run"`` without a run that has a model file.
    """
    check_choice(source, SOURCES, "Backbone source")
    if size is not None and not 32 <= int(size) <= 1024:
        raise InvalidInput(f"Embedding size {size} is out of range. Use 32 to 1024 pixels, e.g. 224.")
    run = runs.current_run(store) if source in ("auto", "run") else None
    if source == "auto" and run is not None and not _started_pretrained(run):
        log.info("run %s was trained from scratch: embedding with the bundled network instead", run.id)
        run = None
    if run is not None and not run.model_path.is_file():
        if source == "run":
            raise NotFound(f"Run {run.id} has no model file at {run.model_path}. Train again or pick another run.")
        log.warning("run %s has no model file; using the bundled network", run.id)
        run = None
    if source == "run" and run is None:
        raise NotFound(
            f"Project {store.name!r} has no trained model yet. Train one first, or use the bundled backbone."
        )
    if run is not None and run.source == INSTANT_SOURCE and isinstance(run.params.get("backbone"), dict):
        # An instant model's body is the backbone its head was fitted on: same vectors, same cache.
        return Backbone.from_dict(run.params["backbone"])
    if run is not None:
        run_size = run.params.get("size")
        return Backbone(
            kind="run",
            size=int(size or run_size or store.settings().embed_size),
            run_id=run.id,
            model_path=str(run.model_path.absolute()),
        )
    final_size = size or store.settings().embed_size
    if source in ("auto", "bundled"):
        return Backbone(backbones.BUNDLED, final_size, pretrained=pretrained)
    if weights is None and pretrained:
        weights = backbones.user_weights_file("resnet18")  # saved once for every project: no download
    if weights:
        path = Path(weights).expanduser().absolute()  # the backbone is kept and reused from elsewhere
        if not path.is_file():
            raise InvalidInput(
                f"Weights file {path} does not exist. Give the path of a torchvision resnet18 .pth file."
            )
        return Backbone("resnet18", final_size, pretrained=False, weights=str(path), weights_digest=_digest(path))
    return Backbone("resnet18", final_size, pretrained=pretrained)


def _started_pretrained(run: runs.Run) -> bool:
    """Whether a run fine-tuned pretrained weights. An instant model counts as such: its body is the backbone the
    user's Review scores were fitted on, which auto keeps (a Retrain head must not switch the embeddings)."""
    if run.source == INSTANT_SOURCE:
        return True
    return bool(run.params.get("pretrained", True) or run.params.get("weights"))


# -- the cache -----------------------------------------------------------------------------


class EmbeddingCache:
    """Vectors of one backbone, keyed by image content hash (``cache/embeddings/<id>.npz``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._index: dict[str, int] = {}
        self._blocks: list[Matrix] = []
        self._matrix: Matrix | None = None
        self._dirty = False
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    keys = [str(k) for k in data["keys"]]
                    matrix = np.asarray(data["vectors"], dtype=np.float32)
                if matrix.ndim != 2 or matrix.shape[0] != len(keys):
                    raise ValueError(f"{len(keys)} keys for a matrix of shape {matrix.shape}")
                self._index = {k: i for i, k in enumerate(keys)}
                self._matrix = matrix
            except (OSError, ValueError, KeyError) as exc:
                log.warning("ignoring unreadable embedding cache %s: %s", path, exc)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._index

    @property
    def dim(self) -> int | None:
        # Without joining the blocks: ``add`` asks for every batch, and a join each time copied the
        # whole matrix per batch (quadratic at 20,000 images).
        if self._matrix is not None and self._matrix.shape[0]:
            return int(self._matrix.shape[1])
        return int(self._blocks[0].shape[1]) if self._blocks else None

    def _full(self) -> Matrix | None:
        if self._blocks:
            parts = ([self._matrix] if self._matrix is not None else []) + self._blocks
            self._matrix = np.concatenate(parts).astype(np.float32, copy=False)
            self._blocks = []
        return self._matrix

    def missing(self, sha256s: Iterable[str]) -> list[str]:
        return [s for s in dict.fromkeys(sha256s) if s not in self._index]

    def matrix(self, sha256s: Sequence[str]) -> Matrix:
        """Rows for ``sha256s`` in that order. Raises KeyError naming a missing hash."""
        m = self._full()
        if not sha256s:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        absent = [s for s in sha256s if s not in self._index]
        if m is None or absent:
            raise KeyError(f"no embedding for content {absent[0][:12]}… (compute embeddings first)")
        return m[[self._index[s] for s in sha256s]]

    def add(self, sha256s: Sequence[str], vectors: Matrix) -> None:
        if len(sha256s) != vectors.shape[0]:
            raise ValueError(f"{len(sha256s)} keys for {vectors.shape[0]} vectors")
        dim = self.dim
        if dim is not None and vectors.shape[1] != dim:
            raise ValueError(f"vectors of width {vectors.shape[1]} added to a cache of width {dim}")
        new = [i for i, s in enumerate(sha256s) if s not in self._index]
        start = len(self._index)
        for offset, i in enumerate(new):
            self._index[sha256s[i]] = start + offset
        if new:
            self._blocks.append(np.asarray(vectors[new], dtype=np.float32))
            self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        m = self._full()
        keys = np.array(sorted(self._index, key=self._index.__getitem__), dtype="<U64")
        buf = io.BytesIO()
        np.savez(buf, keys=keys, vectors=m if m is not None else np.zeros((0, 0), np.float32))
        write_atomic(self.path, buf.getvalue())
        self._dirty = False


def cache_path(store: Store, backbone: Backbone) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", backbone.id)
    return store.cache_dir / EMBED_DIR / f"{safe}.npz"


def cache_for(store: Store, backbone: Backbone) -> EmbeddingCache:
    return EmbeddingCache(cache_path(store, backbone))


def missing(store: Store, backbone: Backbone, images: Iterable[ImageRow] | None = None) -> list[ImageRow]:
    """Active images (or ``images``) whose content has no vector for ``backbone`` yet.

    Reads only the cache's keys (not its vectors: 40 MB at 20,000 images); for all active images
    the answer is memoized per data version and cache file state (the Review page asks on every rerun).
    """
    path = cache_path(store, backbone)
    if images is not None:
        keys = _cached_keys(path)
        return [img for img in images if img.sha256 not in keys]

    state = version.file_state(path)

    def missing_ids() -> version.Arrays:
        keys = _cached_keys(path)
        return {"ids": np.array([img.id for img in store.images() if img.sha256 not in keys], dtype=np.int64)}

    def compute() -> list[ImageRow]:
        # Also on disk per data version: a new server process would read 20,000 cache keys and
        # list every image on its first Review load, to find (usually) nothing missing.
        ids = version.persisted(store, f"embed.missing {path} {state}", missing_ids)["ids"]
        wanted = set(ids.tolist())
        return [img for img in store.images() if img.id in wanted] if wanted else []

    return list(version.memo(store, ("embed.missing", str(path), state), compute))


def _cached_keys(path: Path) -> set[str]:
    """The content hashes ``path`` holds vectors for (npz members load lazily: the vectors stay on disk)."""
    if not path.is_file():
        return set()
    try:
        with np.load(path, allow_pickle=False) as data:
            return {str(k) for k in data["keys"]} if "vectors" in data.files else set()
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable embedding cache %s: %s", path, exc)
        return set()


# -- the network ---------------------------------------------------------------------------


def _onnx_file(cache_dir: Path, backbone: Backbone) -> Path:
    """Where the ONNX export of ``backbone``'s body lives in a project's cache folder."""
    return onnx_embed.export_path(cache_dir, backbone.id, backbone.model_path if backbone.kind == "run" else None)


def _onnx_first(device: str) -> bool:
    """ONNX Runtime embeds unless torch has a GPU that ONNX Runtime cannot use (no onnxruntime-gpu)."""
    return device == "cpu" or CUDA_PROVIDER in onnx_embed.providers()


IMAGENET_WEIGHTS_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1 (DEFAULT)


def imagenet_weights_cached() -> bool:
    """Whether torchvision's resnet18 ImageNet weights are in the torch hub cache already (no
    download needed). Mirrors ``torch.hub.get_dir()`` without importing torch."""
    import os

    home = os.environ.get("TORCH_HOME") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torch"
    )
    return (Path(home) / "hub" / "checkpoints" / IMAGENET_WEIGHTS_FILE).is_file()


def _resnet18_body(backbone: Backbone) -> Any:
    import torch
    import torchvision
    from torchvision.models import ResNet18_Weights

    if backbone.weights:
        model = torchvision.models.resnet18(weights=None)
        name = f"Weights file {Path(backbone.weights).name}"
        fix = "Download resnet18-f37072fd.pth (torchvision's ResNet18_Weights.IMAGENET1K_V1) and give its path."
        try:
            # weights_only: tensors only, no code runs
            state = torch.load(Path(backbone.weights).absolute(), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises anything from IndexError to UnpicklingError on a non-weights file
            log.info("weights file %s: %r", backbone.weights, exc)
            raise WeightsUnavailable(f"{not_weights_file(name)} {fix}") from exc
        try:
            model.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
            log.info("weights file %s: %r", backbone.weights, exc)
            raise WeightsUnavailable(f"{wrong_weights(name)} {fix}") from exc
    elif backbone.pretrained:
        log.info("loading %s (downloaded once into the torch hub cache)", ResNet18_Weights.DEFAULT.url)
        try:
            # torch.hub prints "Downloading: …" on stdout itself: keep `review --json` output one document.
            with contextlib.redirect_stdout(io.StringIO()):
                model = torchvision.models.resnet18(weights=ResNet18_Weights.DEFAULT, progress=False)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad download a RuntimeError
            log.info("ImageNet resnet18 weights: %r", exc)
            why = "there is no internet connection" if is_connection_failure(exc) else explain(exc, "The download")
            raise WeightsUnavailable(
                f"Could not get the ImageNet resnet18 weights from {ResNet18_Weights.DEFAULT.url}: {why}. "
                "Either use the bundled EfficientNet-Lite0 (--backbone bundled; no download), "
                f"{backbones.WEIGHTS_DIR_HINT}, or pass the file once with --weights FILE."
            ) from exc
    else:
        with torch.random.fork_rng():
            torch.manual_seed(RANDOM_SEED)
            model = torchvision.models.resnet18(weights=None)
    return torch.nn.Sequential(*list(model.children())[:-2])


def _run_body(backbone: Backbone) -> tuple[Any, tuple[float, ...] | None, tuple[float, ...] | None]:
    import fastai.vision.all as fv

    if not backbone.model_path or not Path(backbone.model_path).is_file():
        raise NotFound(f"Model file {backbone.model_path} of run {backbone.run_id} is missing. Train again.")
    try:
        learn = fv.load_learner(Path(backbone.model_path).absolute(), cpu=True)
    except Exception as exc:  # any unpickling failure: wrong file, other fastai version
        raise InvalidInput(
            f"Cannot load the model of run {backbone.run_id} ({exc}). Use the resnet18 backbone instead."
        ) from exc
    mean = std = None
    pipeline = getattr(learn.dls, "after_batch", None)
    for tfm in getattr(pipeline, "fs", []):
        if type(tfm).__name__ == "Normalize":
            mean = tuple(float(v) for v in tfm.mean.flatten().tolist())
            std = tuple(float(v) for v in tfm.std.flatten().tolist())
    return learn.model[0], mean, std


def load_network(backbone: Backbone, cache_dir: Path | None = None, *, export: bool = True) -> Network:
    """Load the body of ``backbone`` in eval mode: on the CPU, or on a CUDA GPU when there is one and
    ONNX Runtime cannot use it (``Network.engine_detail`` says which).

    With ``cache_dir`` (a project's ``cache/``), embed through its ONNX export: loaded from there
    without importing torch when present and intact, else exported and checked now (unless
    ``export`` is False: a small job); any failure leaves the torch body in use (reason logged,
    and in ``extra["onnx_error"]``).
    """
    device = hardware.embedding_device()  # "cpu" without importing torch where there is no NVIDIA driver
    onnx_first = cache_dir is not None and _onnx_first(device)
    if onnx_first and cache_dir is not None:
        cached = onnx_embed.load(_onnx_file(cache_dir, backbone))
        if cached is not None:
            return Network(body=None, mean=None, std=None, size=backbone.size, onnx=cached)
    kind = check_choice(backbone.kind, KINDS, "Backbone kind")
    if kind == "run":
        body, mean, std = _run_body(backbone)
    elif kind == backbones.BUNDLED:
        # The feature map (no pooling, no classifier): the mean over it is the embedding, as for the others.
        body = backbones.lite0(pretrained=backbone.pretrained, num_classes=0, global_pool="")
        mean, std = backbones.BUNDLED_MEAN, backbones.BUNDLED_STD
    else:
        body, mean, std = _resnet18_body(backbone), IMAGENET_MEAN, IMAGENET_STD
    if onnx_first:
        device = "cpu"  # exported from the CPU body; ONNX Runtime runs it where it can
    network = Network(body=body.to(device).eval(), mean=mean, std=std, size=backbone.size, device=device)
    if onnx_first and cache_dir is not None:
        onnx_embed.attach(network, _onnx_file(cache_dir, backbone), export=export)
    return network


def _pixels(path: Path, size: int) -> npt.NDArray[np.uint8]:
    """The file as ``size`` x ``size`` RGB bytes (squashed, not cropped).

    The store keeps RGB JPEGs: libjpeg-turbo through simplejpeg decodes them at the smallest of its
    M/8 scales that is still ``size`` or more, in half the time of PIL's way there (its Python
    header parsing and decoder set-up cost more than the pixels of a small image). Anything else (a
    PNG a caller passes, a JPEG simplejpeg refuses) goes through PIL, which raises ``OSError`` on a
    damaged file as before."""
    data = path.read_bytes()
    if data[:2] == b"\xff\xd8":
        try:
            decoded = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=size, min_width=size)
        except ValueError:
            pass
        else:
            img = Image.fromarray(decoded)
            return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (size, size))
        rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _as_batch(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """(N, S, S, 3) bytes → (N, 3, S, S) floats in 0..1, in one pass over the batch."""
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def prepare(paths: Sequence[Path], size: int) -> npt.NDArray[np.float32]:
    """Images as an (N, 3, size, size) float array in 0..1 (squashed to a square: nothing cropped)."""
    pixels = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        pixels[i] = _pixels(path, size)
    return _as_batch(pixels)


@dataclass(frozen=True)
class _Decoded:
    rows: list[ImageRow]  # the batch's images that decoded, in order
    batch: npt.NDArray[np.float32]
    failed: list[tuple[ImageRow, str]]
    size: int  # images in the chunk, failed ones included


def _decode_chunks(chunks: Iterable[list[tuple[ImageRow, Path]]], size: int) -> Iterator[_Decoded]:
    """Each chunk of (image, file) read, decoded and resized: what the prefetch thread makes."""
    for chunk in chunks:
        pixels = np.empty((len(chunk), size, size, 3), dtype=np.uint8)
        rows: list[ImageRow] = []
        failed: list[tuple[ImageRow, str]] = []
        for img, path in chunk:
            try:
                pixels[len(rows)] = _pixels(path, size)
                rows.append(img)
            except OSError as exc:
                failed.append((img, str(exc) or type(exc).__name__))
        yield _Decoded(rows, _as_batch(pixels[: len(rows)]), failed, len(chunk))


@dataclass(frozen=True)
class EmbedReport:
    backbone: str
    computed: int
    cached: int
    failed: list[tuple[int, str]]
    seconds: float
    cancelled: bool = False
    engine: str = ""  # Network.engine_detail of the network that embedded; "" when nothing was computed

    def summary(self) -> str:
        text = f"Embedded {self.computed} image(s) in {self.seconds:.1f} s ({self.cached} cached) with {self.backbone}"
        text += f" ({self.engine})." if self.engine else "."
        if self.failed:
            text += f" {len(self.failed)} unreadable file(s) skipped."
        if self.cancelled:
            text += " Cancelled: run it again to continue."
        return text


def compute_embeddings(
    store: Store,
    backbone: Backbone,
    images: Iterable[ImageRow] | None = None,
    *,
    batch_size: int = 32,
    progress: Report | None = None,
    cancel: Cancel | None = None,
    network: Network | None = None,
) -> EmbedReport:
    """Embed every active image (or ``images``) whose content is not cached yet; batched.

    ``progress`` counts the images to compute (``done`` of ``total``); ``cancel`` stops it between
    batches, keeping what was embedded. The network is loaded only
    when something is missing. Unreadable files are skipped and reported.
    """
    started = time.monotonic()
    rows = store.images() if images is None else list(images)
    cache = cache_for(store, backbone)
    todo: dict[str, ImageRow] = {}
    for img in rows:
        if img.sha256 not in cache and img.sha256 not in todo:
            todo[img.sha256] = img
    cached = len({img.sha256 for img in rows}) - len(todo)
    failed: list[tuple[int, str]] = []
    total = len(todo)
    if progress is not None:
        progress(Progress(done=0, total=total))
    if not todo:
        return EmbedReport(backbone.id, 0, cached, failed, time.monotonic() - started)
    export = total >= onnx_embed.EXPORT_MIN
    net = network or load_network(backbone, store.cache_dir, export=export)
    if net.body is not None and _onnx_first(net.device):  # a caller's torch network (LiveScorer): ONNX engine
        onnx_embed.attach(net, _onnx_file(store.cache_dir, backbone), export=export)
    files = [(img, store.path(img)) for img in todo.values()]  # paths here: the store stays in this thread
    chunks = (files[start : start + batch_size] for start in range(0, total, batch_size))
    done = 0
    cancelled = False
    last_save = time.monotonic()
    # Decoding the next batches in a thread overlaps it with the network on this one.
    with prefetch.ahead(_decode_chunks(chunks, backbone.size), depth=_PREFETCH) as decoded:
        for part in decoded:
            if stopped(cancel):
                cancelled = True
                break
            for img, why in part.failed:
                log.warning("cannot read image %d (%s): %s", img.id, img.relpath, why)
                failed.append((img.id, why))
            if part.rows:
                cache.add([img.sha256 for img in part.rows], embed_arrays(net, part.batch))
            done += part.size
            if progress is not None:
                progress(Progress(done=done, total=total))
            if time.monotonic() - last_save >= _SAVE_EVERY_S:
                cache.save()
                last_save = time.monotonic()
    cache.save()
    computed = done - len(failed)
    report = EmbedReport(backbone.id, computed, cached, failed, time.monotonic() - started, cancelled)
    return replace(report, engine=net.engine_detail)


def embeddings(store: Store, backbone: Backbone, images: Sequence[ImageRow]) -> tuple[list[ImageRow], Matrix]:
    """The images that have a cached vector, and their vectors (rows in the same order)."""
    cache = cache_for(store, backbone)
    have = [img for img in images if img.sha256 in cache]
    return have, cache.matrix([img.sha256 for img in have])
