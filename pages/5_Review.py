"""Review: the images the model disagrees with, worst first; fix them in one click, retrain the head in seconds."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import streamlit as st

from lotr_labeler.errors import InvalidInput
from lotr_labeler.imaging import thumbnail
from lotr_labeler.jobs import table as jobs
from lotr_labeler.jobs.specs import EmbedJob, TrainJob
from lotr_labeler.model import backbones, embed, runs, train_form
from lotr_labeler.review import compute, decisions, duplicates, embedding_map, head, instant, last_fit, quality, queue
from lotr_labeler.review.trust import run_body_worth_trying, scores_trust
from lotr_labeler.settings import Settings
from lotr_labeler.store import ImageRow, Store
from lotr_labeler.ui import cards, review_map
from lotr_labeler.ui.choice import choice
from lotr_labeler.ui.context import (
    act,
    error_boundary,
    open_current,
    project_store,
    remember_widgets,
    show_flash,
)
from lotr_labeler.ui.grid import PAGE_KEYS, page_view, pager, reset_page
from lotr_labeler.ui.jobs import follow_jobs, job_panel
from lotr_labeler.ui.widgets import (
    ALL,
    all_select,
    compact_page,
    image_thumb,
    label_select,
    restore_button,
    undo_and_history,
)

st.set_page_config(page_title="Review · lotr_labeler", page_icon="🩺", layout="wide")
compact_page()
st.title("Review")
HOW = (
    "Every image gets an out-of-sample score: a light head on cached backbone embeddings, trained with "
    "K-fold cross-validation, so no image is judged by a model that learned its own label."
)
DUP_COLUMNS = 6  # pictures per row of a duplicate group, each at most its thumbnail size
GRID = "r_grid"  # the Label issues card grid
VIEWS = ("Label issues", "Duplicates", "Map", "Corrections")  # the page's tabs (key r_tab)
# Buttons whose outcome shows at the page's top (show_flash), not in the grid's message line.
PAGE_BUTTONS = ("undo", "r_compute", "r_retrain_head", "r_full_retrain", "r_instant_current")
PAGE_BUTTON_PREFIXES = ("r_dup_all_", "r_dup_rl_", "r_dup_one_")
ITEMS = "_review_items"  # the queue (a lazy queue.Ranking) of a full run, handed to the grid fragment once
SOURCES = {
    "best": "Best on your labels (tries each available one, cross-validated)",
    "bundled": "EfficientNet-Lite0, ImageNet weights (bundled)",
    "run": "Current model's body",
    "imagenet": "ResNet18, ImageNet weights",
    "random": "ResNet18, random init (offline, weaker)",
    "file": "ResNet18, weights file",
}
DEFAULTS = {
    "r_class": ALL,
    "r_pred": ALL,
    "r_split": ALL,
    "r_flag": ALL,
    "r_status": "unreviewed",
    "r_sort": "self_confidence",
    "r_weights": "",
    "r_dup_show": False,
}
remember_widgets(DEFAULTS)


# -- actions (widget callbacks through ui.context.act) ------------------------------------------


def _relabel_from(store: Store, ids: list[int], key: str) -> int:
    return decisions.relabel(store, ids, st.session_state[key])


def _keep_only(store: Store, keep_id: int, ids: list[int]) -> str:
    moved = duplicates.keep_one(store, keep_id, ids)
    if not moved:
        return f"Kept #{keep_id}: nothing else left in its group."
    return f"Kept #{keep_id}; moved {moved} duplicate{'' if moved == 1 else 's'} to the trash — ↩ Undo restores them."


def _dup_thumb(store: Store, img: ImageRow, size: int) -> None:
    """A duplicate's thumbnail at its own size (at most ``size``), not stretched to its column."""
    try:
        st.image(str(thumbnail(store.path(img), store.cache_dir, img.sha256, size)), width="content")
    except OSError:
        st.warning(f"File missing: {img.relpath}")


BACKBONE = "_r_backbone"  # (source, size) of the backbone widgets, kept while the user is on other pages
INSTANT = "_r_instant"  # (project, fit time, instant.HeadCheck) of the last Retrain head


def _retrain_head(store: Store) -> str:
    """Refresh every score; judge the instant model (no files, the current model stays current)."""
    done = compute.retrain_head(store)
    st.session_state[INSTANT] = (store.name, done.fit.info.computed_at, done.check)
    scored = done.fit.summary(compute="**⚙ Backbone → Compute**")  # the button that embeds the new ones
    return f"{scored} The current model is unchanged: make the instant model current below if it is better."


def _make_instant_current(store: Store) -> str:
    done = compute.retrain_head(store, build=True)  # what the CLI's --retrain-head --make-current runs
    assert done.made is not None
    st.session_state.pop(INSTANT, None)
    return f"{done.made.summary()} It is now the current model: Predict, `serve` and `export` use it."


def _instant_offer(store: Store, info: last_fit.FitInfo | None, run: runs.Run | None) -> None:
    """After Retrain head: the instant model's valid error beside the current run's, and the one button
    that deploys it (building it takes seconds; the deployed model changes only here)."""
    kept = st.session_state.get(INSTANT)
    if info is None or not kept or kept[0] != store.name or kept[1] != info.computed_at:
        return
    check: instant.HeadCheck = kept[2]
    c = st.columns([4, 1.3], vertical_alignment="center")
    c[0].markdown(check.beside(run, strong=lambda figure: f"**{figure}**"))
    c[1].button(
        "Make it current",
        key="r_instant_current",
        help="Build the instant model (seconds) and make it the model Predict, serve and export use",
        on_click=act,
        args=(_make_instant_current,),
        kwargs={"success": "{result}"},
        width="stretch",
    )


def _backbone(store: Store, source: str, size: int | None) -> embed.Backbone:
    if source == "best":  # the job chooses; count against the last fit's (or the default) backbone
        return last_fit.fit_backbone(store, size=size)
    if source in ("run", "bundled"):
        return embed.resolve_backbone(store, source, size=size)
    if source == "file":
        weights = st.session_state.get("r_weights", "").strip()
        if not weights:
            raise InvalidInput("Give the path of a torchvision resnet18 weights file (.pth).")
        return embed.resolve_backbone(store, "imagenet", weights=weights, size=size)
    return embed.resolve_backbone(store, "imagenet", pretrained=source == "imagenet", size=size)


def _compute(store: Store, source: str, size: int | None) -> str:
    if source == "best":
        EmbedJob(backbone="best", size=size).launch(store)
        return (
            "Trying each available backbone on a sample; the one whose head is most accurate on your labels "
            "embeds everything. Scores refresh when it finishes."
        )
    backbone = _backbone(store, source, size)
    EmbedJob.of(backbone).launch(store)
    return f"Computing embeddings with the {backbone.describe()}; scores refresh when it finishes."


def _full_retrain(store: Store) -> str:
    TrainJob.of(train_form.last_params(store)).launch(store)  # the current run's settings
    return "Full training started (follow it on the Train page). Compute embeddings with the new model after."


# -- pieces -----------------------------------------------------------------------------------


@st.fragment
def card(
    project: str, image_id: int, classes: list[str], flags: tuple[str, ...], thumb: int, prefix: str = "r"
) -> None:
    """One image. A click reruns this card only, not the whole page. ``prefix`` keys its widgets
    (the Map tab shows a card that may also be in the grid)."""
    show_flash()  # a callback's error lands in the card that caused it
    with project_store(project) as store:
        it = queue.item(store, image_id, flags)
        with st.container(border=True):
            image_thumb(store, it.image, thumb)
            _card_body(it, classes, prefix)
            if it.scored and st.button(
                "🔍 More like this",
                key=f"{prefix}_more_{image_id}",
                help="The nearest images by embedding, to relabel the rest of a cluster",
                width="stretch",
            ):
                review_map.open_similar(project, image_id)
                st.rerun()  # the whole page: the panel shows under the card's row


def _card_body(it: queue.ReviewItem, classes: list[str], prefix: str = "r") -> None:
    image_id = it.id
    if it.scored:
        verdict = "✓ agrees" if not it.disagrees else f"→ **{it.predicted}** ({it.confidence or 0:.0%})"
        st.caption(
            f"#{it.id} · **{it.given}** {verdict}\n\n"
            f"p(given) {it.self_confidence or 0:.2f} · margin {it.margin or 0:+.2f} · {it.image.split}"
        )
    else:
        st.caption(f"#{it.id} · **{it.given}** · not scored yet · {it.image.split}")
    if it.flags:
        st.caption("⚠️ " + ", ".join(it.flags))
    if it.image.deleted:
        st.caption("🗑 deleted")
        restore_button(f"{prefix}_restore_{image_id}", image_id)
        return
    a, c = st.columns([3, 1])
    if it.reviewed:
        a.button(
            "↺ Back to queue",
            key=f"{prefix}_unkeep_{image_id}",
            help="Reviewed already. Put it back in the queue",
            on_click=act,
            args=(decisions.unreview, [image_id]),
            width="stretch",
        )
    else:
        a.button(
            "✓ Keep",
            key=f"{prefix}_keep_{image_id}",
            help="The label is right: out of the queue",
            on_click=act,
            args=(decisions.keep, [image_id]),
            width="stretch",
        )
    c.button(
        "🗑",
        key=f"{prefix}_del_{image_id}",
        help="Delete (to the trash; undo restores)",
        on_click=act,
        args=(decisions.delete, [image_id]),
        width="stretch",
    )
    if it.disagrees and it.predicted is not None:
        st.button(
            f"→ {it.predicted}",
            key=f"{prefix}_to_{image_id}",
            help=f"Relabel to {it.predicted}, the model's choice",
            type="primary",
            on_click=act,
            args=(decisions.relabel, [image_id], it.predicted),
            width="stretch",
        )
    key = f"{prefix}_label_{image_id}_{it.image.class_id}"
    label_select("Label", classes, it.given, key, _relabel_from, [image_id], key)


def _warm_head() -> None:
    """scikit-learn imported in the background, once per session, for ⚡ Retrain head (see the page's end)."""
    if not st.session_state.get("_review_warm"):
        head.warm_up()
        st.session_state["_review_warm"] = True


def _review_action(store: Store, act: cards.GridAction, project: str) -> cards.Message:
    """The grid's action; the first one also warms scikit-learn up: a correction is a retrain to come."""
    _warm_head()
    return cards.review_action(store, act, more=functools.partial(review_map.open_similar, project))


@st.fragment
def _issues_grid(project: str, filters: dict[str, Any], offset: int, limit: int, hint_only: bool) -> None:
    """The cards of the queue page. An action reruns only this fragment (the ranking again, so kept
    cards leave the queue); a full run hands its ranking over instead of computing it twice."""
    with project_store(project) as store, error_boundary():
        items = st.session_state.pop(ITEMS, None)
        if items is None:
            items = queue.queue(store, **filters)
        thumb = store.settings().thumb_size
        fit = last_fit.fit_info(store)
        cards.grid(
            GRID,
            [cards.review_card(store, it, thumb) for it in items[offset : offset + limit]],
            classes=store.class_names(),
            actions=("keep", "unkeep", "delete", "restore", "relabel", "predict", "undo", "more"),
            on_action=functools.partial(_review_action, project=project),
            columns=store.settings().grid_columns,
            hint_only=hint_only,
            large=cards.large_image(store),
            keys_help=PAGE_KEYS,
            empty="Nothing to review here."
            if fit is not None
            else "Nothing scored yet: press Compute above. Quality filters work already.",
            # A kept or relabeled card leaves the queue but stays in place, marked, until the page turns.
            # A new fit ranks the queue anew: the page is drawn fresh then.
            view=page_view("review", sorted(filters.items()), fit.computed_at if fit else ""),
            fetch=cards.review_fetch(store, thumb),
            limit=limit,
            undo_button=False,  # the page's ↩ Undo above the tabs is the same Store.undo (Z works here too)
        )


def _embedding_ended(info: last_fit.FitInfo | None) -> Callable[[jobs.Job], None]:
    """A failed or cancelled embedding job is shown until a newer fit replaces its outcome."""

    def ended(job: jobs.Job) -> None:
        if job.state != "done" and (info is None or (job.finished_at or "") >= info.computed_at):
            st.warning(f"Last embedding job {job.state}: {job.message}")

    return ended


def _initial_backbone(info: last_fit.FitInfo | None, run: runs.Run | None, settings: Settings) -> tuple[str, int]:
    """Backbone choice and size to start with: the last fit's, else the best on the labels (the run's size
    when there is one)."""
    if info is not None:
        b = info.backbone_spec
        if b.kind != "run" or (run is not None and b.run_id == run.id):
            source = (
                "run"
                if b.kind == "run"
                else "bundled"
                if b.kind == backbones.BUNDLED and b.pretrained
                else "file"
                if b.weights
                else "imagenet"
                if b.pretrained
                else "random"
            )
            return source, b.size
    if run is not None:
        return "best", int(run.params.get("size") or settings.embed_size)
    return "best", settings.embed_size


def _map_tab(store: Store, project: str, classes: list[str], thumb: int, similar_to: int | None) -> None:
    st.caption(
        "Every embedded image placed by similarity: colour = label, ✚ = the head prefers another class, "
        "■ = a quality or near-duplicate flag. A point of one colour inside another's cluster is likely mislabeled. "
        "Hover for the picture; click a point to open its card below."
    )
    method = st.segmented_control(
        "Layout",
        list(embedding_map.METHODS),
        key="r_map_method",
        format_func={"auto": "Auto", "tsne": "t-SNE", "pca": "PCA"}.__getitem__,
        help=f"Auto: t-SNE up to {embedding_map.TSNE_MAX} images (clusters apart), PCA above (instant)",
    )
    with st.spinner("Placing the images (once per embedding set; cached)…"):
        m = embedding_map.embedding_map(store, method=method or "auto")
        points = m.points
        thumbs = review_map.thumb_urls(store, points)  # thumbnails made once, cached on disk
    st.caption(
        f"{len(points)} image(s) · {'t-SNE' if m.method == 'tsne' else 'PCA'} of the {m.backbone} embeddings · "
        f"{sum(p.disagrees for p in points)} label(s) doubted · {sum(bool(p.flags) for p in points)} flagged"
        + (f" · {m.missing} without an embedding yet (Compute above)" if m.missing else "")
        + ("" if thumbs or not points else " · too many images for hover previews: click a point to see it")
    )
    event = st.altair_chart(
        review_map.map_chart(points, thumbs),
        key="r_map",
        on_select="rerun",
        selection_mode=review_map.SELECTION,
        width="stretch",
    )
    picked = review_map.picked_id(event)
    if picked is None:
        st.caption("Click a point to open its card here.")
        return
    flags = next((p.flags for p in points if p.id == picked), ())
    cols = st.columns(4)
    with cols[0]:
        card(project, picked, classes, flags, thumb, "rm")
    if similar_to == picked:
        review_map.similar_panel(store, picked, classes, thumb, "rms")


def _page_acted() -> bool:
    """Whether a page-level button (↩ Undo above the tabs, Compute / Retrain, a duplicate group's) was
    clicked for this run: a button's state is True on the run its click starts, and only then."""
    state = st.session_state
    clicked = [str(key) for key in list(state.keys()) if state.get(key) is True]
    return any(key in PAGE_BUTTONS or key.startswith(PAGE_BUTTON_PREFIXES) for key in clicked)


# -- the page ---------------------------------------------------------------------------------

with open_current() as store:
    project = store.name
    if _page_acted():  # its outcome shows here: the grid's line would still tell the previous grid action's
        cards.state(GRID).message = None
    show_flash()
    settings = store.settings()
    classes = store.class_names()
    n_images = store.count()
    run = runs.current_run(store)
    info = last_fit.fit_info(store)
    thumb_size = settings.thumb_size

    if not n_images:
        st.info("No images to review yet. Import a folder on the Dataset page, or search and download first.")
        st.stop()

    # -- model, embeddings, retraining ----------------------------------------------------------
    # What made the cards' predictions: the K-fold head (the run only where it was averaged in), not the run.
    trust = scores_trust(store)
    if trust.weak:  # above every tab: the map and the duplicates show the head's view too
        st.warning(f"⚠️ {trust.reason} Its predictions show as a quiet hint on the cards (P still accepts one).")
    if trust.note:
        st.warning(f"⚠️ {trust.note}")
    since = 0  # corrections since the last fit
    with st.container(border=True):
        if info is None:
            st.markdown("**No scores yet.** Compute embeddings once (cached by image content), then review.")
        else:
            st.markdown(
                f"**Scores** of {info.scored} image(s) from a {info.folds}-fold head on the "
                f"{info.backbone_spec.short} · {info.computed_at[:16].replace('T', ' ')} UTC"
                + (f" · validation images averaged with run {info.run_id}" if info.run_id else ""),
                help=f"Backbone: the {info.backbone_spec.describe()}.",  # in full, one line less on the page
            )
            if not trust.weak:
                st.caption(trust.reason)
            since = last_fit.corrections_since_fit(store)
            if since:
                st.caption(f"{since} change(s) since: ⚡ Retrain head to refresh every score (seconds).")
            if info.backbone_reason:
                st.caption(f"Backbone chosen by cross-validation — {info.backbone_reason}")
            if run is not None and run_body_worth_trying(info, run):
                st.caption(f"A model (run {run.id}) exists: compute embeddings with its body for sharper scores.")

        if st.session_state.get("_r_backbone_for") != project:  # first visit: the last fit's backbone
            st.session_state["_r_backbone_for"] = project
            st.session_state["r_source"], st.session_state["r_size"] = st.session_state[BACKBONE] = _initial_backbone(
                info, run, settings
            )
            if info is not None and info.backbone_spec.weights:
                st.session_state["r_weights"] = info.backbone_spec.weights
        # The widgets' values die with a visit to another page (Streamlit drops the state of widgets a run
        # did not draw): they came back as "best" at 32 px. BACKBONE keeps the choice across visits.
        if "r_source" not in st.session_state or "r_size" not in st.session_state:
            st.session_state["r_source"], st.session_state["r_size"] = st.session_state[BACKBONE]
        sources = [s for s in SOURCES if s != "run" or run is not None]
        # Images the chosen backbone has not embedded yet (imported since): counted before the row, so the
        # folded popover's label says so; its Compute embeds them.
        missing_count = n_images
        with error_boundary(show=None) as unusable:  # shown in the box, beside the field to fix
            chosen = _backbone(store, st.session_state["r_source"], int(st.session_state["r_size"]))
            missing_count = len(embed.missing(store, chosen))
        # One row: the head's quick refit, the full retrain, the backbone (inline until the first scores,
        # then folded in a popover), Undo and History.
        row = st.columns([1.25, 1.25, 1.3, 0.9, 1], vertical_alignment="bottom")
        folded = f"⚙ Backbone · {missing_count} new" if missing_count else "⚙ Backbone"
        box = st.container() if info is None else row[2].popover(folded, width="stretch")
        with box:
            st.caption(HOW)
            cols = st.columns([2, 1, 1.2], vertical_alignment="bottom")
            source = choice("Backbone", sources, "r_source", format_func=SOURCES.__getitem__, where=cols[0])
            size = int(cols[1].number_input("Size (px)", 32, 1024, step=32, key="r_size"))
            st.session_state[BACKBONE] = (source, size)
            if source == "file":
                st.text_input("Weights file (torchvision resnet18 .pth)", key="r_weights")
            elif source == "imagenet" and not embed.imagenet_weights_cached():
                st.caption(
                    f"The ImageNet weights ({embed.IMAGENET_WEIGHTS_FILE}, 45 MB) download on first use: that "
                    "needs internet (or once in your weights folder, Settings). Offline, the bundled "
                    "EfficientNet-Lite0 needs no download."
                )
            if unusable.message is not None:
                st.error(unusable.message)
            embedding_running = jobs.running_job(store, "review") is not None
            cols[2].button(
                f"Compute ({missing_count} new)" if missing_count else "Compute scores",
                key="r_compute",
                type="primary" if info is None or missing_count else "secondary",
                disabled=embedding_running,
                help="Embeds the images not cached yet (a background job), then fits the head",
                on_click=act,
                args=(_compute, source, size),
                kwargs={"success": "{result}"},
                width="stretch",
            )
        row[0].button(
            "⚡ Retrain head",
            key="r_retrain_head",
            disabled=info is None,
            help="Refit the head on the cached embeddings and refresh every score (a fraction of a second); "
            "then compare the instant model with the current one and make it current if you want",
            on_click=act,
            args=(_retrain_head,),
            kwargs={"success": "{result}"},
            width="stretch",
        )
        row[1].button(
            "🏋️ Full retrain",
            key="r_full_retrain",
            disabled=jobs.running_job(store, "train") is not None,
            help="Fine-tune the whole network on the corrected labels (minutes; the Train page shows progress)",
            on_click=act,
            args=(_full_retrain,),
            kwargs={"success": "{result}"},
            width="stretch",
        )
        undo_and_history(store, where=(row[3], row[4]))
        _instant_offer(store, info, run)
        job_panel(project, "review", "Embedding", ended=_embedding_ended(info))

    # The views as tabs that draw only the chosen one: Streamlit's st.tabs cost every load of this page
    # ~0.2 s in the browser (its element's code), and drew each tab's content, hidden, on every run.
    view = choice("View", VIEWS, "r_tab", tabs=True, label_visibility="collapsed")
    similar_to = review_map.similar_for(project)

    # -- label issues -----------------------------------------------------------------------------
    if view == VIEWS[0]:
        with error_boundary():
            # Split's values are short: its width goes to Show and Sort by, whole at 1000 px ("unreviewed").
            f = st.columns([0.9, 0.9, 0.85, 0.85, 1.3, 1.5])
            label = all_select("Class", classes, "r_class", where=f[0])
            pred = all_select("Predicted", classes, "r_pred", where=f[1])
            split = all_select("Split", ["train", "valid"], "r_split", where=f[2])
            flag = all_select("Flag", ["any", *quality.FLAGS, *queue.STORE_FLAGS], "r_flag", where=f[3])
            status = choice("Show", list(queue.STATUSES), "r_status", where=f[4])
            sort = choice(
                "Sort by",
                list(queue.SORTS),
                "r_sort",
                format_func={"self_confidence": "p(given label)", "margin": "margin"}.__getitem__,
                where=f[5],
            )
            for k in ("r_class", "r_pred", "r_split", "r_flag", "r_status", "r_sort"):
                if st.session_state.get(f"_prev_{k}") != st.session_state[k]:
                    reset_page("review")
                    st.session_state[f"_prev_{k}"] = st.session_state[k]
            unmeasured = queue.unmeasured(store)
            filters: dict[str, Any] = {
                "sort": sort,
                "label": label,
                "predicted": pred,
                "split": split,
                "flag": flag,
                "status": status,
                "compute_quality": unmeasured <= queue.PAGE_QUALITY_LIMIT,
            }
            items = queue.queue(store, **filters)
            if unmeasured > queue.PAGE_QUALITY_LIMIT:
                st.caption(f"Quality flags of {unmeasured} image(s) are measured with the embeddings (Compute).")
            page_size = settings.page_size
            offset = pager(len(items), page_size, "review", gone=cards.state(GRID).gone, keys=True)
            if similar_to is not None:  # "More like this" (M or 🔍 on a card): the nearest images, above the grid
                review_map.similar_panel(store, similar_to, classes, thumb_size, "rs")
            st.session_state[ITEMS] = items
            _issues_grid(project, filters, offset, page_size, trust.weak)
    follow_jobs(project, ("review", "train"))

    # -- near duplicates ----------------------------------------------------------------------------
    with error_boundary():
        # Only while chosen (as the Map): its 60 thumbnails and buttons, rendered hidden, took seconds
        # of a 20,000-image project's page load in the browser.
        if view == VIEWS[1]:
            show_all = st.toggle("Show groups already kept", key="r_dup_show")
            groups = duplicates.duplicate_groups(store, include_reviewed=show_all)
            conflicts = sum(g.conflict for g in groups)
            st.caption(
                f"{len(groups)} group(s) of near duplicates (phash distance ≤ {settings.near_dup_distance}); "
                f"{conflicts} with different labels, shown first."
            )
            if not groups:
                st.info("No near duplicates to look at.")
            offset = pager(len(groups), 10, "review_dups")
            for g in groups[offset : offset + 10]:
                with st.container(border=True):
                    top = st.columns([3, 1, 2, 1])
                    top[0].markdown(
                        ("⚠️ **labels disagree**: " if g.conflict else "Same label: ")
                        + ", ".join(g.labels)
                        + f" · {len(g.images)} images · "
                        + (
                            "same perceptual hash (distance 0)"
                            if g.max_distance == 0
                            else f"distance ≤ {g.max_distance}"
                        )
                    )
                    top[1].button(
                        "Keep all",
                        key=f"r_dup_all_{g.ids[0]}",
                        help="They are different enough: hide this group",
                        on_click=act,
                        args=(duplicates.keep_all, g.ids),
                        width="stretch",
                    )
                    # Keyed by the group's label: after a relabel the picker starts from the new majority.
                    majority = g.majority_label
                    to_key = f"r_dup_to_{g.ids[0]}_{majority}"
                    choice(
                        "All to",
                        classes,
                        to_key,
                        index=classes.index(majority) if majority in classes else 0,
                        label_visibility="collapsed",
                        where=top[2],
                    )
                    top[3].button(
                        "Relabel all",
                        key=f"r_dup_rl_{g.ids[0]}",
                        help=f"Give all {len(g.images)} the class picked on the left (one step, undoable)",
                        on_click=act,
                        args=(_relabel_from, g.ids, to_key),
                        width="stretch",
                    )
                    for col, img in zip(st.columns(DUP_COLUMNS), g.images[:DUP_COLUMNS], strict=False):
                        with col:
                            _dup_thumb(store, img, thumb_size)
                            st.caption(f"#{img.id} · **{img.label}** · {img.split} · {img.width}×{img.height}")
                            st.button(
                                "Keep only this",
                                key=f"r_dup_one_{g.ids[0]}_{img.id}",
                                help="Delete the others of the group (undo restores)",
                                on_click=act,
                                args=(_keep_only, img.id, g.ids),
                                kwargs={"success": "{result}"},
                                width="stretch",
                            )
                    if len(g.images) > DUP_COLUMNS:
                        rest = g.ids[DUP_COLUMNS:]
                        st.caption(f"…and {len(rest)} more: {', '.join(f'#{i}' for i in rest)}")

    # -- the embedding map ---------------------------------------------------------------------------
    with error_boundary():
        if view == VIEWS[2]:
            _map_tab(store, project, classes, thumb_size, similar_to)

    # -- corrections --------------------------------------------------------------------------------
    if view == VIEWS[3]:
        events = [e for e in store.history(50) if e.kind in ("relabel", "delete", "restore")]
        if not events:
            st.caption("No corrections yet.")
        for e in events:
            mark = "~~" if e.undone else ""
            st.markdown(f"{mark}{e.summary}{mark} · {e.at[:16].replace('T', ' ')}" + (" · undone" if e.undone else ""))
        st.caption("↩ Undo (above) reverts the newest change exactly: label, folder and trash state.")

# Last, once the page is drawn, and only when ⚡ Retrain head has something to refresh: scikit-learn loads
# in a background thread so its first click is quick. Its ~2 s of imports hold the GIL against any script
# meanwhile (the next page's first load took 0.4-0.8 s longer), so a visit with nothing to retrain skips it.
if since:
    _warm_head()
