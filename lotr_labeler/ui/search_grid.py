"""The Search page's candidates on the shared card grid (``ui.cards``): the card of a candidate and
the handler of the grid's actions (accept, reject, relabel, the model's class, undo).

Stale tabs: every decision carries the state the user *saw* each card in (``seen``: the states of the
cards the page drew last, bound into the handler when the grid is drawn). A candidate decided meanwhile
in another window keeps that decision and the grid's message line says so once (``Decided.stale_message``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from lotr_labeler.errors import InvalidInput, LabelerError
from lotr_labeler.review import candidates as triage
from lotr_labeler.store import CANDIDATE_STATES, Store
from lotr_labeler.store.candidates import Decided, Decision
from lotr_labeler.ui.cards import Card, GridAction, Handler, Message

# What the Search grid may send: A/X, the class dropdown and 1-9, P, Z.
ACTIONS = ("accept", "reject", "relabel", "predict", "undo")
EMPTY = "No candidates here. Search above, or add a list of image URLs (the button under the search)."


def empty_text(store: Store, label: str | None, query: str | None, state: str | None) -> str:
    """What an empty grid says: in a state view, the candidates of the same class and query in the other
    states (failed downloads hid behind "No candidates here. Search above…" in the default pending view)."""
    if state is None:
        return EMPTY
    others = {s: store.count_candidates(label, state=s, query=query) for s in CANDIDATE_STATES if s != state}
    listed = ", ".join(f"{n} {s}" for s, n in others.items() if n)
    if not listed:
        return EMPTY
    retry = " Retry failed, under the grid, downloads the failed ones again." if others["failed"] else ""
    return f"No {state} candidates here ({listed}): pick them with State above.{retry}"


BADGE = {"pending": "⏳", "accepted": "✅", "rejected": "❌", "downloaded": "💾", "failed": "⚠️"}


def candidate_card(t: triage.Triage) -> Card:
    """A Search card: the search engine's thumbnail (the browser loads it, nothing is downloaded),
    "state query · size · p", the model's class as P's target; URL, page and query in the lightbox."""
    c = t.candidate
    size = f"{c.width}×{c.height}" if c.width and c.height else "size ?"
    p = f" p {t.p_class:.2f}" if t.p_class is not None else ""
    meta: list[tuple[str, str]] = [("id", f"candidate #{c.id}"), ("state", c.state), ("class", c.label)]
    for name, value in (("query", c.query), ("url", c.image_url), ("page", c.page_url), ("title", c.title)):
        if value:
            meta.append((name, value))
    meta += [("size", size), ("source", c.source)]
    if t.p_class is not None:
        meta.append((f"p({c.label})", f"{t.p_class:.3f}"))
        meta.append(("predicted", f"{t.predicted} ({t.p_predicted or 0:.0%})"))
    flags: list[str] = []
    if t.looks_like:
        flags.append(f"looks like {t.looks_like}")
    elif t.off_topic():
        flags.append("likely off-topic")
    if t.dup_of is not None:
        flags.append(f"near-duplicate of image #{t.dup_of}")
    for note in (c.error, t.error):
        if note:
            flags.append(note)
    if flags:
        meta.append(("flags", "; ".join(flags)))
    disagrees = bool(t.predicted and t.predicted != c.label and c.state != "downloaded")
    pct = round((t.p_predicted or 0) * 100)
    return Card(
        id=c.id,
        src=c.thumbnail_url or c.image_url,
        # The state and the model's word first: the query is the part a narrow card may cut (full: hover, large view).
        # The browser puts the state's badge in front (it changes the state at once, before Python hears).
        # p and the size in full on a narrow card; the query in the large view.
        caption=f"{p.strip() or 'p ?'} · {size}",
        state=c.state,
        label=c.label,
        flags=tuple(flags),
        reviewed=c.state == "accepted",  # the caption's class gets a ✓
        predicted=t.predicted if disagrees else None,
        hint=f"→ {t.predicted} {pct}%" if disagrees else "",
        confidence=pct if disagrees else None,
        scored=t.p_class is not None,
        meta=tuple(meta),
        locked="💾 downloaded" if c.state == "downloaded" else "",  # an image now: no ✓/✗ to press
    )


def _cn(n: int) -> str:
    return f"{n} candidate{'' if n == 1 else 's'}"


DOWNLOADED = "Downloaded candidates are images now: relabel them on the Dataset page."


def _outcome(done: str, decided: Decided, skipped: int = 0, *, already: str = "") -> Message:
    """The message: what changed, the downloaded cards skipped (said once), then the stale sentence as a
    warning when another window won. Nothing changed and no conflict: ``already`` says why ("Rejected 0
    candidates." read as a failure, for a card another window had rejected the same way)."""
    extra = ""
    if skipped:
        extra = f" Skipped {_cn(skipped)} already downloaded (images now: relabel them on the Dataset page)."
    if stale := decided.stale_message():
        return ("warning", f"{done}{extra} {stale}" if decided.changed else stale)
    if not decided.changed and already:
        return ("info", f"{already}: nothing to change.{extra}")
    return ("success", done + extra)


def _both(ids: Mapping[int, str]) -> str:
    """The subject of "… already accepted": "Candidate #4 is already" / "These 3 candidates are already"."""
    return f"Candidate #{next(iter(ids))} is already" if len(ids) == 1 else f"These {len(ids)} candidates are already"


def search_action(store: Store, act: GridAction, *, seen: Mapping[int, str]) -> Message:
    """Apply one Search grid action to the candidates as the page showed them (``seen``: id -> state)."""
    if act.action == "undo":
        return store.undo()
    # The state each card showed when the key was pressed (the browser's, queued keys included), else
    # the state the page drew it in.
    seen = {**seen, **act.states}
    shown = {i: seen[i] for i in act.ids if i in seen}
    if not shown:
        raise InvalidInput(f"Candidates {list(act.ids)} are not on this page any more: reload the page.")
    # Downloaded cards have no decision left (their card shows a badge): a selection or key that
    # includes them acts on the others and says so once.
    open_ = {i: s for i, s in shown.items() if s != "downloaded"}
    skipped = len(shown) - len(open_)
    if not open_:
        raise InvalidInput(DOWNLOADED)
    if act.action in ("accept", "reject"):
        state = "accepted" if act.action == "accept" else "rejected"
        decided = store.decide_seen(open_, state)
        verb = "Accepted" if state == "accepted" else "Rejected"
        return _outcome(f"{verb} {_cn(decided.changed)}.", decided, skipped, already=f"{_both(open_)} {state}")
    if act.action == "relabel":
        assert act.label is not None  # parse_action checked
        store.get_class(act.label)  # names the bad class and the existing ones
        # A moved card keeps its decision; a failed one goes back to pending (to be fetched into its class).
        by_keep: dict[str, dict[int, str]] = {}
        for i, s in open_.items():
            by_keep.setdefault("pending" if s == "failed" else s, {})[i] = s
        decided = store.decide_each([Decision(group, keep, act.label) for keep, group in by_keep.items()])
        return _outcome(
            f"Moved {_cn(decided.changed)} to {act.label}.", decided, skipped, already=f"{_both(open_)} in {act.label}"
        )
    if act.action == "predict":
        by_class: dict[str, dict[int, str]] = {}
        for i, s in open_.items():
            t = triage.item(store, i)
            if t.predicted is not None and t.predicted != t.candidate.label:
                by_class.setdefault(t.predicted, {})[i] = s
        if not by_class:
            raise InvalidInput("The model agrees with these classes (or has not scored them): nothing to move.")
        decided = store.decide_each([Decision(group, "accepted", label) for label, group in by_class.items()])
        targets = ", ".join(sorted(by_class))
        return _outcome(f"Accepted {_cn(decided.changed)} as the model's class ({targets}).", decided, skipped)
    raise InvalidInput(f"The Search grid cannot {act.action!r}.")


def fetch(store: Store, candidate_id: int) -> Card | None:
    """``grid(fetch=...)``: a pinned candidate's card as the store has it now (None: gone)."""
    try:
        return candidate_card(triage.item(store, candidate_id))
    except LabelerError:
        return None


def handler(seen: Mapping[int, str]) -> Handler:
    """``grid(on_action=...)`` for the cards drawn with these states."""
    return functools.partial(search_action, seen=dict(seen))
