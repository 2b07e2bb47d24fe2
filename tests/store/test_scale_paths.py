"""The scale paths of issue 14: the near-duplicate index on insert, batched image commits.

Images here carry chosen phashes (``Normalized`` with a real JPEG body and a made-up phash and
sha256), so which image is a near duplicate of which is decided by the test, not by a picture.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import image_bytes, shape_image

from lotr_labeler.errors import NotFound
from lotr_labeler.imaging import Normalized, hamming
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.store.images import ImageIn
from lotr_labeler.store.phash import PhashIndex

JPEG = image_bytes(shape_image("circle", 1), "JPEG")
ROOT = Path(__file__).resolve().parents[2]


def fake(phash: int | str, tag: str) -> Normalized:
    """A storable image with this phash; ``tag`` makes its sha256 (its identity) unique."""
    text = phash if isinstance(phash, str) else f"{phash:016x}"
    return Normalized(JPEG, 64, 64, hashlib.sha256(tag.encode()).hexdigest(), text)


def flip(value: int, bits: int, seed: int) -> int:
    for bit in random.Random(seed).sample(range(64), bits):
        value ^= 1 << bit
    return value


def brute(phashes: list[str], query: str, distance: int) -> list[tuple[int, int]]:
    return sorted((d, k) for k, h in enumerate(phashes) if (d := hamming(query, h)) <= distance)


# -- PhashIndex -------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", [0, 3, 8, 15, 20, 64])
def test_index_finds_exactly_what_a_full_comparison_finds(distance: int) -> None:
    rng = random.Random(distance)
    base = [rng.getrandbits(64) for _ in range(1500)]
    values = base + [flip(rng.choice(base), rng.randint(0, 12), k) for k in range(500)]
    phashes = [f"{v:016x}" for v in values]
    index = PhashIndex(distance)
    for key, h in enumerate(phashes):
        index.add(key, h)
    assert len(index) == len(phashes)
    for q in range(0, len(values), 37):
        query = f"{flip(values[q], rng.randint(0, min(distance + 2, 64)), q):016x}"
        assert index.near(query) == brute(phashes, query, distance)


def test_index_clustered_hashes_and_other_lengths() -> None:
    # Hashes sharing most chunks (a blank-ish picture found many times) take the full-array path.
    clustered = [f"{flip(0, k % 5, k):016x}" for k in range(300)]
    odd = ["abc", "abd", "0" * 20]  # not 64-bit: compared one by one
    index = PhashIndex(4)
    for key, h in enumerate(clustered + odd):
        index.add(key, h)
    assert index.near("0" * 16) == brute(clustered + odd, "0" * 16, 4)
    assert index.near("abc") == brute(clustered + odd, "abc", 4)


# -- the index inside the store ---------------------------------------------------------------


@pytest.fixture
def two(empty_store: Store) -> Store:
    empty_store.add_class("a")
    empty_store.add_class("b")
    return empty_store


def test_insert_sees_rows_another_process_committed_after_the_index_was_built(two: Store) -> None:
    x = 0x0123456789ABCDEF
    y = flip(x ^ 0xFFFFFFFF00000000, 0, 1)  # 32 bits from x: no relation to it
    first = two.add_image(fake(x, "x"), "a", source="upload")
    assert first.near_duplicate_of is None and two._phash_index is not None  # the index exists now
    script = textwrap.dedent(
        f"""
        import hashlib, sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from helpers import image_bytes, shape_image
        from lotr_labeler.imaging import Normalized
        from lotr_labeler.store import Store
        jpeg = image_bytes(shape_image("circle", 1), "JPEG")
        with Store(Path({str(two.root)!r})) as other:
            img = Normalized(jpeg, 64, 64, hashlib.sha256(b"y").hexdigest(), "{y:016x}")
            print(other.add_image(img, "b", source="upload").image.id)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    other_id = int(out.stdout.strip())
    # z is 2 bits from the other process's y, far from x: only a fresh index flags it.
    z = two.add_image(fake(flip(y, 2, 7), "z"), "a", source="upload")
    assert z.near_duplicate_of == other_id
    assert "near-duplicate" in two.get_image(other_id).flags


def test_deleted_images_are_not_proposed_and_restored_ones_are(two: Store) -> None:
    x = 0x00FF00FF00FF00FF
    kept = two.add_image(fake(x, "x"), "a", source="upload").image
    two.delete_images([kept.id])
    assert two.add_image(fake(flip(x, 1, 1), "x1"), "b", source="upload").near_duplicate_of is None
    two.restore_images([kept.id])
    assert two.add_image(fake(flip(x, 1, 2), "x2"), "b", source="upload").near_duplicate_of == kept.id


def test_nearest_of_several_wins_ties_to_the_lowest_id(two: Store) -> None:
    x = 0x0F0F0F0F0F0F0F0F
    far = two.add_image(fake(flip(x, 6, 1), "far"), "a", source="upload").image
    near_a = two.add_image(fake(flip(x, 2, 2), "near-a"), "a", source="upload").image
    two.add_image(fake(flip(x, 2, 3), "near-b"), "a", source="upload")
    assert far.id < near_a.id
    assert two.add_image(fake(x, "q"), "b", source="upload").near_duplicate_of == near_a.id


def test_near_duplicates_within_one_batch(two: Store) -> None:
    x = 0x1111222233334444
    results = two.add_images([ImageIn(fake(x, "p"), "a", "upload"), ImageIn(fake(flip(x, 3, 1), "q"), "b", "upload")])
    first, second = results
    assert not isinstance(first, Exception) and not isinstance(second, Exception)
    assert second.near_duplicate_of == first.image.id


# -- batched commits ----------------------------------------------------------------------------


def test_batch_stores_the_others_when_one_class_is_gone(two: Store) -> None:
    items = [
        ImageIn(fake(1, "one"), "a", "upload"),
        ImageIn(fake(2**40, "two"), "gone", "upload"),
        ImageIn(fake(2**60, "one"), "b", "upload"),  # same bytes as the first: a duplicate
    ]
    ok, gone, dup = two.add_images(items)
    assert not isinstance(ok, Exception) and not ok.duplicate
    assert isinstance(gone, NotFound) and "gone" in str(gone)
    assert not isinstance(dup, Exception) and dup.duplicate and dup.image.id == ok.image.id
    assert two.count() == 1 and not list((two.root / "tmp").iterdir())
    assert two.path(ok.image).is_file()


def test_failed_batch_stores_nothing_and_keeps_no_stale_index(two: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    x = 0x5555AAAA5555AAAA
    two.add_image(fake(2**63, "seed"), "a", source="upload")  # builds the index
    real_plan = Store._plan_move
    calls = {"n": 0}

    def disk_full_on_second(self: Store, src: str, dst: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_plan(self, src, dst)

    monkeypatch.setattr(Store, "_plan_move", disk_full_on_second)
    with pytest.raises(OSError):
        two.add_images([ImageIn(fake(x, "r1"), "a", "upload"), ImageIn(fake(flip(x, 1, 1), "r2"), "a", "upload")])
    monkeypatch.setattr(Store, "_plan_move", real_plan)
    assert two.count() == 1 and not list((two.root / "tmp").iterdir())
    # The rolled-back rows' ids are taken again; the index must not remember x under them.
    again = two.add_image(fake(0x0000FFFF0000FFFF, "fresh"), "b", source="upload")
    assert again.near_duplicate_of is None
    assert two.add_image(fake(flip(x, 2, 5), "after"), "b", source="upload").near_duplicate_of is None
    near_fresh = two.add_image(fake(flip(0x0000FFFF0000FFFF, 2, 9), "near-fresh"), "a", source="upload")
    assert near_fresh.near_duplicate_of == again.image.id


CRASH = """
import hashlib, os, sys
from pathlib import Path
from typing import Any
sys.path.insert(0, {tests!r})
from helpers import image_bytes, shape_image
from lotr_labeler.imaging import Normalized
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.store.images import ImageIn

where = {where!r}
jpeg = image_bytes(shape_image("square", 2), "JPEG")
store = Store(Path({root!r}))
if where == "after-commit":
    Store._apply_file_ops = lambda self: os._exit(9)  # killed between the commit and the moves
else:
    real = Store._insert_image
    count = [0]
    def insert_then_die(self, *a, **kw):
        count[0] += 1
        if count[0] == 3:
            os._exit(9)  # killed in the middle of the batch, before its commit
        return real(self, *a, **kw)
    Store._insert_image = insert_then_die
items = [
    ImageIn(Normalized(jpeg, 64, 64, hashlib.sha256(str(k).encode()).hexdigest(), f"{{k << 40:016x}}"), "a", "upload")
    for k in range(5)
]
store.add_images(items)
"""


@pytest.mark.parametrize("where", ["after-commit", "mid-batch"])
def test_kill_9_during_a_batch_loses_nothing_committed_and_leaves_nothing_half_done(two: Store, where: str) -> None:
    script = CRASH.format(tests=str(ROOT / "tests"), where=where, root=str(two.root))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 9, proc.stderr
    with Store(two.root, tmp_grace_seconds=0) as reopened:  # the open repairs: moves replayed, temp swept
        rows = reopened.images()
        if where == "after-commit":
            assert len(rows) == 5
            assert all(reopened.path(r).is_file() for r in rows)
        else:
            assert rows == []
        assert not list((two.root / "tmp").iterdir())
        assert sorted(p.name for p in (two.root / "images").rglob("*.jpg")) == sorted(f"{r.id}.jpg" for r in rows)


# -- cold start -------------------------------------------------------------------------------


def test_home_page_imports_nothing_heavy() -> None:
    """What home.py (the first page) imports loads no numpy, pandas, pyarrow, altair, scipy or torch."""
    import ast

    tree = ast.parse((ROOT / "home.py").read_text(encoding="utf-8"))
    modules = sorted(
        {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
        | {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    )
    heavy = ("numpy", "pandas", "pyarrow", "altair", "scipy", "imagehash", "torch", "fastai", "sklearn")
    script = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "lotr_labeler.model.runs" in modules and "streamlit" in modules
    assert out.stdout.strip() == ""


# -- downloads: group commit --------------------------------------------------------------------


def _hold_first_commit(two: Store, image_server: str, monkeypatch: pytest.MonkeyPatch, n: int) -> list[int]:
    """``n`` accepted candidates, and a downloader whose first commit waits until every download has
    finished (so the next commit is a batch); returns the batch sizes as they are committed."""
    import threading

    from lotr_labeler.collect import download

    two.set_setting("allow_private_hosts", True)  # the test server is on 127.0.0.1
    two.add_candidates(CandidateIn("a", f"{image_server}/img/{k}.png") for k in range(n))
    two.decide([c.id for c in two.candidates()], "accepted")
    finished = threading.Semaphore(0)
    real_work, real_record = download._work, download._record_images
    sizes: list[int] = []

    def work(*args: Any) -> Any:
        try:
            return real_work(*args)
        finally:
            finished.release()

    def record(store: Store, batch: list[Any], report: Any, *each: Any) -> list[str]:
        if not sizes:  # hold the first commit until every download has finished
            for _ in range(n):
                assert finished.acquire(timeout=60)
        sizes.append(len(batch))
        return real_record(store, batch, report, *each)

    monkeypatch.setattr(download, "_work", work)
    monkeypatch.setattr(download, "_record_images", record)
    return sizes


@pytest.mark.slow
def test_download_commits_what_finished_meanwhile_in_one_transaction(
    two: Store, image_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the writer commits, finished downloads queue up; the next commit takes them all (<= 32)."""
    from lotr_labeler.collect import download

    n = 40
    sizes = _hold_first_commit(two, image_server, monkeypatch, n)
    report = download.download_candidates(two, workers=n)
    assert report.ok == n and sum(sizes) == n
    # Everything finished while the first commit was held goes into the next one (at most _BATCH):
    # e.g. [1, 32, 7] or [11, 29], never one commit per image.
    assert sizes[1] == min(download._BATCH, n - sizes[0]) and len(sizes) <= 3
    assert sorted(p.name for p in (two.root / "images").rglob("*.jpg")) == sorted(f"{i}.jpg" for i in report.image_ids)
    assert not list((two.root / "tmp").iterdir())


def test_interrupt_after_the_commit_keeps_the_stored_images(two: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C lands after the batch committed, before its file moves: the rows are stored, so
    their staged files must stay for the journal (the next open moves them into place)."""
    from lotr_labeler.store.db import Database

    def interrupted(self: Database) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Database, "_apply_file_ops", interrupted)
    with pytest.raises(KeyboardInterrupt):
        two.add_images([ImageIn(fake(1, "k1"), "a", "upload"), ImageIn(fake(2**40, "k2"), "b", "upload")])
    monkeypatch.undo()
    with Store(two.root) as reopened:  # replays the journal
        rows = reopened.images()
        assert len(rows) == 2
        for row in rows:
            assert reopened.path(row).read_bytes() == JPEG, row
        assert not list((reopened.root / "tmp").iterdir())


def test_download_records_its_images_for_undo_even_when_it_ends_in_an_error(
    two: Store, image_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lotr_labeler.collect import download

    two.set_setting("allow_private_hosts", True)
    two.add_candidates(CandidateIn("a", f"{image_server}/img/{k}.png") for k in range(3))
    two.decide([c.id for c in two.candidates()], "accepted")
    real_record = download._record_images
    calls = {"n": 0}

    def record_then_fail(store: Store, batch: list[Any], report: Any, *each: Any) -> list[str]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt  # Ctrl-C after the first commit
        return real_record(store, batch, report, *each)

    monkeypatch.setattr(download, "_record_images", record_then_fail)
    with pytest.raises(KeyboardInterrupt):
        download.download_candidates(two, workers=1)
    stored = [i.id for i in two.images()]
    assert stored, "the first commit stored images"
    assert two.history(1)[0].kind == "import"
    two.undo()  # takes back exactly the images the interrupted run committed
    assert two.images() == []


def test_a_full_disk_stops_the_download_and_another_write_error_fails_the_candidate(
    two: Store, image_server: str
) -> None:
    """A full disk is not the URL's fault: the download stops with DiskFull and the candidates stay accepted
    (issue 20: it used to pass as two failed candidates). Any other write error fails its candidate."""
    from lotr_labeler.collect import download
    from lotr_labeler.errors import DiskFull

    two.set_setting("allow_private_hosts", True)
    two.add_candidates(CandidateIn("a", f"{image_server}/img/{k}.png") for k in range(2))
    two.decide([c.id for c in two.candidates()], "accepted")

    def no_space(img: Normalized) -> Path:
        raise OSError(28, "No space left on device")

    two.stage_image = no_space  # type: ignore[method-assign]
    with pytest.raises(DiskFull, match="The disk is full"):
        download.download_candidates(two, workers=2)
    assert {c.state for c in two.candidates()} == {"accepted"}

    def no_permission(img: Normalized) -> Path:
        raise OSError(13, "Permission denied")

    two.stage_image = no_permission  # type: ignore[method-assign]
    report = download.download_candidates(two, workers=2)
    assert report.failed == 2 and report.ok == 0
    errors = [(c.state, c.error or "") for c in two.candidates()]
    assert all(state == "failed" and "write failed" in error for state, error in errors), errors


# -- near-duplicate grouping after deletes (the Duplicates tab) ------------------------------------


def test_grouping_a_subset_reuses_the_last_search_and_equals_a_fresh_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from lotr_labeler.review import dedupe

    rng = random.Random(7)
    base = [rng.getrandbits(64) for _ in range(600)]
    values = base + [flip(rng.choice(base), rng.randint(0, 10), k) for k in range(900)]
    phashes = [f"{v:016x}" for v in values]
    full = dedupe.find_groups(phashes, 8)
    searches: list[int] = []
    real = dedupe.near_pairs

    def counted(bits: Any, d: int) -> Any:
        searches.append(len(bits))
        return real(bits, d)

    monkeypatch.setattr(dedupe, "near_pairs", counted)
    for trial in range(3):  # some images deleted: a subset of the values
        kept = sorted(random.Random(trial).sample(range(len(phashes)), 1000 - 200 * trial))
        subset = [phashes[k] for k in kept]
        got = dedupe.find_groups(subset, 8)
        monkeypatch.setattr(dedupe, "_last_pairs", None)  # a fresh search, for the expected answer
        assert got == dedupe.find_groups(subset, 8)
        dedupe.find_groups(phashes, 8)  # the full set searched again: the cache covers the next subset
    # Per trial: the fresh expected search and the full set again, never the subset itself.
    assert len(searches) == 6
    assert dedupe.find_groups(phashes, 8) == full  # covered by the last search
    assert len(searches) == 6
    dedupe.find_groups(phashes[:500], 7)  # another distance: searched anew
    assert len(searches) == 7


def test_progress_advances_one_image_at_a_time_through_a_group_commit(
    two: Store, image_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images committed in one batch still report done = 1, 2, 3, … (not the batch's total n times)."""
    from lotr_labeler.collect import download

    n = 6
    sizes = _hold_first_commit(two, image_server, monkeypatch, n)
    seen: list[download.DownloadProgress] = []
    report = download.download_candidates(two, workers=n, progress=seen.append)
    assert report.ok == n and max(sizes) > 1  # a real group commit happened
    assert [p.done for p in seen] == list(range(1, n + 1))
    assert [p.ok for p in seen] == list(range(1, n + 1))
