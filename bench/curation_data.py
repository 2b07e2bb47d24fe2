"""Deterministic data and the oracle of bench/bench_curation.py (no browser, no app: cheap to test).

Real pictures: scikit-learn's digits (8x8 scans), upscaled to ``PX`` px PNGs. The classes are four
digits; what does not belong is either a digit outside the four (5-9) or noise, so the oracle can tell.

- ``search_set()``: ``n`` candidates, an equal share per class query, ``off_topic`` of them not the
  class they were found under. Each is served as ``/img/<n>.png``; the oracle reads ``n`` back from a
  candidate's image URL.
- ``review_set()``: ``n`` images in the four classes, ``wrong`` of them filed under another class.
  Each file name carries its index (``<given>/img-<i>.png``, kept by the store as ``original_name``; the
  stored file is re-encoded, so its bytes are no key); the oracle knows every image's true class by it.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("zero", "one", "two", "three")  # digit i is class CLASSES[i]; the order is the class order
OFF_DIGITS = (5, 6, 7, 8, 9)  # "another kind of picture": digits that are none of the classes
PX = 64
_URL_N = re.compile(r"/img/(\d+)\.png$")
_NAME_I = re.compile(r"img-(\d+)\.png$")


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    d = load_digits()
    return np.asarray(d.images), np.asarray(d.target)


def png(pixels: np.ndarray) -> bytes:
    """An 8x8 digit (0..16) or noise as an RGB PNG of ``PX`` px."""
    img = Image.fromarray((np.clip(pixels, 0, 16) * (255 / 16)).astype(np.uint8), "L")
    img = img.resize((PX, PX), Image.Resampling.BILINEAR).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Candidate:
    n: int  # served as /img/<n>.png
    query: str  # the class it is found under (the class name is the query)
    on_topic: bool  # the oracle's truth: accept when True, reject when False
    kind: str  # "digit-<d>" or "noise"
    data: bytes


@dataclass(frozen=True)
class SearchSet:
    candidates: tuple[Candidate, ...]

    def by_n(self) -> dict[int, Candidate]:
        return {c.n: c for c in self.candidates}

    def queries(self) -> dict[str, list[int]]:
        """What each class query answers (for the fake DuckDuckGo file), in the order it answers."""
        out: dict[str, list[int]] = {c: [] for c in CLASSES}
        for c in self.candidates:
            out[c.query].append(c.n)
        return out

    def truth_of_url(self, url: str) -> Candidate:
        m = _URL_N.search(url)
        if m is None:
            raise ValueError(f"{url!r} is not an image of this benchmark (expected …/img/<n>.png)")
        return self.by_n()[int(m.group(1))]


def search_set(n: int = 200, off_topic: float = 0.2, seed: int = 0) -> SearchSet:
    """``n`` candidates over the classes; ``round(n * off_topic)`` off-topic, half other digits, half noise,
    spread over the queries and over positions by a seeded shuffle."""
    images, target = _digits()
    rng = np.random.default_rng(seed)
    per = n // len(CLASSES)
    n_off = round(n * off_topic)
    pools = {d: list(rng.permutation(np.flatnonzero(target == d))) for d in range(10)}
    rows: list[Candidate] = []
    k = 0
    for qi, query in enumerate(CLASSES):
        count = per if qi < len(CLASSES) - 1 else n - per * (len(CLASSES) - 1)
        off_here = n_off // len(CLASSES) + (1 if qi < n_off % len(CLASSES) else 0)
        kinds = ["on"] * (count - off_here) + ["off"] * off_here
        order = rng.permutation(len(kinds))
        for j in order:
            if kinds[j] == "on":
                pix, kind, on = images[pools[qi].pop()], f"digit-{qi}", True
            elif k % 2 == 0:
                d = OFF_DIGITS[k % len(OFF_DIGITS)]
                pix, kind, on = images[pools[d].pop()], f"digit-{d}", False
                k += 1
            else:
                pix, kind, on = rng.uniform(0, 16, (8, 8)), "noise", False
                k += 1
            rows.append(Candidate(n=len(rows), query=query, on_topic=on, kind=kind, data=png(pix)))
    return SearchSet(tuple(rows))


@dataclass(frozen=True)
class LabeledImage:
    index: int
    truth: str
    filed_as: str  # the folder it is imported from: the given label
    data: bytes


@dataclass(frozen=True)
class ReviewSet:
    images: tuple[LabeledImage, ...]

    def wrong(self) -> list[LabeledImage]:
        return [i for i in self.images if i.truth != i.filed_as]

    def truth_of_name(self, original_name: str) -> LabeledImage:
        """The image a store row came from, by its ``original_name`` (``<given>/img-<i>.png``)."""
        m = _NAME_I.search(original_name or "")
        if m is None:
            raise ValueError(f"{original_name!r} is not an image of this benchmark (expected …img-<i>.png)")
        return self.images[int(m.group(1))]

    def write(self, root: Path) -> Path:
        """The import folder: ``root/<given label>/img-<i>.png``."""
        for img in self.images:
            folder = root / img.filed_as
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"img-{img.index}.png").write_bytes(img.data)
        return root


def review_set(n: int = 200, wrong: float = 0.1, seed: int = 1) -> ReviewSet:
    """``n`` digit images, an equal share per class; ``round(n * wrong)`` of them filed under another
    class (the next class, or one further on, chosen by a seeded draw). All images are distinct."""
    images, target = _digits()
    rng = np.random.default_rng(seed)
    per = n // len(CLASSES)
    rows: list[tuple[str, np.ndarray]] = []
    for ci, cls in enumerate(CLASSES):
        pool = rng.permutation(np.flatnonzero(target == ci))
        count = per if ci < len(CLASSES) - 1 else n - per * (len(CLASSES) - 1)
        rows += [(cls, images[i]) for i in pool[:count]]
    flip = set(rng.choice(len(rows), size=round(n * wrong), replace=False).tolist())
    out = []
    for i, (cls, pix) in enumerate(rows):
        filed = cls
        if i in flip:
            shift = int(rng.integers(1, len(CLASSES)))
            filed = CLASSES[(CLASSES.index(cls) + shift) % len(CLASSES)]
        out.append(LabeledImage(index=i, truth=cls, filed_as=filed, data=png(pix)))
    return ReviewSet(tuple(out))


def search_clean(states: dict[int, tuple[str, str]], s: SearchSet) -> list[str]:
    """What is still wrong with the candidates: ``states`` maps n to (state, label) read from the DB.
    Clean = every on-topic candidate accepted under its query's class, every off-topic one rejected."""
    problems = []
    for c in s.candidates:
        state, label = states.get(c.n, ("missing", "?"))
        if c.on_topic and (state != "accepted" or label != c.query):
            problems.append(f"#{c.n} ({c.kind} under {c.query}) is {state}/{label}, should be accepted/{c.query}")
        if not c.on_topic and state != "rejected":
            problems.append(f"#{c.n} ({c.kind} under {c.query}) is {state}, should be rejected")
    return problems


def review_clean(labels: dict[int, str], r: ReviewSet) -> list[str]:
    """What is still wrong with the images: ``labels`` maps an image's index to its label in the DB (live
    images only). Clean = every image present with its true label (none deleted)."""
    problems = []
    for img in r.images:
        got = labels.get(img.index)
        if got != img.truth:
            problems.append(f"img-{img.index} (a {img.truth}) is {got or 'missing'}")
    return problems
