"""The images a run trains on: checked (enough classes, images and validation images), counted and
digested so runs can be compared, and linked into the run's folder so edits meanwhile move none of them."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from lotr_labeler.errors import TrainingError
from lotr_labeler.store import ImageRow, Store


@dataclass(frozen=True)
class DatasetSnapshot:
    images: list[ImageRow]
    classes: list[str]
    counts: dict[str, int]
    valid_counts: dict[str, int]
    digest: str


def snapshot(store: Store, images: Sequence[ImageRow] | None = None) -> DatasetSnapshot:
    """Counts and a digest of the images a run trains on (so runs can be compared)."""
    images = list(store.images() if images is None else images)
    classes = sorted({img.label for img in images})
    counts = {c: 0 for c in classes}
    valid = {c: 0 for c in classes}
    for img in images:
        counts[img.label] += 1
        valid[img.label] += img.split == "valid"
    digest = hashlib.sha256("\n".join(sorted(f"{i.sha256}:{i.label}:{i.split}" for i in images)).encode()).hexdigest()[
        :16
    ]
    return DatasetSnapshot(images, classes, counts, valid, digest)


def check_dataset(store: Store, min_per_class: int | None = None) -> DatasetSnapshot:
    """The dataset to train on, or TrainingError saying exactly what is missing."""
    snap = snapshot(store)
    minimum = store.settings().min_images_per_class if min_per_class is None else min_per_class
    if len(snap.classes) < 2:
        raise TrainingError(
            f"Training needs at least 2 classes with images; project {store.name!r} has "
            f"{len(snap.classes)} ({', '.join(snap.classes) or 'none'}). Import or download images first."
        )
    thin = {c: n for c, n in snap.counts.items() if n < minimum}
    if thin:
        listing = ", ".join(f"{c} ({n})" for c, n in thin.items())
        raise TrainingError(
            f"Every class needs at least {minimum} images (setting min_images_per_class); too few: {listing}. "
            "Add images or lower the setting."
        )
    no_valid = [c for c, n in snap.valid_counts.items() if n == 0]
    if no_valid:
        raise TrainingError(
            f"Class(es) {', '.join(no_valid)} have no validation image (the split comes from each image's hash). "
            "Add a few more images to them."
        )
    return snap


def snapshot_files(
    store: Store, images: Sequence[ImageRow], folder: Path
) -> tuple[list[ImageRow], list[str], list[dict[str, Any]]]:
    """Hard links (copies where links are not possible) of the run's images, named by content hash.

    A run can take many minutes: relabels, deletes and class renames meanwhile move the project's
    files, never these. Unreadable files (a full decode, since ``verify()`` passes truncated JPEGs)
    are skipped and reported. Returns (images, their paths relative to the project, skipped).
    """
    folder.mkdir(parents=True, exist_ok=True)
    ok: list[ImageRow] = []
    paths: list[str] = []
    skipped: list[dict[str, Any]] = []
    for img in images:
        dst = folder / f"{img.sha256}.jpg"
        try:
            if not dst.exists():
                src = store.path(store.get_image(img.id))  # where it is now, not when listed
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            with Image.open(dst) as handle:
                handle.load()
            ok.append(img)
            paths.append(str(dst.relative_to(store.root)))
        except (OSError, SyntaxError) as exc:
            dst.unlink(missing_ok=True)
            skipped.append({"id": img.id, "path": img.relpath, "reason": str(exc) or type(exc).__name__})
    return ok, paths, skipped
