"""Review page, Duplicates tab: "Relabel all" starts from the group's label; Undo stays on the tab; thumbnails
keep their size; groups at distance 0 say what that means; "Keep only this" says what it did."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import choice_view, image_bytes, shape_image
from streamlit.testing.v1 import AppTest

from lotr_labeler.collect.importers import import_folder
from lotr_labeler.review import duplicates
from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "5_Review.py")


@pytest.fixture
def pears(data_root: Path, tmp_path: Path) -> Iterator[Store]:
    """'apple' (the first class) has its own picture; one picture is stored three times, twice as
    'pear' and once as 'plum' (a smaller copy)."""
    src = tmp_path / "src"
    pic = shape_image("circle", 7, size=128)
    files = {
        "apple": {"a.jpg": shape_image("square", 8, size=128)},
        "pear": {"p1.jpg": pic, "p2.jpg": pic.rotate(1)},
        "plum": {"q.jpg": pic.resize((110, 110))},
    }
    for label, pics in files.items():
        (src / label).mkdir(parents=True)
        for name, img in pics.items():
            (src / label / name).write_bytes(image_bytes(img, "JPEG", quality=90))
    s = create_project(data_root, "fruit", "empty")
    import_folder(s, src)
    yield s
    s.close()


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_majority_label_and_its_tie_break(pears: Store) -> None:
    (group,) = duplicates.duplicate_groups(pears)
    assert group.conflict and group.majority_label == "pear"
    # A tie (one each) goes to the largest picture's label: the smaller one is the likely copy.
    plum = next(img for img in group.images if img.label == "plum")
    pear = next(img for img in group.images if img.label == "pear")
    tie = duplicates.DuplicateGroup((plum, pear), group.max_distance, False)
    assert tie.majority_label == "pear"


def test_relabel_all_defaults_to_the_groups_label_and_undo_stays_on_the_tab(pears: Store) -> None:
    (group,) = duplicates.duplicate_groups(pears)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["r_tab"] = "Duplicates"
    run(at)
    picker = choice_view(at, f"r_dup_to_{group.ids[0]}_{group.majority_label}")
    assert picker.value == "pear"  # not "apple", the first class
    at.button(key=f"r_dup_rl_{group.ids[0]}").click()
    run(at)
    assert {pears.get_image(i).label for i in group.ids} == {"pear"}  # one click fixed the plum

    at.button(key="undo").click()
    run(at)
    assert pears.get_image(next(i.id for i in group.images if i.label == "plum")).label == "plum"
    # Still on Duplicates: the tab the server tells the browser to show is the one the user was on.
    assert at.session_state["r_tab"] == "Duplicates"
    assert choice_view(at, "r_tab").index == 1  # the tab the browser is told to show
    picker = choice_view(at, f"r_dup_to_{group.ids[0]}_{group.majority_label}")
    assert picker.value == "pear"


@pytest.fixture
def twins(data_root: Path, tmp_path: Path) -> Iterator[Store]:
    """One picture stored twice (one pixel apart: two images, the same phash), another one alone."""
    src = tmp_path / "twins"
    pic = shape_image("circle", 3, size=135)
    (src / "apple").mkdir(parents=True)
    (src / "pear").mkdir(parents=True)
    copy = pic.copy()
    copy.putpixel((0, 0), (255, 255, 255))
    (src / "apple" / "a.png").write_bytes(image_bytes(pic, "PNG"))
    (src / "apple" / "b.png").write_bytes(image_bytes(copy, "PNG"))
    (src / "pear" / "c.png").write_bytes(image_bytes(shape_image("square", 9, size=135), "PNG"))
    s = create_project(data_root, "twins", "empty")
    import_folder(s, src)
    yield s
    s.close()


def dup_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["r_tab"] = "Duplicates"
    return run(at)


def _columns_holding_images(at: AppTest) -> list[float]:
    """The weight (share of the row) of every column that holds a picture."""
    weights: list[float] = []

    def walk(node: object) -> None:
        children = getattr(node, "children", {})
        if getattr(node, "type", None) == "column" and any(
            getattr(c, "type", None) == "image" for c in children.values()
        ):
            weights.append(float(node.weight))  # type: ignore[attr-defined]
        for child in children.values():
            walk(child)

    walk(at._tree)
    return weights


def test_duplicates_show_thumbnails_at_their_size_several_per_row(
    pears: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group of 2-3 pictures stretched each one to a third or half of the page (a 135 px image
    ~450 px wide): they now keep their thumbnail size, in a row of 6."""
    import streamlit as st

    widths: list[object] = []
    real = st.image

    def image(*args: object, **kwargs: object) -> object:
        widths.append(kwargs.get("width"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(st, "image", image)
    at = dup_page()
    assert widths == ["content"] * 3  # their own size (at most thumb_size), never "stretch"
    assert _columns_holding_images(at) == pytest.approx([1 / 6] * 3)


def test_identical_pictures_read_identical_and_keep_only_says_what_it_did(twins: Store) -> None:
    (group,) = duplicates.duplicate_groups(twins)
    assert group.max_distance == 0
    at = dup_page()
    heads = [m.value for m in at.markdown if "images ·" in m.value]
    assert heads and all("same perceptual hash (distance 0)" in h and "distance ≤ 0" not in h for h in heads), heads

    kept, other = group.ids
    at.button(key=f"r_dup_one_{kept}_{kept}").click()
    run(at)
    assert twins.get_image(other).deleted and not twins.get_image(kept).deleted
    said = [s.value for s in at.success]
    assert f"Kept #{kept}; moved 1 duplicate to the trash — ↩ Undo restores them." in said, said
    assert at.session_state["r_tab"] == "Duplicates"

    at.button(key="undo").click()  # what the message promises
    run(at)
    assert not twins.get_image(other).deleted
