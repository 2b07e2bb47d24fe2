"""The Review page's embedding map (an Altair scatter) and its "More like this" panel."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from lotr_labeler.imaging import thumbnail
from lotr_labeler.review import decisions, embedding_map, queue
from lotr_labeler.review.trust import scores_trust
from lotr_labeler.store import Store
from lotr_labeler.ui.choice import choice
from lotr_labeler.ui.context import act
from lotr_labeler.ui.widgets import image_thumb

SELECTION = "pick"  # the chart's point-selection parameter
TOOLTIP_THUMB = 64  # px; the hover preview
# Hover previews travel inside the chart spec as data URLs, sent again on every rerun of the tab
# (measured: 1,000 noisy 96 px thumbnails made an 8.7 MB spec and 1.7 s to build it). Past this
# budget, or this many points, the tooltip keeps its text only.
TOOLTIP_BYTES_MAX = 2_000_000
TOOLTIP_THUMBS_MAX = 1500
NEIGHBOURS = 8
SIMILAR = "_review_similar"
DOUBTED = "label doubted"  # the head prefers another class
FLAGGED = "flagged"  # a quality or near-duplicate flag
MARKERS = {"ok": "circle", FLAGGED: "square", DOUBTED: "cross"}  # the image whose "More like this" panel is open


def thumb_urls(
    store: Store,
    points: Sequence[embedding_map.MapPoint],
    size: int = TOOLTIP_THUMB,
    budget: int = TOOLTIP_BYTES_MAX,
) -> dict[int, str]:
    """Each point's cached thumbnail as a ``data:`` URL (the browser cannot read files under cache/);
    none when there are more than ``TOOLTIP_THUMBS_MAX`` points or they exceed ``budget`` bytes."""
    out: dict[int, str] = {}
    if len(points) > TOOLTIP_THUMBS_MAX:
        return out
    total = 0
    for p in points:
        try:
            data = thumbnail(p.path, store.cache_dir, p.sha256, size).read_bytes()
        except OSError:
            continue  # a missing file: the tooltip shows the text only
        out[p.id] = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        total += len(out[p.id])
        if total > budget:
            return {}
    return out


def map_chart(points: Sequence[embedding_map.MapPoint], thumbs: Mapping[int, str]) -> Any:
    """A scatter coloured by label; doubted labels are crosses, flagged images squares; hover shows
    the thumbnail; a click selects the point (``picked_id``)."""
    import altair as alt
    import pandas as pd

    rows = [
        {
            "id": p.id,
            "x": p.x,
            "y": p.y,
            "label": p.label,
            "predicted": p.predicted or "not scored",
            "p_given": None if p.self_confidence is None else round(p.self_confidence, 3),
            "flags": ", ".join(p.flags) or "-",
            "marker": marker(p),
            "image": thumbs.get(p.id, ""),
        }
        for p in points
    ]
    pick = alt.selection_point(name=SELECTION, fields=["id"], on="click")
    tooltip = ["id:Q", "label:N", "predicted:N", "p_given:Q", "flags:N"]
    if thumbs:
        tooltip.insert(0, "image:N")  # vega-tooltip renders the "image" entry as a picture
    return (
        alt.Chart(pd.DataFrame(rows))
        .mark_point(filled=True)
        .encode(
            x=alt.X("x:Q", axis=None),
            y=alt.Y("y:Q", axis=None),
            color=alt.Color("label:N", title="Label", scale=alt.Scale(scheme="tableau10")),
            shape=alt.Shape(
                "marker:N",
                title="Suspicious?",
                scale=alt.Scale(domain=list(MARKERS), range=list(MARKERS.values())),
            ),
            size=alt.condition(pick, alt.value(260), alt.value(70)),
            opacity=alt.condition(alt.datum.marker == DOUBTED, alt.value(1.0), alt.value(0.6)),
            tooltip=tooltip,
        )
        .add_params(pick)
        .properties(height=520)
    )


def marker(p: embedding_map.MapPoint) -> str:
    """Why a point looks suspicious, if it does: a doubted label outranks a flag."""
    return DOUBTED if p.disagrees else FLAGGED if p.flags else "ok"


def picked_id(event: Any) -> int | None:
    """The image id of the clicked point in ``st.altair_chart``'s selection state, if any."""
    try:
        chosen = event["selection"][SELECTION]
    except (KeyError, TypeError):
        return None
    if not chosen:
        return None
    value = chosen[0].get("id") if isinstance(chosen[0], Mapping) else None
    return int(value) if isinstance(value, int | float) else None


def open_similar(project: str, image_id: int) -> None:
    st.session_state[SIMILAR] = (project, image_id)


def similar_for(project: str) -> int | None:
    """The image of ``project`` whose "More like this" panel is open (another project's: none)."""
    value = st.session_state.get(SIMILAR)
    return int(value[1]) if isinstance(value, tuple) and value[0] == project else None


def _close() -> None:
    st.session_state.pop(SIMILAR, None)


def similar_panel(store: Store, image_id: int, classes: list[str], thumb: int, prefix: str) -> None:
    """The ``NEIGHBOURS`` images nearest to ``image_id`` with one-click relabel (``prefix`` keys
    the widgets: the panel can show in two tabs at once)."""
    it = queue.item(store, image_id, ())
    neighbours = embedding_map.similar(store, image_id, NEIGHBOURS)
    default = it.predicted if it.disagrees and it.predicted in classes else it.given
    with st.container(border=True):
        head = st.columns([4, 2, 2, 1])
        head[0].markdown(
            f"**More like #{image_id}** (**{it.given}**"
            + (f", predicted {it.predicted}" if it.disagrees else "")
            + f") · {len(neighbours)} nearest by embedding"
        )
        to = choice(
            "Relabel to",
            classes,
            f"{prefix}_to_{image_id}",
            index=classes.index(default) if default in classes else 0,
            label_visibility="collapsed",
            where=head[1],
        )
        others = [
            i for i, label in [(image_id, it.given), *((n.image.id, n.image.label) for n in neighbours)] if label != to
        ]
        if scores_trust(store).weak:  # its neighbours are no evidence: one at a time, each looked at
            head[2].caption("Weak model: relabel the neighbours one by one.")
        else:
            head[2].button(
                f"All {len(others)} to {to}",
                key=f"{prefix}_all_{image_id}",
                help="Relabel this image and its neighbours shown here (one action, one undo)",
                disabled=not others,
                on_click=act,
                args=(decisions.relabel, others, to),
                width="stretch",
            )
        head[3].button("✕", key=f"{prefix}_close_{image_id}", help="Close", on_click=_close, width="stretch")
        if not neighbours:
            st.caption("No other image has an embedding yet.")
        for col, n in zip(st.columns(NEIGHBOURS), neighbours, strict=False):
            with col:
                image_thumb(store, n.image, thumb)
                st.caption(f"#{n.image.id} · **{n.image.label}** · {n.similarity:.2f}")
                if n.image.label != to:
                    st.button(
                        f"→ {to}",
                        key=f"{prefix}_to_{image_id}_{n.image.id}",
                        help=f"Relabel #{n.image.id} to {to}",
                        on_click=act,
                        args=(decisions.relabel, [n.image.id], to),
                        width="stretch",
                    )
