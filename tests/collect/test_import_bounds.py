"""Archive members read as streams under a byte cap, and one URL sanitiser for every source.

The manifest bomb: a ~200 KB zip whose manifest.csv is one 200 MB line once took 1.2 GB and ended in
a ``_csv.Error`` traceback. Credentials in a manifest's URLs were stored and exported."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import image_bytes, shape_image

from lotr_labeler.collect import importers
from lotr_labeler.collect.export import export_dataset
from lotr_labeler.collect.importers import import_urls, import_zip
from lotr_labeler.collect.search import SearchHit, _candidates
from lotr_labeler.errors import InvalidInput
from lotr_labeler.imaging import normalize
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.urls import clean_url, has_credentials, redact

BOMB_LINE = 200 * 1024 * 1024
PEAK_LIMIT_MB = 400
SECRET = "http://user:pw@example.com/a.jpg"


def _png(seed: int) -> bytes:
    return image_bytes(shape_image("circle", seed))


def _bomb(path: Path) -> Path:
    """A zip with one image and a manifest.csv that is one 200 MB line (it compresses to ~200 KB)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cats/a.png", _png(1))
        with zf.open("manifest.csv", "w", force_zip64=True) as fh:
            chunk = b"a" * (1024 * 1024)
            for _ in range(BOMB_LINE // len(chunk)):
                fh.write(chunk)
    return path


@pytest.mark.slow
def test_the_manifest_bomb_is_one_line_error_under_400_mb(tmp_path: Path) -> None:
    """`import zip` in a subprocess: peak RSS of that process (wait4's ru_maxrss) stays under 400 MB,
    and the answer is one error line, no traceback."""
    bomb = _bomb(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < 2 * 1024 * 1024
    env = {**os.environ, "LOTR_LABELER_DATA": str(tmp_path / "data")}
    cli = [sys.executable, "-m", "lotr_labeler"]
    subprocess.run([*cli, "init", "--template", "empty"], env=env, check=True, capture_output=True, timeout=120)
    out_f, err_f = tmp_path / "out.txt", tmp_path / "err.txt"
    # Started from a small launcher, not from pytest: Linux carries the parent's peak RSS into a child's
    # ru_maxrss at exec (a 2.6 GB pytest made any child look 2.6 GB), so the launcher must be small itself.
    launcher = (
        "import os, subprocess, sys\n"
        "with open(sys.argv[1], 'wb') as o, open(sys.argv[2], 'wb') as e:\n"
        "    p = subprocess.Popen(sys.argv[3:], stdout=o, stderr=e)\n"
        "    _, status, usage = os.wait4(p.pid, 0)\n"
        "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", launcher, str(out_f), str(err_f), *cli, "import", "zip", str(bomb)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    code, maxrss_kb = (int(v) for v in done.stdout.split())
    out, err = out_f.read_text(), err_f.read_text()
    peak_mb = maxrss_kb / 1024
    print(f"manifest bomb: peak RSS {peak_mb:.0f} MB, exit {code}, stderr {err.strip()!r}")
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: manifest.csv in the zip has a line longer than"), err
    assert "Traceback" not in err
    assert peak_mb <= PEAK_LIMIT_MB


def test_every_zip_member_is_read_under_a_cap(empty_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest whose lines are short but whose total is over the cap is refused in one line, as is
    one that is not CSV a reader can take; nothing is imported from either."""
    monkeypatch.setattr(importers, "MANIFEST_MAX_BYTES", 10_000)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cats/a.png", _png(2))
        zf.writestr("manifest.csv", "path,source_url\n" + "cats/a.png,http://example.com/a.jpg\n" * 1000)
    buf.seek(0)
    with pytest.raises(InvalidInput, match=r"manifest.csv in the zip is larger than 10,000 bytes") as err:
        import_zip(empty_store, buf)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(importers, "MANIFEST_MAX_BYTES", 1_000_000)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cats/a.png", _png(2))
        zf.writestr("manifest.csv", 'path,title\ncats/a.png,"' + "x\n" * 70_000 + '"\n')  # one field > csv's limit
    buf.seek(0)
    with pytest.raises(InvalidInput, match=r"manifest.csv in the zip is not valid CSV"):
        import_zip(empty_store, buf)
    assert empty_store.count() == 0


# -- credentials: one sanitiser for every source -------------------------------------------------------


def test_the_sanitiser_strips_and_redacts_every_spelling() -> None:
    assert clean_url(SECRET) == "http://example.com/a.jpg"
    assert clean_url("https://token@cdn.example.com:8443/x?a=1#f") == "https://cdn.example.com:8443/x?a=1#f"
    assert clean_url("http://[::1@evil/x") == "http://evil/x"  # urlsplit refuses it; still stripped
    assert clean_url("http://example.com/a@b.jpg") == "http://example.com/a@b.jpg"  # an @ in the path is no user
    assert clean_url("") is None and clean_url(None) is None
    assert has_credentials(SECRET) and not has_credentials("http://example.com/x")
    assert redact(SECRET) == "http://***@example.com/a.jpg"


def _zip_with_manifest(url: str) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cats/a.png", _png(3))
        zf.writestr("manifest.csv", f"path,source_url,page_url\ncats/a.png,{url},{url.replace('a.jpg', 'page')}\n")
    buf.seek(0)
    return buf


def test_credentials_in_a_manifest_are_not_stored_listed_or_exported(empty_store: Store, tmp_path: Path) -> None:
    report = import_zip(empty_store, _zip_with_manifest(SECRET))
    assert len(report.added) == 1
    image = empty_store.images()[0]
    assert image.source_url == "http://example.com/a.jpg" and image.page_url == "http://example.com/page"
    out = tmp_path / "export.zip"
    export_dataset(empty_store, out)
    with zipfile.ZipFile(out) as zf:
        manifest = zf.read(next(n for n in zf.namelist() if n.endswith("manifest.csv"))).decode()
    assert "pw" not in manifest and "user" not in manifest
    rows = list(csv.DictReader(io.StringIO(manifest)))
    assert rows[0]["source_url"] == "http://example.com/a.jpg"


@pytest.mark.slow
def test_credentials_in_a_manifest_never_reach_images_list_json(tmp_path: Path) -> None:
    env = {**os.environ, "LOTR_LABELER_DATA": str(tmp_path / "data")}
    cli = [sys.executable, "-m", "lotr_labeler"]
    subprocess.run([*cli, "init", "--template", "empty"], env=env, check=True, capture_output=True, timeout=120)
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(_zip_with_manifest(SECRET).getvalue())
    subprocess.run([*cli, "import", "zip", str(bundle)], env=env, check=True, capture_output=True, timeout=120)
    listed = subprocess.run(
        [*cli, "images", "list", "--json"], env=env, check=True, capture_output=True, text=True, timeout=120
    ).stdout
    assert "pw@" not in listed and "user:" not in listed
    assert json.loads(listed)[0]["source_url"] == "http://example.com/a.jpg"


def test_url_lists_refuse_credentials_with_the_secret_masked(empty_store: Store) -> None:
    empty_store.add_class("cats")
    report = import_urls(empty_store, f"{SECRET},cats\nhttp://example.com/b.jpg,cats,https://u:p@t.example/x\n")
    reasons = [r for _, r in report.rejected]
    assert len(reasons) == 2 and all("pw" not in r and "u:p" not in r for r in reasons)
    assert "http://***@example.com/a.jpg" in reasons[0]
    assert empty_store.candidates() == []


def test_search_results_are_stored_without_credentials(empty_store: Store) -> None:
    empty_store.add_class("cats")
    hit = SearchHit(
        image_url=SECRET,
        thumbnail_url="https://k:s@thumbs.example/t.jpg",
        page_url="https://u@pages.example/p",
        title="t",
        width=1,
        height=1,
    )
    empty_store.add_candidates(_candidates("cats", "q", [hit], "ddg"))
    cand = empty_store.candidates()[0]
    assert (cand.image_url, cand.thumbnail_url, cand.page_url) == (
        "http://example.com/a.jpg",
        "https://thumbs.example/t.jpg",
        "https://pages.example/p",
    )


def test_the_store_strips_credentials_whatever_calls_it(empty_store: Store) -> None:
    """The last line of defence: a caller that skipped the sanitiser (a script, the API, a new source)
    still stores no secret, for candidates and images alike."""
    empty_store.add_class("cats")
    empty_store.add_candidates([CandidateIn("cats", SECRET, thumbnail_url=SECRET, page_url=SECRET)])
    cand = empty_store.candidates()[0]
    assert "pw" not in f"{cand.image_url}{cand.thumbnail_url}{cand.page_url}"
    img = normalize(_png(4), max_side=512, max_pixels=10_000_000, quality=90, name="x")
    empty_store.add_image(img, "cats", source="api", source_url=SECRET, page_url=SECRET)
    stored = empty_store.images()[0]
    assert stored.source_url == stored.page_url == "http://example.com/a.jpg"


def test_the_dataset_page_refuses_a_url_with_credentials(store: Store) -> None:
    from pathlib import Path as _Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(_Path(__file__).resolve().parents[2] / "pages" / "3_Dataset.py"), default_timeout=60)
    at.run()
    at.session_state["ds_import"] = True  # the import box, opened (drawn only while open)
    at.run()
    at.text_area[0].input(f"{SECRET},circle\nhttp://example.com/ok.jpg,circle").run()
    next(b for b in at.button if b.label == "Add as candidates").click().run()
    assert not at.exception
    assert "1 rejected" in at.warning[0].value
    table = at.dataframe[0].value.to_string()  # the refused rows and why
    assert "user:pw" not in table and "http://***@example.com/a.jpg" in table
    assert [c.image_url for c in store.candidates()] == ["http://example.com/ok.jpg"]
