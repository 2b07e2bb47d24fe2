"""The review queue kept on disk per data version (store/version.persisted, review/queue.queue; issue 14).

The first Review load after a server start read every stored score again (about a second at 20,000
images); the arrays the queue is made of are now read back from the project's cache while the data
version they were written at is still the database's. Any write from any process must still show on
the next load, and a file must never be trusted for another version or key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lotr_labeler.review import decisions, last_fit, queue
from lotr_labeler.store import ImageRow, Store, reviews, version

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_memo() -> Iterator[None]:
    version.clear()
    yield
    version.clear()


@pytest.fixture
def scored(store: Store) -> Store:
    """The 18 shape images, each with stored probabilities (no embedding: written as a fit would)."""
    class_ids = [c.id for c in store.classes()]
    rng = np.random.default_rng(0)
    rows = [
        (img.id, json.dumps([round(float(p), 6) for p in rng.dirichlet(np.ones(len(class_ids)))]), "head")
        for img in store.images()
    ]
    from lotr_labeler.model import embed

    fit: dict[str, object] = {"backbone": embed.Backbone("resnet18", 32, pretrained=False).as_dict()}
    fit |= {"class_ids": class_ids, "computed_at": "now", "seconds": 0.1, "folds": 2, "scored": len(rows)}
    fit |= {"blended": 0, "run_id": None, "event_id": 0}
    reviews.replace_scores(store, rows, fit_key="review_fit", fit=json.dumps(fit))
    return store


def memo_files(store: Store) -> list[Path]:
    return sorted((store.cache_dir / version.PERSIST_DIR).glob("*.npz"))


def no_scores(*args: object, **kwargs: object) -> dict[int, tuple[list[float], str]]:
    raise AssertionError("the stored scores were read again")


def as_tuples(items: list[queue.ReviewItem]) -> list[tuple[object, ...]]:
    return [(i.id, i.given, i.predicted, i.self_confidence, i.margin, i.probs, i.source, i.flags) for i in items]


def test_a_new_process_reads_the_kept_queue_without_reading_the_scores(
    scored: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = queue.ranking(scored, sort="margin", status="all")
    assert len(memo_files(scored)) == 2  # the queue's arrays and the count of unmeasured images
    version.clear()  # what a server restart forgets
    monkeypatch.setattr(reviews, "scores", no_scores)
    assert as_tuples(queue.ranking(scored, sort="margin", status="all")) == as_tuples(first)
    # Other filters and sorts of the same listing come from the same file.
    assert queue.ranking(scored) == sorted(first, key=lambda it: (it.self_confidence, it.id))


def test_a_fresh_process_uses_the_file_the_page_wrote(scored: Store) -> None:
    ranked = queue.queue(scored)
    code = (
        "import sys\n"
        "from lotr_labeler.review import queue\n"
        "from lotr_labeler.store import Store, reviews\n"
        "def boom(*a, **k): raise SystemExit('recomputed')\n"
        "reviews.scores = boom\n"
        "with Store(sys.argv[1]) as s:\n"
        "    print(','.join(str(i) for i in queue.queue(s).ids))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(scored.root)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ",".join(str(i) for i in ranked.ids)


def test_a_relabel_by_another_process_is_on_the_next_load(scored: Store) -> None:
    before = {it.id: it for it in queue.ranking(scored, status="all")}
    target = next(iter(before.values()))
    other = next(c.name for c in scored.classes() if c.name != target.given)
    with Store(scored.root) as tab:  # another process' connection
        tab.relabel([target.id], other)
    version.clear()  # and a fresh server: only the file could answer, and it must not
    after = {it.id: it for it in queue.ranking(scored, status="all")}
    assert after[target.id].given == other
    assert after[target.id].self_confidence == pytest.approx(target.probs[other])


def test_a_keep_elsewhere_leaves_the_queue_and_new_scores_replace_the_old(scored: Store) -> None:
    first = queue.queue(scored)[0].id
    with Store(scored.root) as tab:
        decisions.keep(tab, [first])
    version.clear()
    assert first not in queue.queue(scored).ids
    assert first in queue.queue(scored, status="reviewed").ids
    # A refit (new scores, same images) must not be served from the file either.
    rows = [(img.id, json.dumps([1.0, 0.0, 0.0]), "head") for img in scored.images()]
    with Store(scored.root) as tab:
        reviews.replace_scores(tab, rows, fit_key="review_fit", fit=tab.meta_get("review_fit") or "{}")
    version.clear()
    assert {it.probs[next(iter(it.probs))] for it in queue.ranking(scored, status="all")} == {1.0}


def test_a_file_of_another_version_or_a_torn_file_is_recomputed(scored: Store) -> None:
    calls: list[int] = []

    def compute() -> version.Arrays:
        calls.append(1)
        return {"x": np.arange(3)}

    assert version.persisted(scored, "k", compute)["x"].tolist() == [0, 1, 2]
    assert version.persisted(scored, "k", compute)["x"].tolist() == [0, 1, 2]
    assert len(calls) == 1  # read back
    scored.set_setting("near_dup_distance", 5)  # any write bumps the version
    version.persisted(scored, "k", compute)
    assert len(calls) == 2
    version.persisted_path(scored, "k").write_bytes(b"PK\x03\x04 torn")
    assert version.persisted(scored, "k", compute)["x"].tolist() == [0, 1, 2]
    assert len(calls) == 3
    # Another key hashed to the same file name (or a file copied over) is not taken for this one.
    version.persisted_path(scored, "other").write_bytes(version.persisted_path(scored, "k").read_bytes())
    version.persisted(scored, "other", compute)
    assert len(calls) == 4


def test_nothing_is_kept_inside_a_transaction(scored: Store) -> None:
    with scored.transaction():
        version.persisted(scored, "k", lambda: {"x": np.zeros(1)})
    assert not version.persisted_path(scored, "k").exists()


def test_the_folder_keeps_a_bounded_number_of_files(scored: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(version, "MAX_FILES", 3)
    for k in range(5):
        version.persisted(scored, f"k{k}", lambda: {"x": np.zeros(1)})
    assert len(memo_files(scored)) == 3
    assert version.persisted_path(scored, "k4").exists()


def test_a_reserved_name_is_refused(scored: Store) -> None:
    with pytest.raises(ValueError, match="__version__"):
        version.persisted(scored, "k", lambda: {"__version__": np.zeros(1)})


def test_embed_missing_is_read_back_and_follows_a_delete(scored: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from lotr_labeler.model import embed

    backbone = embed.Backbone("resnet18", 32, pretrained=False)
    first = embed.missing(scored, backbone)  # no cache file: every image
    assert [r.id for r in first] == [r.id for r in scored.images()]
    version.clear()

    def no_keys(path: Path) -> set[str]:
        raise AssertionError("the embedding cache's keys were read again")

    with monkeypatch.context() as m:
        m.setattr(embed, "_cached_keys", no_keys)
        assert embed.missing(scored, backbone) == first
    with Store(scored.root) as tab:
        tab.delete_images([first[0].id])
    version.clear()
    assert [r.id for r in embed.missing(scored, backbone)] == [r.id for r in first[1:]]


def test_scores_written_prepare_the_review_page_it_then_reads_nothing_again(
    scored: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What fit_scores calls once the scores are stored: the Review page's first load in another
    process (here: a fresh memo) then reads neither the scores, nor the embedding cache's keys, nor
    the listing of every image."""
    from streamlit.testing.v1 import AppTest

    from lotr_labeler.model import embed

    info = last_fit.fit_info(scored)
    assert info is not None
    path = embed.cache_path(scored, info.backbone_spec)  # every image embedded (as the job leaves it)
    path.parent.mkdir(parents=True, exist_ok=True)
    shas = [img.sha256 for img in scored.images()]
    np.savez(path, keys=np.array(shas, dtype="<U64"), vectors=np.zeros((len(shas), 4), np.float32))
    queue.prepare_page(scored, info.backbone_spec)
    expected = queue.queue(scored).ids
    version.clear()
    monkeypatch.setattr(reviews, "scores", no_scores)
    monkeypatch.setattr(embed, "_cached_keys", lambda path: (_ for _ in ()).throw(AssertionError("keys read")))
    listed: list[object] = []
    listing = Store.images

    def images(self: Store, *args: Any, **kwargs: Any) -> list[ImageRow]:
        listed.append(args)
        return listing(self, *args, **kwargs)

    monkeypatch.setattr(Store, "images", images)
    at = AppTest.from_file(str(ROOT / "pages" / "5_Review.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Compute scores" in [b.label for b in at.button]  # nothing new to embed
    assert listed == []  # not even the image listing: the queue's rows come from the file too
    assert queue.queue(scored).ids == expected


def test_a_train_form_edit_keeps_the_queue_on_disk_a_new_fit_does_not(
    scored: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Train page saves its form on every edit (meta 'train_form'): the next Review load, even in
    a fresh process, must still read the kept queue rather than every stored score."""
    from lotr_labeler.model import train_form

    first = as_tuples(queue.ranking(scored, status="all"))
    with Store(scored.root) as tab:  # the Train page, in another session
        train_form.save_form(tab, train_form.TrainForm(epochs=3, pretrained=False))
        train_form.save_form(tab, train_form.TrainForm(epochs=4, pretrained=False))
    version.clear()
    with monkeypatch.context() as m:
        m.setattr(reviews, "scores", no_scores)
        assert as_tuples(queue.ranking(scored, status="all")) == first
    # A new fit record is read by the ranking: the kept queue is not served for it.
    read: list[int] = []
    real = reviews.scores

    def counted(*args: Any) -> Any:
        read.append(1)
        return real(*args)

    monkeypatch.setattr(reviews, "scores", counted)
    with Store(scored.root) as tab:
        tab.meta_set("review_fit", tab.meta_get("review_fit") or "{}")
    version.clear()
    assert as_tuples(queue.ranking(scored, status="all")) == first
    assert read == [1]


def test_a_queue_kept_with_another_row_layout_is_recomputed_not_an_error(
    scored: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file an older code wrote (ImageRow had a field fewer) at the same data version: rebuilding
    rows from it would raise; it must be recomputed instead."""
    expected = as_tuples(queue.ranking(scored, status="all"))
    rows = [img for img in scored.images()]
    version.clear()
    for path in memo_files(scored):
        path.unlink()
    with monkeypatch.context() as m:  # the older code: one field fewer in the kept rows
        m.setattr(queue, "_ROW_FIELDS", queue._ROW_FIELDS[:-1])
        queue.queue(scored, status="all")  # writes its file (rows are built only when shown)
    assert len(memo_files(scored)) == 2
    version.clear()  # the new code, in a fresh process, at the same data version
    got = queue.ranking(scored, status="all")
    assert as_tuples(got) == expected
    assert sorted((it.image for it in got), key=lambda r: r.id) == rows


def test_a_file_of_another_format_is_recomputed(scored: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def compute() -> version.Arrays:
        calls.append(1)
        return {"x": np.arange(3)}

    with monkeypatch.context() as m:
        m.setattr(version, "FORMAT", version.FORMAT + 1)  # a later code's file at the same version
        version.persisted(scored, "k", compute)
    assert version.persisted(scored, "k", compute)["x"].tolist() == [0, 1, 2]
    assert version.persisted(scored, "k", compute)["x"].tolist() == [0, 1, 2]
    assert len(calls) == 2  # recomputed once, then read back
    # A file from before stamps had a format: [key, token, counter].
    stamp = json.dumps(["k", *version.data_version(scored)])
    buf_path = version.persisted_path(scored, "k")
    np.savez(buf_path, x=np.arange(5), __version__=np.array(stamp))
    assert version.persisted(scored, "k", compute)["x"].tolist() == [0, 1, 2]
    assert len(calls) == 3


def test_a_kept_queue_decodes_only_the_rows_a_page_shows(scored: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 20,000 images decoding every kept row cost a fresh process 45 ms before the page showed 48."""
    expected = as_tuples(queue.ranking(scored, status="all"))
    version.clear()
    decoded: list[bytes] = []
    loads = json.loads

    def counted(text: Any, *args: Any, **kwargs: Any) -> Any:
        decoded.append(text)
        return loads(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counted)
    ranked = queue.queue(scored, status="all")
    decoded.clear()  # the fit record and the like; from here on only rows
    assert len(ranked) == len(expected)
    assert decoded == []
    assert as_tuples(ranked[:2]) == expected[:2]
    assert len(decoded) == 2
    assert as_tuples(list(ranked)) == expected  # every row still comes back whole


def test_warm_ranks_the_review_pages_first_queue_into_the_memo(scored: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """What lotr_labeler.warmup does once a server has drawn its first page: the Review page's first run then
    ranks nothing (its default filters and its trust line hit the memo)."""
    from streamlit.testing.v1 import AppTest

    from lotr_labeler import warmup
    from lotr_labeler.review import quality

    assert queue.warm(scored) is None  # 18 images without quality figures: the page measures them
    quality.quality_stats(scored, scored.images())
    assert queue.unmeasured(scored) == 0
    [done] = warmup.warm([], scored.root, idle=lambda quiet: None)
    assert done.startswith(f"review queue of {scored.name}: {scored.count()} images, ")

    def no_rank(*args: object, **kwargs: object) -> queue.Ranking:
        raise AssertionError(f"the queue was ranked again: {args[1:]} {kwargs}")

    monkeypatch.setattr(queue, "_rank", no_rank)
    asked: list[dict[str, Any]] = []
    real = queue.queue

    def spy(store: Store, **filters: Any) -> queue.Ranking:
        asked.append(filters)
        return real(store, **filters)

    monkeypatch.setattr(queue, "queue", spy)
    at = AppTest.from_file(str(ROOT / "pages" / "5_Review.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert {"sort": "self_confidence", "status": "unreviewed", "label": None} in [
        {k: f.get(k) for k in ("sort", "status", "label")} for f in asked
    ]  # the grid's queue was asked for, and came from the memo


def test_warm_leaves_the_quality_figures_the_page_would_measure_to_the_page(
    scored: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue, "unmeasured", lambda store: 3)
    ranked: list[object] = []
    monkeypatch.setattr(queue, "queue", lambda *a, **k: ranked.append(k))
    assert queue.warm(scored) is None
    assert ranked == []
    monkeypatch.setattr(queue, "unmeasured", lambda store: queue.PAGE_QUALITY_LIMIT + 1)
    monkeypatch.setattr(queue, "queue", lambda *a, **k: ranked.append(k) or [])
    assert queue.warm(scored) == 0
    assert ranked == [{"compute_quality": False}]  # what the page passes past the limit
