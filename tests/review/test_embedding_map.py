"""The embedding map (2-D projection, cached by the embedding set), "More like this" neighbours,
the CLI `review similar` and the Review page's Map tab."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import choice_view, grid_send, image_bytes, pick, shape_image
from streamlit.testing.v1 import AppTest

from lotr_labeler.errors import Conflict, InvalidInput, NotFound
from lotr_labeler.imaging import normalize
from lotr_labeler.model import embed
from lotr_labeler.review import decisions, fitting
from lotr_labeler.review import embedding_map as emap
from lotr_labeler.store import Store
from lotr_labeler.ui import review_map

DIM = 16


def backbone(store: Store) -> embed.Backbone:
    return embed.resolve_backbone(store, "imagenet", pretrained=False, size=32)


def plant(store: Store, vectors: dict[int, np.ndarray]) -> None:
    """Put known vectors in the embedding cache of ``backbone`` (as the embedding job would)."""
    cache = embed.cache_for(store, backbone(store))
    shas = [store.get_image(i).sha256 for i in vectors]
    cache.add(shas, np.stack([np.asarray(v, dtype=np.float32) for v in vectors.values()]))
    cache.save()


def class_clusters(store: Store, seed: int = 0) -> dict[int, np.ndarray]:
    """One tight, non-negative blob per class (like pooled ReLU features)."""
    rng = np.random.default_rng(seed)
    centres = {c: rng.uniform(0, 1, DIM) for c in store.class_names()}
    return {
        img.id: np.maximum(centres[img.label] + rng.normal(0, 0.05, DIM), 0).astype(np.float32)
        for img in store.images()
    }


def nearest_centroid_accuracy(coords: np.ndarray, y: np.ndarray) -> float:
    centroids = np.stack([coords[y == c].mean(axis=0) for c in np.unique(y)])
    pred = np.argmin(((coords[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    return float((pred == y).mean())


# -- the projection ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projection_is_2d_and_keeps_clusters_apart(method: str) -> None:
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 1, (4, 64))
    y = np.repeat(np.arange(4), 40)
    X = np.maximum(centres[y] + rng.normal(0, 0.1, (len(y), 64)), 0)
    coords = emap.project_2d(X, method)
    assert coords.shape == (160, 2) and np.isfinite(coords).all()
    assert nearest_centroid_accuracy(coords, y) >= 0.95
    # Deterministic: the same embeddings give the same map.
    assert np.allclose(coords, emap.project_2d(X, method))


def test_projection_of_tiny_sets_and_method_choice() -> None:
    assert emap.project_2d(np.ones((1, 8))).shape == (1, 2)
    assert emap.project_2d(np.eye(2, 8)).shape == (2, 2)
    assert emap.project_2d(np.random.default_rng(0).random((4, 8))).shape == (4, 2)
    assert emap.choose_method("auto", emap.TSNE_MAX) == "tsne"
    assert emap.choose_method("auto", emap.TSNE_MAX + 1) == "pca"
    with pytest.raises(InvalidInput, match=r"'umap'.*auto, tsne, pca"):
        emap.choose_method("umap", 10)


@pytest.mark.slow
def test_map_points_labels_and_suspicious(store: Store) -> None:
    vectors = class_clusters(store)
    plant(store, vectors)
    # One image sits in the circle cluster but carries the square label: the head doubts it.
    odd = store.images("circle")[0]
    store.relabel([odd.id], "square")
    fitting.fit_scores(store, backbone(store))
    m = emap.embedding_map(store)  # the backbone of the stored scores
    assert len(m.points) == 18 and m.missing == 0 and m.method == "tsne"
    assert [p.id for p in m.points] == sorted(img.id for img in store.images())
    point = {p.id: p for p in m.points}
    assert point[odd.id].label == "square" and point[odd.id].predicted == "circle"
    assert point[odd.id].suspicious
    assert [p.id for p in m.points if p.disagrees] == [odd.id]
    assert {p.id for p in m.points if p.suspicious} == {odd.id} | {p.id for p in m.points if p.flags}
    # The mislabeled image is placed among the circles, not the squares.
    coords = np.array([[p.x, p.y] for p in m.points])
    ids = [p.id for p in m.points]
    circles = [ids.index(img.id) for img in store.images("circle")]
    squares = [ids.index(img.id) for img in store.images("square") if img.id != odd.id]
    here = coords[ids.index(odd.id)]
    assert np.linalg.norm(coords[circles].mean(0) - here) < np.linalg.norm(coords[squares].mean(0) - here)


def test_map_is_cached_by_the_embedding_set(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    plant(store, class_clusters(store))
    first = emap.embedding_map(store, backbone=backbone(store))
    assert not first.cached

    def no_projection(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("projection recomputed")

    monkeypatch.setattr(emap, "project_2d", no_projection)
    again = emap.embedding_map(store, backbone=backbone(store))
    assert again.cached and [(p.x, p.y) for p in again.points] == [(p.x, p.y) for p in first.points]
    # Labels and deletions do not move anything: the cache still covers every point.
    img = store.images("triangle")[0]
    store.relabel([img.id], "circle")
    store.delete_images([store.images("square")[0].id])
    after = emap.embedding_map(store, backbone=backbone(store))
    assert after.cached and len(after.points) == 17
    assert {p.id: p.label for p in after.points}[img.id] == "circle"
    # An image without an embedding is counted, not placed.
    new_id = store.add_image(normalize(image_bytes(shape_image("circle", 999))), "circle", source="upload").image.id
    assert emap.embedding_map(store, backbone=backbone(store)).missing == 1
    # Once it has an embedding, the set changed: the projection is recomputed (here: refused).
    plant(store, {new_id: np.ones(DIM)})
    with pytest.raises(AssertionError, match="recomputed"):
        emap.embedding_map(store, backbone=backbone(store))


def test_map_without_embeddings_says_what_to_do(store: Store) -> None:
    with pytest.raises(Conflict, match="Compute embeddings first"):
        emap.embedding_map(store, backbone=backbone(store))
    with pytest.raises(InvalidInput, match="'umap'"):
        emap.embedding_map(store, method="umap")


# -- "More like this" --------------------------------------------------------------------------


def test_neighbours_by_cosine_on_a_constructed_case(store: Store) -> None:
    ids = [img.id for img in store.images()]
    q, a, b, c, d, same = ids[:6]
    vectors = {
        q: np.array([1.0, 0.0, 0.0]),
        a: np.array([10.0, 1.0, 0.0]),  # nearly the same direction, much longer: cosine ignores length
        b: np.array([1.0, 1.0, 0.0]),  # 45 degrees
        c: np.array([0.0, 1.0, 0.0]),  # orthogonal
        d: np.array([-1.0, 0.0, 0.0]),  # opposite
        same: np.array([2.0, 0.0, 0.0]),  # same direction
    }
    plant(store, vectors)
    found = emap.similar(store, q, k=10, backbone=backbone(store))
    assert [n.image.id for n in found] == [same, a, b, c, d]  # never itself; unembedded images left out
    sims = [n.similarity for n in found]
    assert sims == pytest.approx([1.0, 10 / np.sqrt(101), 1 / np.sqrt(2), 0.0, -1.0], abs=1e-5)
    assert [n.image.id for n in emap.similar(store, q, k=2, backbone=backbone(store))] == [same, a]
    row = found[0].as_dict()
    assert row["id"] == same and row["similarity"] == 1.0 and Path(str(row["path"])).is_file()
    # Deleted images are not suggested.
    store.delete_images([same])
    assert same not in [n.image.id for n in emap.similar(store, q, k=10, backbone=backbone(store))]


def test_neighbours_errors(store: Store) -> None:
    ids = [img.id for img in store.images()]
    plant(store, {ids[0]: np.ones(3), ids[1]: np.ones(3)})
    with pytest.raises(InvalidInput, match="k=0"):
        emap.similar(store, ids[0], k=0, backbone=backbone(store))
    with pytest.raises(NotFound, match="12345"):
        emap.similar(store, 12345, backbone=backbone(store))
    with pytest.raises(Conflict, match=f"#{ids[2]} has no embedding"):
        emap.similar(store, ids[2], backbone=backbone(store))


def test_json_rows_are_plain(store: Store) -> None:
    ids = [img.id for img in store.images()]
    plant(store, {ids[0]: np.ones(3), ids[1]: np.ones(3)})
    rows = [n.as_dict() for n in emap.similar(store, ids[0], backbone=backbone(store))]
    assert [r["id"] for r in rows] == [ids[1]]  # the one other embedded image
    assert json.loads(json.dumps(rows)) == rows  # through JSON and back unchanged
    assert [type(v) for v in rows[0].values()] == [int, str, str, str, float]  # no numpy scalars, no Path


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_review_similar(store: Store, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lotr_labeler.cli import main

    vectors = class_clusters(store)
    plant(store, vectors)
    fitting.fit_scores(store, backbone(store))  # `similar` uses the backbone of the stored scores
    circle = store.images("circle")[0]
    base = ["--data", str(data_root), "--project", "demo", "review"]
    assert main([*base, "similar", str(circle.id), "--k", "5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    # Its 5 nearest are the other circles of its cluster, most similar first.
    assert [r["label"] for r in rows] == ["circle"] * 5
    assert circle.id not in [r["id"] for r in rows]
    assert [r["similarity"] for r in rows] == sorted((r["similarity"] for r in rows), reverse=True)
    assert all(Path(r["path"]).is_file() for r in rows)

    assert main([*base, "similar", str(circle.id), "--k", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["id", "label", "similarity", "split", "path"] and len(out) == 3

    assert main([*base, "similar", "999"]) == 1
    assert "No image with id 999" in capsys.readouterr().err
    assert main([*base, "similar", str(circle.id), "--k", "0"]) == 1
    assert "k=0" in capsys.readouterr().err
    # Plain `review` is still the ranking.
    assert main([*base, "--cached", "--top", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


# -- the Review page ---------------------------------------------------------------------------

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "5_Review.py")


def scored(store: Store) -> None:
    plant(store, class_clusters(store))
    fitting.fit_scores(store, backbone(store))


def review_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def rerun(at: AppTest) -> None:
    at.run()
    assert not at.exception, [e.value for e in at.exception]


@pytest.mark.slow
def test_map_tab_is_lazy_renders_and_a_picked_point_opens_its_card(store: Store) -> None:
    scored(store)
    at = review_page()
    assert choice_view(at, "r_tab").labels == ["Label issues", "Duplicates", "Map", "Corrections"]
    # Closed, the map costs nothing: no projection was computed.
    assert not (store.cache_dir / emap.MAP_DIR).exists()
    at = pick(at, "r_tab", "Map")
    tab = at.main  # only the chosen view is drawn: not the Label issues grid
    assert not [e for e in at.get("bidi_component") if getattr(e, "key", None) == "r_grid"]
    assert any("18 image(s) · t-SNE" in c.value for c in tab.caption)
    assert (store.cache_dir / emap.MAP_DIR).is_dir()
    charts = tab.get("vega_lite_chart")
    assert len(charts) == 1 and f'"{review_map.SELECTION}"' in charts[0].proto.spec
    assert not [b for b in tab.button if b.key.startswith("rm_")]  # no card before a click
    # A click on a point (the chart's selection state) opens that image's card below the map.
    target = store.images("square")[1]
    at.session_state["r_map"] = {"selection": {review_map.SELECTION: [{"id": target.id}]}}
    rerun(at)
    tab = at.main
    assert tab.button(key=f"rm_keep_{target.id}")
    tab.button(key=f"rm_keep_{target.id}").click()
    rerun(at)
    assert target.id in decisions.reviewed_ids(store)


@pytest.mark.slow
def test_more_like_this_panel_relabels_neighbours(store: Store) -> None:
    scored(store)
    odd = store.images("circle")[0]
    at = review_page()
    assert not any(f"More like #{odd.id}" in m.value for m in at.markdown)
    # M (or the large view's button) on a card sends the grid action "more"; the page's own callback
    # (review_action with more=open_similar) opens the panel and reruns the page.
    grid = next(e for e in at.get("bidi_component") if getattr(e, "key", None) == "r_grid")
    assert odd.id in [c["id"] for c in json.loads(grid.proto.json)["cards"]]
    at = grid_send(at, "r_grid", {"action": "more", "ids": [odd.id], "focus": odd.id})
    message = json.loads(next(e for e in at.get("bidi_component") if e.key == "r_grid").proto.json)["message"]
    assert message == ["success", f"More like #{odd.id}: its nearest images are shown above the grid."]
    assert any(f"More like #{odd.id}" in m.value for m in at.markdown)
    neighbours = emap.similar(store, odd.id, review_map.NEIGHBOURS)
    assert [n.image.label for n in neighbours[:5]] == ["circle"] * 5
    # Pick a target class, relabel one neighbour in one click, then the rest in one action.
    at = pick(at, f"rs_to_{odd.id}", "triangle")
    first = neighbours[0].image.id
    at.button(key=f"rs_to_{odd.id}_{first}").click()
    rerun(at)
    assert store.get_image(first).label == "triangle"
    events = len(store.history())
    all_button = at.button(key=f"rs_all_{odd.id}")
    rest = 1 + sum(store.get_image(n.image.id).label != "triangle" for n in neighbours)  # the source too
    assert all_button.label == f"All {rest} to triangle"
    all_button.click()
    rerun(at)
    assert all(store.get_image(n.image.id).label == "triangle" for n in neighbours)
    assert store.get_image(odd.id).label == "triangle" and len(store.history()) == events + 1
    at.button(key=f"rs_close_{odd.id}").click()
    rerun(at)
    assert not any(f"More like #{odd.id}" in m.value for m in at.markdown)


@pytest.mark.slow
def test_picked_id_and_chart_spec(store: Store) -> None:
    assert review_map.picked_id({"selection": {"pick": [{"id": 7}]}}) == 7
    assert review_map.picked_id({"selection": {"pick": []}}) is None
    assert review_map.picked_id({"selection": {}}) is None
    assert review_map.picked_id(None) is None
    scored(store)
    odd = store.images("circle")[0]
    store.relabel([odd.id], "square")  # scores do not depend on the label: the head now doubts it
    m = emap.embedding_map(store)
    markers = {p.id: review_map.marker(p) for p in m.points}
    assert markers[odd.id] == review_map.DOUBTED
    assert {p.id for p in m.points if markers[p.id] == review_map.FLAGGED} == {
        p.id for p in m.points if p.flags and p.id != odd.id
    }
    thumbs = review_map.thumb_urls(store, m.points)
    assert len(thumbs) == 18 and all(u.startswith("data:image/jpeg;base64,") for u in thumbs.values())
    # Over the byte budget the chart keeps text tooltips (the spec is sent on every rerun).
    assert review_map.thumb_urls(store, m.points, budget=sum(map(len, thumbs.values())) - 1) == {}
    spec = review_map.map_chart(m.points, thumbs).to_dict()
    enc = spec["encoding"]
    assert enc["color"]["field"] == "label" and enc["shape"]["field"] == "marker"
    assert enc["tooltip"][0]["field"] == "image"
    assert spec["params"][0]["name"] == review_map.SELECTION
    no_thumbs = review_map.map_chart(m.points, {}).to_dict()
    assert "image" not in [t["field"] for t in no_thumbs["encoding"]["tooltip"]]


def test_more_like_this_offers_no_bulk_relabel_while_the_model_is_weak(store: Store) -> None:
    """Issue 18: with a weak model the neighbours are no evidence of a class: one relabel at a time."""
    scored(store)
    vocab = store.class_names()
    for img in store.images():  # every label moved on: the head now disagrees with them (review/trust.py)
        store.relabel([img.id], vocab[(vocab.index(img.label) + 1) % len(vocab)])
    odd = store.images()[0]
    at = review_page()
    at = grid_send(at, "r_grid", {"action": "more", "ids": [odd.id]})
    assert any(f"More like #{odd.id}" in m.value for m in at.markdown)
    assert not [b for b in at.button if b.key == f"rs_all_{odd.id}"]
    assert any("relabel the neighbours one by one" in c.value for c in at.caption)
    assert [b for b in at.button if str(b.key).startswith(f"rs_to_{odd.id}_")]  # one by one still works


@pytest.mark.slow
def test_corrections_tab_is_drawn_once_opened(store: Store) -> None:
    """As the Map and Duplicates tabs: a page load draws no correction rows; the tab, opened, lists them."""
    img = store.images("circle")[0]
    store.relabel([img.id], "square")
    at = review_page()
    assert not any("reverts the newest change" in c.value for c in at.caption)
    at = pick(at, "r_tab", "Corrections")
    assert any("square" in m.value for m in at.main.markdown), [m.value for m in at.main.markdown]
    assert any("reverts the newest change" in c.value for c in at.caption)
    assert not [e for e in at.get("bidi_component") if getattr(e, "key", None) == "r_grid"]


@pytest.mark.slow
def test_scikit_learn_warms_up_only_when_retrain_head_has_work(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its ~2 s of imports hold the GIL against the next page's load: a visit with fresh scores skips it;
    corrections since the fit, or the grid's first decision, start it (once per session)."""
    from lotr_labeler.review import head

    started: list[int] = []
    monkeypatch.setattr(head, "warm_up", lambda: started.append(1))
    scored(store)
    at = review_page()
    assert started == []  # scores fresh: nothing for ⚡ Retrain head to do
    first = next(c for c in at.get("bidi_component") if getattr(c, "key", None) == "r_grid")
    card = json.loads(first.proto.json)["cards"][0]
    at = grid_send(at, "r_grid", {"action": "keep", "ids": [card["id"]]})
    assert started == [1]  # the grid's first decision
    rerun(at)
    assert started == [1]  # once per session
    img = store.images("circle")[0]
    store.relabel([img.id], "square")
    review_page()  # a new session, with a correction since the fit
    assert started == [1, 1]
