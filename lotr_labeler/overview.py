"""What to do next, from the per-class counts (the home page's suggestion)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NextStep:
    page: str  # the page file the suggestion links to
    label: str  # short link text
    message: str


def next_step(status: list[dict[str, Any]], min_images: int, has_run: bool = False) -> NextStep:
    """The single most useful next action, checked in pipeline order."""
    if len(status) < 2:
        return NextStep("pages/1_Classes.py", "Classes", "Add at least two classes to tell apart.")
    pending = sum(r["pending"] for r in status)
    if pending:
        return NextStep("pages/2_Search.py", "Search", f"Review {pending} pending candidate(s): accept or reject them.")
    accepted = sum(r["accepted"] for r in status)
    if accepted:
        return NextStep("pages/2_Search.py", "Search", f"Download {accepted} accepted candidate(s).")
    # The search needs the internet; pictures already on disk come in through the Dataset page's import.
    offline = ", or import pictures you have on the Dataset page."
    empty = [r["class"] for r in status if r["images"] == 0]
    if empty:
        return NextStep(
            "pages/2_Search.py",
            "Search",
            f"Search images for {', '.join(empty[:3])}" + ("…" if len(empty) > 3 else "") + offline,
        )
    thin = [r["class"] for r in status if r["images"] < min_images]
    if thin:
        return NextStep(
            "pages/2_Search.py",
            "Search",
            f"Get at least {min_images} images for {', '.join(thin[:3])}" + ("…" if len(thin) > 3 else "") + offline,
        )
    no_valid = [r["class"] for r in status if r["valid"] == 0]
    if no_valid:
        return NextStep(
            "pages/3_Dataset.py", "Dataset", f"Add images to {', '.join(no_valid[:3])}: no validation image yet."
        )
    if not has_run:
        return NextStep("pages/4_Train.py", "Train", "Every class has enough images: train a first model.")
    return NextStep(
        "pages/5_Review.py",
        "Review",
        "Fix the images the model disagrees with, retrain the head in seconds, then try it on the Predict page.",
    )
