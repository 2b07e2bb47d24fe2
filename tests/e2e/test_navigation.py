"""The sidebar navigation of a fresh server: "Home", not the entry script's name, whatever URL comes first.

Streamlit runs a fresh server's first session in its legacy pages/ mode until home.py has called
st.navigation; a bookmark of /Search opened first used to list the home page as "streamlit app".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2e.app_server import AppServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_first_visit_to_a_page_url_shows_home_in_the_navigation(browser: Any, tmp_path: Path) -> None:
    with AppServer(tmp_path / "data", tmp_path / "streamlit.log") as app:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(app.url + "/Search")  # the server's very first session
            page.wait_for_selector("h1:has-text('Search and review')", timeout=60_000)
            nav = page.locator('[data-testid="stSidebarNav"]')
            nav.get_by_text("Home", exact=True).wait_for(timeout=30_000)
            assert "streamlit app" not in nav.inner_text()
            nav.get_by_text("Classes", exact=True).click()  # the session navigates on from there
            page.wait_for_selector("h1:has-text('Classes')", timeout=60_000)
            nav.get_by_text("Home", exact=True).click()
            page.wait_for_selector("text=Next step", timeout=60_000)
        finally:
            page.close()
