"""Near-duplicate groups: images linked by perceptual-hash distance, and the decisions on a group.

Cross-class groups (near-identical pictures with different labels: one label is wrong) come first.
"Keep all" hides a group until a new member joins; "Keep only this" soft-deletes the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from lotr_labeler.review import dedupe
from lotr_labeler.review.decisions import mark, reviewed_ids
from lotr_labeler.store import ImageRow, Store, version


@dataclass(frozen=True)
class DuplicateGroup:
    images: tuple[ImageRow, ...]
    max_distance: int  # largest phash distance between linked members
    reviewed: bool  # every member was confirmed with "keep all"

    @property
    def ids(self) -> list[int]:
        return [img.id for img in self.images]

    @property
    def labels(self) -> list[str]:
        return sorted({img.label for img in self.images})

    @property
    def conflict(self) -> bool:
        """Near-identical pictures with different labels: at least one label is wrong."""
        return len(self.labels) > 1

    @property
    def majority_label(self) -> str:
        """The label most members carry; on a tie, the one of the largest picture (likely the original)."""
        counts = Counter(img.label for img in self.images)
        return max(self.images, key=lambda img: (counts[img.label], img.width * img.height)).label


def duplicate_groups(
    store: Store, max_distance: int | None = None, *, include_reviewed: bool = False
) -> list[DuplicateGroup]:
    """Groups of active images linked by phash distance ≤ ``max_distance`` (setting
    ``near_dup_distance``): cross-class conflicts first, then larger groups."""
    distance = store.settings().near_dup_distance if max_distance is None else max_distance
    # Regrouping 20,000 phashes on every page rerun took most of a second: memoized per data version.
    key = ("review.duplicate_groups", distance, include_reviewed)
    return list(version.memo(store, key, lambda: _duplicate_groups(store, distance, include_reviewed)))


def _duplicate_groups(store: Store, distance: int, include_reviewed: bool) -> list[DuplicateGroup]:
    images = store.images()
    found = dedupe.find_groups([img.phash for img in images], distance)
    confirmed = reviewed_ids(store, "duplicate")
    groups = [
        DuplicateGroup(tuple(images[i] for i in members), widest, all(images[i].id in confirmed for i in members))
        for members, widest in zip(found.groups, found.widest, strict=True)
    ]
    if not include_reviewed:
        groups = [g for g in groups if not g.reviewed]
    return sorted(groups, key=lambda g: (not g.conflict, -len(g.images), g.images[0].id))


def keep_all(store: Store, ids: Iterable[int]) -> int:
    """These near duplicates are fine together: hide the group (until a new member joins); one undoable step."""
    return mark(store, ids, "duplicate", lambda n: f"kept a near-duplicate group of {n} image(s)")


def keep_one(store: Store, keep_id: int, ids: Iterable[int]) -> int:
    """Keep ``keep_id``, soft-delete the rest of the group in one undoable action."""
    others = [int(i) for i in dict.fromkeys(ids) if int(i) != int(keep_id)]
    if not others:
        return 0
    return store.delete_images(others)
