"""See the dataset: a 2-D map of every image's embedding, and its nearest neighbours.

The map is the cached backbone embeddings (``model.embed``; the backbone of the stored scores,
else the default one) projected to 2-D: t-SNE after a PCA to 50 dimensions for up to
``TSNE_MAX`` images (clusters stay apart), PCA alone above (t-SNE grows too slow for a page).
Points carry the label, the head's prediction and whether the image is *suspicious* (the
head prefers another class, or a quality / near-duplicate flag), so a mislabeled cluster shows as one colour
inside another.

The projection does not depend on labels, so it is cached on disk per backbone and method
(``cache/maps/``) with the content hashes it covers: a page load, a relabel or a delete reuses
it; only an image embedded since (a content hash the cache lacks) recomputes it.

"More like this" ranks the active images by cosine similarity of their embeddings to one image's,
to find the rest of a mislabeled cluster.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lotr_labeler.errors import Conflict, InvalidInput, check_choice
from lotr_labeler.imaging import write_atomic
from lotr_labeler.model import embed
from lotr_labeler.review import head, last_fit, queue
from lotr_labeler.store import ImageRow, Store

log = logging.getLogger(__name__)

METHODS = ("auto", "tsne", "pca")
# t-SNE above this many points takes longer than a page should wait once (measured on this loaded
# 2-core machine: 1,000 points of 512-d 9-27 s at 1,000 iterations, about half at 500; 500 points
# 1-16 s as the load varied, bench/bench_embedding_map.py); PCA takes well under a second at any size.
# The result is cached either way.
TSNE_MAX = 500
TSNE_ITER = 500  # sklearn's minimum is 250; the layout barely moves after ~500 on these sizes
PCA_DIMS = 50  # t-SNE's usual preprocessing: denoises and makes its neighbour search cheap
SEED = 0
MAP_DIR = "maps"

Coords = npt.NDArray[np.float32]


@dataclass(frozen=True)
class MapPoint:
    """One image on the map."""

    id: int
    x: float
    y: float
    label: str
    predicted: str | None
    self_confidence: float | None
    flags: tuple[str, ...]
    split: str
    path: Path
    sha256: str

    @property
    def suspicious(self) -> bool:
        """The head prefers another class, or the image is flagged (quality, near duplicate).

        Relative, not a fixed p(given) cut: a head fitted on few images spreads its probability
        (p ~0.4 for correct labels), and a fixed cut would then mark almost everything.
        """
        return self.disagrees or bool(self.flags)

    @property
    def disagrees(self) -> bool:
        return self.predicted is not None and self.predicted != self.label


@dataclass(frozen=True)
class EmbeddingMap:
    points: list[MapPoint]
    method: str  # tsne | pca
    backbone: str  # described
    missing: int  # active images without an embedding (not on the map)
    cached: bool  # the projection came from the disk cache
    seconds: float


@dataclass(frozen=True)
class Neighbour:
    image: ImageRow
    path: Path
    similarity: float  # cosine similarity of the embeddings, 1 = same direction

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.image.id,
            "path": str(self.path),
            "label": self.image.label,
            "split": self.image.split,
            "similarity": round(self.similarity, 4),
        }


def choose_method(method: str, n: int) -> str:
    """``auto``: t-SNE up to ``TSNE_MAX`` points, PCA above."""
    check_choice(method, METHODS, "Map method")
    if method == "auto":
        return "tsne" if n <= TSNE_MAX else "pca"
    return method


def project_2d(X: npt.ArrayLike, method: str = "auto", *, seed: int = SEED) -> Coords:
    """Rows of ``X`` as (N, 2) coordinates (scikit-learn, imported here: never at page load)."""
    from sklearn.decomposition import PCA  # type: ignore[import-untyped]

    feats = head.normalize_rows(X)  # cosine geometry, like the head and the neighbours
    n = feats.shape[0]
    out = np.zeros((n, 2), dtype=np.float32)
    if n < 3 or feats.shape[1] < 2:
        out[: min(n, 2), 0] = np.arange(min(n, 2), dtype=np.float32)  # nothing to project
        return out
    chosen = choose_method(method, n)
    reduced = PCA(n_components=min(PCA_DIMS, n, feats.shape[1]), random_state=seed).fit_transform(feats)
    if chosen == "pca" or n < 5:
        out[:, :2] = reduced[:, :2]
        return out
    from sklearn.manifold import TSNE  # type: ignore[import-untyped]

    perplexity = float(min(30.0, (n - 1) / 3))
    tsne = TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=seed, learning_rate="auto", max_iter=TSNE_ITER
    )
    out[:] = tsne.fit_transform(reduced)
    return out


def _cache_path(store: Store, backbone: embed.Backbone, method: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", backbone.id)
    return store.cache_dir / MAP_DIR / f"{safe}-{method}.npz"


def _load(path: Path, keys: Sequence[str]) -> Coords | None:
    """Cached coordinates of ``keys`` when the cache covers every one of them."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            index = {str(k): i for i, k in enumerate(data["keys"])}
            coords = np.asarray(data["coords"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable map cache %s: %s", path, exc)
        return None
    if coords.shape != (len(index), 2) or any(k not in index for k in keys):
        return None
    return coords[[index[k] for k in keys]] if keys else np.zeros((0, 2), np.float32)


def _save(path: Path, keys: Sequence[str], coords: Coords) -> None:
    buf = io.BytesIO()
    np.savez(buf, keys=np.array(keys, dtype="<U64"), coords=coords)
    write_atomic(path, buf.getvalue())


def embedding_map(store: Store, *, method: str = "auto", backbone: embed.Backbone | None = None) -> EmbeddingMap:
    """Every active image with an embedding, placed in 2-D, with its label and review state.

    Parameters
    ----------
    store
        The project.
    method
        ``auto`` (t-SNE up to ``TSNE_MAX`` images, else PCA), ``tsne`` or ``pca``.
    backbone
        Whose embeddings; default: ``last_fit.fit_backbone`` (the stored scores', what Review shows).

    Returns
    -------
    EmbeddingMap
        Points in image-id order; ``missing`` counts the active images not embedded yet.

    Raises
    ------
    InvalidInput
        An unknown method.
    Conflict
        No image has an embedding for the backbone yet.
    """
    started = time.monotonic()
    check_choice(method, METHODS, "Map method")
    backbone = backbone or last_fit.fit_backbone(store)
    items = {it.id: it for it in queue.ranking(store, status="all", compute_quality=False)}
    images = sorted((it.image for it in items.values()), key=lambda img: img.id)
    have, X = embed.embeddings(store, backbone, images)
    if not have:
        raise Conflict(
            f"No image of project {store.name!r} has an embedding for the {backbone.describe()}. "
            "Compute embeddings first ('Compute' on the Review page, or `lotr-labeler review --compute`)."
        )
    # One row per content: identical files share an embedding, hence a point position.
    keys = list(dict.fromkeys(img.sha256 for img in have))
    chosen = choose_method(method, len(keys))
    path = _cache_path(store, backbone, chosen)
    coords = _load(path, keys)
    cached = coords is not None
    if coords is None:
        first = {img.sha256: i for i, img in reversed(list(enumerate(have)))}
        coords = project_2d(X[[first[k] for k in keys]], chosen)
        _save(path, keys, coords)
    at = {k: coords[i] for i, k in enumerate(keys)}
    points = []
    for img in have:
        it = items[img.id]
        x, y = (float(v) for v in at[img.sha256])
        points.append(
            MapPoint(
                img.id, x, y, img.label, it.predicted, it.self_confidence, it.flags, img.split, it.path, img.sha256
            )
        )
    return EmbeddingMap(
        points, chosen, backbone.describe(), len(images) - len(have), cached, round(time.monotonic() - started, 3)
    )


def similar(store: Store, image_id: int, k: int = 8, *, backbone: embed.Backbone | None = None) -> list[Neighbour]:
    """The ``k`` active images whose embeddings are closest (cosine) to image ``image_id``'s.

    Parameters
    ----------
    store
        The project.
    image_id
        The image to match (it is never its own neighbour; exact copies of it are).
    k
        How many neighbours, 1 or more.
    backbone
        Whose embeddings; default: ``last_fit.fit_backbone`` (the stored scores', what Review shows).

    Returns
    -------
    list[Neighbour]
        Most similar first; ties by image id.

    Raises
    ------
    InvalidInput
        ``k`` below 1.
    NotFound
        No image ``image_id``.
    Conflict
        The image has no embedding yet.
    """
    if k < 1:
        raise InvalidInput(f"k={k} is not valid: ask for 1 or more neighbours, e.g. --k 8.")
    backbone = backbone or last_fit.fit_backbone(store)
    query = store.get_image(image_id)
    cache = embed.cache_for(store, backbone)
    if query.sha256 not in cache:
        raise Conflict(
            f"Image #{image_id} has no embedding for the {backbone.describe()} yet. "
            "Compute embeddings first ('Compute' on the Review page, or `lotr-labeler review --compute`)."
        )
    others = [img for img in store.images() if img.id != image_id and img.sha256 in cache]
    if not others:
        return []
    q = head.normalize_rows(cache.matrix([query.sha256]))[0]
    sims = head.normalize_rows(cache.matrix([img.sha256 for img in others])) @ q
    order = sorted(range(len(others)), key=lambda i: (-float(sims[i]), others[i].id))[:k]
    return [Neighbour(others[i], store.path(others[i]), float(sims[i])) for i in order]
