"""A 1000 px window, as a laptop with the sidebar open: the Home page's class table stays inside the page.

With Streamlit's default margins the default project's table (7 columns, "no-middle-earth") ran past the
"Next step" box and the page's right edge; Home now has the other pages' margins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2e.app_server import AppServer
from e2e.streamlit_page import StreamlitPage

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_home_class_table_fits_a_1000_px_window(browser: Any, tmp_path: Path) -> None:
    with AppServer(tmp_path / "data", tmp_path / "streamlit.log") as app:  # a first start: the default project
        context = browser.new_context(viewport={"width": 1000, "height": 1000})
        try:
            sp = StreamlitPage(context.new_page(), app.url)
            sp.open("/")
            table = sp.page.locator('[data-testid="stMain"] table').first
            table.wait_for()
            assert "no-middle-earth" in table.inner_text()
            box = sp.page.locator('[data-testid="stMainBlockContainer"]').bounding_box()
            drawn = table.bounding_box()
            assert box is not None and drawn is not None
            inner_right = (
                box["x"]
                + box["width"]
                - sp.page.evaluate(
                    "parseFloat(getComputedStyle(document.querySelector('[data-testid=stMainBlockContainer]'))"
                    ".paddingRight)"
                )
            )
            assert drawn["x"] + drawn["width"] <= inner_right + 1, (drawn, box)
            sp.screenshot("home-1000px")
        finally:
            context.close()
