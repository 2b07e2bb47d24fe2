"""Candidate scoring (review/candidates.py): thumbnails fetched from a local server, embedded with a
random-init resnet18, scored by a head fitted on the labeled images; triage, thresholds, undo, CLI."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from helpers import grid_data, grid_send, image_bytes, pick, plant_review_fit, wait_for
from PIL import Image
from streamlit.testing.v1 import AppTest

from lotr_labeler.cli.main import main
from lotr_labeler.collect.importers import import_folder
from lotr_labeler.errors import Conflict, InvalidInput
from lotr_labeler.jobs import table as jobs
from lotr_labeler.model import embed
from lotr_labeler.progress import Progress
from lotr_labeler.review import candidates as cands
from lotr_labeler.review import fitting, head
from lotr_labeler.store import CandidateIn, Store, candidate_scores
from lotr_labeler.ui.cards import GridAction
from lotr_labeler.ui.search_grid import search_action
from lotr_labeler.workspace import create_project

SIZE = 48
COLOURS = {"red": (210, 40, 40), "green": (40, 190, 60), "blue": (40, 60, 215)}


pytestmark = pytest.mark.slow  # embeds thumbnails, background jobs


def colour_image(rgb: tuple[int, int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.array(rgb) + rng.integers(-20, 20, 3)
    arr = np.clip(base + rng.normal(0, 15, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


class ThumbHandler(BaseHTTPRequestHandler):
    """/t/<colour>/<seed>.png: a noisy field of that colour (``grey`` too); anything else 404."""

    hits: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        palette = {**COLOURS, "grey": (128, 128, 128)}
        if len(parts) == 3 and parts[0] == "t" and parts[1] in palette:
            ThumbHandler.hits[self.path] = ThumbHandler.hits.get(self.path, 0) + 1
            body = image_bytes(colour_image(palette[parts[1]], int(parts[2].split(".")[0])))
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
        else:
            body = b"nope"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def thumbs() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ThumbHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def colours_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    for name, rgb in COLOURS.items():
        (root / name).mkdir()
        for i in range(12):
            colour_image(rgb, i).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def scored(data_root: Path, colours_dir: Path, thumbs: str) -> Iterator[tuple[Store, dict[str, int]]]:
    """A colours project with Review embeddings (random-init resnet18) and candidates:
    right ones, a blue picture searched as red, a grey (off-topic) one, a dead URL, and a
    thumbnail identical to a dataset image. Returns the store and candidate ids by role."""
    store = create_project(data_root, "demo", "empty")
    import_folder(store, colours_dir)
    store.set_setting("allow_private_hosts", True)
    fitting.refresh(store, embed.resolve_backbone(store, "imagenet", pretrained=False, size=SIZE))
    items = [
        CandidateIn(name, f"{thumbs}/full/{name}{i}", thumbnail_url=f"{thumbs}/t/{name}/{100 + i}.png", source="ddg")
        for name in COLOURS
        for i in range(3)
    ]
    items += [
        CandidateIn("red", f"{thumbs}/full/wrong", thumbnail_url=f"{thumbs}/t/blue/200.png", source="ddg"),
        CandidateIn("red", f"{thumbs}/full/grey", thumbnail_url=f"{thumbs}/t/grey/201.png", source="ddg"),
        CandidateIn("green", f"{thumbs}/full/dead", thumbnail_url=f"{thumbs}/missing.png", source="ddg"),
        CandidateIn("green", f"{thumbs}/full/dup", thumbnail_url=f"{thumbs}/t/green/3.png", source="ddg"),
    ]
    store.add_candidates(items)
    ids = {c.image_url.rsplit("/", 1)[-1]: c.id for c in store.candidates()}
    yield store, ids
    store.close()


def test_scoring_needs_images_of_two_classes(empty_store: Store) -> None:
    """The bundled network needs no model, but its head needs labeled images of 2 classes to learn from."""
    assert cands.scoring_backbone(empty_store) is None
    with pytest.raises(Conflict, match="no images of 2 classes"):
        cands.score_candidates(empty_store)
    from lotr_labeler.jobs.specs import ScoreCandidatesJob

    with pytest.raises(Conflict, match="no images of 2 classes"):
        ScoreCandidatesJob().check(empty_store)


def test_the_bundled_network_scores_once_two_classes_have_images(store: Store) -> None:
    backbone = cands.scoring_backbone(store)
    assert backbone is not None and backbone.kind == "efficientnet_lite0" and backbone.pretrained


def test_candidates_get_class_probabilities_looks_like_and_near_duplicates(
    scored: tuple[Store, dict[str, int]],
) -> None:
    store, ids = scored
    progress: list[Progress] = []
    report = cands.score_candidates(store, allow_private=True, progress=progress.append)
    assert (report.total, report.scored, report.failed) == (13, 12, 1) and report.labeled == 36
    assert progress[-1].done == 13
    rows = {t.id: t for t in cands.triage(store)}
    right = [rows[ids[f"{n}{i}"]] for n in COLOURS for i in range(3)]
    assert all(t.p_class is not None and t.p_class > 0.5 and t.predicted == t.candidate.label for t in right), right
    wrong = rows[ids["wrong"]]
    assert wrong.looks_like == "blue" and wrong.p_class is not None and wrong.p_class < 0.5
    assert rows[ids["dead"]].p_class is None and rows[ids["dead"]].error == "http 404"
    dataset_twin = next(img for img in store.images("green") if Path(img.original_name or "").name == "3.png")
    assert rows[ids["dup"]].dup_of == dataset_twin.id
    # Sorted both ways; the unscored one last either way.
    low = [t.id for t in cands.triage(store, sort="score")]
    high = [t.id for t in cands.triage(store, sort="score-desc")]
    assert low[0] == ids["wrong"] or rows[low[0]].p_class <= rows[ids["wrong"]].p_class  # type: ignore[operator]
    assert low[-1] == high[-1] == ids["dead"]
    assert [t.id for t in cands.triage(store, only="looks-like")] == [ids["wrong"]]
    assert [t.id for t in cands.triage(store, only="unscored")] == [ids["dead"]]
    # P on its card (the Search grid's "predict") accepts it into the predicted class; its p(class) follows
    # without rescoring.
    kind, text = search_action(store, GridAction("predict", (ids["wrong"],)), seen={ids["wrong"]: "pending"})
    assert kind == "success" and "(blue)" in text, text
    moved = cands.item(store, ids["wrong"])
    assert moved.candidate.label == "blue" and moved.candidate.state == "accepted" and moved.p_class > 0.5  # type: ignore[operator]


def test_a_rescore_uses_the_thumbnail_cache(scored: tuple[Store, dict[str, int]]) -> None:
    store, _ = scored
    first = cands.score_candidates(store, allow_private=True)
    hits = dict(ThumbHandler.hits)
    again = cands.score_candidates(store, allow_private=True)
    assert first.fetched == 12 and again.fetched == 0 and ThumbHandler.hits == hits
    assert again.scored == first.scored
    assert any((store.cache_dir / cands.THUMB_DIR).iterdir())
    assert not list(store.root.glob("images/**/*.jpg"))[0:0]  # thumbnails never become images
    assert len(store.images()) == 36


def test_private_hosts_are_refused_without_the_setting(scored: tuple[Store, dict[str, int]]) -> None:
    store, _ = scored
    report = cands.score_candidates(store, allow_private=False)
    assert report.scored == 0 and report.failed == 13
    assert {r for _, r in report.failures} == {"blocked host"} or all("host" in r for _, r in report.failures)


def test_threshold_actions_are_one_undoable_event_each(scored: tuple[Store, dict[str, int]]) -> None:
    store, ids = scored
    cands.score_candidates(store, allow_private=True)
    preview = cands.at_least(store, 0.9)
    assert preview and all(t.p_class is not None and t.p_class >= 0.9 for t in preview)
    assert ids["wrong"] not in {t.id for t in preview}
    before = store.last_event_id()
    assert cands.accept_at_least(store, 0.9) == len(preview)
    assert store.count_events_after(before) == 1
    assert {c.id for c in store.candidates(state="accepted")} == {t.id for t in preview}
    low = cands.at_most(store, 0.5)
    assert ids["wrong"] in {t.id for t in low}
    assert cands.reject_at_most(store, 0.5) == len(low)
    store.undo()
    assert store.get_candidate(ids["wrong"]).state == "pending"
    store.undo()
    assert store.count_candidates(state="accepted") == 0 and store.count_candidates(state="pending") == 13
    with pytest.raises(InvalidInput, match=r"1\.5 is out of range"):
        cands.at_least(store, 1.5)


def test_cli_score_list_sorted_and_threshold_flags(
    scored: tuple[Store, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    store, ids = scored
    base = ["--project", "demo", "candidates"]
    assert main([*base, "score", "--allow-private-hosts", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scored"] == 12 and report["failures"][0]["reason"] == "http 404"
    assert main([*base, "list", "--sort", "score", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    scores = [r["score"] for r in rows if r["score"] is not None]
    assert scores == sorted(scores) and rows[-1]["score"] is None
    wrong = next(r for r in rows if r["id"] == ids["wrong"])
    assert wrong["looks_like"] == "blue" and wrong["predicted"] == "blue"
    assert main([*base, "list", "--sort", "score-desc", "--filter", "looks-like", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [ids["wrong"]]
    assert main([*base, "accept", "--min-score", "0.9"]) == 0
    accepted = store.count_candidates(state="accepted")
    assert accepted > 0 and f"Accepted {accepted} " in capsys.readouterr().out
    assert main([*base, "reject", "--max-score", "0.5"]) == 0
    assert store.get_candidate(ids["wrong"]).state == "rejected"
    assert main([*base, "accept", "--min-score", "0.9", "7"]) == 1
    assert "give no ids" in capsys.readouterr().err


def test_score_job_runs_in_the_background_and_search_chains_it(
    scored: tuple[Store, dict[str, int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, thumbs: str
) -> None:
    store, _ = scored
    from lotr_labeler.jobs.specs import ScoreCandidatesJob

    ScoreCandidatesJob().launch(store)
    wait_for(lambda: jobs.latest_job(store, "score-candidates").state != "running", 120, "the scoring job")  # type: ignore[union-attr]
    job = jobs.latest_job(store, "score-candidates")
    assert job is not None and job.state == "done", job
    assert len(candidate_scores.load(store)) == 13
    # A search that adds candidates starts the scoring job by itself.
    fake = tmp_path / "ddg.json"
    fake.write_text(
        json.dumps(
            {
                "*": [
                    {
                        "title": "t",
                        "image": f"{thumbs}/full/{{slug}}",
                        "thumbnail": f"{thumbs}/t/red/300.png",
                        "url": "",
                        "height": 9,
                        "width": 9,
                        "source": "x",
                    }
                ]
            }
        )
    )
    monkeypatch.setenv("LOTR_LABELER_FAKE_DDGS", str(fake))
    assert main(["--project", "demo", "search", "--class", "red", "--delay", "0"]) == 0
    chained = jobs.latest_job(store, "score-candidates")
    assert chained is not None and chained.id != job.id
    wait_for(lambda: jobs.get_job(store, chained.id).state != "running", 120, "the chained job")
    new = max(c.id for c in store.candidates())
    assert cands.item(store, new).p_class is not None


# -- the Search page ---------------------------------------------------------------------------

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "2_Search.py")


@pytest.fixture
def page_store(empty_store: Store) -> Store:
    """Two classes, ten pending elves candidates scored p(elves) = 0.05 .. 0.95 (given here: the page's
    logic is under test, the scoring itself above), the 0.35 one claimed by dwarves."""
    s = empty_store
    for name in ("elves", "dwarves"):
        s.add_class(name)
    s.add_candidates(
        CandidateIn("elves", f"http://img.test/{i}.jpg", f"http://thumb.test/{i}.jpg", source="ddg") for i in range(10)
    )
    elves, dwarves = s.get_class("elves").id, s.get_class("dwarves").id
    rows = []
    for c in s.candidates():
        p = 0.05 + 0.1 * (c.id - 1)
        rows.append(candidate_scores.CandidateScore(c.id, {elves: p, dwarves: 1 - p}, None, None, None, "x", "now"))
    candidate_scores.save(s, rows)
    plant_review_fit(s, [elves, dwarves])
    return s


def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def run_ok(at: AppTest) -> None:
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def test_search_page_threshold_actions_preview_count_and_undo(page_store: Store) -> None:
    at = page()
    assert any("10 of 10 pending scored" in e.label for e in at.expander)
    accept = next(b for b in at.button if b.key == "bulk_t_accept")
    assert accept.label == "Accept 1 with p ≥ 0.90"  # only 0.95
    at.slider(key="t_accept").set_value(0.7)
    run_ok(at)
    accept = next(b for b in at.button if b.key == "bulk_t_accept")
    assert accept.label == "Accept 3 with p ≥ 0.70"
    assert any("**3** pending candidate(s)" in c.value for c in at.caption)
    accept.click()
    run_ok(at)
    assert [c.id for c in page_store.candidates(state="accepted")] == [8, 9, 10]
    reject = next(b for b in at.button if b.key == "bulk_t_reject")
    assert reject.label == "Reject 2 with p ≤ 0.20"  # 0.05, 0.15
    reject.click()
    run_ok(at)
    assert [c.id for c in page_store.candidates(state="rejected")] == [1, 2]
    # Each bulk action was one step, written as the page's window (undo belongs to its author: the test
    # process is another one, so it names the two events).
    first, second = page_store.history(limit=2)
    assert first.origin == second.origin != page_store.author()
    page_store.undo(first.id)
    page_store.undo(second.id)
    assert page_store.count_candidates(state="pending") == 10


def test_search_page_sorts_filters_and_moves_to_the_predicted_class(page_store: Store) -> None:
    at = page()

    def shown() -> list[int]:
        return [c["id"] for c in grid_data(at, "s_grid")["cards"]]

    assert shown() == list(range(1, 11))
    at = pick(at, "f_sort", "score-desc")
    assert shown() == list(range(10, 0, -1))
    at = pick(at, "f_sort", "score")
    assert shown() == list(range(1, 11))
    at = pick(at, "f_show", "looks-like")
    assert shown() == [1, 2, 3, 4, 5]  # p(elves) < 0.5: dwarves claims them
    assert all(c["flags"] == ["looks like dwarves"] for c in grid_data(at, "s_grid")["cards"])
    at = pick(at, "f_show", "off-topic")
    assert shown() == []  # every low one is claimed by the other class
    at = pick(at, "f_show", "All")
    by_id = {c["id"]: c for c in grid_data(at, "s_grid")["cards"]}
    assert by_id[3]["predicted"] == "dwarves" and by_id[8]["predicted"] is None  # its own class: no P target
    at = grid_send(at, "s_grid", {"action": "predict", "ids": [3]})  # P
    c3 = page_store.get_candidate(3)
    assert (c3.label, c3.state) == ("dwarves", "accepted")


def test_thresholds_from_out_of_sample_precision() -> None:
    """Pure: separable probabilities give the floor (0.5) at full precision; overlapping ones give none."""
    y = np.array([0, 1, 2] * 20)
    sure = np.full((60, 3), 0.02)
    sure[np.arange(60), y] = 0.96
    a, ap, r, rp = cands.thresholds_from_oof(sure, y)
    assert (a, ap, r, rp) == (0.5, 1.0, 0.5, 1.0)
    rng = np.random.default_rng(0)
    noise = rng.dirichlet(np.ones(3), size=60)
    assert cands.thresholds_from_oof(noise, y) == (None, None, None, None)
    # Some overlap: the accept threshold rises above the wrong classes' highest p, the reject one stays below
    # the right classes' lowest p.
    mixed = sure.copy()
    for i in (1, 4, 7, 10, 13):  # five images of class 1 that the head puts in class 2 at 0.65
        mixed[i] = [0.05, 0.3, 0.65]
    a, ap, r, rp = cands.thresholds_from_oof(mixed, y)
    assert a == 0.66 and ap == 1.0  # 55 right ones at 0.96; at 0.65 the five wrong ones cost 4 % precision
    assert r == 0.29 and rp == 1.0  # the five right ones at 0.3 would be rejected from 0.30 on


def test_suggested_thresholds_on_a_store_and_in_the_cli(
    scored: tuple[Store, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = scored
    suggested = cands.suggest_thresholds(store)
    assert suggested.labeled == 36 and 0.5 <= suggested.accept_at < 1
    assert "out-of-sample" in suggested.describe()
    cands.score_candidates(store, allow_private=True)
    expected = len(cands.at_least(store, suggested.accept_at))
    assert main(["--project", "demo", "candidates", "accept", "--min-score", "suggested"]) == 0
    out = capsys.readouterr()
    assert f"Accepted {expected} pending candidate(s) with p(class) >= {suggested.accept_at:g}" in out.out
    assert "Suggested from the head's out-of-sample predictions" in out.err
    with pytest.raises(SystemExit):
        main(["--project", "demo", "candidates", "accept", "--min-score", "sure"])
    assert "'sure' is not a probability" in capsys.readouterr().err


def test_suggested_thresholds_are_reused_until_the_labels_change(
    scored: tuple[Store, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decision on a candidate (Search's every key) reruns the page but changes no label: no new K-fold."""
    store, ids = scored
    calls: list[int] = []
    real = head.oof_probabilities

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(head, "oof_probabilities", counted)
    first = cands.suggest_thresholds(store)
    store.decide([ids["red0"]], "rejected")
    assert cands.suggest_thresholds(store) == first and len(calls) == 1
    image = store.images("red")[0]
    store.relabel([image.id], "green")
    cands.suggest_thresholds(store)
    assert len(calls) == 2
