"""The card grid's JS renders web text as text: captions, labels, classes, flags and lightbox metadata
come from search results and file names, so markup in them must not become elements, a quote must not
end an attribute, and only http(s)/data:image URLs may reach ``src``/``href``.

The real ``cards.js`` runs in Chromium on a blank page (imported from a blob URL, mounted with a fake
component object); no app server is needed, so this runs in a second or two.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lotr_labeler.ui import cards

from .app_server import VIEWPORT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
pytest.importorskip("playwright.sync_api")

HOSTILE = '"><img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _card(id_: int, src: str, meta: list[list[str]]) -> dict[str, Any]:
    card = cards.Card(id=id_, src="", caption=HOSTILE, label=HOSTILE, flags=(HOSTILE,), predicted=HOSTILE)
    payload = card.payload()
    payload.update(src=src, hint="→ " + HOSTILE, confidence=90, scored=True, meta=meta)
    return payload


MOUNT = """async ([src, data]) => {
  document.body.innerHTML = '<div id="host"><div class="cg-root"></div></div>';
  const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
  const mod = await import(url);
  window.__sent = [];
  mod.default({ data, key: "xss", parentElement: document.getElementById("host"),
                setTriggerValue: (name, value) => window.__sent.push([name, value]) });
}"""


def test_web_text_and_urls_cannot_inject_markup_or_scripts(browser: Any) -> None:
    data = {
        "cards": [
            _card(1, 'https://ok.example/a.jpg" onerror="window.__pwned=3', [["url", "javascript:window.__pwned=4"]]),
            _card(2, "javascript:window.__pwned=5", [["page", 'https://ok.example/p"><b id="inj">x</b>']]),
            _card(3, PNG, [["title", HOSTILE]]),
        ],
        "classes": [HOSTILE, "plain"],
        "actions": list(cards.ACTIONS),
        "columns": 3,
        "hint_only": False,
        "focus": 1,
        "seq": 1,
        "message": ["error", HOSTILE],
        "lightbox": None,
        "empty": HOSTILE,
    }
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.route("https://ok.example/**", lambda route: None)  # held: no load error replaces the <img>
        page.evaluate(MOUNT, [(cards.HERE / "cards.js").read_text(encoding="utf-8"), data])
        root = page.locator(".cg-root")
        # Markup in the text stays text: no injected element, no handler attribute, the words shown as typed.
        assert page.evaluate("document.querySelectorAll('script, [onerror], #inj').length") == 0
        assert HOSTILE in root.locator("[data-card='1'] .cg-cap").text_content()
        assert HOSTILE in root.locator(".cg-msg").text_content()
        assert page.evaluate("[...document.querySelectorAll('.cg-legend kbd')].length") == 2
        # src: the https URL whole (its quote escaped, inside the attribute), javascript: dropped, data: kept.
        srcs = page.evaluate(
            "[...document.querySelectorAll('.cg-grid img')]"
            ".map(i => [i.closest('[data-card]').dataset.card, i.getAttribute('src')])"
        )
        assert dict(srcs) == {"1": 'https://ok.example/a.jpg" onerror="window.__pwned=3', "3": PNG}
        assert "no preview" in root.locator("[data-card='2']").text_content()
        # The lightbox: a javascript: value is plain text, an https one a link with its whole value as href.
        root.locator("[data-card='1'] .cg-zoom").click()
        assert page.locator(".cg-lightbox a").count() == 0
        assert "javascript:window.__pwned=4" in page.locator(".cg-lightbox .cg-meta").text_content()
        page.keyboard.press("ArrowRight")
        link = page.locator(".cg-lightbox a")
        assert link.get_attribute("href") == 'https://ok.example/p"><b id="inj">x</b>'
        assert page.locator(".cg-lightbox img").count() == 0  # its javascript: image is not loaded
        page.keyboard.press("ArrowRight")
        assert HOSTILE in page.locator(".cg-lightbox .cg-meta").text_content()
        page.wait_for_timeout(200)  # an injected handler (img onerror) would have fired by now
        assert page.evaluate("window.__pwned") is None
        assert page.evaluate("document.querySelectorAll('script, [onerror], #inj').length") == 0
        # Python hears only where the large view came to rest (after 250 ms), not each step.
        page.wait_for_function("window.__sent.length > 0")
        page.wait_for_timeout(400)
        sent = page.evaluate("window.__sent")
        assert [(name, value["id"]) for name, value in sent] == [("open", 3)], json.dumps(sent)
    finally:
        context.close()


def test_a_thumbnail_that_cannot_load_says_no_preview(browser: Any) -> None:
    """A search thumbnail gone from the web showed the browser's broken-image icon and its alt text."""
    gone = cards.Card(id=7, src="", caption="gone", label="plain").payload()
    gone["src"] = "https://gone.example/thumb.jpg"
    shown = cards.Card(id=8, src="", caption="fine", label="plain").payload()
    shown["src"] = PNG
    data = {"cards": [gone, shown], "classes": ["plain"], "actions": ["accept"], "columns": 2, "seq": 1}
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.route("https://gone.example/**", lambda route: route.abort())
        page.evaluate(MOUNT, [(cards.HERE / "cards.js").read_text(encoding="utf-8"), data])
        card = page.locator("[data-card='7']")
        card.locator(".cg-missing", has_text="no preview").wait_for()
        assert card.locator("img").count() == 0
        assert page.locator("[data-card='8'] img").count() == 1  # a picture that loads stays
    finally:
        context.close()


@pytest.mark.parametrize("hint_only", [False, True], ids=["button", "quiet-hint"])
def test_a_long_predicted_class_is_cut_before_its_percentage(browser: Any, hint_only: bool) -> None:
    """Seen by a new user on Review: "→ no-middle-earth …" lost its percentage. The class name gives way
    (an ellipsis); the percentage stays whole, and the line reads as before for a short name."""
    long, short = "no-middle-earth-and-beyond", "orcs"
    data = {
        "cards": [
            {**cards.Card(id=i, src=PNG, caption="c", label="elves", predicted=p).payload(), "hint": f"→ {p} 83%"}
            for i, p in ((1, long), (2, short))
        ],
        "classes": ["elves", long, short],
        "actions": ["keep", "delete", "relabel", "predict"],
        "columns": 8,
        "hint_only": hint_only,
        "seq": 1,
    }
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    try:
        page = context.new_page()
        page.add_style_tag(content=(cards.HERE / "cards.css").read_text(encoding="utf-8"))
        page.evaluate(MOUNT, [(cards.HERE / "cards.js").read_text(encoding="utf-8"), data])
        sel = ".cg-hint" if hint_only else ".cg-verdict .cg-primary"
        shown = page.evaluate(
            """sel => [...document.querySelectorAll(sel)].map(el => {
                 const p = el.querySelector('.cg-hint-p'), name = el.querySelector('.cg-hint-name');
                 const whole = p.scrollWidth <= p.clientWidth + 1
                   && p.getBoundingClientRect().right <= el.getBoundingClientRect().right + 1;
                 return [el.textContent, p.textContent, whole, name.scrollWidth > name.clientWidth + 1];
               })""",
            sel,
        )
        tail = " 83%?" if hint_only else " 83%"
        assert shown == [[f"→ {long}{tail}", tail, True, True], [f"→ {short}{tail}", tail, True, False]], shown
    finally:
        context.close()
