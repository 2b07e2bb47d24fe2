"""Keyboard triage on the Search page: shortcuts on the threshold actions, and a focused-card cursor
(J/K move it, A/X accept/reject the focused card, P accepts it as the predicted class) that is
highlighted and moves on after each decision. AppTest clicks the buttons the shortcuts press; the
browser journey (tests/e2e/test_journey.py) presses the real keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lotr_labeler.model import embed
from lotr_labeler.store import CandidateIn, Store, candidate_scores

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "2_Search.py")


@pytest.fixture
def scored(empty_store: Store) -> Store:
    """Ten pending elves candidates with p(elves) = 0.05 .. 0.95 (given: the page is under test), the
    low ones predicted dwarves."""
    s = empty_store
    for name in ("elves", "dwarves"):
        s.add_class(name)
    s.add_candidates(
        CandidateIn("elves", f"http://img.test/{i}.jpg", f"http://thumb.test/{i}.jpg", source="ddg") for i in range(10)
    )
    elves, dwarves = s.get_class("elves").id, s.get_class("dwarves").id
    candidate_scores.save(
        s,
        [
            candidate_scores.CandidateScore(c.id, {elves: p, dwarves: 1 - p}, None, None, None, "x", "now")
            for c in s.candidates()
            for p in [0.05 + 0.1 * (c.id - 1)]
        ],
    )
    fit = {
        "backbone": embed.Backbone("resnet18", 32, pretrained=False).as_dict(),
        "class_ids": [elves, dwarves],
        "computed_at": "now",
        "seconds": 0.1,
    }
    s.meta_set("review_fit", json.dumps({**fit, "folds": 2, "scored": 0, "blended": 0, "run_id": None, "event_id": 0}))
    return s


def run_ok(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def press(at: AppTest, key: str) -> None:
    at.button(key=key).click()
    run_ok(at)


def highlighted(at: AppTest) -> list[int]:
    """Cards whose container carries the focus outline."""
    return [
        int(h.proto.body.split(".st-key-card_")[1].split(" ")[0])
        for h in at.get("html")
        if ".st-key-card_" in h.proto.body
    ]


def test_no_two_buttons_share_a_shortcut(scored: Store) -> None:
    at = run_ok(AppTest.from_file(PAGE, default_timeout=60))
    keys = [b.proto.shortcut for b in at.button if b.proto.shortcut]
    assert sorted(keys) == sorted(
        ["shift+a", "shift+x", "shift+left", "shift+right", "shift+h", "shift+l", "k", "j", "a", "x", "p", "z"]
    )


def test_threshold_buttons_carry_their_shortcuts(scored: Store) -> None:
    at = run_ok(AppTest.from_file(PAGE, default_timeout=60))
    accept = at.button(key="bulk_t_accept")
    reject = at.button(key="bulk_t_reject")
    assert accept.proto.shortcut == "shift+h" and reject.proto.shortcut == "shift+l"
    accept.click()
    run_ok(at)
    assert [c.id for c in scored.candidates(state="accepted")] == [10]  # p >= 0.90
    at.button(key="bulk_t_reject").click()
    run_ok(at)
    assert [c.id for c in scored.candidates(state="rejected")] == [1, 2]  # p <= 0.20


def test_focused_card_cursor_accept_reject_and_move_to_predicted(scored: Store) -> None:
    at = run_ok(AppTest.from_file(PAGE, default_timeout=60))
    shortcuts = {b.key: b.proto.shortcut for b in at.button if b.key and b.key.startswith("kb_")}
    assert shortcuts == {"kb_prev": "k", "kb_next": "j", "kb_acc": "a", "kb_rej": "x", "kb_pred": "p"}
    assert highlighted(at) == [1]  # the first card is focused at first
    press(at, "kb_next")
    press(at, "kb_next")
    assert highlighted(at) == [3] and at.session_state["s_focus"] == 3
    press(at, "kb_prev")
    assert highlighted(at) == [2]

    press(at, "kb_acc")  # accept #2; the pending grid drops it and the focus moves to #3
    assert scored.get_candidate(2).state == "accepted"
    assert highlighted(at) == [3]
    assert at.button(key="kb_pred").label == "→ dwarves"  # p(elves) 0.25: the model says dwarves
    press(at, "kb_pred")
    c3 = scored.get_candidate(3)
    assert (c3.label, c3.state) == ("dwarves", "accepted")
    assert highlighted(at) == [4]
    press(at, "kb_rej")
    assert scored.get_candidate(4).state == "rejected" and highlighted(at) == [5]
    scored.undo()  # each key was one undoable step
    assert scored.get_candidate(4).state == "pending"


def test_focus_stops_at_the_ends_and_falls_back_to_the_first_card(scored: Store) -> None:
    at = run_ok(AppTest.from_file(PAGE, default_timeout=60))
    press(at, "kb_prev")
    assert highlighted(at) == [1]
    for _ in range(12):
        press(at, "kb_next")
    assert highlighted(at) == [10]
    press(at, "kb_acc")  # the last card: the focus goes back one
    assert highlighted(at) == [9]
    at.session_state["s_focus"] = 999  # a card that is not on this page any more
    run_ok(at)
    assert highlighted(at) == [1]
