"""The home page's next-step suggestion, in pipeline order."""

from __future__ import annotations

from typing import Any

from lotr_labeler.overview import next_step


def row(name: str, **kw: int) -> dict[str, Any]:
    base = {
        "class": name,
        "pending": 0,
        "accepted": 0,
        "rejected": 0,
        "downloaded": 0,
        "failed": 0,
        "images": 0,
        "valid": 0,
        "flagged": 0,
        "deleted": 0,
    }
    return {**base, **kw}


def test_next_step_follows_the_pipeline() -> None:
    assert next_step([], 10).page == "pages/1_Classes.py"
    assert next_step([row("a")], 10).page == "pages/1_Classes.py"
    two = [row("a"), row("b")]
    assert next_step(two, 10).message == "Search images for a, b, or import pictures you have on the Dataset page."
    assert "Review 3 pending" in next_step([row("a", pending=3), row("b")], 10).message
    assert "Download 2 accepted" in next_step([row("a", accepted=2), row("b")], 10).message
    thin = [row("a", images=12, valid=2), row("b", images=4, valid=1)]
    assert "at least 10 images for b" in next_step(thin, 10).message
    no_valid = [row("a", images=12, valid=2), row("b", images=12, valid=0)]
    assert "no validation image" in next_step(no_valid, 10).message
    ready = [row("a", images=12, valid=2), row("b", images=12, valid=3)]
    assert next_step(ready, 10).page == "pages/4_Train.py"
    assert next_step(ready, 10, has_run=True).page == "pages/5_Review.py"
