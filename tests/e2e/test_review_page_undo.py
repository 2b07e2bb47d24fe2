"""Browser: the Review page's own ↩ Undo (above the tabs) empties the grid's message line (the top shows
what it undid), and keeps the grid's threshold t."""

from __future__ import annotations

import pytest

from .app_server import AppServer
from .streamlit_page import StreamlitPage
from .test_cards_keyboard import cards_app, db, key, message, open_grid, sp

__all__ = ["cards_app", "sp"]  # the keyboard tests' app and tab, for this module too

expect = pytest.importorskip("playwright.sync_api").expect


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
    _delete_then_page_undo(sp, cards_app, open_grid(sp, "/Review"))
    assert "Deleted 1 image" not in message(sp)
    sp.check_no_exception()


def test_page_undo_keeps_the_threshold_t(sp: StreamlitPage, cards_app: AppServer) -> None:
    ids = open_grid(sp, "/Review")
    thr = sp.page.locator(".cg-thr-val")
    for _ in range(8):
        key(sp, "[", rerun=False)
    assert thr.inner_text() == "40%"
    _delete_then_page_undo(sp, cards_app, ids)
    assert thr.inner_text() == "40%"
