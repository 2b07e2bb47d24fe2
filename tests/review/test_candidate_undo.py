"""Candidate decisions in the one history (undo whatever came last), stale windows, page actions by view."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import grid_batch, grid_data, grid_send, pick, plant_review_fit
from streamlit.testing.v1 import AppTest

from lotr_labeler.cli import main
from lotr_labeler.store import CandidateIn, Store, candidate_scores
from lotr_labeler.workspace import open_project

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "2_Search.py")


def add(store: Store, label: str, n: int, start: int = 0) -> list[int]:
    store.add_candidates(
        CandidateIn(label, f"http://img.test/{label}/{i}.jpg", f"http://thumb.test/{label}/{i}.jpg")
        for i in range(start, start + n)
    )
    return [c.id for c in store.candidates(label)][-n:]


def states(store: Store, ids: list[int]) -> list[str]:
    return [store.get_candidate(i).state for i in ids]


# -- the store -------------------------------------------------------------------------------------------


def test_a_grid_move_or_p_over_mixed_cards_is_one_undo_step(empty_store: Store) -> None:
    """A selection of pending and accepted cards moved with 1-9, or P over cards the model places in
    different classes: one event, and one Z puts every card back (class and decision)."""
    from lotr_labeler.review import candidates as triage
    from lotr_labeler.ui.cards import GridAction
    from lotr_labeler.ui.search_grid import search_action

    s = empty_store
    for name in ("elves", "dwarves", "orcs"):
        s.add_class(name)
    ids = add(s, "elves", 4)
    s.decide(ids[:2], "accepted")
    events = len(s.history(50))
    before = [(c.state, c.label) for c in map(s.get_candidate, ids)]
    seen = {i: s.get_candidate(i).state for i in ids}
    kind, text = search_action(s, GridAction("relabel", tuple(ids), "orcs"), seen=seen)
    assert (kind, text) == ("success", "Moved 4 candidates to orcs.")
    # The history says what happened to each group: moved, and the decision each kept.
    assert s.history(1)[0].summary == "moved 2 candidate(s) to orcs (accepted); moved 2 candidate(s) to orcs (pending)"
    assert [(c.state, c.label) for c in map(s.get_candidate, ids)] == [("accepted", "orcs")] * 2 + [
        ("pending", "orcs")
    ] * 2
    assert len(s.history(50)) == events + 1
    s.undo()
    assert [(c.state, c.label) for c in map(s.get_candidate, ids)] == before

    # P over two cards the model places in two different classes.
    elves, dwarves, orcs = (s.get_class(n).id for n in ("elves", "dwarves", "orcs"))
    probs = [{elves: 0.1, dwarves: 0.8, orcs: 0.1}, {elves: 0.1, dwarves: 0.1, orcs: 0.8}]
    candidate_scores.save(
        s,
        [
            candidate_scores.CandidateScore(i, p, None, None, None, "x", "now")
            for i, p in zip(ids[2:], probs, strict=True)
        ],
    )
    plant_review_fit(s, [elves, dwarves, orcs])
    assert [triage.item(s, i).predicted for i in ids[2:]] == ["dwarves", "orcs"]
    kind, text = search_action(s, GridAction("predict", tuple(ids[2:])), seen={i: "pending" for i in ids[2:]})
    assert kind == "success" and text.startswith("Accepted 2 candidates as the model's class (dwarves, orcs)")
    assert [(c.state, c.label) for c in map(s.get_candidate, ids[2:])] == [
        ("accepted", "dwarves"),
        ("accepted", "orcs"),
    ]
    assert len(s.history(50)) == events + 2
    s.undo()
    assert [(c.state, c.label) for c in map(s.get_candidate, ids)] == before


def test_undo_reverts_the_newest_action_whatever_its_kind(store: Store) -> None:
    ids = add(store, "circle", 5)
    img = store.images("circle")[0]
    store.relabel([img.id], "square")  # an image action first
    assert store.decide(ids[:1], "accepted") == 1  # a single decision
    assert store.decide(ids, "rejected", only_pending=True) == 4  # a bulk one (Shift+X on a page)
    kinds = [e.kind for e in store.history(3)]
    assert kinds == ["decide", "decide", "relabel"]
    assert store.history(1)[0].summary == "rejected 4 candidate(s)"

    assert store.undo() == "Undid: rejected 4 candidate(s)"
    assert states(store, ids) == ["accepted"] + ["pending"] * 4
    store.undo()
    assert states(store, ids) == ["pending"] * 5
    store.undo()  # then the image action, in the same history
    assert store.get_image(img.id).label == "circle"


def test_undo_of_a_decision_leaves_a_candidate_changed_since(store: Store) -> None:
    ids = add(store, "circle", 2)
    store.decide(ids, "accepted")
    image_id = store.images()[0].id
    store.finish_candidate(ids[1], image_id=image_id)  # downloaded since: its image exists now
    store.undo()
    assert states(store, ids) == ["pending", "downloaded"]
    assert store.get_candidate(ids[1]).image_id == image_id


def test_a_stale_window_never_overrides_a_decision_taken_meanwhile(store: Store, data_root: Path) -> None:
    ids = add(store, "circle", 5)
    with open_project(data_root, store.name) as other:  # the second tab (its own connection)
        other.decide(ids[:1], "accepted")
        # This window still shows card 0 pending and clicks ✗: the other window's accept stands.
        one = store.decide_seen({ids[0]: "pending"}, "rejected")
        assert (one.changed, one.stale) == (0, (ids[0],))
        assert one.stale_message() == (
            "1 candidate was decided in another window meanwhile and kept that decision; reload to see it."
        )
        assert store.get_candidate(ids[0]).state == "accepted"

        # Bulk: 3 of the 5 shown pending were decided elsewhere; the 2 others are rejected, one event.
        other.decide(ids[1:3], "accepted")
        events = len(store.history())
        bulk = store.decide_seen(dict.fromkeys(ids, "pending"), "rejected")
        assert bulk.changed == 2 and sorted(bulk.stale) == ids[:3]
        assert bulk.stale_message() == (
            "3 candidates were decided in another window meanwhile and kept that decision; reload to see them."
        )
        assert states(store, ids) == ["accepted"] * 3 + ["rejected"] * 2
        assert len(store.history()) == events + 1

    # What the user saw is what counts: a decision on an already-accepted card the user saw accepted goes through.
    assert store.decide_seen({ids[0]: "accepted"}, "rejected").changed == 1
    # The same decision taken in both windows is no conflict.
    assert store.decide_seen({ids[1]: "pending"}, "accepted").stale == ()


def test_a_stale_move_to_another_class_is_named_even_when_the_state_agrees(empty_store: Store) -> None:
    """Another window accepted the candidate in its own class; this one, drawn while it was pending, moves
    it to another class (P): the other window's decision stands and the move says so (it said nothing)."""
    s = empty_store
    for name in ("elves", "dwarves"):
        s.add_class(name)
    (cid,) = add(s, "elves", 1)
    s.decide([cid], "accepted")  # the other window
    got = s.decide_seen({cid: "pending"}, "accepted", label="dwarves")
    assert (got.changed, got.stale) == (0, (cid,))
    assert (s.get_candidate(cid).state, s.get_candidate(cid).label) == ("accepted", "elves")
    assert s.decide_seen({cid: "pending"}, "accepted").stale == ()  # the same decision taken twice: no conflict


def test_cli_undo_covers_candidate_decisions(store: Store, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = add(store, "circle", 3)
    assert main(["--data", str(data_root), "--project", store.name, "candidates", "accept", *map(str, ids)]) == 0
    assert states(store, ids) == ["accepted"] * 3
    capsys.readouterr()
    assert main(["--data", str(data_root), "--project", store.name, "undo"]) == 0
    assert "accepted 3 candidate(s)" in capsys.readouterr().out
    assert states(store, ids) == ["pending"] * 3


# -- the Search page ---------------------------------------------------------------------------------------


@pytest.fixture
def shown(empty_store: Store) -> Store:
    empty_store.add_class("elves")
    add(empty_store, "elves", 10)
    return empty_store


def page_ids(at: AppTest, state: str) -> list[int]:
    """What the grid's Accept page / Reject page sends (cards.js pageIds): the cards shown, undecided
    (or, in a state's view, every card not in that state yet), never a downloaded one."""
    data = grid_data(at, "s_grid")
    cards = [c for c in data["cards"] if c["state"] != "downloaded"]
    if data["page_scope"] == "any":
        return [c["id"] for c in cards if c["state"] != state]
    return [c["id"] for c in cards if c["state"] == "pending"]


def app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    return run(at)


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def click_label(at: AppTest, prefix: str) -> None:
    matches = [b for b in at.button if b.label.startswith(prefix)]
    assert matches, f"no button {prefix!r} in {[b.label for b in at.button]}"
    matches[0].click()
    run(at)


@pytest.mark.slow
def test_search_page_grid_undo_z_and_history_show_candidate_decisions(shown: Store) -> None:
    ids = [c.id for c in shown.candidates()]
    at = app()
    at = grid_send(at, "s_grid", {"action": "accept", "ids": [ids[0]]})
    at = grid_batch(at, "s_grid", [{"seq": 1, "action": "reject", "ids": page_ids(at, "rejected")}])  # Shift+X
    assert states(shown, ids) == ["accepted"] + ["rejected"] * 9
    at.run()  # History is outside the grid's fragment
    history = [line["text"] for line in grid_data(at, "history")["lines"]]
    assert "rejected 9 candidate(s)" in history and f"accepted candidate #{ids[0]}" in history

    at = grid_send(at, "s_grid", {"action": "undo", "ids": []})  # the grid's ↩ Undo (the page's one Undo)
    assert states(shown, ids) == ["accepted"] + ["pending"] * 9  # the bulk step in one undo
    assert "Undid: rejected 9 candidate(s)" in grid_data(at, "s_grid")["message"][1]
    at = grid_send(at, "s_grid", {"action": "undo", "ids": []})  # Z in the grid
    assert states(shown, ids) == ["pending"] * 10
    struck = [line["text"] for line in grid_data(at, "history")["lines"] if line["struck"]]
    assert "rejected 9 candidate(s)" in struck  # struck through


@pytest.mark.slow
def test_accept_page_in_the_rejected_view_accepts_the_rejected_cards_shown(shown: Store) -> None:
    ids = [c.id for c in shown.candidates()]
    shown.decide(ids[:4], "rejected")
    shown.decide(ids[4:5], "accepted")
    at = app()
    at = pick(at, "f_state", "rejected")
    assert grid_data(at, "s_grid")["page_scope"] == "any"  # a state's view: every card shown
    at = grid_batch(at, "s_grid", [{"seq": 1, "action": "accept", "ids": page_ids(at, "accepted")}])
    assert states(shown, ids[:5]) == ["accepted"] * 5
    assert grid_data(at, "s_grid")["message"] == ["success", "Accepted 4 candidates."]
    assert states(shown, ids[5:]) == ["pending"] * 5  # not shown: untouched
    # Under the All filter a page action still only takes the pending cards.
    shown.decide(ids[:2], "rejected")
    at = pick(at, "f_state", "All")
    assert grid_data(at, "s_grid")["page_scope"] == "pending"
    at = grid_batch(at, "s_grid", [{"seq": 2, "action": "accept", "ids": page_ids(at, "accepted")}])
    assert states(shown, ids) == ["rejected"] * 2 + ["accepted"] * 8


def test_a_card_click_in_a_stale_tab_keeps_the_other_tabs_decision(shown: Store, data_root: Path) -> None:
    ids = [c.id for c in shown.candidates()]
    at = app()  # drawn while everything is pending
    with open_project(data_root, shown.name) as other:
        other.decide(ids[:1], "accepted")
    at = grid_send(at, "s_grid", {"action": "reject", "ids": [ids[0]]})
    assert shown.get_candidate(ids[0]).state == "accepted"
    kind, text = grid_data(at, "s_grid")["message"]  # said once, in the grid's message line
    assert kind == "warning" and text == (
        "1 candidate was decided in another window meanwhile and kept that decision; reload to see it."
    )
    assert not shown.history(1)[0].summary.startswith("rejected")


def test_a_page_action_in_a_stale_tab_reports_the_others_once(shown: Store, data_root: Path) -> None:
    ids = [c.id for c in shown.candidates()]
    at = app()
    with open_project(data_root, shown.name) as other:
        other.decide(ids[:3], "rejected")
    at = grid_batch(at, "s_grid", [{"seq": 1, "action": "accept", "ids": page_ids(at, "accepted")}])  # Shift+A
    assert states(shown, ids) == ["rejected"] * 3 + ["accepted"] * 7
    assert grid_data(at, "s_grid")["message"] == [
        "warning",
        "Accepted 7 candidates. 3 candidates were decided in another window meanwhile and kept that decision; "
        "reload to see them.",
    ]


@pytest.fixture
def scored(empty_store: Store) -> Store:
    """Four pending elves candidates the model places in dwarves (p(elves) = 0.1), so "→ dwarves" shows."""
    s = empty_store
    for name in ("elves", "dwarves"):
        s.add_class(name)
    s.add_candidates(CandidateIn("elves", f"http://img.test/{i}.jpg", f"http://thumb.test/{i}.jpg") for i in range(4))
    elves, dwarves = s.get_class("elves").id, s.get_class("dwarves").id
    candidate_scores.save(
        s,
        [
            candidate_scores.CandidateScore(c.id, {elves: 0.1, dwarves: 0.9}, None, None, None, "x", "now")
            for c in s.candidates()
        ],
    )
    plant_review_fit(s, [elves, dwarves])
    return s


@pytest.mark.slow
def test_grid_decisions_in_a_stale_tab_keep_the_other_tabs(scored: Store, data_root: Path) -> None:
    ids = [c.id for c in scored.candidates()]
    at = app()  # drawn while all four are pending, each "→ dwarves"
    with open_project(data_root, scored.name) as other:
        other.decide(ids[:1], "rejected")
        other.decide(ids[2:3], "accepted")
    at = grid_send(at, "s_grid", {"action": "predict", "ids": [ids[0]]})  # P
    c = scored.get_candidate(ids[0])
    assert (c.state, c.label) == ("rejected", "elves")
    kind, text = grid_data(at, "s_grid")["message"]
    assert kind == "warning" and "decided in another window meanwhile" in text
    # A bulk X over a range taken meanwhile in part: the others are decided, the stale one is named once.
    at = app()
    grid_ids = [c["id"] for c in grid_data(at, "s_grid")["cards"]]
    assert ids[0] not in grid_ids and ids[2] not in grid_ids  # decided: out of the pending view
    with open_project(data_root, scored.name) as other:
        other.decide(ids[1:2], "accepted")
    at = grid_send(at, "s_grid", {"action": "reject", "ids": [ids[1], ids[3]]})
    assert states(scored, ids) == ["rejected", "accepted", "accepted", "rejected"]
    kind, text = grid_data(at, "s_grid")["message"]
    assert kind == "warning" and text.startswith("Rejected 1 candidate. 1 candidate was decided in another window")
    # A move (1-9) in a stale tab leaves the other's class and state alone.
    at = app()
    at = pick(at, "f_state", "All")  # ids[3] shown as rejected
    with open_project(data_root, scored.name) as other:
        other.decide(ids[3:4], "pending")
    at = grid_send(at, "s_grid", {"action": "relabel", "ids": [ids[3]], "label": "dwarves"})
    c = scored.get_candidate(ids[3])
    assert (c.state, c.label) == ("pending", "elves")
    assert grid_data(at, "s_grid")["message"][0] == "warning"


def test_a_decision_that_changes_nothing_says_why_not_zero(empty_store: Store) -> None:
    """Seen by a new user: X on a card the CLI had rejected meanwhile said "Rejected 0 candidates.", and A
    on an accepted card "Accepted 0 candidates.": read as failures. Now they say the cards already were."""
    from lotr_labeler.ui.cards import GridAction
    from lotr_labeler.ui.search_grid import search_action

    s = empty_store
    for name in ("elves", "dwarves"):
        s.add_class(name)
    ids = add(s, "elves", 3)
    s.decide(ids[:1], "rejected")  # another window (the CLI) rejected it while the page showed it pending
    events = len(s.history(50))
    assert search_action(s, GridAction("reject", (ids[0],)), seen={ids[0]: "pending"}) == (
        "info",
        f"Candidate #{ids[0]} is already rejected: nothing to change.",
    )
    s.decide(ids[1:], "accepted")
    events = len(s.history(50))
    seen = {i: "accepted" for i in ids[1:]}
    assert search_action(s, GridAction("accept", tuple(ids[1:])), seen=seen) == (
        "info",
        "These 2 candidates are already accepted: nothing to change.",
    )
    assert search_action(s, GridAction("relabel", (ids[1],), "elves"), seen=seen) == (
        "info",
        f"Candidate #{ids[1]} is already in elves: nothing to change.",
    )
    assert len(s.history(50)) == events  # no empty event written
    # A real change is still counted, and a conflict still warns.
    assert search_action(s, GridAction("reject", (ids[1],)), seen=seen) == ("success", "Rejected 1 candidate.")
    kind, text = search_action(s, GridAction("accept", (ids[0],)), seen={ids[0]: "pending"})
    assert kind == "warning" and "decided in another window meanwhile" in text
