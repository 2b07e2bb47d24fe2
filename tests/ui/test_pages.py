"""AppTest: every page renders on an empty and a filled project; the page actions reach the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import choice_view, grid_data, pick
from streamlit.testing.v1 import AppTest

from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.workspace import open_project

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["home.py", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))]


def app(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at: AppTest, label: str) -> None:
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} in {[b.label for b in at.button]}"
    matches[0].click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_no_page_relies_on_magic_which_the_config_turns_off() -> None:
    """``runner.magicEnabled = false`` saves each session's first run of a page its syntax-tree rewrite
    (26 ms for Review); a bare expression left on a line would then silently draw nothing."""
    import ast
    import tomllib

    from streamlit.runtime.scriptrunner import magic

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["runner"]["magicEnabled"] is False
    for page in PAGES:
        tree = magic.add_magic((ROOT / page).read_text(encoding="utf-8"), page)
        written = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "transparent_write"]
        assert written == [], f"{page} line {written[0].lineno if written else 0}: a bare expression"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_first_start(data_root: Path, page: str) -> None:
    at = app(page)
    assert not at.error
    # The first start creates the default project, whatever page is opened first.
    assert (data_root / "lotr-races" / "project.sqlite").exists()


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_images(store: Store, page: str) -> None:
    at = app(page)
    assert not at.error
    assert choice_view(at, "project_picker").value == "demo"


def test_home_shows_counts_chart_and_next_step(store: Store) -> None:
    at = app("home.py")
    assert any("Next step" in m.value for m in at.markdown)
    assert [m.value for m in at.metric][:2] == ["3", "18"]
    table = next(m.value for m in at.markdown if m.value.startswith("| class |"))
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert [(r[0].strip("| "), r[2]) for r in rows] == [("circle", "6"), ("square", "6"), ("triangle", "6")]
    # Seven columns, the candidates' states in one: ten ran past the right edge of a 1000 px window.
    assert [h.strip() for h in table.splitlines()[0].strip("|").split("|")] == [
        "class",
        "balance",
        "images",
        "valid",
        "flagged",
        "deleted",
        "candidates",
    ]
    assert {r[-1].strip("| ") for r in rows} == {"—"}  # none searched yet
    store.add_candidates([CandidateIn("circle", f"http://img.test/{i}.jpg") for i in range(3)])
    store.decide([store.candidates()[0].id], "rejected")
    at.run()
    table = next(m.value for m in at.markdown if m.value.startswith("| class |"))
    assert table.splitlines()[2].endswith("| 2 pending · 1 rejected |"), table


def home_with_the_new_project_box() -> AppTest:
    """Home with "New project" unfolded, as a click on it leaves it (its form is drawn only when open:
    folded, its text fields' code was fetched by the browser on every visit)."""
    at = app("home.py")
    assert not at.text_input and not at.text_area  # folded: nothing of the form drawn
    at.session_state["home_new_project"] = True
    at.run()
    return at


def test_home_creates_project(store: Store, data_root: Path) -> None:
    at = home_with_the_new_project_box()
    at.text_input[0].input("birds")
    at.button[0].click().run()
    assert (data_root / "birds" / "project.sqlite").exists()
    assert choice_view(at, "project_picker").value == "birds"
    assert at.text_input(key="new_project_name").value == ""  # an empty field for the next one
    at.text_input[0].input("a/b")
    at.button[0].click().run()
    assert any("'/'" in e.value for e in at.error)
    assert not (data_root / "a").exists()
    assert at.text_input(key="new_project_name").value == "a/b"  # a refused name stays, to be fixed


@pytest.mark.slow
def test_classes_page_adds_and_rejects(store: Store, data_root: Path) -> None:
    at = app("pages/1_Classes.py")
    at.text_input(key="new_name").input("Ents")
    at.text_input(key="new_names").input("Treebeard, Quickbeam")
    at.text_input(key="new_template").input("{name} ent")
    button(at, "Add class")
    assert any("Added class 'Ents'" in s.value for s in at.success)
    with open_project(data_root, "demo") as s:
        assert s.get_class("Ents").queries == ["Treebeard ent", "Quickbeam ent"]

    for bad, message in [
        ("a/b", "'/'"),
        ("..", "'..'"),
        ("", "empty"),
        ("ENTS", "already exists"),
        ("bell\x07", "control"),
    ]:
        at.text_input(key="new_name").input(bad)
        button(at, "Add class")
        assert any(message in e.value for e in at.error), (bad, [e.value for e in at.error])
    with open_project(data_root, "demo") as s:
        assert s.class_names() == ["circle", "square", "triangle", "Ents"]


def test_classes_page_rename_edit_delete(store: Store, data_root: Path) -> None:
    circle = store.get_class("circle")
    at = app("pages/1_Classes.py")
    at.text_area(key=f"names_{circle.id}").input("ball\nwheel")
    at.text_input(key=f"tpl_{circle.id}").input("{name} photo")
    button(at, "Save names and template")
    at.text_input(key=f"rename_{circle.id}").input("Rounds")
    at.button(key=f"do_rename_{circle.id}").click().run()
    with open_project(data_root, "demo") as s:
        c = s.get_class("Rounds")
        assert c.queries == ["ball photo", "wheel photo"]
        assert len(list((s.root / "images" / "Rounds").glob("*.jpg"))) == 6
    # Deleting a class with images needs the confirmation box.
    assert at.button(key=f"delete_{circle.id}").disabled
    at.checkbox(key=f"confirm_{circle.id}").check().run()
    at.button(key=f"delete_{circle.id}").click().run()
    with open_project(data_root, "demo") as s:
        assert s.class_names() == ["square", "triangle"] and s.count(deleted=True) == 6
    assert any("Deleted class Rounds; ↩ Undo above restores it." in m.value for m in at.success)
    at.button(key="undo").click().run()  # on this page: no trip to the Dataset page
    assert not at.exception
    with open_project(data_root, "demo") as s:
        assert "Rounds" in s.class_names() and s.count(deleted=True) == 0
    assert any("Undid: deleted class Rounds" in m.value for m in at.success)


def test_dataset_page_grid_shows_the_filtered_cards(store: Store) -> None:
    victim = store.images("square")[0]
    store.delete_images([victim.id])
    at = app("pages/3_Dataset.py")
    data = grid_data(at, "ds_grid")
    assert len(data["cards"]) == 17 and data["classes"] == ["circle", "square", "triangle"]
    assert data["actions"] == ["delete", "relabel", "undo"] and data["columns"] == 8
    # One Undo on the page, the grid's (Z): a second button beside the filters did the same thing.
    assert not [b for b in at.button if "Undo" in b.label]
    assert not at.get("popover")  # History is the page's own light list (ui/menu.py)
    assert grid_data(at, "history")["label"] == "History"
    texts = [line["text"] for line in grid_data(at, "history")["lines"]]
    assert texts == ["deleted 1 image(s)", "imported 18 image(s) from folder"]  # the newest first
    assert all(c["src"].startswith("data:image/jpeg;base64,") for c in data["cards"])
    at = pick(at, "ds_class", "square")
    assert [c["label"] for c in grid_data(at, "ds_grid")["cards"]] == ["square"] * 5
    valid = store.count("square", split="valid")
    at = pick(at, "ds_split", "valid")
    assert len(grid_data(at, "ds_grid")["cards"]) == valid
    at = pick(at, "ds_split", "All")
    at = pick(at, "ds_view", "Trash")
    trash = grid_data(at, "ds_grid")
    assert [c["id"] for c in trash["cards"]] == [victim.id] and trash["cards"][0]["deleted"]
    assert trash["actions"] == ["restore", "undo"]  # R restores; no relabel or delete in the trash


def test_dataset_page_imports_folder(empty_store: Store, shapes_dir: Path) -> None:
    at = app("pages/3_Dataset.py")
    assert not at.text_input  # the import box is drawn once opened: a page loads without its widgets
    at.session_state["ds_import"] = True  # the user opens it (the expander reruns the page)
    at.run()
    assert grid_data(at, "ds_grid")["cards"] == []
    at.text_input[0].input(str(shapes_dir)).run()
    button(at, "Import folder")
    assert any("18 image(s) added" in s.value for s in at.success)
    assert empty_store.count() == 18
    # The grid above the import box shows what came in, in the same click (it was drawn before the import
    # and said "No images here yet" until the next one).
    assert len(grid_data(at, "ds_grid")["cards"]) == 18
    at.text_input[0].input("/no/such/folder").run()
    button(at, "Import folder")
    assert any("not a folder" in e.value for e in at.error)


def test_dataset_page_adds_url_candidates(store: Store) -> None:
    at = app("pages/3_Dataset.py")
    at.session_state["ds_import"] = True
    at.run()
    at.text_area[0].input("http://x/1.jpg,circle\nbad row,circle").run()
    button(at, "Add as candidates")
    assert any("1 candidate(s) added" in s.value for s in at.warning)  # a refused row: not a plain success
    assert [c.image_url for c in store.candidates()] == ["http://x/1.jpg"]


def test_job_times_read_as_a_person_says_them() -> None:
    """The last job's line said "Last search (2026-12-02T07:13:41+00:00)"; now "3 min ago" or a plain date."""
    from datetime import UTC, datetime

    from lotr_labeler.ui.jobs import when

    now = datetime(2026, 12, 2, 7, 30, tzinfo=UTC)
    assert when("2026-12-02T07:29:30+00:00", now) == "just now"
    assert when("2026-12-02T07:13:41+00:00", now) == "16 min ago"
    assert when("2026-12-02T04:10:00+00:00", now) == "3 h ago"
    assert when("2026-11-29T04:10:00+00:00", now) == "2026-11-29 04:10 UTC"
    assert when("2026-12-02T08:00:00", now) == "2026-12-02 08:00 UTC"  # later (another clock): the time itself
    assert when("yesterday", now) == "yesterday"


def test_home_creates_a_project_from_class_names(store: Store, data_root: Path) -> None:
    """Class names one per line or comma-separated (the user used to add them one at a time on Classes);
    the Middle-earth example stays one click away. A bad name creates nothing and is named."""
    from lotr_labeler.workspace import open_project

    at = home_with_the_new_project_box()
    at.text_input(key="new_project_name").input("birds")
    at.text_area(key="new_project_classes").input("robin, blackbird\nsparrow\n\nRobin")
    next(b for b in at.button if b.label == "Create project").click().run()
    with open_project(data_root, "birds") as birds:
        assert birds.class_names() == ["robin", "blackbird", "sparrow"]
    assert any("with 3 classes" in s.value for s in at.success)
    at.text_input(key="new_project_name").input("bad")
    at.text_area(key="new_project_classes").input("ok, ../evil")
    next(b for b in at.button if b.label == "Create project").click().run()
    assert any("../evil" in e.value for e in at.error) and not (data_root / "bad").exists()
    at.text_input(key="new_project_name").input("me")
    next(b for b in at.button if b.label.startswith("…or the Middle-earth")).click().run()
    with open_project(data_root, "me") as me:
        assert len(me.class_names()) == 7 and "Hobbits" in me.class_names()


def test_home_flagged_counts_what_review_shows_under_flag_any(store: Store, tmp_path: Path) -> None:
    """Home's "Flagged" (the metric and the class table) counts the images Review lists under Flag = any:
    quality flags measured so far and near duplicates (it counted only flags stored on the rows)."""
    import numpy as np
    from PIL import Image

    from lotr_labeler.collect.importers import import_folder
    from lotr_labeler.review import quality, queue

    odd = tmp_path / "odd" / "circle"
    odd.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(2):  # noise (no near duplicate of anything), 5:1: flagged "aspect" by quality only
        Image.fromarray(rng.integers(0, 256, (80, 400, 3), dtype=np.uint8)).save(odd / f"{i}.png")
    import_folder(store, tmp_path / "odd")
    quality.quality_stats(store, store.images())
    listed = queue.ranking(store, flag="any", status="all", compute_quality=False)
    by_class = {c: sum(1 for it in listed if it.given == c) for c in ("circle", "square", "triangle")}
    assert sum("aspect" in it.flags and "near-duplicate" not in it.flags for it in listed) == 2

    at = app("home.py")
    assert next(m.value for m in at.metric if m.label == "Flagged") == str(len(listed))
    table = next(m.value for m in at.markdown if m.value.startswith("| class |"))
    header = [h.strip() for h in table.splitlines()[0].strip("|").split("|")]
    rows = {r[0]: r for r in ([c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:])}
    assert {c: int(rows[c][header.index("flagged")]) for c in by_class} == by_class
