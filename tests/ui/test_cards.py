"""The card grid's Python side: card payloads, action parsing and dispatch through the domain functions
(errors, undo, the focus moving on), the component's files shipped as package data. The keys and clicks
in a browser: tests/e2e/test_cards_keyboard.py."""

from __future__ import annotations

import functools
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from lotr_labeler.errors import InvalidInput
from lotr_labeler.model import embed
from lotr_labeler.review import decisions, fitting, queue
from lotr_labeler.store import Store
from lotr_labeler.ui import cards

ROOT = Path(__file__).resolve().parents[2]
DATASET = ("relabel", "delete", "undo")


@pytest.fixture(autouse=True)
def _fresh_session() -> None:
    for key in [k for k in st.session_state if str(k).startswith("_grid_")]:
        del st.session_state[key]


def test_image_card_payload_has_thumbnail_caption_and_provenance(store: Store) -> None:
    img = store.images("circle")[0]
    card = cards.image_card(store, img, 64)
    assert card.src.startswith("data:image/jpeg;base64,") and len(card.src) < 20_000  # the small thumbnail only
    assert card.caption == f"#{img.id} · {img.split}" and card.label == img.label
    meta = dict(card.meta)
    assert meta["label"] == "circle" and meta["source"] == "folder" and meta["file"] == img.original_name
    payload = card.payload()
    assert json.loads(json.dumps(payload))["meta"][0] == ["id", f"#{img.id}"]


def test_missing_file_gives_an_empty_thumbnail_not_an_error(store: Store) -> None:
    img = store.images("circle")[0]
    store.path(img).unlink()
    assert cards.image_card(store, img, 65).src == ""  # size 65: no cached thumbnail to fall back on
    assert cards.large_image(store, 66)(img.id) is None


@pytest.mark.slow
def test_review_card_carries_the_prediction_only_when_it_disagrees(store: Store) -> None:
    fitting.refresh(store, embed.resolve_backbone(store, "imagenet", pretrained=False, size=32))
    items = queue.ranking(store, status="all")
    assert len(items) == len(store.images()) == 18  # every card is checked, not none
    assert 0 < sum(it.disagrees for it in items) < len(items)  # both kinds of card are checked
    for it in items:
        card = cards.review_card(store, it, 64)
        assert card.predicted == (it.predicted if it.disagrees else None)
        assert ("p(given)" in dict(card.meta)) == it.scored
        assert card.hint.startswith("→ ") == it.disagrees


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("delete", "not an object"),
        ({"action": "explode", "ids": [1]}, "explode"),
        ({"action": "delete", "ids": ["x"]}, "'x'"),
        ({"action": "delete", "ids": []}, "Nothing to delete"),
        ({"action": "relabel", "ids": [1]}, "needs a class"),
        ({"action": "keep", "ids": [1]}, "keep"),  # not allowed on the Dataset grid
    ],
)
def test_bad_actions_are_refused_with_the_value_and_the_fix(raw: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        cards.parse_action(raw, DATASET)


def test_grid_refuses_an_unknown_action_name() -> None:
    with pytest.raises(InvalidInput, match="Grid action"):
        cards.grid("g", [], classes=[], actions=("fly",), on_action=cards.dataset_action)


def test_dataset_actions_reach_the_store_and_undo_reverts_them(store: Store) -> None:
    ids = [i.id for i in store.images("circle")][:3]
    s = cards.state("ds")
    s.ids = ids
    cards.apply(store, "ds", {"action": "relabel", "ids": ids[:2], "label": "square"}, DATASET, cards.dataset_action)
    assert [store.get_image(i).label for i in ids[:2]] == ["square", "square"]
    assert s.message == ("success", "Relabeled 2 images to square.")
    assert s.acted == (ids, ids[:2])  # the next render focuses the card after the last one acted on
    events = len(store.history())
    cards.apply(store, "ds", {"action": "delete", "ids": [ids[2]]}, DATASET, cards.dataset_action)
    assert store.get_image(ids[2]).deleted and len(store.history()) == events + 1
    cards.apply(store, "ds", {"action": "undo", "ids": []}, DATASET, cards.dataset_action)
    assert not store.get_image(ids[2]).deleted
    cards.apply(store, "ds", {"action": "undo", "ids": []}, DATASET, cards.dataset_action)
    assert [store.get_image(i).label for i in ids[:2]] == ["circle", "circle"]  # one bulk relabel, one undo
    assert s.rerun_app  # undo changes what the page shows outside the grid (history, counts)


def test_domain_errors_become_the_grid_message(store: Store) -> None:
    img = store.images("circle")[0]
    raw = {"action": "relabel", "ids": [img.id], "label": "hexagon", "focus": img.id}
    s = cards.apply(store, "ds", raw, DATASET, cards.dataset_action)
    assert s.message is not None and s.message[0] == "error" and "hexagon" in s.message[1]
    assert s.acted is None and store.get_image(img.id).label == "circle"
    assert s.focus == img.id  # the focus stays where the browser had it
    while True:  # nothing left to undo: a message, not an exception
        s = cards.apply(store, "ds", {"action": "undo"}, DATASET, cards.dataset_action)
        if s.message and s.message[0] == "error":
            break
    assert "Nothing to undo" in s.message[1]


def test_a_library_error_becomes_one_sentence_in_the_grid_message(store: Store) -> None:
    import errno

    def full_disk(_store: Store, _act: cards.GridAction) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    img = store.images("circle")[0]
    s = cards.apply(store, "ds", {"action": "delete", "ids": [img.id]}, DATASET, full_disk)
    assert s.message is not None and s.message[0] == "error" and "No space left" not in s.message[1]
    assert "disk" in s.message[1].lower()  # the cause in the user's words, with the fix
    with pytest.raises(ZeroDivisionError):  # a bug is not dressed up as a message
        cards.apply(store, "ds", {"action": "delete", "ids": [img.id]}, DATASET, lambda *_: str(1 / 0))


def test_trash_restore_and_review_actions(store: Store) -> None:
    ids = [i.id for i in store.images("circle")][:2]
    store.delete_images(ids)
    s = cards.apply(store, "tr", {"action": "restore", "ids": ids}, ("restore",), cards.dataset_action)
    assert s.message == ("success", "Restored 2 images.") and not store.get_image(ids[0]).deleted
    allowed = ("keep", "unkeep", "delete", "relabel", "predict", "undo", "more")
    cards.apply(store, "r", {"action": "keep", "ids": ids}, allowed, cards.review_action)
    assert set(ids) <= decisions.reviewed_ids(store)
    cards.apply(store, "r", {"action": "unkeep", "ids": ids[:1]}, allowed, cards.review_action)
    assert ids[0] not in decisions.reviewed_ids(store)
    s = cards.apply(store, "r", {"action": "predict", "ids": ids}, allowed, cards.review_action)
    assert s.message is not None and s.message[0] == "error" and "nothing to accept" in s.message[1]
    opened: list[int] = []
    more = functools.partial(cards.review_action, more=opened.append)
    s = cards.apply(store, "r", {"action": "more", "ids": ids}, allowed, more)
    assert opened == [ids[0]] and s.rerun_app  # the panel shows outside the grid's fragment


@pytest.mark.slow
def test_predict_takes_each_card_to_its_own_prediction(store: Store) -> None:
    fitting.refresh(store, embed.resolve_backbone(store, "imagenet", pretrained=False, size=32))
    doubted = [it for it in queue.ranking(store, status="all") if it.disagrees]
    assert doubted, "a random backbone doubts some labels"
    allowed = ("predict",)
    s = cards.apply(store, "r", {"action": "predict", "ids": [it.id for it in doubted]}, allowed, cards.review_action)
    assert s.message is not None and s.message[0] == "success"
    assert all(store.get_image(it.id).label == it.predicted for it in doubted)


def test_predict_over_several_classes_is_one_undo_step(store: Store) -> None:
    fitting.refresh(store, embed.resolve_backbone(store, "imagenet", pretrained=False, size=32))
    first: dict[str, int] = {}  # one image per predicted class
    for it in queue.ranking(store, status="all"):
        if it.predicted is not None:
            first.setdefault(it.predicted, it.id)
    assert len(first) >= 2, "the head predicts at least two classes"
    picks = dict(list(first.items())[:2])
    for predicted, image_id in picks.items():  # label errors the model doubts, towards two different classes
        store.relabel([image_id], next(c for c in store.class_names() if c != predicted))
    before = {i: store.get_image(i).label for i in picks.values()}
    events = len(store.history())
    allowed = ("predict", "undo")
    s = cards.apply(store, "r", {"action": "predict", "ids": list(picks.values())}, allowed, cards.review_action)
    assert s.message is not None and s.message[0] == "success", s.message
    assert {store.get_image(i).label: i for i in picks.values()} == picks  # each to its own prediction
    assert len(store.history()) == events + 1  # one event for both classes
    assert set(picks.values()) <= decisions.reviewed_ids(store)
    assert all(store.path(store.get_image(i)).is_file() for i in picks.values())
    cards.apply(store, "r", {"action": "undo"}, allowed, cards.review_action)
    assert {i: store.get_image(i).label for i in picks.values()} == before  # one Z restores both
    assert not set(picks.values()) & decisions.reviewed_ids(store)  # back in the queue
    assert all(store.path(store.get_image(i)).is_file() for i in picks.values())


def test_relabel_each_refuses_a_deleted_image_and_changes_nothing(store: Store) -> None:
    a, b = (i.id for i in store.images("circle")[:2])
    store.delete_images([b])
    with pytest.raises(Exception, match=str(b)):
        store.relabel_each({a: "square", b: "triangle"})
    assert store.get_image(a).label == "circle"
    assert store.relabel_each({a: "circle"}) == 0  # already there: no event


def test_a_stale_tab_relabel_leaves_another_windows_move_alone(store: Store) -> None:
    """Two windows show the same cards: the other one moves (or deletes) some meanwhile; this one's
    relabel moves only the images still as it drew them and says how many it left alone."""
    ids = [i.id for i in store.images("circle")][:4]
    s = cards.state("ds")
    s.ids, s.labels = ids, dict.fromkeys(ids, "circle")  # what this tab drew
    with Store(store.root) as other:  # the other window, its own connection
        other.relabel([ids[0]], "triangle")
        other.delete_images([ids[1]])
        other.relabel([ids[2]], "square")  # already where this tab sends it: not a conflict
    events = len(store.history())
    cards.apply(store, "ds", {"action": "relabel", "ids": ids, "label": "square"}, DATASET, cards.dataset_action)
    assert [store.get_image(i).label for i in ids] == ["triangle", "circle", "square", "square"]
    assert store.get_image(ids[1]).deleted  # the other window's delete holds
    assert s.message == (
        "warning",
        "Relabeled 1 image to square. 2 images were moved or deleted in another window meanwhile and kept "
        "that change; reload to see them.",
    )
    assert len(store.history()) == events + 1
    # Nothing left to move: the warning alone, no event.
    cards.apply(store, "ds", {"action": "relabel", "ids": ids[:1], "label": "square"}, DATASET, cards.dataset_action)
    assert s.message == (
        "warning",
        "1 image was moved or deleted in another window meanwhile and kept that change; reload to see it.",
    )
    assert store.get_image(ids[0]).label == "triangle" and len(store.history()) == events + 1


@pytest.mark.slow
def test_a_stale_tab_keeps_review_marks_off_the_images_it_left_alone(store: Store) -> None:
    fitting.refresh(store, embed.resolve_backbone(store, "imagenet", pretrained=False, size=32))
    ids = [i.id for i in store.images("circle")][:2]
    s = cards.state("r")
    s.ids, s.labels = ids, dict.fromkeys(ids, "circle")
    with Store(store.root) as other:
        other.relabel([ids[0]], "triangle")
    cards.apply(store, "r", {"action": "relabel", "ids": ids, "label": "square"}, ("relabel",), cards.review_action)
    assert [store.get_image(i).label for i in ids] == ["triangle", "square"]
    assert s.message is not None and s.message[0] == "warning" and "1 image was moved" in s.message[1]
    reviewed = decisions.reviewed_ids(store)
    assert ids[1] in reviewed and ids[0] not in reviewed  # the one left alone stays in the queue


def test_review_card_sends_the_confidence_the_threshold_compares(store: Store) -> None:
    fitting.refresh(store, embed.resolve_backbone(store, "imagenet", pretrained=False, size=32))
    items = queue.ranking(store, status="all")
    assert len(items) == len(store.images()) == 18  # every card is checked, not none
    assert 0 < sum(it.disagrees for it in items) < len(items)  # both kinds of card are checked
    for it in items:
        card = cards.review_card(store, it, 64)
        pct = round((it.confidence or 0) * 100)
        assert card.confidence == (pct if it.disagrees else None)
        assert card.hint == (f"→ {it.predicted} {pct}%" if it.disagrees else "")  # the value the user compares


def test_next_focus_moves_past_the_acted_cards() -> None:
    shown = [1, 2, 3, 4, 5]
    assert cards.next_focus(shown, [2], {1, 3, 4, 5}) == 3  # deleted: the next one
    assert cards.next_focus(shown, [2], set(shown)) == 3  # relabeled in place: the next one too
    assert cards.next_focus(shown, [2, 3, 4], {1, 5}) == 5
    assert cards.next_focus(shown, [5], {1, 2, 3, 4}) == 4  # the last: the one before
    assert cards.next_focus(shown, [1, 2, 3, 4, 5], set()) is None
    assert cards.next_focus(shown, [9], set(shown)) is None


def test_component_files_ship_as_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["lotr_labeler.ui"]
    for name in ("cards.js", "cards.css"):
        assert (cards.HERE / name).is_file() and any(Path(name).match(p) for p in patterns)


def test_dataset_grid_payload_is_the_page_only_and_the_lightbox_image_the_opened_card(store: Store) -> None:
    at = AppTest.from_file(str(ROOT / "pages" / "3_Dataset.py"), default_timeout=60)
    at.run()  # the visit begins (entering the page closes any large view of an earlier visit)
    at.session_state["_grid_ds_grid"].opened = store.images()[1].id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    el = next(e for e in at.get("bidi_component") if getattr(e, "key", None) == "ds_grid")
    data = json.loads(el.proto.json)
    assert len(data["cards"]) == 18
    # Only the opened card's large image travels (LIGHTBOX_SIZE), one, not every card's.
    opened = store.images()[1].id
    assert data["lightbox"] == {"id": opened, "src": cards.large_image(store)(opened)}
    at.session_state["_grid_ds_grid"] = cards.GridState()
    at.run()
    el = next(e for e in at.get("bidi_component") if getattr(e, "key", None) == "ds_grid")
    assert json.loads(el.proto.json)["lightbox"] is None


def test_dataset_pages_on_with_the_keys_search_uses(store: Store) -> None:
    """Shift+PageDown / Shift+PageUp page Dataset's grid as they page Search's (a new user found them dead
    here), and the grid's ? overlay lists them."""
    store.set_setting("page_size", 8)
    at = AppTest.from_file(str(ROOT / "pages" / "3_Dataset.py"), default_timeout=60)
    at.run()
    nxt, prev = at.button(key="next_dataset"), at.button(key="prev_dataset")
    assert (nxt.proto.shortcut, prev.proto.shortcut) == ("shift+pagedown", "shift+pageup")
    data = next(json.loads(e.proto.json) for e in at.get("bidi_component") if getattr(e, "key", None) == "ds_grid")
    assert ["Shift + PageDown / Shift + PageUp", "next / previous page"] in data["keys"]
    first = [c["id"] for c in data["cards"]]
    nxt.click().run()
    data = next(json.loads(e.proto.json) for e in at.get("bidi_component") if getattr(e, "key", None) == "ds_grid")
    assert [c["id"] for c in data["cards"]] == [img.id for img in store.images(limit=8, offset=8)] != first


def _review_grid(at: AppTest) -> dict[str, Any]:
    el = next(e for e in at.get("bidi_component") if getattr(e, "key", None) == "r_grid")
    data: dict[str, Any] = json.loads(el.proto.json)
    return data


@pytest.mark.slow
def test_weak_model_prediction_is_a_hint_not_the_primary_action(store: Store) -> None:
    fitting.refresh(store, embed.resolve_backbone(store, "imagenet", pretrained=False, size=32))
    at = AppTest.from_file(str(ROOT / "pages" / "5_Review.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not _review_grid(at)["hint_only"] and not any("hint" in w.value for w in at.warning)
    # The cards' predictions come from the K-fold head: it is weak when they disagree with the labels
    # (here every label moved to the next class), not when some training run is (review/trust.py).
    vocab = store.class_names()
    for img in store.images():
        store.relabel([img.id], vocab[(vocab.index(img.label) + 1) % len(vocab)])
    at.run()
    grid = _review_grid(at)
    assert grid["hint_only"]  # the cards show "→ class p%?" quietly; P still accepts it
    assert "predict" in grid["actions"] and any(c["predicted"] for c in grid["cards"])
    assert any("K-fold head" in w.value and "hint" in w.value for w in at.warning)


# -- the browser's queue (apply_batch) and the pinned page (pin) -------------------------------------------


def _queue(*actions: dict[str, Any], client: str = "tab") -> dict[str, Any]:
    return {"client": client, "actions": list(actions)}


def test_a_queue_is_applied_in_seq_order_and_a_replay_changes_nothing(store: Store) -> None:
    """Keys typed at speed reach Python as one queue: applied by seq (not by arrival order), each on the
    card it names; the same queue sent again (the browser resends what it has no answer for) is ignored."""
    a, b = [i.id for i in store.images("circle")][:2]
    queue = _queue(
        {"seq": 2, "action": "relabel", "ids": [a], "label": "triangle", "seen": {str(a): ["square", ""]}},
        {"seq": 1, "action": "relabel", "ids": [a], "label": "square", "seen": {str(a): ["circle", ""]}},
        {"seq": 3, "action": "delete", "ids": [b]},
    )
    s = cards.apply_batch(store, "ds", queue, DATASET, cards.dataset_action)
    assert store.get_image(a).label == "triangle" and store.get_image(b).deleted
    assert s.applied == 3 and [r["seq"] for r in s.results] == [1, 2, 3]
    events = store.last_event_id()
    cards.apply_batch(store, "ds", queue, DATASET, cards.dataset_action)  # a replay
    cards.apply_batch(store, "ds", _queue({"seq": 3, "action": "undo", "ids": []}), DATASET, cards.dataset_action)
    assert store.last_event_id() == events and store.get_image(b).deleted and len(s.results) == 3
    cards.apply_batch(store, "ds", _queue({"seq": 4, "action": "undo", "ids": []}), DATASET, cards.dataset_action)
    assert not store.get_image(b).deleted and s.applied == 4
    # A new browser state (a reload) starts its seqs at 1 again: its token tells Python.
    cards.apply_batch(
        store, "ds", _queue({"seq": 1, "action": "delete", "ids": [b]}, client="tab2"), DATASET, cards.dataset_action
    )
    assert store.get_image(b).deleted and s.applied == 1


def test_a_class_renamed_in_another_window_is_named_with_what_happened(store: Store) -> None:
    """Seen by a new user: `classes rename` in the CLI while Dataset was open, then a number key: the raw
    "No class 'square'" error. It now says what happened and what to do; nothing moved."""
    a = store.images("circle")[0].id
    store.rename_class("square", "box")
    queue = _queue({"seq": 1, "action": "relabel", "ids": [a], "label": "square", "seen": {str(a): ["circle", ""]}})
    s = cards.apply_batch(store, "ds", queue, DATASET, cards.dataset_action)
    kind, text = s.message or ("", "")
    assert kind == "error" and text.startswith("No class 'square'") and "Classes: circle, box, triangle" in text
    assert "renamed or removed in another window meanwhile" in text and "press the key again" in text
    assert store.get_image(a).label == "circle" and s.applied == 1


def test_a_refused_action_names_its_cards_and_the_reason_and_the_rest_go_on(store: Store) -> None:
    a, b = [i.id for i in store.images("circle")][:2]
    store.relabel([a], "triangle")  # another window moved it after the page was drawn
    queue = _queue(
        {"seq": 1, "action": "relabel", "ids": [a], "label": "square", "seen": {str(a): ["circle", ""]}},
        {"seq": 2, "action": "relabel", "ids": [b], "label": "hexagon"},
        {"seq": 3, "action": "delete", "ids": [b]},
    )
    s = cards.apply_batch(store, "ds", queue, DATASET, cards.dataset_action)
    first, second, third = s.results
    assert first["kind"] == "warning" and "another window" in first["text"] and first["ids"] == [a]
    assert store.get_image(a).label == "triangle"  # the other window's move holds
    assert second["kind"] == "error" and "hexagon" in second["text"] and second["ids"] == [b]
    assert third["kind"] == "success" and store.get_image(b).deleted  # the queue goes on after a refusal


def _card(i: int, label: str = "circle") -> cards.Card:
    return cards.Card(id=i, src="", caption=f"#{i}", label=label)


def test_the_page_stays_pinned_until_the_view_changes() -> None:
    """A card decided out of the filter stays in its place, marked ``out`` (fetched as stored now), and
    the next page's cards do not slide into the page; a new view (page turned, filter) shows what it gets."""
    s = cards.GridState()
    shown = cards.pin(s, [_card(i) for i in (1, 2, 3)], "v1", 3, lambda i: _card(i, "square"))
    assert [c.id for c in shown] == [1, 2, 3]
    # 2 was relabeled out of the circle filter: the query now answers 1, 3, 4.
    shown = cards.pin(s, [_card(i) for i in (1, 3, 4)], "v1", 3, lambda i: _card(i, "square"))
    assert [(c.id, c.label, c.out) for c in shown] == [(1, "circle", False), (2, "square", True), (3, "circle", False)]
    assert s.gone == 1
    shown = cards.pin(s, [_card(i) for i in (1, 3, 4)], "v1", 3, lambda i: None)  # 2 is gone from the store
    assert [c.id for c in shown] == [1, 3, 4]  # a page not full takes new cards (e.g. search results)
    shown = cards.pin(s, [_card(i) for i in (4, 5)], "v2", 3, lambda i: None)
    assert [c.id for c in shown] == [4, 5] and s.gone == 0


@pytest.mark.slow
def test_review_keeps_a_kept_card_in_place_and_next_skips_none(store: Store) -> None:
    """K on a Review card takes it out of the queue; the card stays where it was (marked reviewed, out)
    instead of the next card sliding under the cursor, and Next starts right after the page shown."""
    from helpers import grid_batch

    fitting.refresh(store, embed.resolve_backbone(store, "imagenet", pretrained=False, size=32))
    store.set_setting("page_size", 8)
    at = AppTest.from_file(str(ROOT / "pages" / "5_Review.py"), default_timeout=60)
    at.run()
    first = [c["id"] for c in _review_grid(at)["cards"]]
    ranked = [it.id for it in queue.queue(store)]
    at = grid_batch(at, "r_grid", [{"seq": 1, "action": "keep", "ids": first[:3]}])
    grid = _review_grid(at)
    assert [c["id"] for c in grid["cards"]] == first
    assert [(c["reviewed"], c["out"]) for c in grid["cards"][:4]] == [(True, True)] * 3 + [(False, False)]
    nxt = at.button(key="next_review")
    assert (
        nxt.proto.shortcut == "shift+pagedown"
        and ["Shift + PageDown / Shift + PageUp", "next / previous page"] in (grid["keys"])
    )
    nxt.click().run()
    assert next(c["id"] for c in _review_grid(at)["cards"]) == ranked[8]  # nothing skipped, nothing twice
