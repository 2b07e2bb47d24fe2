"""Search: find images per class, review thumbnails before anything is downloaded, download the accepted."""

from __future__ import annotations

import functools

import streamlit as st

from lotr_labeler.collect.search import LAYOUT, LICENSE_IMAGE, SAFESEARCH, SIZE, TYPE_IMAGE, plan_queries
from lotr_labeler.errors import LabelerError
from lotr_labeler.jobs import table as jobs
from lotr_labeler.jobs.specs import DownloadJob, ScoreCandidatesJob, SearchJob
from lotr_labeler.review import candidates as triage
from lotr_labeler.review.trust import triage_trust
from lotr_labeler.store import CANDIDATE_STATES, Store
from lotr_labeler.ui import cards, grid, search_grid
from lotr_labeler.ui.choice import choice
from lotr_labeler.ui.context import (
    act,
    error_boundary,
    flash,
    has_flash,
    kept_expander,
    open_current,
    project_store,
    remember_widgets,
    show_flash,
)
from lotr_labeler.ui.imports import url_list_form
from lotr_labeler.ui.jobs import follow_jobs, job_panel, job_panels, last_line
from lotr_labeler.ui.widgets import ALL, all_select, compact_page, history_menu

st.set_page_config(page_title="Search · lotr_labeler", page_icon="🔎", layout="wide")
compact_page()
st.title("Search and review")
ANY = "any"
STATES = list(CANDIDATE_STATES)
DEFAULTS = {
    "s_class": ALL,
    "s_query": "",
    "s_type": "photo",
    "s_size": ANY,
    "s_layout": ANY,
    "s_license": ANY,
    "s_safe": "moderate",
    "s_region": "us-en",
    "f_class": ALL,
    "f_query": ALL,
    "f_state": "pending",
    "f_sort": "id",
    "f_show": ALL,
    "t_accept": triage.ACCEPT_AT,
    "t_reject": triage.REJECT_AT,
}
SORT_LABELS = {"id": "newest last", "score": "p(class) ↑ (doubtful first)", "score-desc": "p(class) ↓ (surest first)"}
SHOW_LABELS = {
    ALL: "All",
    "off-topic": "Likely off-topic",
    "looks-like": "Looks like another class",
    "near-duplicate": "Near-duplicate of a dataset image",
    "unscored": "Not scored",
}
remember_widgets(DEFAULTS)
GRID = "s_grid"  # the candidate card grid's key (its focus, selection, message)
# Keys of the page (none may repeat, none the grid's own): Shift+A/X the whole page, Shift+PageDown/PageUp
# paging (Shift+arrows extend the grid's selection), Shift+H/L the p(class) sliders of Model triage.
# Two thresholds on one page: the help says which is which (the grid's t: the model's *other* class,
# this page; the sliders: p(the card's own class), every pending candidate).
PAGE_KEYS = (  # the page's buttons' shortcuts, listed in the grid's ? overlay after its own keys
    ("t (the grid's [ ] S Shift+P)", "the model's confidence in another class than the card's, this page only"),
    (
        "Shift + H / Shift + L",
        "Model triage: accept p ≥ / reject p ≤ the sliders' thresholds, p(its own class), every page",
    ),
    *grid.PAGE_KEYS,
)


def _launch_search(store: Store, spec: SearchJob, n: int) -> str:
    spec.launch(store)
    return f"Started {n} search quer{'y' if n == 1 else 'ies'}; results appear below as they arrive."


DOWNLOAD_SLOT = "download"  # the Download buttons' messages show next to them


def _launch_download(store: Store, retry: bool) -> str:
    DownloadJob(retry_failed=retry).launch(store)
    st.session_state["_s_whole_page"] = True  # the job panel and the page's follower are outside the fragment
    return "Download started."


def _bulk(store: Store, seen: dict[int, str], state: str) -> int:
    """Decide the cards as the user saw them (``seen``: id -> state shown); one undoable step."""
    cards.state(GRID).message = None  # the outcome shows at the top: the grid's line must not say an older one
    decided = store.decide_seen(seen, state)
    if message := decided.stale_message():
        flash("warning", message)
    return decided.changed


def _launch_score(store: Store) -> str:
    ScoreCandidatesJob().launch(store)
    return "Scoring started: the cards show each candidate's p(class) as it lands."


def _own_threshold(key: str) -> None:
    st.session_state[f"{key}_own"] = True  # the user's threshold overrides the suggestion from now on


def _use_suggested(key: str) -> None:
    st.session_state.pop(f"{key}_own", None)


def _threshold_side(
    store: Store, label: str | None, query: str | None, accept: bool, suggested: triage.Thresholds, weak: bool
) -> None:
    """One bulk threshold action: slider (the suggested threshold until the user moves it), its expected
    precision, live count, preview strip, then the button. A ``weak`` head with no threshold of the target
    precision suggests none: the slider starts where it selects nothing (at the fixed default, p ≤ 0.20
    took every candidate of a 7-class project whose head guessed at chance: one key rejected them all)."""
    key, verb = ("t_accept", "Accept") if accept else ("t_reject", "Reject")
    sign = "≥" if accept else "≤"
    at, precision = (
        (suggested.accept_at, suggested.accept_precision)
        if accept
        else (suggested.reject_at, suggested.reject_precision)
    )
    unsupported = weak and precision is None
    if unsupported:
        at = 1.0 if accept else 0.0
    own = bool(st.session_state.get(f"{key}_own"))  # the user moved this slider (its on_change)
    if not own:
        st.session_state[key] = at
    t = float(
        st.slider(
            f"{verb} every pending candidate of the filter (all pages) with p(its class) {sign}",
            0.0,
            1.0,
            step=0.01,
            key=key,
            on_change=_own_threshold,
            args=(key,),
        )
    )
    if precision is not None:
        note = f"Suggested {sign} {at:.2f}: expected precision {precision:.1%} "
        note += f"(out-of-sample, {suggested.labeled} images)."
    elif unsupported:
        note = (
            f"None suggested: the head is weak (above) and no threshold reaches {suggested.target:.0%} precision "
            "out-of-sample. Move the slider to choose one."
        )
    else:
        note = f"Default {sign} {at:.2f}: no threshold reaches {suggested.target:.0%} precision out-of-sample yet."
    if own and abs(t - at) > 1e-9:
        st.button(f"↺ {note}", key=f"{key}_reset", on_click=_use_suggested, args=(key,), type="tertiary")
    else:
        st.caption(note)
    if unsupported and not own:
        hits = []  # nothing until the user picks a threshold (p can round to 1.0 exactly: no slider end is empty)
    else:
        hits = triage.at_least(store, t, label, query=query) if accept else triage.at_most(store, t, label, query=query)
    st.caption(f"**{len(hits)}** pending candidate(s) with p(class) {sign} {t:.2f}" + (" — first 12:" if hits else ""))
    if hits:
        shown = hits[:12]
        st.image(
            [h.candidate.thumbnail_url or h.candidate.image_url for h in shown],
            width=56,
            caption=[f"{h.candidate.label} {h.p_class:.2f}" for h in shown],
        )
    st.button(
        f"{verb} {len(hits)} with p {sign} {t:.2f}",
        key=f"bulk_{key}",
        shortcut="Shift+H" if accept else "Shift+L",  # High p accepted, Low p rejected
        help=f"{verb} the {len(hits)} shown above: one step, undoable ({'Shift+H' if accept else 'Shift+L'})",
        type="primary" if accept else "secondary",
        disabled=not hits,
        on_click=act,
        args=(_bulk, {h.id: "pending" for h in hits}, "accepted" if accept else "rejected"),
        kwargs={"success": f"{verb}ed {{result}} candidate(s) (one step: the grid's ↩ Undo, Z, or `undo`)."},
    )


def triage_panel(store: Store, label: str | None, query: str | None) -> None:
    """Model triage: start scoring, then accept/reject by threshold."""
    backbone = triage.scoring_backbone(store)
    pending = triage.triage(store, label, state="pending", query=query)
    scored = sum(1 for t in pending if t.p_class is not None)
    with st.expander(f"🤖 Model triage — {scored} of {len(pending)} pending scored", expanded=scored > 0):
        if backbone is None:
            st.info(
                "Once the dataset has images of two classes, the bundled pretrained network scores every "
                "candidate from its thumbnail: p(its class), the class it looks like, near-duplicates. "
                "Searches then score their results automatically."
            )
            return
        if weak := (trust := triage_trust(store)).weak:
            st.warning(f"⚠️ {trust.reason}")
        c = st.columns([1, 3])
        c[0].button(
            "Score candidates",
            disabled=jobs.running_job(store, ScoreCandidatesJob.kind) is not None,
            on_click=act,
            args=(_launch_score,),
            kwargs={"success": "{result}"},
            width="stretch",
        )
        c[1].caption(f"Thumbnails embedded with {backbone.describe()}; head fitted on every labeled image.")
        job_panel(store.name, ScoreCandidatesJob.kind, "Scoring")
        if scored:
            suggested = triage.suggest_thresholds(store, backbone)
            left, right = st.columns(2)
            with left:
                _threshold_side(store, label, query, True, suggested, weak)
            with right:
                _threshold_side(store, label, query, False, suggested, weak)


def _page_of(
    store: Store, label: str | None, query: str | None, state: str | None, sort: str, show: str, cursors: list[int]
) -> tuple[int, list[triage.Triage]]:
    """(total, the page's candidates). By id: ``cursors`` holds the last id of each earlier page; ranked by
    the model: the position each page started at."""
    page_size = store.settings().page_size
    if sort == "id" and show == ALL:
        total = store.count_candidates(label, state=state, query=query)
        after = cursors[-1] if cursors else None
        rows = store.candidates(label, state=state, query=query, limit=page_size, after_id=after)
        return total, [triage.item(store, r.id) for r in rows]
    ranked = triage.triage(store, label, state=state, query=query, sort=sort, only=None if show == ALL else show)
    start = cursors[-1] if cursors else 0
    return len(ranked), ranked[start : start + page_size]


@st.fragment
def _review_grid(project: str, label: str | None, query: str | None, state: str | None, sort: str, show: str) -> None:
    """The pager, the candidate grid and the Download buttons: a grid action reruns only this (the
    keys never wait for it: the grid applies them in the browser and sends them in order)."""
    if st.session_state.pop("_s_whole_page", False):  # a download started: the whole page follows it now
        st.rerun(scope="app")
    with project_store(project) as store, error_boundary():
        settings = store.settings()
        cursor_key = f"_cursor_{label or ALL}_{query or ALL}_{state or ALL}_{sort}_{show}"
        cursors: list[int] = st.session_state.setdefault(cursor_key, [])
        page_size = settings.page_size
        total, items = _page_of(store, label, query, state, sort, show, cursors)
        b = st.columns([1, 1, 1.2])  # the pager above the grid, filled once the grid says what it shows
        by_id = sort == "id" and show == ALL
        shown = cards.grid(
            GRID,
            [search_grid.candidate_card(t) for t in items],
            classes=store.class_names(),
            actions=search_grid.ACTIONS,
            # The states this page shows travel with every action: another window's decision meanwhile wins.
            on_action=search_grid.handler({t.id: t.candidate.state for t in items}),
            columns=settings.grid_columns,
            hint_only=triage_trust(store).weak,  # a weak head's "→ class" is a quiet hint, as on Review
            large=functools.partial(_original, store),  # the original: the browser fetches it
            empty=search_grid.empty_text(store, label, query, state) if not items else search_grid.EMPTY,
            keys_help=PAGE_KEYS,
            view=f"{cursor_key}|{len(cursors)}|{cursors[-1] if cursors else ''}",
            fetch=functools.partial(search_grid.fetch, store),
            limit=page_size,
            page_scope="pending" if state in (None, "pending") else "any",
            counts=f"{total} candidate{'' if total == 1 else 's'} · page {len(cursors) + 1}",
        )
        # More after the cards shown (decided ones stayed in place, so the listing's own page may be short).
        if by_id:
            more = bool(shown) and bool(store.candidates(label, state=state, query=query, limit=1, after_id=max(shown)))
        else:
            more = (cursors[-1] if cursors else 0) + len(shown) - cards.state(GRID).gone < total
        b[0].button(
            "◀ Previous",
            disabled=not cursors,
            shortcut="Shift+PageUp",
            width="stretch",
            on_click=_back,
            args=(cursors,),
        )
        b[1].button(
            "Next ▶",
            disabled=not more,
            shortcut="Shift+PageDown",
            width="stretch",
            on_click=_turn,
            args=(cursors, by_id, shown),
        )
        _download_buttons(store)


def _back(cursors: list[int]) -> None:
    cursors.pop()


def _turn(cursors: list[int], by_id: bool, shown: list[int]) -> None:
    """Next: after the cards the user saw (decided ones stayed in place): by id, the last one shown;
    ranked, as many places on as the cards still in the ranking."""
    if by_id:
        cursors.append(max(shown))
    else:
        cursors.append((cursors[-1] if cursors else 0) + len(shown) - cards.state(GRID).gone)


def _original(store: Store, candidate_id: int) -> str | None:
    try:
        return store.get_candidate(candidate_id).image_url
    except LabelerError:
        return None


def _download_buttons(store: Store) -> None:
    st.subheader("Download")
    settings = store.settings()
    accepted = store.count_candidates(state="accepted")
    failed = store.count_candidates(state="failed")
    running = jobs.running_job(store, "download") is not None
    d = st.columns([1, 1, 2])
    d[0].button(
        # While one runs, what is accepted joins it (collect.download takes latecomers in).
        f"{accepted} accepted join the running download" if running else f"Download {accepted} accepted",
        type="primary",
        disabled=running or not accepted,
        on_click=act,
        args=(_launch_download, False),
        kwargs={"success": "{result}", "flash_to": DOWNLOAD_SLOT},
        width="stretch",
    )
    d[1].button(
        f"Retry {failed} failed",
        disabled=running or not failed,
        on_click=act,
        args=(_launch_download, True),
        kwargs={"success": "{result}", "flash_to": DOWNLOAD_SLOT},
        width="stretch",
    )
    d[2].caption(
        f"{settings.download_workers} parallel downloads, "
        f"{settings.max_bytes // 1_000_000} MB cap, images resized to {settings.max_side} px. "
        "Exact duplicates are skipped, near duplicates flagged."
    )
    refused = has_flash(DOWNLOAD_SLOT)
    show_flash(DOWNLOAD_SLOT)  # a refused download says why here, next to its button
    if refused:
        st.markdown("⚙️ [Download settings](/Settings): parallel downloads, size cap, private hosts.")


def _pick(options: tuple[str, ...], key: str, label: str) -> str:
    return str(choice(label, [ANY, *options], key))


with open_current() as store:
    project = store.name
    show_flash()
    settings = store.settings()
    classes = store.class_names()

    # -- search ------------------------------------------------------------------------
    # Open on a project with no candidates yet; its form is drawn only while open (kept_expander).
    with kept_expander("🔎 Search images", "s_box", expanded=store.count_candidates() == 0) as box:
        if box.open:
            st.caption("Thumbnails come straight from the search engine: nothing is downloaded until you accept it.")
            c1, c2 = st.columns([1, 2])
            target = choice("Class", [ALL, *classes], "s_class", where=c1)
            free = c2.text_input(
                "Free-text query (optional, for one class)",
                key="s_query",
                placeholder="e.g. gandalf the grey close-up",
                disabled=target == ALL,
            )
            c = st.columns(4)  # two rows of four: every filter in its column
            with c[0]:
                max_results = st.number_input("Results per query", 1, 500, settings.search_max_results)
                kind = _pick(TYPE_IMAGE, "s_type", "Type")
            with c[1]:
                layout = _pick(LAYOUT, "s_layout", "Layout")
                size = _pick(SIZE, "s_size", "Size")
            with c[2]:
                licence = _pick(LICENSE_IMAGE[1:], "s_license", "License")
                safe = choice("Safe search", SAFESEARCH, "s_safe")
            with c[3]:
                region = st.text_input("Region", key="s_region")
                delay = st.number_input("Pause between queries (s)", 0.0, 60.0, settings.search_delay)
            with error_boundary():
                planned = plan_queries(store, None if target == ALL else target, free if target != ALL else None)
                spec = SearchJob(
                    label=None if target == ALL else target,
                    query=(free.strip() or None) if target != ALL else None,
                    max=int(max_results),
                    type=kind,
                    size=None if size == ANY else size,
                    layout=None if layout == ANY else layout,
                    license=None if licence == ANY else licence,
                    safesearch=safe,
                    region=region,
                    delay=float(delay),
                )
                spec.options()  # validates before a job starts
                st.caption(
                    f"{len(planned)} quer{'y' if len(planned) == 1 else 'ies'}: "
                    + " · ".join(q for _, q in planned[:8])
                    + (" …" if len(planned) > 8 else "")
                )
                running = jobs.running_job(store, "search") is not None
                st.button(
                    "Search",
                    type="primary",
                    disabled=running or not planned,
                    on_click=act,
                    args=(_launch_search, spec, len(planned)),
                    kwargs={"success": "{result}"},
                )
            with st.popover("…or add a list of image URLs"):
                url_list_form(store, "search_urls")
    # The search and download jobs' progress right above the filters and the grid they fill: one line
    # each once they ended (the grid shows what they did), a bar with Cancel while they run.
    job_panels(project, [("search", "Search"), ("download", "Download")], ended=last_line)

    # -- review ------------------------------------------------------------------------
    # One row of filters; one Undo on this page: the grid's (its ↩ Undo button and Z), History at the end.
    # The widths keep "pending", "newest last" and "History" whole in a 1000 px window.
    f = st.columns([1, 1.15, 1.2, 1.4, 1.2, 1.1], vertical_alignment="bottom")
    history_menu(store, where=f[5])
    label = all_select("Class", classes, "f_class", where=f[0])
    query = all_select("Query", store.candidate_queries(label), "f_query", where=f[1])
    state = all_select("State", STATES, "f_state", where=f[2])
    sort = str(choice("Sort", list(SORT_LABELS), "f_sort", format_func=SORT_LABELS.__getitem__, where=f[3]))
    show = str(choice("Show", list(SHOW_LABELS), "f_show", format_func=SHOW_LABELS.__getitem__, where=f[4]))
    triage_panel(store, label, query)
    _review_grid(project, label, query, state, sort, show)
    follow_jobs(project, ("search", ScoreCandidatesJob.kind, "download"))
