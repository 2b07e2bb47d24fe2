"""One keyboard-driven card grid for every review surface (Dataset, Review; Search next).

The grid is a Streamlit components-v2 component (``cards.js`` + ``cards.css``, shipped as package
data) that owns the focus, the selection, the lightbox and the cards' shown state: a key changes the
card at once, in the browser. The decisions reach Python as an ordered queue: one trigger value
``{"client", "actions": [{"seq", "action", "ids", "label", "seen"}, ...]}`` holding every action not yet
answered (a component trigger starts one rerun per call, so keys typed at speed must not each wait for
one). ``apply_batch`` applies, in order, only the sequence numbers above the last one applied for the
grid (a replayed batch changes nothing) through the domain functions, and answers with ``applied`` and
each action's outcome; the cards drawn next are what the store holds, so an action it refused rolls
its cards back, and the browser marks them with the reason.

The cards of a page stay pinned until the user pages on (``grid(view=..., fetch=...)``): a card decided
out of the filter stays where it was, marked, instead of the next page's cards sliding under the cursor.

API
---
- ``Card``: one card, generic (an image, a candidate): id, thumbnail URL, caption, label, state
  flags, an optional prediction and the lightbox metadata. ``image_card`` / ``review_card`` build one.
- ``grid(key, cards, *, classes, actions, on_action, ...)``: mounts the grid, returns the ids shown.
  ``actions`` is the set of actions the keys and buttons may send (``ACTIONS``); ``on_action(store, GridAction) -> str``
  applies one and returns the message. ``large(card_id) -> str | None`` gives the lightbox image,
  fetched only for the card opened.
- ``GridAction``: what the user asked for; ``parse_action`` validates a raw trigger value.
- ``apply_batch``: the browser's queue applied in seq order, replays ignored; ``pin``: the page as drawn.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import streamlit as st

from lotr_labeler.errors import InvalidInput, LabelerError, NotFound, check_choice
from lotr_labeler.imaging import thumbnail
from lotr_labeler.store import ImageRow, Store
from lotr_labeler.store.images import Relabeled
from lotr_labeler.ui.context import error_boundary, project_store
from lotr_labeler.ui.element import packaged, trigger

HERE = Path(__file__).parent
# Every action a grid may send. A page allows a subset; A/X (accept/reject) are for candidates.
ACTIONS = ("keep", "unkeep", "delete", "restore", "relabel", "predict", "undo", "more", "accept", "reject")
LIGHTBOX_SIZE = 640  # px, longest side of the large view (sent for the opened card only)


@dataclass(frozen=True)
class Card:
    """One card of the grid. ``meta`` rows show in the lightbox (key, value)."""

    id: int
    src: str  # thumbnail URL (a data: URL for cached files)
    caption: str  # one line under the picture
    label: str = ""  # the current class (the relabel dropdown's value)
    flags: tuple[str, ...] = ()
    deleted: bool = False
    reviewed: bool = False
    predicted: str | None = None  # the model's class, when it differs from ``label``
    hint: str = ""  # e.g. "→ Elves 83%"
    confidence: int | None = None  # the prediction's probability in % as the hint shows it (the threshold's value)
    scored: bool = False  # a model has judged it (no prediction shown: it agrees)
    locked: str = ""  # e.g. "downloaded": shown as a badge instead of the decision buttons (none apply)
    state: str = ""  # a candidate's decision (pending, accepted, ...): the browser shows it and changes it
    out: bool = False  # left the page's filter since it was drawn (decided): kept in place, marked
    meta: tuple[tuple[str, str], ...] = ()  # URLs among the values show as links

    def payload(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict: its recursive deep copy took 1.9 ms for a page of 48
        # cards (0.1 ms this way), on every grid run, for values that are str, int, bool or tuples of str.
        d = {name: getattr(self, name) for name in _CARD_FIELDS}
        d["flags"] = list(self.flags)
        d["meta"] = [list(m) for m in self.meta]
        return d


_CARD_FIELDS = tuple(f.name for f in fields(Card))


@dataclass(frozen=True)
class GridAction:
    """An action sent by the grid: ``action`` on ``ids`` (``label`` for relabel). ``seen`` is the label
    each card showed when the page was drawn, so a move can leave alone what another window changed."""

    action: str
    ids: tuple[int, ...] = ()
    label: str | None = None
    seen: Mapping[int, str] = field(default_factory=dict)
    states: Mapping[int, str] = field(default_factory=dict)  # a candidate's state as the card showed it


def parse_action(raw: Any, allowed: Collection[str]) -> GridAction:
    """A trigger value from the browser as a ``GridAction``.

    Raises
    ------
    InvalidInput
        Not an action dict, an action this grid does not allow, ids that are not integers,
        or a relabel without a class.
    """
    if not isinstance(raw, dict):
        raise InvalidInput(f"Grid action {raw!r} is not an object with 'action' and 'ids'.")
    name = check_choice(str(raw.get("action")), tuple(allowed), "Grid action")
    try:
        ids = tuple(int(i) for i in raw.get("ids") or ())
    except (TypeError, ValueError):
        raise InvalidInput(f"Grid action ids {raw.get('ids')!r} are not image ids (integers).") from None
    label = raw.get("label")
    if name == "relabel" and not label:
        raise InvalidInput("Relabel needs a class: pick one in the toolbar or press 1-9.")
    if name not in ("undo",) and not ids:
        raise InvalidInput(f"Nothing to {name}: focus or select a card first.")
    return GridAction(name, ids, None if label is None else str(label))


def data_url(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def thumb_url(store: Store, img: ImageRow, size: int) -> str:
    """The image's cached thumbnail as a data: URL ("" when its file is gone: the card says so)."""
    try:
        return data_url(thumbnail(store.path(img), store.cache_dir, img.sha256, size))
    except OSError:
        return ""


def _image_meta(img: ImageRow) -> list[tuple[str, str]]:
    meta = [
        ("id", f"#{img.id}"),
        ("label", img.label),
        ("split", img.split),
        ("size", f"{img.width}×{img.height} · {img.nbytes / 1024:.0f} KB"),
        ("source", img.source),
    ]
    for name, value in (
        ("url", img.source_url),
        ("page", img.page_url),
        ("title", img.title),
        ("query", img.query),
        ("file", img.original_name),
    ):
        if value:
            meta.append((name, value))
    meta.append(("added", img.added_at[:16].replace("T", " ")))
    if img.flags:
        meta.append(("flags", ", ".join(img.flags)))
    if img.deleted:
        meta.append(("state", "in the trash"))
    return meta


def image_card(store: Store, img: ImageRow, size: int) -> Card:
    """A Dataset card: thumbnail, "label #id · split"; size, flags and provenance in the lightbox."""
    return Card(
        id=img.id,
        src=thumb_url(store, img, size),
        caption=f"#{img.id} · {img.split}",  # one short line at 8 per row; the rest is in the lightbox
        label=img.label,
        flags=img.flags,
        deleted=img.deleted,
        meta=tuple(_image_meta(img)),
    )


def image_fetch(store: Store, size: int) -> Callable[[int], Card | None]:
    """``grid(fetch=...)`` for the Dataset: a pinned image's card as stored now (None: gone)."""

    def get(image_id: int) -> Card | None:
        try:
            return image_card(store, store.get_image(image_id), size)
        except LabelerError:
            return None

    return get


def review_fetch(store: Store, size: int) -> Callable[[int], Card | None]:
    """``grid(fetch=...)`` for Review: a pinned image's card as stored and scored now (None: gone)."""
    from lotr_labeler.review import queue

    def get(image_id: int) -> Card | None:
        try:
            return review_card(store, queue.item(store, image_id, ()), size)
        except LabelerError:
            return None

    return get


def review_card(store: Store, it: Any, size: int) -> Card:
    """A Review card from a ``review.queue.ReviewItem``: p(given), the prediction as P's target."""
    img: ImageRow = it.image
    caption = f"#{img.id} · p {it.self_confidence or 0:.2f}" if it.scored else f"#{img.id} · {img.split}"
    meta = _image_meta(img)
    if it.scored:
        meta += [
            ("predicted", f"{it.predicted} ({it.confidence or 0:.0%})"),
            ("p(given)", f"{it.self_confidence or 0:.3f}"),
            ("margin", f"{it.margin or 0:+.3f}"),
        ]
    if it.flags:
        meta = [m for m in meta if m[0] != "flags"] + [("flags", ", ".join(it.flags))]
    if it.reviewed:
        meta.append(("review", "kept (out of the queue)"))
    disagrees = bool(it.disagrees and it.predicted)
    pct = round((it.confidence or 0) * 100)
    return Card(
        id=img.id,
        src=thumb_url(store, img, size),
        caption=caption,
        label=it.given,
        flags=tuple(it.flags),
        deleted=img.deleted,
        reviewed=it.reviewed,
        predicted=it.predicted if disagrees else None,
        hint=f"→ {it.predicted} {pct}%" if disagrees else "",
        confidence=pct if disagrees else None,
        scored=it.scored,
        meta=tuple(meta),
    )


# -- state kept per grid in the session ----------------------------------------------------------


@dataclass
class GridState:
    """What Python remembers of one grid between reruns: the message line, the focus it moves after
    an action (``seq`` tells the browser that it is new), the ids shown, the card opened large."""

    message: tuple[str, str] | None = None  # (kind, text)
    focus: int | None = None
    seq: int = 0
    ids: list[int] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)  # the class each card shows (what the user saw)
    opened: int | None = None
    visit: int = 0  # bumped when the user enters the page anew: the browser then drops its view state
    rerun_app: bool = False
    acted: tuple[list[int], list[int]] | None = None  # (ids shown, ids acted on) of the last action
    # The browser's queue: its token (a new window state restarts at seq 1), the last seq applied, and
    # the outcome of the latest actions (seq, kind, text, ids) it reads to mark the cards refused.
    client: str = ""
    applied: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    # The page as the user saw it: its view token (filters, page turn) and its card ids in order.
    pinned: list[int] = field(default_factory=list)
    pinned_view: str | None = None
    pinned_visit: int = -1
    gone: int = 0  # pinned cards that have left the page's filter (the pager skips fewer on Next)


def state(key: str) -> GridState:
    value = st.session_state.get(f"_grid_{key}")
    if not isinstance(value, GridState):
        value = GridState()
        st.session_state[f"_grid_{key}"] = value
    return value


def next_focus(before: Sequence[int], acted: Collection[int], now: Collection[int]) -> int | None:
    """The card to focus after acting on ``acted``: the first card
    after the last acted one that is still shown (``now``), else the nearest one before it."""
    order = list(before)
    last = max((order.index(i) for i in acted if i in order), default=None)
    if last is None:
        return None
    after = [i for i in order[last + 1 :] if i in now]
    if after:
        return after[0]
    earlier = [i for i in order[:last] if i in now]
    return earlier[-1] if earlier else None


# Actions whose outcome shows outside the grid: the whole page reruns after them.
APP_ACTIONS = frozenset({"more", "undo"})
# A handler's message: text (a success), or (kind, text) e.g. ("warning", ...) for a stale-tab notice.
Message = str | tuple[str, str]
Handler = Callable[[Store, GridAction], Message]


def apply(store: Store, key: str, raw: Any, allowed: Collection[str], on_action: Handler) -> GridState:
    """Validate and apply one trigger value, record its message and the next focus. Domain errors and
    the library errors ``explain_known`` translates (a full disk, a file gone) become the message (kind
    "error"); the grid keeps its focus then."""
    s = state(key)
    s.seq += 1
    if isinstance(raw, dict) and isinstance(raw.get("focus"), int):
        s.focus = raw["focus"]  # where the arrows left it: an error or an undo keeps it there
    text: Message = ""
    with error_boundary(show=None) as caught:  # a callback's error would reach the page as a traceback
        act = parse_action(raw, allowed)
        act = replace(act, seen={i: s.labels[i] for i in act.ids if i in s.labels})
        text = on_action(store, act)
    if caught.message is not None:
        s.message = ("error", caught.message)
        return s
    s.message = text if isinstance(text, tuple) else ("success", text)
    if store.move_errors:  # saved, but a file did not follow yet: shown, not only logged
        s.message = ("warning", f"{s.message[1]} {' '.join(dict.fromkeys(store.move_errors))}")
    s.rerun_app = act.action in APP_ACTIONS
    if act.action not in APP_ACTIONS:  # the next render moves the focus on (it knows what is still shown)
        s.acted = (list(s.ids), list(act.ids))
    return s


RESULTS_KEPT = 50  # outcomes sent back to the browser (it reads those above the last it read)


def _seen(raw: Mapping[str, Any]) -> tuple[dict[int, str], dict[int, str]]:
    """The label and the state each card showed in the browser when the key was pressed: {id: [label, state]}."""
    labels: dict[int, str] = {}
    states: dict[int, str] = {}
    seen = raw.get("seen")
    if isinstance(seen, Mapping):
        for k, v in seen.items():
            if isinstance(v, list | tuple) and len(v) == 2:
                if v[0]:
                    labels[int(k)] = str(v[0])
                if v[1]:
                    states[int(k)] = str(v[1])
    return labels, states


def apply_batch(store: Store, key: str, raw: Any, allowed: Collection[str], on_action: Handler) -> GridState:
    """Apply the browser's queue ``{"client", "actions": [{"seq", "action", "ids", "label", "seen"}]}`` in
    seq order: the actions above the last seq applied for this grid, each through ``on_action``, each
    with the labels and states its cards showed when the key was pressed (``seen``). A seq at or below
    the last applied is a replay and is ignored. The seq counts as applied before its action runs, so
    an action interrupted half-way is never applied twice (its cards then show what the store holds).

    Raises
    ------
    InvalidInput
        Not a queue (the message says what it got).
    """
    s = state(key)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("actions"), list):
        raise InvalidInput(f"Grid queue {raw!r} is not an object with 'client' and 'actions'.")
    client = str(raw.get("client") or "")
    if client != s.client:  # a new browser-side state (a reload): its seq starts again at 1
        s.client, s.applied = client, 0
    items = [a for a in raw["actions"] if isinstance(a, Mapping) and isinstance(a.get("seq"), int)]
    for item in sorted(items, key=lambda a: int(a["seq"])):
        seq = int(item["seq"])
        if seq <= s.applied:
            continue  # replayed: applied already
        s.applied = seq
        ids = [int(i) for i in item.get("ids") or () if isinstance(i, int)]
        labels, states = _seen(item)
        kind, text = _apply_one(store, s, item, allowed, on_action, labels, states)
        s.results.append({"seq": seq, "kind": kind, "text": text, "ids": ids})
    del s.results[:-RESULTS_KEPT]
    return s


def _apply_one(
    store: Store,
    s: GridState,
    raw: Mapping[str, Any],
    allowed: Collection[str],
    on_action: Handler,
    labels: Mapping[int, str],
    states: Mapping[int, str],
) -> tuple[str, str]:
    """One queued action; its outcome (kind, text) is also the grid's message line."""
    text: Message = ""
    with error_boundary(show=None) as caught:
        act = parse_action(dict(raw), allowed)
        if act.label is not None:
            _current_class(store, act.label)
        act = replace(act, seen={i: labels[i] for i in act.ids if i in labels}, states=states)
        text = on_action(store, act)
    if caught.message is not None:
        s.message = ("error", caught.message)
        return s.message
    s.message = text if isinstance(text, tuple) else ("success", text)
    # The grid shows an undo itself (the browser undid it first): only "More like this" needs the page.
    if act.action in APP_ACTIONS and act.action != "undo":
        s.rerun_app = True
    return s.message


def _current_class(store: Store, label: str) -> None:
    """A key or dropdown sends a class the grid listed when drawn: gone from the project, it was renamed or
    removed in another window meanwhile, and the grid drawn next lists the classes as they are now."""
    with error_boundary(show=None) as gone:
        store.get_class(label)  # its message names the class and the project's classes
    if gone.message is not None:
        raise NotFound(
            f"{gone.message} It was renamed or removed in another window meanwhile: the grid now lists the "
            "current classes; press the key again."
        )


def _on_open(key: str) -> None:
    opened = trigger(key, "open")  # the lightbox opened, moved or closed: no store work
    if isinstance(opened, dict):
        state(key).opened = None if opened.get("id") is None else int(opened["id"])


def _on_action(key: str, allowed: tuple[str, ...], on_action: Handler) -> None:
    raw = trigger(key, "action")
    if raw is None:
        return
    with project_store() as store:
        apply(store, key, raw, allowed, on_action)


def _no_frames(data: dict[str, Any]) -> dict[str, Any]:
    """The component's data with its top-level lists as tuples (the same JSON arrays): Streamlit asks of any
    other top-level value whether it is a dataframe, importing pandas and pyarrow to answer, which cost a
    server's first page with a grid ~0.9 s (and every rerun a scan of the cards)."""
    return {name: tuple(value) if isinstance(value, list) else value for name, value in data.items()}


def _on_batch(key: str, allowed: tuple[str, ...], on_action: Handler) -> None:
    raw = trigger(key, "batch")
    if raw is None:
        return
    with error_boundary(show=None) as caught, project_store() as store:
        apply_batch(store, key, raw, allowed, on_action)  # a malformed batch: InvalidInput, shown as the message
    if caught.message is not None:
        state(key).message = ("error", caught.message)


def pin(s: GridState, cards: Sequence[Card], view: str, limit: int, fetch: Callable[[int], Card | None]) -> list[Card]:
    """The cards to show: the page as first drawn for this ``view`` (and visit), each as the store has it
    now (``cards``, else ``fetch(id)`` marked ``out``: it left the filter), in the same places; a card the
    store no longer has drops out. New cards fill the page only up to ``limit`` (a page that was not full:
    fresh search results), never in place of decided ones (the next page's cards the user has not seen)."""
    if s.pinned_view != view or s.pinned_visit != s.visit:
        s.pinned_view, s.pinned_visit = view, s.visit
        s.pinned = [c.id for c in cards]
        s.gone = 0
        return list(cards)
    fresh = {c.id: c for c in cards}
    shown: list[Card] = []
    gone = 0
    for i in s.pinned:
        card = fresh.get(i)
        if card is None:
            fetched = fetch(i)
            if fetched is None:
                continue
            card, gone = replace(fetched, out=True), gone + 1
        shown.append(card)
    pinned = {c.id for c in shown}
    for c in cards:
        if len(shown) >= limit:
            break
        if c.id not in pinned:
            shown.append(c)
    s.pinned = [c.id for c in shown]
    s.gone = gone
    return shown


def grid(
    key: str,
    cards: Sequence[Card],
    *,
    classes: Sequence[str],
    actions: Collection[str],
    on_action: Handler,
    columns: int = 8,
    hint_only: bool = False,
    large: Callable[[int], str | None] | None = None,
    empty: str = "Nothing here.",
    keys_help: Sequence[tuple[str, str]] = (),
    view: str | None = None,
    fetch: Callable[[int], Card | None] | None = None,
    limit: int = 0,
    page_scope: str = "pending",
    counts: str = "",
    undo_button: bool = True,
) -> list[int]:
    """Mount the card grid ``key`` (one per page view; the same key keeps focus and selection).

    Parameters
    ----------
    key
        The grid's identity (session state, the component key).
    cards
        The cards of this page only.
    classes
        The classes, in order: keys 1-9 relabel to the n-th; the legend and dropdowns list them.
    actions
        Allowed actions (subset of ``ACTIONS``): the keys and buttons of the others are absent.
    on_action
        ``(store, GridAction) -> message`` applies an action (domain errors are shown).
    columns
        Cards per row at most (the grid_columns setting); a narrow window shows fewer.
    hint_only
        Show the prediction as a quiet hint, not the primary button (a weak model); P still works.
    large
        The lightbox image of a card (e.g. a 640 px data: URL), asked only for the opened card.
    empty
        What an empty grid says.
    keys_help
        The page's own keys (key, what it does), listed after the grid's in the ? overlay.
    view, fetch, limit
        Pin the page: while ``view`` (the filters and the page turn) stays the same, the cards first
        drawn stay in their places, each as ``fetch(id)`` gives it once it left ``cards`` (decided out
        of the filter); new cards fill up to ``limit``. Without ``view`` the grid shows ``cards``.
    page_scope
        Which cards Accept page / Reject page (Shift+A / Shift+X) take: "pending" (the undecided ones),
        or "any" (every card shown not yet in the state asked for: a state filter's view).
    counts
        The page's totals (e.g. "87 candidates · page 1"), shown in the toolbar beside the page's own.
    undo_button
        Show the toolbar's ↩ Undo (with "undo" allowed; Z works either way). False where the page has its
        own ↩ Undo above the grid (Review: its other tabs need one), so no window shows two.

    Returns
    -------
    list[int]
        The ids shown, in order (the page's Next starts after them).
    """
    for a in actions:
        check_choice(a, ACTIONS, "Grid action")
    allowed = tuple(a for a in ACTIONS if a in actions)
    s = state(key)
    # The visit token: the component's widget state, which Streamlit drops when the user leaves the page
    # (and keeps over reruns of the same visit). Absent: the page is entered anew, so an old message goes.
    if key not in st.session_state:
        s.message = None
        s.opened = None
        s.visit += 1
    if view is not None and fetch is not None:
        cards = pin(s, cards, view, limit or len(cards), fetch)
    s.ids = [c.id for c in cards]
    s.labels = {c.id: c.label for c in cards if c.label}
    if s.acted is not None:
        s.focus = next_focus(s.acted[0], s.acted[1], set(s.ids)) or s.focus
        s.acted = None
    lightbox = None
    if s.opened is not None and s.opened in s.ids and large is not None:
        lightbox = {"id": s.opened, "src": large(s.opened)}
    data = {
        "cards": [c.payload() for c in cards],
        "classes": list(classes),
        "actions": list(allowed),
        "columns": int(columns),
        "hint_only": hint_only,
        "focus": s.focus,
        "seq": s.seq,
        "message": list(s.message) if s.message else None,
        "lightbox": lightbox,
        "empty": empty,
        "keys": [list(k) for k in keys_help],
        "grid": key,
        "visit": s.visit,
        "client": s.client,
        "applied": s.applied,
        "results": s.results,
        "page_scope": page_scope,
        "counts": counts,
        "undo_button": undo_button,
    }
    packaged("cards", '<div class="cg-root" tabindex="-1"></div>')(
        key=key,
        data=_no_frames(data),
        on_action_change=functools.partial(_on_action, key, allowed, on_action),
        on_batch_change=functools.partial(_on_batch, key, allowed, on_action),
        on_open_change=functools.partial(_on_open, key),
    )
    if s.rerun_app:  # the action's result shows outside the grid's fragment (e.g. "More like this")
        s.rerun_app = False
        st.rerun(scope="app")
    return list(s.ids)


def large_image(store: Store, size: int = LIGHTBOX_SIZE) -> Callable[[int], str | None]:
    """``grid(large=...)`` for stored images: the image's ``size`` px thumbnail as a data: URL."""

    def get(image_id: int) -> str | None:
        try:
            img = store.get_image(image_id)
            return data_url(thumbnail(store.path(img), store.cache_dir, img.sha256, size))
        except (OSError, LabelerError):
            return None

    return get


# -- handlers: a grid action applied through the domain functions ---------------------------------


def _n(n: int) -> str:
    return f"{n} image{'' if n == 1 else 's'}"


def _moved(done: Relabeled, text: str) -> Message:
    """A relabel's message: a warning that names the images another window changed meanwhile, if any."""
    if stale := done.stale_message():
        return ("warning", f"{text} {stale}" if done.changed else stale)
    return text


def dataset_action(store: Store, act: GridAction) -> Message:
    """Dataset grid: relabel, delete (to the trash), restore, undo."""
    if act.action == "undo":
        return store.undo()
    if act.action == "relabel":
        assert act.label is not None  # parse_action checked
        done = store.relabel_seen(dict.fromkeys(act.ids, act.label), act.seen)
        return _moved(done, f"Relabeled {_n(done.changed)} to {act.label}.")
    if act.action == "delete":
        return f"Deleted {_n(store.delete_images(act.ids))} (Z or Undo restores)."
    if act.action == "restore":
        return f"Restored {_n(store.restore_images(act.ids))}."
    raise InvalidInput(f"The Dataset grid cannot {act.action!r}.")


def review_action(store: Store, act: GridAction, *, more: Callable[[int], None] | None = None) -> Message:
    """Review grid: keep, back to the queue, relabel, the prediction (each card's own), delete,
    restore, undo, more like this (``more(id)`` opens the panel)."""
    from lotr_labeler.review import decisions, queue

    if act.action in ("undo", "delete", "restore"):
        return dataset_action(store, act)
    if act.action == "keep":
        return f"Kept {_n(decisions.keep(store, act.ids))}: the labels are right."
    if act.action == "unkeep":
        return f"{_n(decisions.unreview(store, act.ids))} back in the queue."
    if act.action == "relabel":
        assert act.label is not None
        done = decisions.relabel_seen(store, dict.fromkeys(act.ids, act.label), act.seen)
        return _moved(done, f"Relabeled {_n(done.changed)} to {act.label}.")
    if act.action == "predict":
        moves: dict[int, str] = {}
        for i in act.ids:
            it = queue.item(store, i, ())
            if it.disagrees and it.predicted is not None:
                moves[i] = it.predicted
        if not moves:
            raise InvalidInput("The model agrees with these labels (or has not scored them): nothing to accept.")
        done = decisions.relabel_seen(store, moves, act.seen)  # one transaction, one undo step, whatever the classes
        targets = ", ".join(sorted(set(moves.values())))
        return _moved(done, f"Relabeled {_n(done.changed)} to the model's choice ({targets}); Z undoes all of it.")
    if act.action == "more" and more is not None:
        more(act.ids[0])
        return f"More like #{act.ids[0]}: its nearest images are shown above the grid."
    raise InvalidInput(f"The Review grid cannot {act.action!r}.")
