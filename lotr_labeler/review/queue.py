"""The review queue: active images ranked worst first by their stored scores, built lazily.

A ``Ranking`` is arrays (probabilities, scores, flags, review state) aligned with the images, and a
``ReviewItem`` is built only for the cards a page shows: 48 of 20,000. The arrays are memoized per
data version (``version.memo``) and kept on disk (``version.persisted``), so the first load after a
server start reads one file instead of every stored score. ``prepare_page`` writes that file when
scores are stored, for the next page load in whatever process.

The probabilities do not depend on an image's own label, so a relabel updates its scores at once,
without refitting.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

import numpy as np
import numpy.typing as npt

from lotr_labeler.errors import check_choice
from lotr_labeler.model import embed
from lotr_labeler.review import quality
from lotr_labeler.review.decisions import reviewed_ids
from lotr_labeler.review.head import label_scores
from lotr_labeler.review.last_fit import fit_info
from lotr_labeler.store import SPLITS, ImageRow, Store, reviews, version

IntArray = npt.NDArray[np.int64]

SORTS = ("self_confidence", "margin")
STATUSES = ("unreviewed", "reviewed", "all")
# Quality flags of more unmeasured images than this are left to the embedding job, not a page run.
PAGE_QUALITY_LIMIT = 400
STORE_FLAGS = ("near-duplicate",)


@dataclass(frozen=True)
class ReviewItem:
    image: ImageRow
    root: Path  # the project folder; ``path`` is built on use (20,000 Path joins cost a second)
    given: str
    predicted: str | None
    confidence: float | None  # probability of ``predicted``
    self_confidence: float | None
    margin: float | None
    probs: dict[str, float]
    source: str | None  # head | head+model; None when not scored yet
    flags: tuple[str, ...]
    reviewed: bool

    @property
    def id(self) -> int:
        return self.image.id

    @property
    def path(self) -> Path:
        return self.root / self.image.relpath

    @property
    def scored(self) -> bool:
        return self.self_confidence is not None

    @property
    def disagrees(self) -> bool:
        return self.predicted is not None and self.predicted != self.given

    def score(self, sort: str = "self_confidence") -> float | None:
        return self.margin if sort == "margin" else self.self_confidence

    def as_dict(self, sort: str = "self_confidence", root: Path | None = None) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 4)

        return {
            "id": self.id,
            "path": str(self.path),
            "given": self.given,
            "predicted": self.predicted,
            "confidence": r(self.confidence),
            "score": r(self.score(sort)),
            "self_confidence": r(self.self_confidence),
            "margin": r(self.margin),
            "split": self.image.split,
            "flags": list(self.flags),
            "reviewed": self.reviewed,
            "source": self.source,
        }


_T = TypeVar("_T")


class _Lazy(Sequence[_T]):
    """A read-only sequence whose elements are built only when asked for (``_at``, given an index in
    0..len-1): a page shows 48 of 20,000."""

    def _at(self, index: int) -> _T:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> _T: ...

    @overload
    def __getitem__(self, index: slice) -> list[_T]: ...

    def __getitem__(self, index: int | slice) -> _T | list[_T]:
        positions = range(len(self))
        if isinstance(index, slice):
            return [self._at(i) for i in positions[index]]
        return self._at(positions[index])  # negative from the end; IndexError past it, as a list


class Ranking(_Lazy[ReviewItem]):
    """Images in review order, as arrays; a ``ReviewItem`` is built only when asked for.

    A page shows 48 of 20,000: building every item (a probability dict each) cost about a second
    on the first load after a server start. Immutable, so one value is shared through the memo.
    """

    def __init__(self, root: Path, images: Sequence[ImageRow], base: version.Arrays, order: IntArray) -> None:
        # ``base`` (``_base``) is aligned with ``images``; ``order``: positions in ``images``.
        self._root = root
        self._images = images
        self._order = order
        self._vocab = [str(v) for v in base["vocab"]]
        self._probs = base["probs"]
        self._row = base["row"]
        self._self_conf = base["self_conf"]
        self._margin = base["margin"]
        self._sources = base["sources"]
        self._flags = base["flags"]
        self._reviewed = base["reviewed"]
        self._ids = base["ids"]

    def __len__(self) -> int:
        return len(self._order)

    def _at(self, index: int) -> ReviewItem:
        return self._item(int(self._order[index]))

    def __iter__(self) -> Iterator[ReviewItem]:
        return (self._item(int(k)) for k in self._order)

    @property
    def ids(self) -> list[int]:
        """Image ids in review order (no item built)."""
        return [int(i) for i in self._ids[self._order]]

    def _item(self, k: int) -> ReviewItem:
        img = self._images[k]
        flags = str(self._flags[k])
        all_flags = tuple(flags.split("\t")) if flags else ()
        reviewed = bool(self._reviewed[k])
        r = int(self._row[k])
        if r < 0:
            return ReviewItem(img, self._root, img.label, None, None, None, None, {}, None, all_flags, reviewed)
        p = self._probs[r]
        b = int(p.argmax())
        return ReviewItem(
            image=img,
            root=self._root,
            given=img.label,
            predicted=self._vocab[b],
            confidence=float(p[b]),
            self_confidence=float(self._self_conf[k]),
            margin=float(self._margin[k]),
            probs=dict(zip(self._vocab, p.tolist(), strict=True)),
            source=str(self._sources[k]),
            flags=all_flags,
            reviewed=reviewed,
        )


def _base(
    store: Store, images: Sequence[ImageRow], flags: Mapping[int, Sequence[str]], reviewed: set[int]
) -> version.Arrays:
    """What ranking ``images`` needs besides the rows, as arrays aligned with them (kept on disk by
    ``version.persisted``): ``probs[row[k]]`` are image k's probabilities (row -1: not scored)."""
    info = fit_info(store)
    scores = reviews.scores(store, None if len(images) > 500 else [i.id for i in images])
    names = {c.id: c.name for c in store.classes()}
    class_ids = info.class_ids if info else []
    vocab = [names.get(cid, f"class {cid}") for cid in class_ids]
    col = {cid: j for j, cid in enumerate(class_ids)}
    n = len(images)
    got = [scores.get(img.id) for img in images]
    scored = [k for k, s in enumerate(got) if s is not None and len(s[0]) == len(vocab) > 0]
    probs = np.array([scores[images[k].id][0] for k in scored], dtype=np.float64).reshape(len(scored), len(vocab))
    row = np.full(n, -1, dtype=np.int64)
    row[scored] = np.arange(len(scored))
    self_conf = np.full(n, np.nan)
    margin = np.full(n, np.nan)
    best = np.full(n, -1, dtype=np.int64)
    sources = [""] * n  # "" when not scored
    if scored:
        self_conf[scored], margin[scored] = label_scores(probs, [col.get(images[k].class_id, -1) for k in scored])
        best[scored] = probs.argmax(axis=1)
        for k in scored:
            sources[k] = scores[images[k].id][1]
    all_flags = []
    for img in images:
        f = tuple(flags.get(img.id, ()))
        if img.flags:
            f += tuple(x for x in img.flags if x in STORE_FLAGS)
        all_flags.append("\t".join(f))
    # One JSON document per row, end to end, with where each ends: a new process decodes the 48 rows
    # a page shows, not all 20,000 (45 ms).
    rows = [json.dumps([getattr(img, f) for f in _ROW_FIELDS]).encode() for img in images]
    return {
        "rows": np.frombuffer(b"".join(rows), dtype=np.uint8),
        "row_ends": np.cumsum([0, *map(len, rows)], dtype=np.int64),
        "ids": np.fromiter((img.id for img in images), dtype=np.int64, count=n),
        "vocab": np.array(vocab, dtype=np.str_).reshape(len(vocab)),
        "probs": probs,
        "row": row,
        "self_conf": self_conf,
        "margin": margin,
        "best": best,
        "sources": np.array(sources, dtype=np.str_).reshape(n),
        "flags": np.array(all_flags, dtype=np.str_).reshape(n),
        "reviewed": np.fromiter((img.id in reviewed for img in images), dtype=np.bool_, count=n),
    }


_ROW_FIELDS = tuple(ImageRow.__dataclass_fields__)
_BASE_FORMAT = 2
"""Of the arrays ``_base`` returns: bump it when they change (a new array, another meaning)."""


def _stored_layout() -> list[object]:
    """What a kept base's layout depends on in the code, for its ``version.persisted`` key: a file
    written before an ``ImageRow`` field was added, removed, renamed or retyped, or before
    ``_BASE_FORMAT`` changed, is recomputed instead of read back (``_StoredRows._row`` needs every
    field in order)."""
    return [_BASE_FORMAT, *(f"{f}: {ImageRow.__dataclass_fields__[f].type}" for f in _ROW_FIELDS)]


class _StoredRows(_Lazy[ImageRow]):
    """The listing a base was made from, kept in it as one JSON document per row: a row is decoded
    and built when asked for (a new process lists no 20,000 rows to show 48)."""

    def __init__(self, data: npt.NDArray[np.generic], ends: npt.NDArray[np.generic]) -> None:
        self._data = data
        self._ends = ends

    def __len__(self) -> int:
        return len(self._ends) - 1

    def _at(self, index: int) -> ImageRow:
        return self._row(json.loads(self._data[int(self._ends[index]) : int(self._ends[index + 1])].tobytes()))

    @staticmethod
    def _row(values: list[Any]) -> ImageRow:
        fields = dict(zip(_ROW_FIELDS, values, strict=True))
        return ImageRow(**{**fields, "flags": tuple(fields["flags"])})


def _ordered(
    root: Path,
    images: Sequence[ImageRow],
    base: version.Arrays,
    *,
    sort: str = "self_confidence",
    predicted: str | None = None,
    flag: str | None = None,
    status: str = "all",
) -> Ranking:
    """``images`` filtered by ``status``, ``predicted`` and ``flag``; worst first by ``sort``, the
    unscored last, ties by id. On arrays: one Python object per image is what costs at 20,000."""
    n = len(images)
    vocab = [str(v) for v in base["vocab"]]
    keep = np.ones(n, dtype=np.bool_)
    if status != "all":
        keep &= base["reviewed"] == (status == "reviewed")
    if predicted is not None:
        keep &= base["best"] == (vocab.index(predicted) if predicted in vocab else -2)
    if flag == "any":
        keep &= base["flags"] != ""
    elif flag is not None:
        keep &= np.array([flag in str(f).split("\t") for f in base["flags"]], dtype=np.bool_).reshape(n)
    chosen = np.flatnonzero(keep)
    score = (base["margin"] if sort == "margin" else base["self_conf"])[chosen]
    unscored = np.isnan(score)
    order = chosen[np.lexsort((base["ids"][chosen], np.where(unscored, 0.0, score), unscored))]
    return Ranking(root, images, base, order)


def ranking(
    store: Store,
    *,
    sort: str = "self_confidence",
    label: str | None = None,
    predicted: str | None = None,
    split: str | None = None,
    flag: str | None = None,
    status: str = "unreviewed",
    compute_quality: bool = True,
) -> list[ReviewItem]:
    """Active images, worst first by ``sort``; images not scored yet come last (by id).

    Filters: given ``label``, ``predicted`` class, ``split``, ``flag`` (a quality flag,
    ``near-duplicate``, or ``any``), ``status`` (unreviewed | reviewed | all).

    Parameters
    ----------
    store
        The project.
    sort
        ``self_confidence`` or ``margin`` (low first: likely label issues).
    label, predicted, split, flag, status
        The filters above; None: no filter.
    compute_quality
        Measure the quality of images not measured yet (else they show no flags).

    Returns
    -------
    list[ReviewItem]
        The images to review, worst first.

    Raises
    ------
    InvalidInput
        An unknown sort, status, split or flag.
    NotFound
        ``predicted`` or ``label`` is not a class.
    """
    return list(
        queue(
            store,
            sort=sort,
            label=label,
            predicted=predicted,
            split=split,
            flag=flag,
            status=status,
            compute_quality=compute_quality,
        )
    )


def queue(
    store: Store,
    *,
    sort: str = "self_confidence",
    label: str | None = None,
    predicted: str | None = None,
    split: str | None = None,
    flag: str | None = None,
    status: str = "unreviewed",
    compute_quality: bool = True,
) -> Ranking:
    """``ranking`` as a lazy sequence: its length and the items of one page cost no more than the
    page (same arguments, same order, same errors). Shared between callers: read-only."""
    check_choice(sort, SORTS, "Sort")
    check_choice(status, STATUSES, "Review status")
    if split is not None:
        check_choice(split, SPLITS, "Split")
    if flag is not None:
        check_choice(flag, ("any", *quality.FLAGS, *STORE_FLAGS), "Flag")
    if predicted is not None:
        predicted = store.get_class(predicted).name
    # First, so the quality cache the key names is the one the items read; only when some image
    # lacks figures (unmeasured is kept on disk: a new process does not list every image for nothing).
    if compute_quality and unmeasured(store):
        quality.quality_stats(store, store.images(label, split=split))
    # Memoized per data version and quality-cache state: a page rerun that changed nothing
    # (most of them) skips re-deriving 20,000 items.
    key = ("review.ranking", sort, label, predicted, split, flag, status, compute_quality, quality.cache_state(store))
    return version.memo(store, key, lambda: _rank(store, sort, label, predicted, split, flag, status, compute_quality))


def _rank(
    store: Store,
    sort: str,
    label: str | None,
    predicted: str | None,
    split: str | None,
    flag: str | None,
    status: str,
    compute_quality: bool,
) -> Ranking:
    def base() -> version.Arrays:
        images = store.images(label, split=split)
        flags = quality.quality_flags(store, images, compute_missing=compute_quality)
        return _base(store, images, flags, reviewed_ids(store))

    # On disk per data version, rows included: the first load after a server start reads it instead
    # of listing every image and parsing every stored score (the filters and the sort take milliseconds).
    key = json.dumps(["review.ranking", _stored_layout(), label, split, compute_quality, quality.cache_state(store)])
    arrays = version.persisted(store, key, base)
    return _ordered(
        store.root,
        _StoredRows(arrays["rows"], arrays["row_ends"]),
        arrays,
        sort=sort,
        predicted=predicted,
        flag=flag,
        status=status,
    )


def unmeasured(store: Store) -> int:
    """Active images without quality figures yet; kept on disk per data version and quality-cache state."""

    def count() -> version.Arrays:
        return {"n": np.array(len(quality.missing(store, store.images())), dtype=np.int64)}

    return int(version.persisted(store, json.dumps(["quality.unmeasured", quality.cache_state(store)]), count)["n"])


def prepare_page(store: Store, backbone: embed.Backbone) -> None:
    """Compute what the Review page's first load reads, so it is on disk (``version.persisted``) for
    the next page, in whatever process: the default queue, the images ``backbone`` has not embedded
    and those without quality figures.
    Called when scores are written; any later write makes the page compute them again."""
    queue(store, compute_quality=unmeasured(store) <= PAGE_QUALITY_LIMIT)
    embed.missing(store, backbone)


def warm(store: Store) -> int | None:
    """Rank the queue the Review page shows first (its default filters) into this process's memo, so
    that page's first visit finds it (``lotr_labeler.warmup``, once a server has drawn its first
    page). Returns its length; None, ranking nothing, while the page would measure some images'
    quality figures first (up to ``PAGE_QUALITY_LIMIT``): that reads image files, and waits for the page."""
    missing = unmeasured(store)
    if 0 < missing <= PAGE_QUALITY_LIMIT:
        return None
    return len(queue(store, compute_quality=not missing))


def item(store: Store, image_id: int, flags: Sequence[str] | None = None) -> ReviewItem:
    """One image's current review state (label, scores, decision), e.g. for a card that reruns alone."""
    img = store.get_image(image_id)
    if flags is None:
        flags = quality.quality_flags(store, [img]).get(img.id, ())
    return _ordered(store.root, [img], _base(store, [img], {img.id: tuple(flags)}, reviewed_ids(store)))[0]


def flagged_by_class(store: Store) -> dict[str, int]:
    """Active images with a quality or near-duplicate flag, per class: what Review lists under Flag = any
    and Status = all, so the home page's "Flagged" counts the same images (quality measured so far only)."""
    # By id, not item by item: building each flagged item (a probability dict, a row decoded) took the
    # home page 0.6-1.3 s of every visit at 20,000 images, 16,622 of them flagged.
    label_of = store.labels_by_id()
    ids = queue(store, flag="any", status="all", compute_quality=False).ids
    return dict(Counter(label_of[i] for i in ids if i in label_of))


def class_rows(store: Store) -> list[dict[str, Any]]:
    """The home page's row per class: ``store.status()``'s counts, with ``flagged`` (``flagged_by_class``)."""
    status = store.status()
    flagged = flagged_by_class(store) if status else {}
    return [{**row, "flagged": flagged.get(str(row["class"]), 0)} for row in status]
