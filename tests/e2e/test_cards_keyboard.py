"""The card grid in Chromium, keyboard first, on Dataset and Review: arrows move the focus (↓ by a row),
2 relabels, D deletes, Z undoes, P takes the prediction, Shift-click selects a range and the toolbar count
follows at once, a bulk relabel acts on exactly the ticked cards, the lightbox opens and ←/→ move in it,
? shows the keys. Every step is checked in the project database. Screenshots: test-artifacts/cards/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import shape_image

from lotr_labeler.collect.importers import import_folder
from lotr_labeler.model import embed
from lotr_labeler.review import decisions, fitting, queue
from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project, open_project

from .app_server import ROOT, VIEWPORT, AppServer
from .streamlit_page import StreamlitPage

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
expect = pytest.importorskip("playwright.sync_api").expect  # no Playwright: skipped, as conftest does
SHOTS = ROOT / "test-artifacts" / "cards"
SHAPES = ("circle", "square", "triangle")
COLUMNS = 8  # the grid_columns default


@pytest.fixture(scope="module")
def cards_app(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The app on its own data: 3 shape classes x 10 images, scored by a head on random-init embeddings,
    two circles then labeled square."""
    base = tmp_path_factory.mktemp("cards")
    src = base / "src"
    for n, shape in enumerate(SHAPES):
        (src / shape).mkdir(parents=True)
        for i in range(10):
            shape_image(shape, 100 * n + i, 96).save(src / shape / f"{i}.png")
    data = base / "data"
    with create_project(data, "shapes", "empty") as store:
        import_folder(store, src)
        fitting.refresh(store, embed.resolve_backbone(store, "imagenet", pretrained=False, size=32))
        # Two label errors made after scoring: the head still sees circles, so P has something to fix.
        confident = [it.id for it in queue.ranking(store, label="circle") if it.predicted == "circle"]
        store.relabel(confident[-2:], "square")
    with AppServer(data, SHOTS / "streamlit.log") as server:
        yield server


@pytest.fixture
def sp(browser: Any, cards_app: AppServer) -> Iterator[StreamlitPage]:
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield StreamlitPage(context.new_page(), cards_app.url, SHOTS)
    finally:
        context.close()


def db(app: AppServer) -> Store:
    return open_project(app.data_dir, "shapes")


def shown(sp: StreamlitPage) -> list[int]:
    return [int(x) for x in sp.page.locator(".cg-grid [data-card]").evaluate_all("els => els.map(e => e.dataset.card)")]


def focused(sp: StreamlitPage) -> int:
    return int(sp.page.locator(".cg-card.cg-focus").get_attribute("data-card"))


def key(sp: StreamlitPage, name: str, rerun: bool = True) -> None:
    n = sp.run_count()
    sp.page.keyboard.press(name)
    if rerun:  # the grid's queue answered: its "Saving N…" line gone
        sp.wait_idle(after=n)
        sp.page.locator(".cg-msg.cg-info", has_text="Saving").wait_for(state="detached", timeout=30_000)
        sp.wait_idle()


def message(sp: StreamlitPage) -> str:
    return str(sp.page.locator(".cg-msg").inner_text())


def count(sp: StreamlitPage) -> str:
    return str(sp.page.locator(".cg-count").inner_text())


def thumb(sp: StreamlitPage, image_id: int) -> Any:
    return sp.page.locator(f'.cg-grid [data-card="{image_id}"] .cg-thumb')


def card_boxes(sp: StreamlitPage) -> list[tuple[int, int, int]]:
    """(top, height, width) of every card shown, in px."""
    boxes = sp.page.locator(".cg-grid .cg-card").evaluate_all(
        "els => els.map(e => [Math.round(e.getBoundingClientRect().top), e.offsetHeight, e.offsetWidth])"
    )
    return [(int(t), int(h), int(w)) for t, h, w in boxes]


def per_row(boxes: list[tuple[int, int, int]]) -> int:
    """Cards in the first row."""
    return [top for top, _, _ in boxes].count(boxes[0][0])


def assert_dense(sp: StreamlitPage) -> None:
    """The issue's density finding: every card one height, COLUMNS of them in a row at 1400 px."""
    boxes = card_boxes(sp)
    assert len({h for _, h, _ in boxes}) == 1, boxes
    assert per_row(boxes) == min(COLUMNS, len(boxes)), boxes


def open_grid(sp: StreamlitPage, path: str) -> list[int]:
    sp.open(path)
    sp.page.locator(".cg-grid .cg-card").first.wait_for()
    sp.page.mouse.click(5, 5)  # the document has the keyboard, no widget
    return shown(sp)


def arrows_relabel_delete_undo(sp: StreamlitPage, app: AppServer, leaves_on_relabel: bool) -> None:
    ids = shown(sp)
    assert focused(sp) == ids[0]
    key(sp, "ArrowRight", rerun=False)
    key(sp, "ArrowDown", rerun=False)  # a row down: COLUMNS cards further
    assert focused(sp) == ids[1 + COLUMNS]
    key(sp, "ArrowUp", rerun=False)
    key(sp, "ArrowLeft", rerun=False)
    key(sp, "ArrowRight", rerun=False)
    target = focused(sp)
    assert target == ids[1]

    with db(app) as s:
        before = s.get_image(target).label
        classes = s.class_names()
    to = classes[1] if before != classes[1] else classes[2]
    key(sp, str(classes.index(to) + 1))
    with db(app) as s:
        assert s.get_image(target).label == to
    expect(sp.page.locator(".cg-msg")).to_have_text(f"Relabeled 1 image to {to}.")
    assert focused(sp) == ids[2]  # the focus moved on to the next card
    assert target in shown(sp)  # it stays in place until the page turns, marked (reviewed, out of the queue)
    assert ("cg-reviewed" in str(sp.page.locator(f'.cg-grid [data-card="{target}"]').get_attribute("class"))) == (
        leaves_on_relabel
    )

    victim = focused(sp)
    key(sp, "d")
    with db(app) as s:
        assert s.get_image(victim).deleted
    expect(sp.page.locator(".cg-msg")).to_contain_text("Deleted 1 image")
    assert victim in shown(sp)  # in place, greyed, until the page turns
    expect(sp.page.locator(f'.cg-grid [data-card="{victim}"]')).to_have_class(re.compile("cg-deleted"))
    key(sp, "z")  # the grid shows the undo at once, then the store's answer
    expect(sp.page.locator(f'.cg-grid [data-card="{victim}"]')).not_to_have_class(re.compile("cg-deleted"))
    sp.wait_idle()
    with db(app) as s:
        assert not s.get_image(victim).deleted


def range_select_and_bulk_relabel(sp: StreamlitPage, app: AppServer) -> None:
    ids = shown(sp)
    a, b, c = ids[3], ids[4], ids[5]
    thumb(sp, a).click()
    thumb(sp, c).click(modifiers=["Shift"])
    assert count(sp) == "3 selected"  # at once: no rerun in between
    sp.screenshot("range-selected")
    thumb(sp, b).click(modifiers=["Control"])  # untick the middle one
    assert count(sp) == "2 selected"
    with db(app) as s:
        events = len(s.history())
        unticked = s.get_image(b).label
        labels = [s.get_image(a).label, s.get_image(c).label]
    to = next((x for x in SHAPES if x not in labels), "triangle")
    moved = sum(label != to for label in labels)
    sp.page.locator(".cg-bulk-to").select_option(to)
    n = sp.run_count()
    sp.page.locator('[data-bulk="relabel"]').click()
    sp.wait_idle(after=n)
    expect(sp.page.locator(".cg-msg")).to_have_text(f"Relabeled {moved} image{'' if moved == 1 else 's'} to {to}.")
    assert count(sp) == "0 selected"
    with db(app) as s:
        assert s.get_image(a).label == s.get_image(c).label == to
        assert s.get_image(b).label == unticked
        assert len(s.history()) == events + 1  # one bulk action, one undo step


def lightbox_and_help(sp: StreamlitPage) -> None:
    ids = shown(sp)
    start = focused(sp)
    nxt = ids[ids.index(start) + 1]
    head = sp.page.locator(".cg-lb-head b")
    # The large view opens at once (the large image then comes from Python, for this card only).
    key(sp, "Enter", rerun=False)
    expect(head).to_have_text(re.compile(rf"^#{start} ·"))
    assert sp.page.locator(".cg-meta th", has_text="split").count() == 1
    n = sp.run_count()
    key(sp, "ArrowRight", rerun=False)
    expect(head).to_have_text(re.compile(rf"^#{nxt} ·"))
    sp.wait_idle(after=n)  # where the view rests (250 ms) reaches Python, which sends that card's large image
    assert str(sp.page.locator(".cg-lb-img img").get_attribute("src")).startswith("data:image/")
    sp.screenshot("lightbox")
    n = sp.run_count()
    key(sp, "ArrowLeft", rerun=False)
    expect(head).to_have_text(re.compile(rf"^#{start} ·"))
    key(sp, "Escape", rerun=False)
    expect(sp.page.locator(".cg-lightbox")).to_have_count(0)
    sp.wait_idle(after=n)
    # The same by mouse: the buttons inside the large view act; only ✕ and the backdrop close it.
    key(sp, "Enter", rerun=False)
    sp.page.locator(".cg-lb-nav [data-nav='1']").click()
    expect(head).to_have_text(re.compile(rf"^#{nxt} ·"))
    sp.page.locator(".cg-lb-nav [data-nav='-1']").click()
    expect(head).to_have_text(re.compile(rf"^#{start} ·"))
    sp.page.locator(".cg-meta").click()  # the dialog's own text: stays open
    expect(head).to_have_text(re.compile(rf"^#{start} ·"))
    sp.page.locator(".cg-lb-head .cg-btn[data-close]").click()
    expect(sp.page.locator(".cg-lightbox")).to_have_count(0)
    key(sp, "Enter", rerun=False)
    sp.page.locator(".cg-lightbox").click(position={"x": 5, "y": 5})  # the backdrop
    expect(sp.page.locator(".cg-lightbox")).to_have_count(0)
    # Where the view rested reaches Python 250 ms later, and only if it changed: let that pass.
    sp.page.wait_for_timeout(400)
    sp.wait_idle()
    key(sp, "?", rerun=False)
    assert sp.page.locator(".cg-help").get_by_text("Keyboard shortcuts").is_visible()
    assert sp.page.locator(".cg-help").get_by_text("relabel to the n-th class").is_visible()
    key(sp, "Escape", rerun=False)
    assert sp.page.locator(".cg-help").count() == 0


def test_dataset_grid_by_keyboard(sp: StreamlitPage, cards_app: AppServer) -> None:
    open_grid(sp, "/Dataset")
    # One ↩ Undo in the window: the grid's (the page's own beside the filters did the same thing).
    expect(sp.page.locator('.cg-toolbar [data-tool="undo"]')).to_have_count(1)
    expect(sp.page.get_by_role("button", name="↩ Undo")).to_have_count(1)
    sp.screenshot("dataset-1400")
    assert_dense(sp)
    arrows_relabel_delete_undo(sp, cards_app, leaves_on_relabel=False)
    range_select_and_bulk_relabel(sp, cards_app)
    # A click in the grid keeps the keyboard focus there: Streamlit's main area (tabindex 0) took it and
    # drew its focus ring around the whole page at the next key press.
    thumb(sp, shown(sp)[3]).click()
    key(sp, "ArrowRight", rerun=False)
    assert not sp.page.evaluate("() => document.querySelector('[data-testid=stMain]').matches(':focus-visible')")
    key(sp, "Escape", rerun=False)
    lightbox_and_help(sp)
    # The trash view: R restores.
    with db(cards_app) as s:
        victim = s.images()[0].id
        s.delete_images([victim])
    # The active grid shows the victim too until the rerun lands: wait for the trash grid, which holds it alone.
    sp.click(sp.page.get_by_text("Trash", exact=True))
    expect(sp.page.locator(".cg-grid [data-card]")).to_have_count(1)
    assert shown(sp) == [victim]
    sp.page.mouse.click(5, 5)
    key(sp, "r")
    with db(cards_app) as s:
        assert not s.get_image(victim).deleted
    sp.check_no_exception()


def test_review_grid_by_keyboard(sp: StreamlitPage, cards_app: AppServer) -> None:
    ids = open_grid(sp, "/Review")
    sp.screenshot("review-1400")
    assert_dense(sp)  # the prediction line and the hint take no extra height on some cards
    # P takes a doubted card to its predicted class (the primary "→ class p%" line of the card).
    doubted = sp.page.locator(".cg-grid .cg-card:has(.cg-primary)").first
    doubted_id = int(doubted.get_attribute("data-card"))
    predicted = re.match(r"→\s*(\S+)", doubted.locator(".cg-primary").inner_text().strip())
    assert predicted, "the card names the predicted class"
    for _ in range(ids.index(doubted_id)):
        key(sp, "ArrowRight", rerun=False)
    assert focused(sp) == doubted_id
    key(sp, "p")
    with db(cards_app) as s:
        assert s.get_image(doubted_id).label == predicted.group(1)
    # corrected = reviewed: out of the queue, but in place (marked) until the page turns
    expect(sp.page.locator(f'.cg-grid [data-card="{doubted_id}"]')).to_have_class(re.compile("cg-reviewed"))
    # K keeps the focused card: out of the queue too.
    kept = focused(sp)
    key(sp, "k")
    with db(cards_app) as s:
        assert kept in decisions.reviewed_ids(s)
    # ✓ clicked in the large view keeps the card it shows (the buttons inside the view act, not close it).
    viewed = focused(sp)
    n = sp.run_count()
    key(sp, "Enter", rerun=False)
    sp.wait_idle(after=n)  # the view came to rest: Python sent its large image
    n = sp.run_count()
    sp.page.locator(".cg-lb-ctl [data-act='keep']").click()
    sp.wait_idle(after=n)
    with db(cards_app) as s:
        assert viewed in decisions.reviewed_ids(s)
    key(sp, "Escape", rerun=False)

    sp.open("/Review")  # a fresh session: the focus starts on the first card again
    sp.page.locator(".cg-grid .cg-card").first.wait_for()
    sp.page.mouse.click(5, 5)
    arrows_relabel_delete_undo(sp, cards_app, leaves_on_relabel=True)  # relabeled = reviewed: out of the queue
    range_select_and_bulk_relabel(sp, cards_app)
    lightbox_and_help(sp)
    sp.check_no_exception()


def test_coming_back_to_a_page_starts_a_fresh_view(sp: StreamlitPage, cards_app: AppServer) -> None:
    """The grid's browser state outlives a remount of the same visit (the threshold t over the page's Undo:
    tests/e2e/test_review_page_undo.py), but a page entered anew from the sidebar starts on the first card
    with nothing selected."""
    ids = open_grid(sp, "/Dataset")
    thumb(sp, ids[3]).click()
    thumb(sp, ids[5]).click(modifiers=["Shift"])
    assert count(sp) == "3 selected" and focused(sp) == ids[5]
    sp.go("Review")
    sp.page.locator(".cg-grid .cg-card").first.wait_for()
    sp.go("Dataset")
    sp.page.locator(".cg-grid .cg-card").first.wait_for()
    sp.wait_idle()
    assert count(sp) == "0 selected" and focused(sp) == shown(sp)[0]


def test_the_pager_count_follows_a_delete(sp: StreamlitPage, cards_app: AppServer) -> None:
    """D reruns only the grid's fragment: the pager above the cards is in it, so its count follows."""
    with db(cards_app) as s:
        s.set_setting("page_size", 8)
        total = s.count()
    try:
        open_grid(sp, "/Dataset")
        pages = -(-total // 8)
        expect(sp.page.get_by_text(f"page 1 of {pages} · {total} items")).to_be_visible()
        victim = focused(sp)
        key(sp, "d")
        expect(sp.page.get_by_text(f"page 1 of {pages} · {total - 1} items")).to_be_visible()
        key(sp, "z")
        expect(sp.page.get_by_text(f"page 1 of {pages} · {total} items")).to_be_visible()
        with db(cards_app) as s:
            assert not s.get_image(victim).deleted
    finally:
        with db(cards_app) as s:
            s.reset_setting("page_size")


def test_one_grid_listens_and_keys_in_a_field_are_left_alone(sp: StreamlitPage, cards_app: AppServer) -> None:
    open_grid(sp, "/Dataset")
    with db(cards_app) as s:
        before = {i.id: i.label for i in s.images()}
    sp.page.locator(".cg-grid .cg-relabel").first.focus()  # a select has the keyboard: 2 is not a relabel
    sp.page.keyboard.press("2")
    sp.page.wait_for_timeout(500)
    with db(cards_app) as s:
        assert {i.id: i.label for i in s.images()} == before
    assert sp.page.evaluate("Object.keys(window.__lotrCards).length") == 1


def test_a_cards_relabel_menu_lists_every_class_once_pressed(sp: StreamlitPage, cards_app: AppServer) -> None:
    """The menus hold their own class until used (the full lists were most of the grid's DOM); a press
    fills the one pressed, and picking a class there relabels the card in the store."""
    open_grid(sp, "/Dataset")
    menus = sp.page.locator(".cg-grid .cg-relabel")
    assert menus.count() > 1
    assert sp.page.locator(".cg-grid .cg-relabel option").count() == menus.count()  # one option each
    first = menus.first
    card = int(first.evaluate("el => el.closest('[data-card]').dataset.card"))
    with db(cards_app) as s:
        was = s.get_image(card).label
        classes = s.class_names()
    to = next(c for c in classes if c != was)
    first.click()  # opens the native menu: its options are filled on the press
    assert first.locator("option").all_inner_texts() == classes
    assert first.input_value() == was
    sp.page.keyboard.press("Escape")
    first.select_option(to)
    expect(sp.page.locator(f'.cg-grid [data-card="{card}"] .cg-cap b')).to_have_text(to)
    with db(cards_app) as s:
        deadline = time.monotonic() + 10
        while s.get_image(card).label != to and time.monotonic() < deadline:
            time.sleep(0.1)
        assert s.get_image(card).label == to
        s.relabel([card], was)  # as it was, for the next tests


def test_a_stale_tab_leaves_another_tabs_move_alone(browser: Any, sp: StreamlitPage, cards_app: AppServer) -> None:
    """Two tabs on Dataset: B moves the first card; A, still drawing the old label, sends it to a third
    class: B's move holds and A's message line says so."""
    open_grid(sp, "/Dataset")  # tab A
    first = focused(sp)
    with db(cards_app) as s:
        seen = s.get_image(first).label
        classes = s.class_names()
    b_to, a_to = [c for c in classes if c != seen][:2]
    context = browser.new_context(viewport=VIEWPORT)
    try:
        tab_b = StreamlitPage(context.new_page(), cards_app.url, SHOTS)
        open_grid(tab_b, "/Dataset")
        assert focused(tab_b) == first
        key(tab_b, str(classes.index(b_to) + 1))
        assert message(tab_b) == f"Relabeled 1 image to {b_to}."
    finally:
        context.close()
    key(sp, str(classes.index(a_to) + 1))
    with db(cards_app) as s:
        assert s.get_image(first).label == b_to
    assert message(sp) == (
        "1 image was moved or deleted in another window meanwhile and kept that change; reload to see it."
    )
    sp.screenshot("stale-tab-move")


def test_a_narrow_window_shows_fewer_columns(browser: Any, cards_app: AppServer) -> None:
    """grid_columns is the most per row: at 1000 px the cards stay >= 104 px wide (caption and dropdown
    readable), ↓ moves by the row shown, and widening the window brings the 8 back without a rerun."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    try:
        sp = StreamlitPage(context.new_page(), cards_app.url, SHOTS)
        ids = open_grid(sp, "/Dataset")
        boxes = card_boxes(sp)
        shown_per_row, narrowest = per_row(boxes), min(w for _, _, w in boxes)
        assert 2 <= shown_per_row < COLUMNS and narrowest >= 104, (shown_per_row, narrowest)
        sp.screenshot("dataset-1000")
        key(sp, "ArrowDown", rerun=False)
        assert focused(sp) == ids[shown_per_row]
        sp.page.set_viewport_size(VIEWPORT)
        for _ in range(100):  # the ResizeObserver re-fits within a frame or two: at most 10 s
            if per_row(card_boxes(sp)) == COLUMNS:
                break
            sp.page.wait_for_timeout(100)
        assert per_row(card_boxes(sp)) == COLUMNS
    finally:
        context.close()


def _data_png(shape: str, seed: int) -> str:
    import base64
    import io

    buf = io.BytesIO()
    shape_image(shape, seed, 96).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def test_search_grid_by_keyboard(sp: StreamlitPage, cards_app: AppServer) -> None:
    """Search candidates on the grid: arrows + A/X decide, Shift-click a range + X rejects 3 at once, Z
    undoes it; the large view shows the query and the source page. The thumbnails are data: URLs (the
    browser loads a candidate's thumbnail URL itself)."""
    from lotr_labeler.store import CandidateIn

    with db(cards_app) as s:
        s.add_candidates(
            CandidateIn(
                "circle",
                f"http://img.invalid/{i}.jpg",
                _data_png("circle" if i % 3 else "triangle", 500 + i),
                page_url=f"http://page.invalid/{i}",
                query="circle shape",
                width=96,
                height=96,
            )
            for i in range(12)
        )
        cands = [c.id for c in s.candidates(state="pending")]
    ids = open_grid(sp, "/Search")
    assert ids == cands[: len(ids)] and len(ids) == 12
    sp.screenshot("search-1400")
    assert focused(sp) == ids[0]
    key(sp, "ArrowRight", rerun=False)
    key(sp, "a")
    with db(cards_app) as s:
        assert s.get_candidate(ids[1]).state == "accepted"
    expect(sp.page.locator(".cg-msg")).to_have_text("Accepted 1 candidate.")
    # The pending view keeps it in place, marked accepted, until the page turns.
    expect(sp.page.locator(f'.cg-grid [data-card="{ids[1]}"]')).to_have_class(re.compile("cg-st-accepted"))
    assert focused(sp) == ids[2]  # the focus moved on
    key(sp, "x")
    with db(cards_app) as s:
        assert s.get_candidate(ids[2]).state == "rejected"

    a, b, c = ids[4], ids[5], ids[6]
    thumb(sp, a).click()
    thumb(sp, c).click(modifiers=["Shift"])
    assert count(sp) == "3 selected"
    with db(cards_app) as s:
        events = len(s.history())
    key(sp, "x")
    with db(cards_app) as s:
        assert [s.get_candidate(i).state for i in (a, b, c)] == ["rejected"] * 3
        assert len(s.history()) == events + 1  # one step
    expect(sp.page.locator(".cg-msg")).to_have_text("Rejected 3 candidates.")
    key(sp, "z")
    expect(sp.page.locator(f'.cg-grid [data-card="{b}"]')).to_have_class(re.compile("cg-st-pending"))
    sp.wait_idle()
    with db(cards_app) as s:
        assert [s.get_candidate(i).state for i in (a, b, c)] == ["pending"] * 3
        assert s.get_candidate(ids[2]).state == "rejected"  # the step before stays

    sp.page.mouse.click(5, 5)
    key(sp, "Enter", rerun=False)
    expect(sp.page.locator(".cg-lb-head b")).to_have_text(re.compile(r"^#\d+ · circle"))
    meta = sp.page.locator(".cg-lightbox .cg-meta").inner_text()
    assert "circle shape" in meta and "http://page.invalid/" in meta
    # A in the large view accepts its card, which leaves the pending view: the view moves on, it stays open.
    head = sp.page.locator(".cg-lb-head b")
    before = shown(sp)
    viewed = int(re.match(r"#(\d+)", head.inner_text()).group(1))  # type: ignore[union-attr]
    key(sp, "a")
    with db(cards_app) as s:
        assert s.get_candidate(viewed).state == "accepted"
    expect(head).to_have_text(re.compile(rf"^#{before[before.index(viewed) + 1]} ·"))
    key(sp, "Escape", rerun=False)

    # A downloaded candidate is an image now: its card shows a badge, no ✓/✗ (nor the verdict line).
    with db(cards_app) as s:
        s.finish_candidate(ids[0], state="downloaded")
    sp.select("State", "All")
    card = sp.page.locator(f'.cg-grid [data-card="{ids[0]}"]')
    expect(card.locator(".cg-badge")).to_have_text("💾 downloaded")
    assert card.locator("[data-act]").count() == 0
    assert sp.page.locator(f'.cg-grid [data-card="{ids[3]}"] [data-act="accept"]').count() == 1
    sp.screenshot("search-downloaded")
    sp.check_no_exception()


def doubted_pct(sp: StreamlitPage) -> dict[int, tuple[str, int]]:
    """The doubted cards shown: id -> (predicted class, % shown), read from each card's "→ class p%" line."""
    rows = sp.page.locator(".cg-grid [data-card]").evaluate_all(
        """cards => cards.map(c => [Number(c.dataset.card),
                                   (c.querySelector('.cg-verdict [data-act="predict"]') || {}).textContent || ''])"""
    )
    out: dict[int, tuple[str, int]] = {}
    for cid, text in rows:
        m = re.match(r"→\s*(\S+)\s+(\d+)%", text.strip())
        if m:
            out[int(cid)] = (m.group(1), int(m.group(2)))
    return out


def test_review_threshold_select_doubted_shift_p_and_keep_page(sp: StreamlitPage, cards_app: AppServer) -> None:
    with db(cards_app) as s:  # fresh label errors the head doubts (the scores do not depend on the label)
        agree = [it for it in queue.ranking(s) if it.predicted == it.given and not it.reviewed]
        planted = agree[:3]
        for it in planted:
            s.relabel([it.id], next(c for c in SHAPES if c != it.predicted))
    open_grid(sp, "/Review")
    thr = sp.page.locator(".cg-thr-val")
    assert thr.inner_text() == "80%"
    key(sp, "]", rerun=False)
    assert thr.inner_text() == "85%"  # [ and ] move t by 5 in the browser, no rerun
    doubted = doubted_pct(sp)
    assert {it.id for it in planted} <= set(doubted)
    t = max(5, min(doubted[it.id][1] for it in planted) // 5 * 5)
    while thr.inner_text() != f"{t}%":
        key(sp, "[" if int(thr.inner_text().rstrip("%")) > t else "]", rerun=False)
    hits = {cid for cid, (_, pct) in doubted.items() if pct >= t}
    assert sp.page.locator('[data-tool="doubted"]').inner_text() == f"Select ≥ t ({len(hits)})"

    # S selects exactly the doubted cards >= t (to inspect; Ctrl-click takes a false alarm out), Esc clears.
    key(sp, "s", rerun=False)
    assert count(sp) == f"{len(hits)} selected"
    selected = sp.page.locator(".cg-grid .cg-card.cg-sel").evaluate_all("els => els.map(e => Number(e.dataset.card))")
    assert set(selected) == hits
    sp.screenshot("review-threshold-selected")
    key(sp, "Escape", rerun=False)

    # Shift+P: every prediction >= t on the page, each to its own class, in one undo step.
    with db(cards_app) as s:
        before = {cid: s.get_image(cid).label for cid in hits}
        last = s.last_event_id()
    key(sp, "Shift+P")
    with db(cards_app) as s:
        assert {cid: s.get_image(cid).label for cid in hits} == {cid: doubted[cid][0] for cid in hits}
        assert s.count_events_after(last) == 1
        assert hits <= decisions.reviewed_ids(s)
    for cid in hits:  # corrected = reviewed: out of the queue, in place until the page turns
        expect(sp.page.locator(f'.cg-grid [data-card="{cid}"]')).to_have_class(re.compile("cg-reviewed"))
    key(sp, "z")
    expect(sp.page.locator(f'.cg-grid [data-card="{min(hits)}"]')).not_to_have_class(re.compile("cg-reviewed"))
    sp.wait_idle()
    with db(cards_app) as s:
        assert {cid: s.get_image(cid).label for cid in hits} == before  # one Z restores every class

    # Shift+K keeps the rest of the page: every card shown leaves the queue with its label.
    page_ids = shown(sp)
    key(sp, "Shift+K")
    with db(cards_app) as s:
        assert set(page_ids) <= decisions.reviewed_ids(s)
        assert {cid: s.get_image(cid).label for cid in hits} == before
    assert shown(sp) == page_ids  # kept, in place
    assert sp.page.locator(".cg-grid .cg-card:not(.cg-reviewed)").count() == 0
    sp.check_no_exception()


# -- the Review page's own ↩ Undo (above the tabs): it empties the grid's message line (the top shows
# what it undid) and keeps the grid's threshold t --------------------------------------------------


def _queue_back(app: AppServer) -> None:
    """Every image back in the Review queue (the tests above keep and relabel them out of it)."""
    with db(app) as s:
        decisions.unreview(s, [img.id for img in s.images()])


def _delete_then_page_undo(sp: StreamlitPage, app: AppServer, ids: list[int]) -> None:
    key(sp, "d")  # a grid action: its outcome in the grid's line
    assert "Deleted 1 image" in message(sp)
    with db(app) as s:
        assert s.get_image(ids[0]).deleted
    n = sp.run_count()
    sp.page.get_by_role("button", name="↩ Undo").first.click()
    sp.wait_idle(after=n)
    sp.wait_text("Undid: deleted 1 image")  # the page's top
    with db(app) as s:
        assert not s.get_image(ids[0]).deleted
    expect(sp.page.locator(f'.cg-grid [data-card="{ids[0]}"]')).to_have_count(1)


def test_page_undo_clears_the_grids_older_message(sp: StreamlitPage, cards_app: AppServer) -> None:
    _queue_back(cards_app)
    ids = open_grid(sp, "/Review")
    # One ↩ Undo in the window: the page's, above the tabs (the grid's toolbar showed a second one; Z stays).
    expect(sp.page.locator('.cg-toolbar [data-tool="undo"]')).to_have_count(0)
    expect(sp.page.get_by_role("button", name="↩ Undo")).to_have_count(1)
    _delete_then_page_undo(sp, cards_app, ids)
    assert "Deleted 1 image" not in message(sp)
    sp.check_no_exception()


def test_page_undo_keeps_the_threshold_t(sp: StreamlitPage, cards_app: AppServer) -> None:
    _queue_back(cards_app)
    ids = open_grid(sp, "/Review")
    thr = sp.page.locator(".cg-thr-val")
    for _ in range(8):
        key(sp, "[", rerun=False)
    assert thr.inner_text() == "40%"
    _delete_then_page_undo(sp, cards_app, ids)
    assert thr.inner_text() == "40%"


# -- the Review page's backbone choice outlives a visit to another page --------------------------------------


RANDOM = "ResNet18, random init (offline, weaker)"


def _backbone_popover(sp: StreamlitPage) -> Any:
    sp.page.get_by_role("button", name=re.compile(r"^⚙ Backbone")).first.click()
    pop = sp.page.locator('[data-testid="stPopoverBody"]')
    pop.locator('input[aria-label="Size (px)"]').wait_for()
    return pop


def test_review_backbone_choice_survives_another_page(sp: StreamlitPage) -> None:
    """Streamlit drops the state of widgets a run does not draw: after a look at the Dataset page the backbone
    came back as "Best on your labels" at 32 px, and Compute would have embedded at that size unasked. The
    popover's label counts the images the chosen backbone has not embedded (all 30 at a new size)."""
    sp.open("/Review")
    pop = _backbone_popover(sp)  # the last fit's backbone: random init at 32 px (cards_app)
    assert sp.chosen("Backbone", within=pop) == RANDOM
    sp.set_number("Size (px)", 64, within=pop)
    expect(sp.page.get_by_role("button", name="⚙ Backbone · 30 new")).to_be_visible()
    sp.page.keyboard.press("Escape")
    sp.go("Dataset")
    sp.go("Review")
    pop = _backbone_popover(sp)
    assert pop.locator('input[aria-label="Size (px)"]').input_value() == "64"
    assert sp.chosen("Backbone", within=pop) == RANDOM
    expect(pop.get_by_role("button", name="Compute (30 new)")).to_be_visible()
    sp.check_no_exception()


def test_arrow_keys_in_a_filter_list_rerun_once_when_they_pause(sp: StreamlitPage, cards_app: AppServer) -> None:
    """A closed native list changes its value at every arrow key: three presses at typing speed are one
    rerun (the pick is sent once the keys pause), and the page filters by the option the list shows;
    the grid's own arrow keys stay out of it while the list has the focus."""
    ids = open_grid(sp, "/Dataset")
    box = sp.page.get_by_role("combobox", name="Class", exact=True)
    box.focus()
    n = sp.run_count()
    for _ in range(3):  # All → circle → square → triangle
        sp.page.keyboard.press("ArrowDown")
        sp.page.wait_for_timeout(100)
    assert sp.chosen("Class") == "triangle"
    sp.wait_idle(after=n)
    sp.page.wait_for_timeout(800)  # room for any further rerun to start
    sp.wait_idle()
    assert sp.run_count() == n + 1
    with db(cards_app) as store:
        triangles = {img.id for img in store.images("triangle")}
    assert set(shown(sp)) == triangles and set(ids) != triangles
    assert sp.chosen("Class") == "triangle"
    sp.check_no_exception()


def test_arrow_keys_across_reviews_tabs_rerun_once(sp: StreamlitPage) -> None:
    """Review's tabs are a radio row: the arrows move the focus and the choice from tab to tab, and the
    view is drawn once the keys pause (a focus moving between the tabs does not send each one)."""
    open_grid(sp, "/Review")
    tab = sp.page.get_by_role("radio", name="Label issues", exact=True)
    tab.focus()
    n = sp.run_count()
    for _ in range(2):  # Label issues → Duplicates → Map
        sp.page.keyboard.press("ArrowRight")
        sp.page.wait_for_timeout(100)
    assert sp.page.get_by_role("radio", name="Map", exact=True).is_checked()
    sp.wait_idle(after=n)
    sp.page.wait_for_timeout(800)
    sp.wait_idle()
    assert sp.run_count() == n + 1
    assert not sp.page.locator(".cg-grid").count()  # only the chosen view is drawn: the map, not the grid
    sp.page.get_by_text("t-SNE").first.wait_for()
    sp.check_no_exception()


def test_history_unfolds_with_the_changes_made_since_the_page_and_folds_on_escape(sp: StreamlitPage) -> None:
    """History is a list the browser unfolds (ui/menu.py). Opening it shows the lines drawn with the page
    at once and reruns the History fragment alone, which redraws them as they are now: a delete and its
    undo by the grid's keys (which rerun only the grid) show without a page run. Escape or a click
    elsewhere folds it, running nothing on the server."""
    ids = open_grid(sp, "/Dataset")
    button = sp.page.get_by_role("button", name="History", exact=True)
    panel = sp.page.get_by_role("region", name="History")

    def unfold() -> list[str]:
        n = sp.run_count()
        button.click()
        expect(panel).to_be_visible()
        sp.wait_idle(after=n)
        assert sp.run_count() == n + 1  # one run: the History fragment's
        return [str(x) for x in panel.locator("li").all_inner_texts()]

    before = unfold()
    sp.page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    sp.page.mouse.click(5, 5)  # the document has the keyboard again
    key(sp, "d")  # delete the focused card, then undo it: the grid's run alone, History not redrawn
    key(sp, "z")
    after = unfold()
    assert after != before  # the page's lines were from before the keys
    newest = panel.locator("li").first
    assert newest.locator(".mn-struck").inner_text() == "deleted 1 image(s)"  # the delete, undone
    n = sp.run_count()
    sp.page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    button.click()
    expect(panel).to_be_visible()
    sp.wait_idle(after=n)
    n = sp.run_count()
    sp.page.mouse.click(5, 5)  # elsewhere
    expect(panel).to_be_hidden()
    sp.page.wait_for_timeout(300)
    assert sp.run_count() == n  # folding it ran nothing on the server
    assert shown(sp) == ids  # the grid was not redrawn from a page run: the undone card is back in place
    sp.check_no_exception()
