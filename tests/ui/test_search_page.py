"""The Search page: the review grid, bulk actions, paging, and the search/download jobs it starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import choice_view, grid_batch, grid_data, grid_send, pick, wait_for, widget_label
from streamlit.testing.v1 import AppTest

from lotr_labeler.fakes import ENV as FAKE_ENV
from lotr_labeler.jobs import table as jobs
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.ui import search_grid
from lotr_labeler.workspace import open_project

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "2_Search.py")


def app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def click(at: AppTest, **kw: str) -> None:
    at.button(**kw).click().run()
    assert not at.exception, [e.value for e in at.exception]


def button(at: AppTest, prefix: str) -> None:
    matches = [b for b in at.button if b.label.startswith(prefix)]
    assert matches, f"no button {prefix!r} in {[b.label for b in at.button]}"
    matches[0].click().run()
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture
def candidates(empty_store: Store) -> Store:
    for name in ("elves", "dwarves"):
        empty_store.add_class(name, [name[:-1]], "{name} lotr")
    empty_store.add_candidates(
        CandidateIn(
            "elves" if i < 60 else "dwarves",
            f"http://img.test/{i}.jpg",
            f"http://thumb.test/{i}.jpg",
            page_url=f"http://page.test/{i}",
            query="elve lotr" if i < 60 else "dwarve lotr",
            width=300,
            height=200,
        )
        for i in range(70)
    )
    return empty_store


def shown(at: AppTest) -> list[int]:
    return [c["id"] for c in grid_data(at, "s_grid")["cards"]]


def test_grid_shows_a_page_of_thumbnails_from_their_urls(candidates: Store) -> None:
    at = app()
    cards = grid_data(at, "s_grid")["cards"]
    assert len(cards) == 48
    # The browser loads the thumbnail URL itself: the page hands the URL through untouched.
    assert cards[0]["src"] == "http://thumb.test/0.jpg"
    assert ["page", "http://page.test/0"] in cards[0]["meta"] and ["query", "elve lotr"] in cards[0]["meta"]
    assert cards[0]["caption"] == "p ? · 300×200" and cards[0]["state"] == "pending"
    assert grid_data(at, "s_grid")["counts"] == "70 candidates · page 1"


def test_card_accept_reject_and_move_are_stored(candidates: Store) -> None:
    at = app()
    at = grid_send(at, "s_grid", {"action": "accept", "ids": [1]})
    at = grid_send(at, "s_grid", {"action": "reject", "ids": [2]})
    grid_send(at, "s_grid", {"action": "relabel", "ids": [3], "label": "dwarves"})
    assert candidates.get_candidate(1).state == "accepted"
    assert candidates.get_candidate(2).state == "rejected"
    c3 = candidates.get_candidate(3)
    assert (c3.label, c3.state) == ("dwarves", "pending")


def test_bulk_accept_page_takes_the_cards_shown_not_the_next_pages(candidates: Store) -> None:
    """Rejecting 5 cards of the pending view used to refill the page with 5 cards of the next one, which
    Accept page then accepted unseen. The page stays pinned (the 5 stay in place, marked) and Accept page
    (the grid's Shift+A) sends the ids it shows undecided: the store acts on those only."""
    at = app()
    first = shown(at)
    at = grid_batch(at, "s_grid", [{"seq": 1, "action": "reject", "ids": first[:5]}])
    data = grid_data(at, "s_grid")
    assert data["message"] == ["success", "Rejected 5 candidates."] and data["applied"] == 1
    assert shown(at) == first  # no refill: the rejected cards stay where they were
    assert [c["out"] for c in data["cards"][:6]] == [True] * 5 + [False]
    assert [c["state"] for c in data["cards"][:5]] == ["rejected"] * 5
    undecided = [c["id"] for c in data["cards"] if c["state"] == "pending"]  # what cards.js's Accept page sends
    at = grid_batch(at, "s_grid", [{"seq": 2, "action": "accept", "ids": undecided}])
    states = {i: candidates.get_candidate(i).state for i in range(1, 71)}
    assert [states[i] for i in first[:5]] == ["rejected"] * 5  # a decision made before the bulk action is kept
    assert sum(s == "accepted" for s in states.values()) == 43
    assert all(states[i] == "pending" for i in range(49, 71))  # never shown: untouched


def test_paging_does_not_skip_after_decisions(candidates: Store) -> None:
    at = app()
    at = grid_send(at, "s_grid", {"action": "accept", "ids": list(range(1, 11))})  # leave the pending view
    assert shown(at) == list(range(1, 49))  # they stay in place until the user pages on
    button(at, "Next")
    # Page 2 starts right after the last card of page 1: nothing skipped, none seen twice.
    assert shown(at)[0] == 49
    button(at, "◀ Previous")
    assert shown(at)[0] == 11


def test_filters_by_class_query_and_state(candidates: Store) -> None:
    candidates.decide([61, 62], "rejected")
    at = app()
    at = pick(at, "f_class", "dwarves")
    assert len(shown(at)) == 8
    at = pick(at, "f_state", "rejected")
    assert shown(at) == [61, 62]
    at = pick(at, "f_state", "All")
    at = pick(at, "f_query", "dwarve lotr")
    assert len(shown(at)) == 10


def test_search_button_runs_a_background_search(
    empty_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_store.add_class("elves", ["Legolas", "Arwen"], "{name} lotr")
    fake = tmp_path / "ddg.json"
    fake.write_text(
        json.dumps(
            {
                "*": [
                    {
                        "title": f"t{i}",
                        "image": f"http://img.test/{{slug}}/{i}.jpg",
                        "thumbnail": f"http://th.test/{{slug}}/{i}",
                        "url": f"http://page.test/{{slug}}/{i}",
                        "width": 640,
                        "height": 480,
                        "source": "Bing",
                    }
                    for i in range(5)
                ]
            }
        )
    )
    monkeypatch.setenv(FAKE_ENV, str(fake))
    empty_store.set_setting("search_delay", 0)
    at = app()
    button(at, "Search")
    assert any("Started 2 search queries" in s.value for s in at.success)
    with open_project(empty_store.root.parent, "demo") as s:
        wait_for(lambda: not jobs.latest_job(s, "search").running, what="the search job")  # type: ignore[union-attr]
        job = jobs.latest_job(s, "search")
        assert job is not None and job.state == "done", job
        rows = s.candidates()
    assert len(rows) == 10
    assert {r.query for r in rows} == {"Legolas lotr", "Arwen lotr"}
    assert rows[0].thumbnail_url == "http://th.test/legolas-lotr/0" and rows[0].width == 640
    at.run()
    assert any("Last search" in s.value and "10 new candidate" in s.value for s in at.caption)


@pytest.mark.slow
def test_download_button_runs_a_background_download(candidates: Store, image_server: str) -> None:
    candidates.set_setting("allow_private_hosts", True)
    candidates.add_candidates([CandidateIn("elves", f"{image_server}/img/{i}.png") for i in range(3)])
    candidates.add_candidates([CandidateIn("elves", f"{image_server}/missing.png")])
    ids = [c.id for c in candidates.candidates() if c.image_url.startswith(image_server)]
    candidates.decide(ids, "accepted")
    at = app()
    button(at, "Download 4 accepted")
    with open_project(candidates.root.parent, "demo") as s:
        wait_for(lambda: not jobs.latest_job(s, "download").running, what="the download job")  # type: ignore[union-attr]
        job = jobs.latest_job(s, "download")
        assert job is not None and job.state == "done", job
        assert s.count("elves") == 3
        failed = s.candidates(state="failed")
        assert [c.error for c in failed] == ["http 404"]
        img = s.images("elves")[0]
        assert img.source == "download" and img.source_url and img.source_url.startswith(image_server)
        assert s.path(img).exists()
    at.run()
    assert any(b.label == "Retry 1 failed" for b in at.button)


def test_url_list_lands_in_the_same_grid(candidates: Store) -> None:
    at = app()
    assert not at.text_area  # the search box is closed once there are candidates, its form not drawn
    at.session_state["s_box"] = True  # opened (the expander reruns the page)
    at.run()
    at.text_area(key="search_urls_paste").input("http://list.test/a.jpg,dwarves,http://list.test/a_t.jpg").run()
    at.button(key="search_urls_add").click().run()
    assert not at.exception
    assert any("1 candidate(s) added" in s.value for s in at.success)
    at = pick(at, "f_class", "dwarves")
    assert "http://list.test/a_t.jpg" in [c["src"] for c in grid_data(at, "s_grid")["cards"]]


def test_downloaded_cards_have_no_decisions_and_a_x_skip_them_saying_so_once(candidates: Store) -> None:
    for i in (1, 2):
        candidates.finish_candidate(i, state="downloaded")
    at = app()
    at = pick(at, "f_state", "All")
    cards = {c["id"]: c for c in grid_data(at, "s_grid")["cards"]}
    # cards.js draws a badge instead of ✓/✗ (and no verdict line) for a locked card.
    assert cards[1]["locked"] == "💾 downloaded" and cards[3]["locked"] == ""
    at = grid_send(at, "s_grid", {"action": "accept", "ids": [1, 2, 3]})  # a selection across them: A
    assert [candidates.get_candidate(i).state for i in (1, 2, 3)] == ["downloaded", "downloaded", "accepted"]
    kind, text = grid_data(at, "s_grid")["message"]
    assert kind == "success" and text.count("Dataset page") == 1
    assert text.startswith("Accepted 1 candidate. Skipped 2 candidates already downloaded")
    at = grid_send(at, "s_grid", {"action": "reject", "ids": [1]})  # X on a downloaded card alone
    kind, text = grid_data(at, "s_grid")["message"]
    assert kind == "error" and "relabel them on the Dataset page" in text
    assert candidates.get_candidate(1).state == "downloaded"


@pytest.mark.slow
def test_the_grid_message_is_cleared_when_the_page_is_entered_anew(candidates: Store) -> None:
    at = AppTest.from_file(str(Path(PAGE).parent.parent / "home.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/2_Search.py").run()
    at = grid_send(at, "s_grid", {"action": "accept", "ids": [1]})
    assert grid_data(at, "s_grid")["message"] == ["success", "Accepted 1 candidate."]
    at.run()  # a rerun of the same visit keeps it
    assert grid_data(at, "s_grid")["message"] == ["success", "Accepted 1 candidate."]
    at.switch_page("pages/4_Train.py").run()
    at.switch_page("pages/2_Search.py").run()  # back: a new visit
    assert not at.exception, [e.value for e in at.exception]
    assert grid_data(at, "s_grid")["message"] is None


def test_one_undo_the_grids_with_the_history_popover(candidates: Store) -> None:
    at = app()
    assert not [b for b in at.button if "Undo" in b.label]  # the page's own Undo button is gone
    assert "undo" in grid_data(at, "s_grid")["actions"]  # the grid's ↩ Undo and Z
    at = grid_send(at, "s_grid", {"action": "reject", "ids": [4]})
    (newest, *_) = grid_data(at, "history")["lines"]  # History lists it
    assert "rejected candidate #4" in newest["text"] and not newest["struck"]
    at = grid_send(at, "s_grid", {"action": "undo", "ids": []})
    assert candidates.get_candidate(4).state == "pending"
    (newest, *_) = grid_data(at, "history")["lines"]
    assert "rejected candidate #4" in newest["text"] and newest["struck"]  # undone: struck through


def test_a_refused_download_says_why_next_to_its_button_with_the_settings_link(candidates: Store) -> None:
    """The Download button sits in the grid's fragment: its refusal used to wait for a full rerun at the
    page's top. It shows beside the button now, with a link to the download settings."""
    import os

    from lotr_labeler.jobs import table as jobs

    candidates.decide([1, 2], "accepted")
    at = app()
    jobs.insert(candidates, "download", {}, os.getpid(), jobs.own_start())  # another tab started one meanwhile
    button(at, "Download 2 accepted")
    errors = [e.value for e in at.error]
    assert any("already running" in e for e in errors), errors
    assert any("](/Settings)" in m.value for m in at.markdown), "no link to the settings"


def test_next_stays_open_after_a_whole_page_is_decided(candidates: Store) -> None:
    """A page decided to the last card keeps its 48 cards (pinned); the pending listing after them is
    shorter than a page, which disabled Next and left the rest unreachable."""
    at = app()
    first = shown(at)
    at = grid_batch(at, "s_grid", [{"seq": 1, "action": "accept", "ids": first}])  # Shift+A on the whole page
    assert shown(at) == first
    nxt = next(b for b in at.button if b.label == "Next ▶")
    assert not nxt.disabled
    nxt.click().run()
    assert shown(at) == list(range(49, 71))


def test_the_download_button_says_new_accepts_join_a_running_download(candidates: Store) -> None:
    from lotr_labeler.jobs.worker import JobRun

    candidates.decide([c.id for c in candidates.candidates()][:2], "accepted")
    assert any(b.label == "Download 2 accepted" and not b.disabled for b in app().button)
    with JobRun(candidates, "download", {}):  # a download running (this process is its worker)
        at = app()
        (joined,) = [b for b in at.button if "accepted" in b.label and "Retry" not in b.label]
        assert joined.label == "2 accepted join the running download" and joined.disabled


def test_the_search_form_keeps_what_was_typed_while_its_box_is_closed(empty_store: Store) -> None:
    """Closed, the form is not drawn (a lighter page); reopened, it shows the choices made before."""
    empty_store.add_class("elves", ["Legolas"], "{name} lotr")
    at = app()  # no candidates yet: the box is open
    at = pick(at, "s_class", "elves")
    at.text_input(key="s_query").input("legolas bow").run()
    at.session_state["s_box"] = False
    at.run()
    assert not at.text_input  # closed: not drawn
    at.session_state["s_box"] = True
    at.run()
    assert choice_view(at, "s_class").value == "elves"
    assert at.text_input(key="s_query").value == "legolas bow"


def test_the_search_forms_filters_sit_in_two_rows_of_four(empty_store: Store) -> None:
    """Type and Size were drawn full-width below the row, leaving a hole in it (seen in a screenshot)."""
    empty_store.add_class("elves")
    at = app()
    (box,) = [e for e in at.expander if "Search images" in e.label]
    row = [b for b in box.children.values() if b.type == "flex_container"][1]  # after Class | Free-text query
    labels = [[widget_label(w) for w in col.children.values()] for col in row.children.values()]
    assert labels == [
        ["Results per query", "Type"],
        ["Layout", "Size"],
        ["License", "Safe search"],
        ["Region", "Pause between queries (s)"],
    ], labels


def test_an_empty_state_view_names_the_candidates_in_other_states(candidates: Store) -> None:
    """A newcomer whose downloads all failed saw "No candidates here. Search above…" in the default pending
    view; the two failed ones showed only on the Retry button further down."""
    ids = [c.id for c in candidates.candidates()]
    candidates.decide(ids[2:], "rejected")
    candidates.decide(ids[:2], "accepted")
    for i in ids[:2]:
        candidates.finish_candidate(i, error="could not be reached")
    at = app()
    data = grid_data(at, "s_grid")
    assert data["cards"] == []
    assert data["empty"] == (
        "No pending candidates here (68 rejected, 2 failed): pick them with State above. "
        "Retry failed, under the grid, downloads the failed ones again."
    )
    candidates.decide(ids[:2], "rejected")
    said = grid_data(app(), "s_grid")["empty"]
    assert said == "No pending candidates here (70 rejected): pick them with State above."
    at = app()
    at = pick(at, "f_state", "rejected")
    assert len(grid_data(at, "s_grid")["cards"]) == 48  # a page of them


def test_an_empty_project_says_how_to_get_candidates(empty_store: Store) -> None:
    empty_store.add_class("elves", ["elf"], "{name} lotr")
    empty_store.add_class("dwarves", ["dwarf"], "{name} lotr")
    assert grid_data(app(), "s_grid")["empty"] == search_grid.EMPTY


def test_job_panels_share_the_row_only_with_a_job_to_show(candidates: Store) -> None:
    """A project that never searched showed its failed download in the right half of the row, beside an
    empty left half: a panel without a job takes no column now."""
    import os

    from lotr_labeler.jobs import table as jobs

    def layout() -> tuple[list[float], list[str]]:
        """The widths of the columns that show a job's last line (st.columns normalises them), the errors."""
        at = app()
        last = [c.weight for c in at.columns if any("Last " in e.value for e in [*c.error, *c.caption])]
        return last, [e.value for e in at.error]

    assert layout() == ([], [])  # no job yet: no row at all
    job = jobs.insert(candidates, "download", {}, os.getpid(), jobs.own_start())
    jobs.finish(candidates, job.id, "failed", "All 2 URLs could not be reached.")
    widths, errors = layout()
    assert widths == [1.0] and any("All 2 URLs could not be reached" in e for e in errors), (widths, errors)
    job = jobs.insert(candidates, "search", {}, os.getpid(), jobs.own_start())
    jobs.finish(candidates, job.id, "done", "Searched 1 query: 3 new candidate(s).")
    assert layout()[0] == [0.5, 0.5]  # both: side by side
