"""Keyboard triage on the Search page: shortcuts on the threshold and page actions, and the candidates on
the shared card grid (ui/cards.py: arrows move, A/X accept/reject, P the model's class, 1-9 move, Z undo,
Shift-click ranges). AppTest sends what the grid's keys send (helpers.grid_send) and checks the store and
the payload; the real keys in Chromium: tests/e2e/test_cards_keyboard.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import grid_data, grid_send, plant_review_fit
from streamlit.testing.v1 import AppTest

from lotr_labeler.store import CandidateIn, Store, candidate_scores

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "2_Search.py")


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
    plant_review_fit(s, [elves, dwarves])
    return s


def run_ok(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def press(at: AppTest, key: str) -> None:
    at.button(key=key).click()
    run_ok(at)


def test_no_two_buttons_share_a_shortcut_and_none_takes_a_grid_key(scored: Store) -> None:
    at = run_ok(AppTest.from_file(PAGE, default_timeout=60))
    keys = [b.proto.shortcut for b in at.button if b.proto.shortcut]
    # Single keys and Shift+arrows belong to the grid; the page's own actions use Shift+letters/PageUp/Down.
    assert sorted(keys) == sorted(["shift+pageup", "shift+pagedown", "shift+h", "shift+l"])
    # Accept page / Reject page live in the grid (its toolbar, Shift+A / Shift+X): in order with the keys
    # typed before them, on the cards the browser shows.
    js = (Path(PAGE).parents[1] / "lotr_labeler" / "ui" / "cards.js").read_text(encoding="utf-8")
    assert '(k === "A" || k === "X") && e.shiftKey' in js and 'data-tool="accept-page"' in js


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


def test_a_weak_head_with_no_supported_threshold_selects_nothing_until_the_user_picks_one(
    scored: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen by a new user: a 7-class head at chance, no threshold of 98 % precision, and the fixed default
    p <= 0.20 had Shift+L reject every pending candidate. Now nothing is selected until a slider moves."""
    from lotr_labeler.review import trust

    weak = trust.ModelTrust(True, 0.86, "The head that scores these candidates is wrong most of the time.")
    monkeypatch.setattr(trust, "triage_trust", lambda store: weak)
    at = run_ok(AppTest.from_file(PAGE, default_timeout=60))
    accept, reject = at.button(key="bulk_t_accept"), at.button(key="bulk_t_reject")
    assert (accept.label, reject.label) == ("Accept 0 with p ≥ 1.00", "Reject 0 with p ≤ 0.00")
    assert accept.disabled and reject.disabled  # Shift+H / Shift+L do nothing
    assert sum("None suggested: the head is weak" in c.value for c in at.caption) == 2
    at.slider(key="t_reject").set_value(0.2)  # the user's own choice counts and acts
    run_ok(at)
    reject = at.button(key="bulk_t_reject")
    assert reject.label == "Reject 2 with p ≤ 0.20" and not reject.disabled
    reject.click()
    run_ok(at)
    assert [c.id for c in scored.candidates(state="rejected")] == [1, 2]
    assert at.button(key="bulk_t_accept").disabled and not scored.candidates(state="accepted")


def test_a_weak_heads_guess_is_a_quiet_hint_on_the_cards(scored: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on Review: the "→ class" of a head wrong most of the time is no primary button (P still takes it)."""
    from lotr_labeler.review import trust

    at = run_ok(AppTest.from_file(PAGE, default_timeout=60))
    assert grid_data(at, "s_grid")["hint_only"] is False
    weak = trust.ModelTrust(True, 0.86, "The head that scores these candidates is wrong most of the time.")
    monkeypatch.setattr(trust, "triage_trust", lambda store: weak)
    run_ok(at)
    data = grid_data(at, "s_grid")
    assert data["hint_only"] is True and any(c["predicted"] for c in data["cards"])


def test_the_two_thresholds_say_which_is_which(scored: Store) -> None:
    """The grid's t (the model's other class, this page: [ ] S Shift+P) and the triage sliders (p of the
    card's own class, every page: Shift+H/L) sit on one page: the help and the labels tell them apart."""
    at = run_ok(AppTest.from_file(PAGE, default_timeout=60))
    # The key help lives behind ? (the grid's overlay lists the page's keys after its own), not on the page.
    help_ = " ".join(f"{k} {v}" for k, v in grid_data(at, "s_grid")["keys"])
    for key in ("[ ]", "S", "Shift+P", "another class", "Shift + H / Shift + L", "own class"):
        assert key in help_, key
    assert not [c.value for c in at.caption if c.value.startswith("⌨")]
    labels = [s.label for s in at.slider]
    assert all("(all pages)" in lab and "p(its class)" in lab for lab in labels) and len(labels) == 2


@pytest.mark.slow
def test_the_grid_lists_every_page_shortcut_in_its_help_and_follows_grid_columns(scored: Store) -> None:
    """? in the grid lists the page's own shortcuts too (they were missing), one row per button shortcut;
    the density is the grid_columns setting, as on Dataset and Review (Search had 6 hard-coded)."""
    at = run_ok(AppTest.from_file(PAGE, default_timeout=60))
    grid = grid_data(at, "s_grid")
    listed = " ".join(k for k, _ in grid["keys"]).lower().replace(" ", "")
    for b in at.button:
        if b.proto.shortcut:
            assert b.proto.shortcut.split("+")[1] in listed, b.proto.shortcut
    assert grid["columns"] == 8
    scored.set_setting("grid_columns", 5)
    assert grid_data(run_ok(AppTest.from_file(PAGE, default_timeout=60)), "s_grid")["columns"] == 5


def test_candidates_are_cards_of_the_shared_grid(scored: Store) -> None:
    at = run_ok(AppTest.from_file(PAGE, default_timeout=60))
    grid = grid_data(at, "s_grid")
    assert grid["actions"] == ["relabel", "predict", "undo", "accept", "reject"]
    assert grid["classes"] == ["elves", "dwarves"]
    first = grid["cards"][0]
    assert first["src"] == "http://thumb.test/0.jpg"  # the browser loads the search thumbnail itself
    assert first["caption"] == "p 0.05 · size ?" and first["label"] == "elves" and first["state"] == "pending"
    assert first["predicted"] == "dwarves" and first["hint"] == "→ dwarves 95%"  # P's target
    meta = dict(map(tuple, first["meta"]))
    assert meta["url"] == "http://img.test/0.jpg" and meta["state"] == "pending"
    assert grid["cards"][9]["predicted"] is None and grid["cards"][9]["scored"]  # p 0.95: the model agrees


def test_grid_keys_accept_reject_move_predict_bulk_and_undo(scored: Store) -> None:
    at = run_ok(AppTest.from_file(PAGE, default_timeout=60))
    at = grid_send(at, "s_grid", {"action": "accept", "ids": [2], "focus": 2})  # A
    assert scored.get_candidate(2).state == "accepted"
    grid = grid_data(at, "s_grid")
    assert grid["message"] == ["success", "Accepted 1 candidate."]
    # The pending view keeps it in place, marked, until the user pages on.
    assert [c["state"] for c in grid["cards"] if c["id"] == 2] == ["accepted"] and grid["focus"] == 3
    at = grid_send(at, "s_grid", {"action": "predict", "ids": [3], "focus": 3})  # P
    c3 = scored.get_candidate(3)
    assert (c3.label, c3.state) == ("dwarves", "accepted") and grid_data(at, "s_grid")["focus"] == 4
    at = grid_send(at, "s_grid", {"action": "relabel", "ids": [4], "label": "dwarves"})  # 2
    c4 = scored.get_candidate(4)
    assert (c4.label, c4.state) == ("dwarves", "pending")  # moved, still to decide
    events = len(scored.history())
    at = grid_send(at, "s_grid", {"action": "reject", "ids": [5, 6, 7]})  # Shift-click 5..7, X
    assert [scored.get_candidate(i).state for i in (5, 6, 7)] == ["rejected"] * 3
    assert len(scored.history()) == events + 1  # one step
    assert grid_data(at, "s_grid")["message"] == ["success", "Rejected 3 candidates."]
    at = grid_send(at, "s_grid", {"action": "undo", "ids": []})  # Z
    assert [scored.get_candidate(i).state for i in (5, 6, 7)] == ["pending"] * 3
    assert "rejected 3 candidate(s)" in grid_data(at, "s_grid")["message"][1]


def test_grid_errors_name_the_fix(scored: Store) -> None:
    at = run_ok(AppTest.from_file(PAGE, default_timeout=60))
    at = grid_send(at, "s_grid", {"action": "predict", "ids": [10]})  # p(elves) 0.95: nothing to move
    kind, text = grid_data(at, "s_grid")["message"]
    assert kind == "error" and "nothing to move" in text
    at = grid_send(at, "s_grid", {"action": "accept", "ids": [999]})
    kind, text = grid_data(at, "s_grid")["message"]
    assert kind == "error" and "999" in text and "reload" in text
    assert scored.count_candidates(state="pending") == 10
