"""bench/bench_curation.py's oracle, data and planning are right (no browser, nothing timed): a wrong
oracle or data set would make every figure of the benchmark meaningless."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


cd = _load("curation_data")
bc = _load("bench_curation")


@pytest.fixture(scope="module")
def search() -> Any:
    return cd.search_set()


@pytest.fixture(scope="module")
def review() -> Any:
    return cd.review_set()


def test_search_set_has_the_promised_mix(search: Any) -> None:
    cands = search.candidates
    assert len(cands) == 200
    off = [c for c in cands if not c.on_topic]
    assert len(off) == 40
    assert {len(v) for v in search.queries().values()} == {50}
    assert all(c.kind == f"digit-{cd.CLASSES.index(c.query)}" for c in cands if c.on_topic)
    assert {c.kind for c in off} <= {"noise", *(f"digit-{d}" for d in cd.OFF_DIGITS)}
    assert any(c.kind == "noise" for c in off) and any(c.kind.startswith("digit") for c in off)
    assert len({c.data for c in cands}) == 200  # no two candidates are the same picture
    img = Image.open(io.BytesIO(cands[0].data))
    assert img.size == (cd.PX, cd.PX) and img.mode == "RGB"


@pytest.mark.slow
def test_data_is_deterministic(search: Any, review: Any) -> None:
    assert cd.search_set() == search
    assert cd.review_set() == review
    assert cd.search_set(seed=5) != search


def test_oracle_reads_a_candidate_url_back(search: Any) -> None:
    c = search.candidates[17]
    assert search.truth_of_url(f"http://127.0.0.1:9/img/{c.n}.png") == c
    with pytest.raises(ValueError, match="not an image of this benchmark"):
        search.truth_of_url("http://127.0.0.1:9/other.png")


def test_search_clean_names_what_is_left(search: Any) -> None:
    cands = search.candidates
    right = {c.n: ("accepted" if c.on_topic else "rejected", c.query) for c in cands}
    assert cd.search_clean(right, search) == []
    off = next(c for c in cands if not c.on_topic)
    on = next(c for c in cands if c.on_topic)
    moved = {c for c in cd.CLASSES if c != on.query}.pop()
    wrong = {**right, off.n: ("accepted", off.query), on.n: ("accepted", moved)}
    problems = cd.search_clean(wrong, search)
    assert len(problems) == 2 and any(f"#{off.n} " in p for p in problems) and any(f"#{on.n} " in p for p in problems)
    assert len(cd.search_clean({}, search)) == 200  # nothing decided: nothing clean


def test_review_set_has_the_promised_wrong_labels(review: Any, tmp_path: Path) -> None:
    images = review.images
    wrong = review.wrong()
    assert len(images) == 200 and len(wrong) == 20
    assert all(i.filed_as != i.truth for i in wrong)
    assert {sum(i.truth == c for i in images) for c in cd.CLASSES} == {50}
    root = review.write(tmp_path / "in")
    files = sorted(root.rglob("*.png"))
    assert len(files) == 200
    for f in files:  # the folder is the given label; the name leads the oracle back to the truth
        img = review.truth_of_name(f"{f.parent.name}/{f.name}")
        assert img.filed_as == f.parent.name and f.read_bytes() == img.data


def test_review_clean_counts_wrong_and_missing(review: Any) -> None:
    images = review.images
    truth = {i.index: i.truth for i in images}
    assert cd.review_clean(truth, review) == []
    given = {i.index: i.filed_as for i in images}
    assert len(cd.review_clean(given, review)) == 20
    gone = dict(truth)
    gone.pop(3)
    assert cd.review_clean(gone, review) == [f"img-3 (a {images[3].truth}) is missing"]


def test_plan_selection_takes_the_cheaper_way() -> None:
    order = list(range(10, 30))
    assert bc.plan_selection([], order) == []
    assert bc.plan_selection([15], order) == [("click", 15)]
    # Two apart: clicking each beats a range.
    assert bc.plan_selection([12, 20], order) == [("click", 12), ("ctrl", 20)]
    # A run of 8 with one card to leave out: click, Shift-click, Ctrl-click it out (3 < 8).
    run = [i for i in range(10, 18) if i != 13]
    assert bc.plan_selection(run, order) == [("click", 10), ("shift", 17), ("ctrl", 13)]
    # A card the key ignores may stay in the range.
    assert bc.plan_selection(run, order, frozenset({13})) == [("click", 10), ("shift", 17)]


def _apply(plan: list[tuple[str, int]], order: list[int]) -> set[int]:
    """What the grid (cards.js) selects for these clicks: click/Ctrl-click toggle, Shift-click = the range."""
    sel: set[int] = set()
    anchor = None
    for how, cid in plan:
        if how == "shift" and anchor is not None:
            i, j = sorted((order.index(anchor), order.index(cid)))
            sel = set(order[i : j + 1])
        else:
            sel ^= {cid}
            anchor = cid
    return sel


@pytest.mark.parametrize("seed", range(20))
def test_plan_selection_selects_exactly_what_matters(seed: int) -> None:
    import random

    rng = random.Random(seed)
    order = rng.sample(range(1000), 48)
    ids = rng.sample(order, rng.randint(1, 20))
    ignore = frozenset(rng.sample([i for i in order if i not in ids], 10))
    plan = bc.plan_selection(ids, order, ignore)
    got = _apply(plan, order)
    assert set(ids) <= got and not (got - set(ids) - ignore)
    assert len(plan) <= len(ids)  # never worse than one click per card


def test_fastai_cleaner_model(search: Any, review: Any) -> None:
    splits = {i.index: "valid" if i.index % 5 == 0 else "train" for i in review.images}
    views = bc.fastai_review(review, splits) - 2 * 20
    assert 8 <= views <= 16  # 4 classes x 2 splits, each view at most 30 images
    assert bc.fastai_search(search) == 2 * 40 + 4 * (2 + 1)  # 40 train (2 views) + 10 valid (1) per class


def test_plan_rounds_splits_only_when_it_saves_actions() -> None:
    order = list(range(40))
    run = list(range(10))
    assert bc.plan_rounds(run, order) == [run]  # one range, one key: 3 actions
    # Two runs far apart with cards between that must stay out: two rounds (3 + 3) beat one (2 + 10 + 1).
    far = [*range(5), *range(15, 20)]
    assert bc.plan_rounds(far, order) == [list(range(5)), list(range(15, 20))]
    # The same with the cards between ignored by the key: one range.
    assert bc.plan_rounds(far, order, frozenset(range(5, 15))) == [far]
    # Lone cards with a button of their own: one click each.
    assert bc.plan_rounds([3, 30], order, button=True) == [[3], [30]]


@pytest.mark.parametrize("seed", range(10))
def test_plan_rounds_covers_every_card_once(seed: int) -> None:
    import random

    rng = random.Random(seed)
    order = rng.sample(range(500), 48)
    ids = rng.sample(order, rng.randint(1, 25))
    rounds = bc.plan_rounds(ids, order, button=bool(seed % 2))
    flat = [i for part in rounds for i in part]
    assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))
    for part in rounds:
        assert _apply(bc.plan_selection(part, order), order) == set(part)


def test_plan_threshold_takes_the_cheapest_t_and_counts_its_presses() -> None:
    order = list(range(1, 11))
    # Five right predictions at 90-99 %, one false alarm at 85 %, a right one at 60 %.
    doubted = {1: 99, 2: 95, 3: 92, 4: 91, 5: 90, 6: 85, 7: 60}
    fix_p = [1, 2, 3, 4, 5, 7]
    plan = bc.plan_threshold(doubted, fix_p, order, 85, frozenset({8, 9, 10}))
    assert plan is not None
    # t = 90: one ] press + Shift+P on 1-5, then the 60 % card by its own button: 3 actions (at 85 %:
    # S + a Ctrl-click + P + the button = 4).
    assert (plan.t, plan.false_alarms, plan.hits, plan.cost) == (90, (), (1, 2, 3, 4, 5), 3)
    # Without a right prediction among the doubted there is no threshold round.
    assert bc.plan_threshold({6: 85}, [], order, 80, frozenset()) is None
    # A false alarm above every right prediction: S, a Ctrl-click taking it out, P (3 actions, t stays).
    plan = bc.plan_threshold({1: 99, 2: 90, 3: 90, 4: 90}, [2, 3, 4], order, 80, frozenset())
    assert plan is not None and (plan.t, plan.false_alarms, plan.cost) == (80, (1,), 3)


def test_retrain_pays_after_a_batch_when_it_can_save_more_than_its_click() -> None:
    n = bc.RETRAIN_MIN_FIXES
    assert not bc.retrain_pays(n - 1, 10)  # one relabel barely moves the head: not after a lone fix
    assert not bc.retrain_pays(n, 1)  # at best it saves its own click: no gain
    assert not bc.retrain_pays(0, 10)  # nothing corrected since the last fit: the same scores again
    assert bc.retrain_pays(n, 2)


def test_review_rows_name_their_configuration_and_count_the_retrains(review: Any, search: Any, capsys: Any) -> None:
    def tally(actions: int, retrains: int) -> Any:
        return bc.Tally(clicks=actions, clean=True, retrains=retrains, strategy="s")

    names = []
    for retrain in (True, False):
        results = {("today", "review"): tally(21, 0), ("new", "review"): tally(6, 2 if retrain else 0)}
        bc.report(results, ["review"], search, review, retrain=retrain)
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        names.append({row["name"] for row in rows})
        actions = rows[0]
        assert (actions["ours"], actions["anchor"], actions["ratio"]) == (6, 21, 3.5)
        assert ("2 of them ⚡ Retrain head" in actions["note"]) is retrain
    # both configurations stay their own rows in RESULTS.md: no name is shared
    assert not names[0] & names[1]
    assert all("Retrain head when it pays" in n for n in names[0])
    assert all("first fit only" in n for n in names[1])
