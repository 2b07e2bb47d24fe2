"""Driving a Streamlit 1.67 app with Playwright: the selectors that hold, in one place.

Selectors (checked against the 1.67 frontend; keep them here, not in the tests):

- App root: ``[data-testid="stApp"]``. Its ``data-test-script-state`` is ``initial``, ``running``,
  ``notRunning``, ``rerunRequested``, ``stopRequested`` or ``compilationError``; Streamlit sets it for
  its own e2e tests and it is the one reliable idle signal.
- Running indicator: ``[data-testid="stStatusWidget"]``, shown only while running and after a short
  delay, so not an idle signal on its own.
- Page links: ``[data-testid="stSidebarNav"] a[data-testid="stSidebarNavLink"]`` with the page title
  (``pages/2_Search.py`` → "Search").
- A keyed widget: ``.st-key-<key>``, the key as a class of its container (``acc_17`` → ``.st-key-acc_17``).
- Buttons: role ``button``, the label as accessible name, followed by " Shortcut Shift + A" when it has
  ``shortcut=``. Primary/secondary in the ``kind`` attribute (``primary``, ``secondary``,
  ``secondaryFormSubmit``…). A button with ``help=`` renders a second, hidden copy: take the visible one.
- Text inputs, number inputs, text areas: the ``<input>``/``<textarea>`` has ``aria-label`` = the label,
  so ``get_by_label(label, exact=True)``.
- Pick-one lists are the app's own (``lotr_labeler/ui/choice.py``): a native ``<select>`` labelled by its
  ``<label>`` (role ``combobox``, the label as name) in the element's shadow root, which Playwright's
  locators pierce; ``select_option`` picks, and the pick reruns the page. The radio-row form holds native
  ``<input type="radio">`` inside ``<label>``s, as Streamlit's radios do. Keyed ``.st-key-_choice_<key>``.
- Expanders: ``[data-testid="stExpander"] summary`` with the title (its text starts with the icon's
  ligature name, e.g. "keyboard_arrow_right", so match a substring); open when ``details[open]``.
- Messages: ``[data-testid="stAlertContentSuccess"]`` / ``…Error`` / ``…Warning`` / ``…Info``.
- Images: ``[data-testid="stImage"] img``; an ``st.image`` URL is fetched by the browser itself.
- Progress bars: ``[data-testid="stProgress"]``, with their text inside.
- Number inputs: ``<input type="number" aria-label=L>``; the value is committed (and the script reruns) on
  Enter or blur, and not at all when it did not change.
- Checkboxes and radios: a hidden ``<input type="checkbox"|"radio">`` inside a ``<label>`` holding the
  text, so ``get_by_role("checkbox"|"radio", name=...)`` reads the state and a click on the label flips it.
- File uploaders: a hidden ``input[type="file"]`` in the widget's container (``.st-key-<key>``):
  ``set_input_files`` on it uploads, then the script reruns with the file.
- Metrics: ``[data-testid="stMetric"]`` with ``stMetricLabel`` and ``stMetricValue`` inside.
- Data frames: ``[data-testid="stDataFrame"]`` draws its cells on a canvas; the canvas holds an accessible
  ``table[role="grid"]`` (``th`` headers, ``tr[role="row"]`` with ``td`` cells) of the rows in view. It is
  fallback content, never "visible", so read it with ``text_content``, not ``get_by_role``.
- Stale output: ``[data-testid="stElementContainer"][data-stale="true"]`` until a rerun redraws it.
- The app scrolls inside ``stMain``, not the document: ``screenshot()`` grows the viewport for a full shot.

Idle detection: an init script counts the app's finished runs (transitions of ``data-test-script-state``
to ``notRunning``). ``run_count()`` before an action and ``wait_idle(after=...)`` after it waits for a run
that started after the action to end, fragment reruns included. A page with a running job panel reruns
every second, so there wait for the expected content as well.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

APP = '[data-testid="stApp"]'
IDLE = f'{APP}[data-test-script-state="notRunning"]'
STATUS_WIDGET = '[data-testid="stStatusWidget"]'
NAV_LINK = '[data-testid="stSidebarNav"] a[data-testid="stSidebarNavLink"]'
IMAGE = '[data-testid="stImage"] img'
SUCCESS = '[data-testid="stAlertContentSuccess"]'
ERROR = '[data-testid="stAlertContentError"]'
EXCEPTION = '[data-testid="stException"]'
PROGRESS = '[data-testid="stProgress"]'

# Counts script runs (full and fragment) as the server reports them on the websocket, and remembers the
# last click's time, in the page. The DOM's data-test-script-state alone misses runs: when a fast run's
# new_session and script_finished arrive together, React renders them in one batch and the attribute
# never leaves "notRunning" (seen: a form submit whose rerun the wait never noticed).
_INIT_SCRIPT = """
(() => {
  const st = window.__st = {finished: 0, started: 0, ended: 0, endedAt: 0, inFlight: false, log: [], lastClick: null};
  // The ForwardMsg's type: the number of its first field among new_session (4) and script_finished (6,
  // a varint: 2 = finished early for a rerun, another run follows). A minimal protobuf walk.
  const typeOf = buf => {
    const b = new Uint8Array(buf); let i = 0;
    const varint = () => {
      let x = 0, s = 0, c;
      do { c = b[i++]; x += (c & 127) * 2 ** s; s += 7; } while (c & 128 && i < b.length);
      return x;
    };
    while (i < b.length) {
      const tag = varint(), f = Math.floor(tag / 8), w = tag % 8;
      if (f === 4 && w === 2) return [4, null];
      if (w === 0) { const v = varint(); if (f === 6) return [6, v]; }
      else if (w === 2) { const len = varint(); i += len; }  // not `i += varint()`: that adds to the old i
      else if (w === 1) i += 8;
      else if (w === 5) i += 4;
      else return null;
    }
    return null;
  };
  const note = what => { st.log = st.log.concat([[Math.round(performance.now()), what]]).slice(-16); };
  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', e => {
        if (!(e.data instanceof ArrayBuffer)) return;
        const t = typeOf(e.data);
        if (!t) return;
        if (t[0] === 4) { st.started += 1; st.inFlight = true; note('start'); return; }
        st.ended += 1; st.inFlight = false; st.endedAt = performance.now(); note('end ' + t[1]);
        if (t[1] !== 2) st.finished += 1;
      });
    }
  };
  // The visible button of a keyed st.button (one with help= also renders a hidden copy).
  st.button = key => Array.from(document.querySelectorAll('.st-key-' + key + ' button'))
    .find(b => b.offsetParent !== null) || null;
  // When the page last turned to "notRunning": after the last script_finished, React has drawn the run.
  st.domIdleAt = 0;
  new MutationObserver(records => {
    if (records.some(r => r.target.getAttribute('data-test-script-state') === 'notRunning')) {
      st.domIdleAt = performance.now();
    }
  }).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-test-script-state']});
  // No run in flight (the last message was an end: a run a full rerun interrupts sends a start but
  // no end, so the counts need not match) and the page says so; the last run drawn (the page turns
  // "notRunning" 50-100 ms after its script_finished arrives here), or, for a batch that never
  // showed "running", ended over 250 ms ago: time enough to draw what came with it.
  st.idle = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    return !!app && app.getAttribute('data-test-script-state') === 'notRunning' && !st.inFlight
      && (st.domIdleAt >= st.endedAt || performance.now() - st.endedAt > 250);
  };
  document.addEventListener('click', e => { st.lastClick = performance.now(); }, true);
})();
"""


def key_class(key: str) -> str:
    """The CSS selector of a keyed widget's container (``st.button(..., key="acc_3")`` → ``.st-key-acc_3``)."""
    return ".st-key-" + re.sub(r"[^A-Za-z0-9_-]", "-", key)


class StreamlitPage:
    """A Playwright ``Page`` on the app, with waits that know when Streamlit is done."""

    def __init__(self, page: Any, base_url: str, artifacts: Path | None = None, timeout_s: float = 30.0) -> None:
        self.page = page
        self.base_url = base_url.rstrip("/")
        self.artifacts = artifacts
        self.timeout_ms = timeout_s * 1000
        page.set_default_timeout(self.timeout_ms)
        page.add_init_script(_INIT_SCRIPT)

    # -- waiting --------------------------------------------------------------------------

    def run_count(self) -> int:
        return int(self.page.evaluate("window.__st ? window.__st.finished : 0"))

    def wait_idle(self, after: int | None = None, timeout_s: float | None = None) -> None:
        """Wait until the app is not running (and, with ``after``, has finished a run since then)."""
        n = -1 if after is None else after
        try:
            self._wait_idle(n, timeout_s)
        except Exception as e:
            state = self.page.evaluate(
                "() => window.__st && {finished: window.__st.finished, started: window.__st.started,"
                " ended: window.__st.ended, log: window.__st.log, now: Math.round(performance.now()),"
                " domIdleAt: Math.round(window.__st.domIdleAt), endedAt: Math.round(window.__st.endedAt),"
                " attr: document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state')}"
            )
            raise AssertionError(f"wait_idle(after={n}) timed out: {state}") from e
        self.check_no_exception()

    def _wait_idle(self, n: int, timeout_s: float | None) -> None:
        self.page.wait_for_function(
            "n => !!window.__st && window.__st.idle() && window.__st.finished > n",
            arg=n,
            timeout=(timeout_s * 1000) if timeout_s else self.timeout_ms,
            polling="raf",
        )

    def check_no_exception(self) -> None:
        """Fail on a Python traceback shown in the page (a real bug, not a user message)."""
        exc = self.page.locator(EXCEPTION)
        if exc.count():
            raise AssertionError("the app shows an exception:\n" + exc.first.inner_text())

    def wait_text(self, text: str | re.Pattern[str], timeout_s: float | None = None) -> Any:
        loc = self.page.get_by_text(text).first
        loc.wait_for(state="visible", timeout=(timeout_s * 1000) if timeout_s else self.timeout_ms)
        return loc

    # -- navigation -----------------------------------------------------------------------

    def open(self, path: str = "/") -> None:
        """Load a URL (a new Streamlit session) and wait for its first run to finish."""
        self.page.goto(self.base_url + path)
        self.page.wait_for_selector(APP)
        self.wait_idle(after=0)

    def go(self, title: str) -> None:
        """Click a page link in the sidebar, as a user switches pages (the session is kept)."""
        n = self.run_count()
        self.page.locator(NAV_LINK, has_text=re.compile(rf"^\s*{re.escape(title)}\s*$")).first.click()
        self.page.wait_for_url(re.compile(re.escape(title) + r"/?$") if title != "Home" else re.compile(r".*"))
        self.wait_idle(after=n)

    # -- widgets --------------------------------------------------------------------------

    def button(self, label: str | re.Pattern[str], *, exact: bool = True) -> Any:
        """The visible button named ``label`` (the hidden copy of a button with help text is skipped)."""
        if isinstance(label, str) and exact:
            # The accessible name of a button with ``shortcut=`` ends in a hint: "Accept page Shortcut Shift + A".
            label = re.compile(rf"^\s*{re.escape(label)}(\s+Shortcut\s.*)?\s*$", re.S)
        return self.page.get_by_role("button", name=label).filter(visible=True)

    def click(self, target: Any, *, wait: bool = True) -> None:
        """Click a locator (or a button label) and wait for the rerun it causes."""
        loc = self.button(target) if isinstance(target, str | re.Pattern) else target
        n = self.run_count()
        loc.click()
        if wait:
            self.wait_idle(after=n)

    def fill(self, label: str, value: str, *, within: Any = None) -> None:
        """Type into a text input/area; Streamlit takes the value on blur or Enter (forms: on submit)."""
        scope = within if within is not None else self.page
        field = scope.get_by_label(label, exact=True)
        field.fill(value)

    def chosen(self, label: str, *, within: Any = None) -> str | None:
        """The option a pick-one list (``ui/choice.py``) shows, as the user reads it."""
        scope = within if within is not None else self.page
        box = scope.get_by_role("combobox", name=label, exact=True).first
        text: str | None = box.evaluate("s => s.options[s.selectedIndex] ? s.options[s.selectedIndex].text : null")
        return text

    def select(self, label: str, option: str, *, within: Any = None, rerun: bool = True) -> None:
        """Pick an option of a pick-one list by its label text and wait for the rerun the pick starts
        (``rerun=False``: the caller waits). The app's lists are native ``<select>`` elements
        (``ui/choice.py``); a Streamlit ``st.selectbox`` (an older checkout, in bench_curation) is a
        react-aria combobox, opened by its chevron."""
        scope = within if within is not None else self.page
        box = scope.get_by_role("combobox", name=label, exact=True).first
        if box.evaluate("e => e.tagName") != "SELECT":
            self._select_streamlit(label, option, scope=scope, rerun=rerun)
            return
        if self.chosen(label, within=within) == option:
            return
        n = self.run_count()
        box.select_option(label=option)
        if rerun:
            self.wait_idle(after=n)

    def _select_streamlit(self, label: str, option: str, *, scope: Any, rerun: bool) -> None:
        box = scope.locator(f'input[role="combobox"][aria-label="{label}"]').first
        n = self.run_count()
        chevron = box.locator("xpath=..").locator("button").first  # opens the list; a click on the input only focuses
        listbox = self.page.locator(f'[role="listbox"][aria-label="{label}"]')
        item = listbox.locator('[role="option"]', has_text=re.compile(rf"^\s*{re.escape(option)}\s*$")).first
        opened = scope.locator(f'input[role="combobox"][aria-label="{label}"][aria-expanded="true"]').first
        # Right after typing into another field of a form, a click on the chevron may be lost, or the list
        # may close again as that field's blur re-renders the form: open and pick until it takes.
        for attempt in range(5):
            try:
                if not opened.count():
                    chevron.click()
                opened.wait_for(timeout=600)
                item.click(timeout=1500)
                break
            except Exception:
                if box.input_value() == option:  # picked after all
                    break
                if attempt == 4:
                    raise
        if rerun:
            self.wait_idle(after=n)

    def expand(self, title: str) -> Any:
        """Open an expander; returns its container. A plain one opens client-side; a kept one (``on_change=
        "rerun"``, its form drawn only while open) reruns the page: that run is waited for."""
        exp = self.page.locator('[data-testid="stExpander"]', has=self.page.locator("summary", has_text=title)).first
        if exp.locator("details[open]").count() == 0:
            from playwright.sync_api import TimeoutError as NoRerun

            started = int(self.page.evaluate("window.__st ? window.__st.started : 0"))
            n = self.run_count()
            exp.locator("summary").first.click()
            try:  # a rerun starts within a moment of the click, or none comes
                self.page.wait_for_function("n => window.__st.started > n", arg=started, timeout=1500)
            except NoRerun:  # a client-side expander
                pass
            else:
                self.wait_idle(after=n)
        exp.locator("details[open]").wait_for()
        return exp

    def set_number(self, label: str, value: int | float, *, within: Any = None) -> None:
        """Type a number into a number input and commit it with Enter (one rerun, none if unchanged)."""
        scope = within if within is not None else self.page
        field = scope.locator(f'input[type="number"][aria-label="{label}"]').first
        text = str(value)
        if field.input_value() == text:
            return
        n = self.run_count()
        field.fill(text)
        field.press("Enter")
        self.wait_idle(after=n)
        assert field.input_value() == text, f"{label}: {field.input_value()!r} after typing {text!r}"

    def set_checked(self, role: str, name: str | re.Pattern[str], on: bool = True, *, within: Any = None) -> None:
        """Tick or untick a checkbox (``role="checkbox"``) or pick a radio option (``role="radio"``) by its
        label, clicking the label Streamlit draws (the input itself is hidden); a rerun when it changes."""
        scope = within if within is not None else self.page
        box = scope.get_by_role(role, name=name).first
        if box.is_checked() == on:
            return
        n = self.run_count()
        box.locator("xpath=ancestor::label[1]").click()
        self.wait_idle(after=n)
        assert box.is_checked() == on, f"{name}: still {'un' if on else ''}checked after the click"

    def upload(self, key: str, path: Path) -> None:
        """Give a file to ``st.file_uploader(..., key=key)``, as a user picking it in the file dialog.

        Does not wait: the upload and the rerun that follows may take a while (wait for the result)."""
        self.page.locator(f'{key_class(key)} input[type="file"]').set_input_files(str(path))

    def metric(self, label: str, timeout_s: float | None = None) -> str:
        """The value shown by ``st.metric(label, …)`` (waits for it to be visible)."""
        box = self.page.locator(
            '[data-testid="stMetric"]',
            has=self.page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")),
        ).first
        value = box.locator('[data-testid="stMetricValue"]')
        value.wait_for(state="visible", timeout=(timeout_s * 1000) if timeout_s else self.timeout_ms)
        return str(value.inner_text()).strip()

    def dataframe_rows(self, nth: int = 0) -> list[dict[str, str]]:
        """The rows in view of the ``nth`` ``st.dataframe`` of the page, as {column: cell text}."""
        table = self.page.locator('[data-testid="stDataFrame"] table[role="grid"]').nth(nth)
        table.locator("tbody tr").first.wait_for(state="attached")
        heads = [str(t).strip() for t in table.locator("thead th").all_text_contents()]
        return [
            dict(zip(heads, (str(t).strip() for t in row.locator("td").all_text_contents()), strict=False))
            for row in table.locator("tbody tr").all()
        ]

    def keyed(self, key: str) -> Any:
        return self.page.locator(key_class(key))

    def keyed_button(self, key: str) -> Any:
        """The visible button of ``st.button(..., key=key)``."""
        return self.page.locator(f"{key_class(key)} button:visible")

    # -- evidence -------------------------------------------------------------------------

    def screenshot(self, name: str) -> Path | None:
        if self.artifacts is None:
            return None
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        self.page.mouse.move(0, 0)  # no tooltip of the last button clicked over the shot
        # The app scrolls inside stMain, not the document, so full_page alone captures one screen:
        # grow the viewport to the content for the shot (a resize re-lays out, it does not rerun).
        size = self.page.viewport_size
        height = int(
            self.page.evaluate(
                """() => Math.max(document.documentElement.scrollHeight,
                     ...Array.from(document.querySelectorAll(
                          '[data-testid="stMain"], [data-testid="stAppViewContainer"]')).map(e => e.scrollHeight))"""
            )
        )
        if size and height > size["height"]:
            self.page.set_viewport_size({"width": size["width"], "height": min(height, 12000)})
            try:
                self.page.screenshot(path=str(path), full_page=True)
            finally:
                self.page.set_viewport_size(size)
        else:
            self.page.screenshot(path=str(path), full_page=True)
        return path

    def wait_images(self, at_least: int, timeout_s: float | None = None) -> int:
        """Wait until ``at_least`` ``st.image`` pictures are fetched and decoded; returns how many are."""
        self.page.wait_for_function(
            """([sel, n]) => Array.from(document.querySelectorAll(sel))
                              .filter(i => i.complete && i.naturalWidth > 0).length >= n""",
            arg=[IMAGE, at_least],
            timeout=(timeout_s * 1000) if timeout_s else self.timeout_ms,
        )
        return self.images_loaded()

    def key_numbers(self, prefix: str) -> list[int]:
        """The numbers ``N`` of the widgets keyed ``<prefix>N`` on the page, in page order."""
        ids = self.page.evaluate(
            """prefix => Array.from(document.querySelectorAll(`[class*="st-key-${prefix}"]`))
                 .flatMap(e => Array.from(e.classList))
                 .filter(c => c.startsWith(`st-key-${prefix}`))
                 .map(c => c.slice(`st-key-${prefix}`.length)).filter(n => /^[0-9]+$/.test(n)).map(Number)""",
            prefix,
        )
        return list(dict.fromkeys(int(i) for i in ids))

    def images_loaded(self) -> int:
        """How many ``st.image`` pictures in the page have really been fetched and decoded."""
        return int(
            self.page.evaluate(
                """sel => Array.from(document.querySelectorAll(sel))
                          .filter(i => i.complete && i.naturalWidth > 0).length""",
                IMAGE,
            )
        )

    def timed(self, action: Any, done_js: str, arg: Any = None, timeout_s: float = 30.0) -> float:
        """Seconds from the last click ``action()`` makes (its in-page event time) to ``done_js`` holding.

        ``done_js`` is the body of a JS function of ``arg``. A loop in the page checks it every
        animation frame from before the action on, so time the test spends waiting inside ``action``
        does not count. The clicks are real (trusted) clicks.
        """
        self.page.evaluate(
            """([body, arg]) => {
                 const done = new Function('arg', body);
                 const st = window.__st;
                 st.lastClick = null; st.doneAt = null;
                 const token = st.timer = {};
                 const loop = () => {
                   if (st.timer !== token) return;
                   if (st.lastClick !== null && done(arg)) { st.doneAt = performance.now(); return; }
                   requestAnimationFrame(loop);
                 };
                 requestAnimationFrame(loop);
               }""",
            [done_js, arg],
        )
        action()
        self.page.wait_for_function("() => window.__st.doneAt !== null", timeout=timeout_s * 1000)
        start, end = self.page.evaluate("[window.__st.lastClick, window.__st.doneAt]")
        return float(end - start) / 1000.0
