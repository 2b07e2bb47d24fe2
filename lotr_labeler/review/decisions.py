"""Review decisions: keep, back to the queue, relabel, delete, and which images are reviewed.

Decisions live in the project DB (``review_marks``): *Keep* confirms the current label; a relabel
through review confirms the new one; a later label change (undo, another page) puts the image back
in the queue. Relabel and delete go through the store: one transaction and one undoable event per
action, however many images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from lotr_labeler.errors import InvalidInput
from lotr_labeler.store import Store, reviews
from lotr_labeler.store.images import Relabeled


def mark(store: Store, ids: Iterable[int], kind: str, summary: Callable[[int], str] | None = None) -> int:
    """Mark images reviewed; with ``summary`` (n -> text) as its own undoable step."""
    rows = [store.get_image(int(i)) for i in dict.fromkeys(ids)]
    if not rows:
        raise InvalidInput("No image ids given. Pass one or more ids.")
    text = summary(len(rows)) if summary else None
    reviews.mark(store, [(r.id, r.class_id) for r in rows], kind, summary=text)
    return len(rows)


def keep(store: Store, ids: Iterable[int]) -> int:
    """The label is right: mark the images reviewed (out of the queue while the label stays); one undoable step."""
    return mark(store, ids, "label", lambda n: f"kept {n} image(s) as labeled")


def unreview(store: Store, ids: Iterable[int]) -> int:
    """Put images back in the queue."""
    id_list = [int(i) for i in dict.fromkeys(ids)]
    reviews.unmark_labels(store, id_list)
    return len(id_list)


def relabel(store: Store, ids: Iterable[int], label: str) -> int:
    """Move images to ``label`` and mark them reviewed: one transaction, one undoable event."""
    id_list = [int(i) for i in dict.fromkeys(ids)]
    with store.transaction():
        changed = store.relabel(id_list, label)
        mark(store, id_list, "label")
    return changed


def relabel_seen(store: Store, moves: Mapping[int, str], seen: Mapping[int, str]) -> Relabeled:
    """``relabel_each`` from a grid: only images still as the user saw them (``seen``: id -> label on the
    card) move; those moved or deleted in another window meanwhile keep that change, come back in
    ``stale`` and stay in the queue. The rest are marked reviewed. One transaction, one undoable event."""
    with store.transaction():
        done = store.relabel_seen(moves, seen)
        mark(store, [i for i in moves if int(i) not in done.stale], "label")
    return done


def delete(store: Store, ids: Iterable[int]) -> int:
    """Soft delete (to the trash; undo restores): one transaction, one undoable event."""
    return store.delete_images(int(i) for i in ids)


def reviewed_ids(store: Store, kind: str = "label") -> set[int]:
    """Images whose decision still holds (their class is the one confirmed)."""
    return reviews.marked_ids(store, kind)
