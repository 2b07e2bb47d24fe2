"""Quality flags computed from pixels: tiny, extreme aspect ratio, grey, dark, light, blurry.

The measurements (``QualityStats``) depend only on the file's content, so they are cached
by content hash in ``cache/quality.json``; the flags are derived from them and the
thresholds on every call, so changing a threshold (e.g. the ``tiny_side`` setting) needs
no recomputation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lotr_labeler.imaging import write_atomic
from lotr_labeler.progress import Progress, Report
from lotr_labeler.store import ImageRow, Store, version

log = logging.getLogger(__name__)

CACHE_FILE = "quality.json"
_CACHE_VERSION = 1
# The blur measure is taken at this longest side (smaller images at their own size), so that
# the Laplacian variance of a photo does not depend on how large it was stored.
BLUR_SIDE = 256
# Colour measure: mean over pixels of max(R,G,B) - min(R,G,B), on a small copy.
_COLOUR_SIDE = 64

FLAGS: dict[str, str] = {
    "tiny": "shorter side below the tiny_side setting",
    "aspect": "extreme aspect ratio (longer side more than 3x the shorter)",
    "grey": "grey by content (the colour channels agree), whatever the file's mode",
    "dark": "very dark (low mean luminance)",
    "light": "very light / washed out (high mean luminance)",
    "blurry": "blurry (low variance of the Laplacian of a downscaled grey copy)",
}


@dataclass(frozen=True)
class Thresholds:
    """Where each flag starts. Luminance and colourfulness are on the 0-255 scale."""

    tiny_side: int = 64
    max_aspect: float = 3.0
    grey_colourfulness: float = 6.0
    dark_luminance: float = 40.0
    light_luminance: float = 225.0
    blur_variance: float = 30.0


@dataclass(frozen=True)
class QualityStats:
    """Content measurements of one image file."""

    width: int
    height: int
    colourfulness: float  # mean of max(R,G,B) - min(R,G,B)
    luminance: float  # mean of 0.299 R + 0.587 G + 0.114 B
    blur: float  # variance of the 4-neighbour Laplacian at BLUR_SIDE


def measure(path: Path) -> QualityStats:
    """Measure one image file (decoded at reduced size when the format allows it)."""
    with Image.open(path) as img:
        width, height = img.size
        img.draft("RGB", (BLUR_SIDE, BLUR_SIDE))  # JPEG: decode at 1/2, 1/4, 1/8 scale directly
        rgb = img.convert("RGB")
    if max(rgb.size) > BLUR_SIDE:
        rgb.thumbnail((BLUR_SIDE, BLUR_SIDE), Image.Resampling.BILINEAR)
    grey = np.asarray(rgb.convert("L"), dtype=np.float32)
    if grey.shape[0] >= 3 and grey.shape[1] >= 3:
        lap = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
        blur = float(lap.var())
    else:
        blur = 0.0
    small = rgb.copy()
    small.thumbnail((_COLOUR_SIDE, _COLOUR_SIDE), Image.Resampling.BILINEAR)
    arr = np.asarray(small, dtype=np.float32)
    colourfulness = float((arr.max(axis=2) - arr.min(axis=2)).mean())
    luminance = float((arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())
    return QualityStats(width, height, round(colourfulness, 3), round(luminance, 3), round(blur, 3))


def flags_for(stats: QualityStats, thresholds: Thresholds | None = None) -> tuple[str, ...]:
    """The flags (keys of ``FLAGS``) that ``stats`` raises, in ``FLAGS`` order."""
    t = thresholds or Thresholds()
    short, long = sorted((stats.width, stats.height))
    raised = {
        "tiny": short < t.tiny_side,
        "aspect": short == 0 or long / short > t.max_aspect,
        "grey": stats.colourfulness < t.grey_colourfulness,
        "dark": stats.luminance < t.dark_luminance,
        "light": stats.luminance > t.light_luminance,
        "blurry": stats.blur < t.blur_variance,
    }
    return tuple(name for name in FLAGS if raised[name])


def thresholds_for(store: Store) -> Thresholds:
    return Thresholds(tiny_side=store.settings().tiny_side)


class QualityCache:
    """``cache/quality.json``: content hash → QualityStats."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stats: dict[str, QualityStats] = {}
        self._dirty = False
        self._stats = dict(_parsed(path))

    def get(self, sha256: str) -> QualityStats | None:
        return self._stats.get(sha256)

    def put(self, sha256: str, stats: QualityStats) -> None:
        self._stats[sha256] = stats
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        doc = {"version": _CACHE_VERSION, "stats": {k: asdict(v) for k, v in self._stats.items()}}
        write_atomic(self.path, json.dumps(doc, separators=(",", ":")).encode())
        self._dirty = False


# The parsed file per path and its stat: every page rerun reads the cache, and parsing 20,000
# entries costs ~0.1 s. A write (``save``, here or by another process) changes the stat.
_parsed_files: dict[Path, tuple[tuple[int, int, int], dict[str, QualityStats]]] = {}


def _parsed(path: Path) -> dict[str, QualityStats]:
    """The stats in ``path`` (empty when absent or unreadable); shared: do not mutate."""
    state = version.file_state(path)
    if state is None:
        return {}
    hit = _parsed_files.get(path)
    if hit is not None and hit[0] == state:
        return hit[1]
    stats: dict[str, QualityStats] = {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("version") == _CACHE_VERSION:
            stats = {k: QualityStats(**v) for k, v in doc["stats"].items()}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring unreadable quality cache %s: %s", path, exc)
    _parsed_files[path] = (state, stats)
    return stats


def cache_state(store: Store) -> tuple[int, int, int] | None:
    """Changes whenever the quality cache file is written (a key for memoized results that read it)."""
    return version.file_state(store.cache_dir / CACHE_FILE)


def cache_for(store: Store) -> QualityCache:
    return QualityCache(store.cache_dir / CACHE_FILE)


def missing(store: Store, images: Iterable[ImageRow]) -> list[ImageRow]:
    """Images whose content has not been measured yet."""
    cache = cache_for(store)
    return [img for img in images if cache.get(img.sha256) is None]


def quality_stats(
    store: Store,
    images: Iterable[ImageRow],
    progress: Report | None = None,
    *,
    compute_missing: bool = True,
) -> dict[int, QualityStats]:
    """Stats per image id, measuring (and caching) the contents not seen before.

    ``progress`` counts the images measured. With ``compute_missing=False`` unmeasured images are left out.
    An unreadable file is logged and left out.
    """
    cache = cache_for(store)
    rows = list(images)
    todo = [img for img in rows if cache.get(img.sha256) is None] if compute_missing else []
    for done, img in enumerate(todo, start=1):
        try:
            cache.put(img.sha256, measure(store.path(img)))
        except OSError as exc:
            log.warning("cannot measure image %d (%s): %s", img.id, img.relpath, exc)
        if progress is not None:
            progress(Progress(done=done, total=len(todo), message=f"measuring quality {done}/{len(todo)}"))
    cache.save()
    out: dict[int, QualityStats] = {}
    for img in rows:
        stats = cache.get(img.sha256)
        if stats is not None:
            out[img.id] = stats
    return out


def quality_flags(
    store: Store,
    images: Iterable[ImageRow],
    progress: Report | None = None,
    *,
    compute_missing: bool = True,
) -> dict[int, tuple[str, ...]]:
    """Flags per image id from its (cached) pixel stats and the project's thresholds."""
    thresholds = thresholds_for(store)
    stats = quality_stats(store, images, progress, compute_missing=compute_missing)
    return {image_id: flags_for(s, thresholds) for image_id, s in stats.items()}
