"""Hostile inputs to the importers: symlinks out of the folder, /proc, undecodable names, special
files, files swapped for links mid-import, broken zip names, credentials in URLs, reserved class
names, formula cells in manifest.csv. Each answer is a report row or one error line, never a traceback."""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import traceback
import zipfile
from pathlib import Path

import pytest
from helpers import image_bytes, shape_image

from lotr_labeler.collect.export import csv_safe, csv_unsafe, export_dataset
from lotr_labeler.collect.importers import import_folder, import_urls, import_zip
from lotr_labeler.errors import InvalidInput
from lotr_labeler.progress import Progress
from lotr_labeler.store import Store
from lotr_labeler.workspace import create_project

POSIX = pytest.mark.skipif(os.name != "posix", reason="symlinks, fifos and byte file names are POSIX")


def _png(seed: int) -> bytes:
    return image_bytes(shape_image("circle", seed))


def _undecodable_name(folder: Path, raw: bytes) -> Path:
    """A path whose last part is not valid UTF-8 (skips on file systems that refuse such names)."""
    path = Path(os.fsdecode(os.fsencode(folder) + b"/" + raw))
    try:
        path.write_bytes(b"")
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    path.unlink()
    return path


@POSIX
def test_folder_import_never_follows_symlinks_out_of_the_folder(empty_store: Store, tmp_path: Path) -> None:
    outside = tmp_path / "outside"  # stands for /usr/share: images that must not be imported
    outside.mkdir()
    for i in range(3):
        (outside / f"o{i}.png").write_bytes(_png(100 + i))
    src = tmp_path / "src"
    (src / "cats").mkdir(parents=True)
    (src / "cats" / "inside.png").write_bytes(_png(1))
    (src / "linked").symlink_to(outside)  # a class folder that is a link
    (src / "cats" / "sub").symlink_to(outside)  # a sub-folder link
    (src / "cats" / "one.png").symlink_to(outside / "o0.png")  # a file link out
    (src / "cats" / "again.png").symlink_to(src / "cats" / "inside.png")  # a link that stays inside
    report = import_folder(empty_store, src)
    assert len(report.added) == 1 and empty_store.count() == 1
    assert empty_store.class_names() == ["cats"]
    reasons = dict(report.rejected)
    for name in ("linked", "cats/sub", "cats/one.png", "cats/again.png"):
        assert reasons[name].startswith("symbolic link: not followed"), (name, reasons)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/root").is_symlink(), reason="needs Linux /proc")
def test_folder_import_of_proc_self_ends_with_a_report(empty_store: Store) -> None:
    report = import_folder(empty_store, Path("/proc/self"))
    reasons = dict(report.rejected)
    assert reasons["root"].startswith("symbolic link") and reasons["cwd"].startswith("symbolic link")
    assert not any(item.startswith("root/") for item, _ in report.rejected)  # the file system was not walked
    assert report.added == [] and empty_store.class_names() == []  # no class for folders without images


@POSIX
def test_undecodable_names_and_special_files_are_skipped_and_reported(empty_store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "cats").mkdir(parents=True)
    (src / "cats" / "ok.png").write_bytes(_png(1))
    _undecodable_name(src / "cats", b"\xff\xfe.png").write_bytes(_png(2))
    bad_dir = _undecodable_name(src, b"d\xe9j\xe0")  # latin-1 bytes: not UTF-8
    bad_dir.mkdir()
    (bad_dir / "x.png").write_bytes(_png(3))
    os.mkfifo(src / "cats" / "pipe.png")  # reading it would block the import for ever
    sock = socket.socket(socket.AF_UNIX)
    sock_path = src / "cats" / "s.png"
    if len(os.fsencode(sock_path)) < 100:  # AF_UNIX path limit
        sock.bind(str(sock_path))
    try:
        report = import_folder(empty_store, src)
    finally:
        sock.close()
    assert len(report.added) == 1 and empty_store.class_names() == ["cats"]
    reasons = dict(report.rejected)
    assert reasons["cats/\\xff\\xfe.png"].startswith("name is not valid text")
    assert reasons["d\\xe9j\\xe0"].startswith("name is not valid text")
    assert reasons["cats/pipe.png"] == "a fifo: skipped"
    if sock_path.exists():
        assert reasons["cats/s.png"] == "a socket: skipped"


@POSIX
def test_a_file_swapped_for_a_link_during_the_import_is_not_read(empty_store: Store, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(_png(50))
    src = tmp_path / "src"
    (src / "cats" / "deep").mkdir(parents=True)
    (src / "cats" / "a.png").write_bytes(_png(1))
    (src / "cats" / "b.png").write_bytes(_png(2))
    (src / "cats" / "deep" / "c.png").write_bytes(_png(3))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "c.png").write_bytes(_png(51))

    def swap(p: Progress) -> None:
        if p.done == 1:  # after the walk listed them: replace a file and a folder with links out
            (src / "cats" / "b.png").unlink()
            (src / "cats" / "b.png").symlink_to(secret)
            (src / "cats" / "deep" / "c.png").unlink()
            (src / "cats" / "deep").rmdir()
            (src / "cats" / "deep").symlink_to(elsewhere)

    report = import_folder(empty_store, src, swap)
    assert len(report.added) == 1
    reasons = dict(report.rejected)
    assert reasons["cats/b.png"].startswith("unreadable") and reasons["cats/deep/c.png"].startswith("unreadable")


def test_unlistable_folder_is_reported(empty_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    (src / "cats" / "locked").mkdir(parents=True)
    (src / "cats" / "a.png").write_bytes(_png(1))
    real = os.scandir

    def scandir(path: str | os.PathLike[str]) -> object:
        if Path(path).name == "locked":  # the tests run as root here, so chmod 000 would not stop them
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = import_folder(empty_store, src)
    assert len(report.added) == 1
    assert dict(report.rejected)["cats/locked/"] == "cannot list folder: Permission denied"


def _zip_with_bad_utf8_name() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cats/ok.png", _png(1))
        zf.writestr("cats/\u00e9\u00e9.png", _png(2))  # non-ASCII: zipfile sets the UTF-8 flag
    # Same length, invalid UTF-8, flag still set (name bytes are not covered by the CRC).
    return buf.getvalue().replace("\u00e9\u00e9".encode(), b"\xff\xfe\xff\xfe")


def test_zip_entry_flagged_utf8_with_invalid_bytes_is_one_error(empty_store: Store) -> None:
    with pytest.raises(InvalidInput, match=r"flagged UTF-8 but is not valid UTF-8 .*Re-create the zip"):
        import_zip(empty_store, io.BytesIO(_zip_with_bad_utf8_name()))


@pytest.mark.slow
@POSIX
def test_cli_import_of_hostile_inputs_prints_lines_not_tracebacks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    src = tmp_path / "src"
    (src / "cats").mkdir(parents=True)
    (src / "cats" / "ok.png").write_bytes(_png(1))
    _undecodable_name(src / "cats", b"\xff.png").write_bytes(_png(2))
    (src / "usr").symlink_to(tmp_path)  # a link back out (and up: a loop for a walker that follows)
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(_zip_with_bad_utf8_name())
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    base = [sys.executable, "-m", "lotr_labeler", "--data", str(data), "--project", "p"]
    subprocess.run([*base, "init", "--template", "empty"], check=True, capture_output=True, env=env, timeout=60)
    folder = subprocess.run([*base, "import", "folder", str(src)], capture_output=True, text=True, env=env, timeout=60)
    assert folder.returncode == 0, folder.stderr
    assert "Traceback" not in folder.stderr and "1 image(s) added" in folder.stdout
    assert "rejected cats/\\xff.png: name is not valid text" in folder.stderr
    assert "rejected usr: symbolic link" in folder.stderr
    zipped = subprocess.run([*base, "import", "zip", str(bad_zip)], capture_output=True, text=True, env=env, timeout=60)
    assert zipped.returncode == 1 and "Traceback" not in zipped.stderr
    assert len(zipped.stderr.strip().splitlines()) == 1 and "not valid UTF-8" in zipped.stderr


# -- URL lists, class names, manifest cells -------------------------------------------------------------


def test_url_rows_with_credentials_are_refused_without_repeating_the_secret(store: Store) -> None:
    text = "\n".join(
        [
            "http://user:hunter2@img.example/a.jpg,circle",
            "https://token@img.example/b.jpg,circle",
            "http://img.example/c.jpg,circle,http://u:hunter2@thumb.example/c.jpg",
            "http://img.example/ok@2x.jpg,circle",  # an @ in the path is no credential
        ]
    )
    report = import_urls(store, text)
    assert report.candidates_added == 1
    reasons = dict(report.rejected)
    assert set(reasons) == {"line 1", "line 2", "line 3"}
    assert all("user name or password" in r for r in reasons.values())
    assert "hunter2" not in repr(report.as_dict()) and "token" not in repr(report.as_dict())
    assert [c.image_url for c in store.candidates()] == ["http://img.example/ok@2x.jpg"]


@pytest.mark.parametrize("name", ["con", "NUL", "name.", "con.txt", "Com1", "LPT9.jpg", "aux ."])
def test_names_that_break_on_windows_are_refused(empty_store: Store, name: str) -> None:
    with pytest.raises(InvalidInput, match=r"(reserved on Windows|ends in a dot).*(Choose another|Remove)"):
        empty_store.add_class(name)
    assert empty_store.class_names() == []


def test_names_like_reserved_ones_are_fine(empty_store: Store) -> None:
    for name in ("console", "nul_", "com0", "Con Air", "a.b"):
        empty_store.add_class(name)
    assert len(empty_store.class_names()) == 5


@pytest.mark.parametrize(
    "value", ["=1+2", "+1", "-2", "@SUM(A1)", "\t=x", "\r=x", "'=1+2", "''@x", "'quoted'", "plain", "", "a=b"]
)
def test_csv_safe_is_reversible(value: str) -> None:
    cell = csv_safe(value)
    assert isinstance(cell, str) and not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert csv_unsafe(cell) == value


def test_formula_cells_are_neutralised_in_the_manifest_and_round_trip(
    store: Store, data_root: Path, tmp_path: Path
) -> None:
    img = store.images("square")[0]
    hostile = {"title": '=HYPERLINK("http://evil","x")', "query": "@SUM(1+1)*cmd|' /C calc'!A0", "page_url": "-1"}
    store.conn.execute(
        "UPDATE images SET title=?, query=?, page_url=? WHERE id=?",
        (hostile["title"], hostile["query"], hostile["page_url"], img.id),
    )
    out = tmp_path / "bundle.zip"
    export_dataset(store, out)
    with zipfile.ZipFile(out) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
    row = next(r for r in rows if r["id"] == str(img.id))
    for key, value in hostile.items():
        assert row[key] == "'" + value  # a spreadsheet shows it as text
    with create_project(data_root, "copy", "empty") as other:
        import_zip(other, out)
        copied = next(r for r in other.images() if r.sha256 == img.sha256)
        assert (copied.title, copied.query, copied.page_url) == (
            hostile["title"],
            hostile["query"],
            hostile["page_url"],
        )


@POSIX
def test_dataset_page_folder_import_of_hostile_folder_shows_a_report(empty_store: Store, tmp_path: Path) -> None:
    from streamlit.testing.v1 import AppTest

    src = tmp_path / "src"
    (src / "cats").mkdir(parents=True)
    (src / "cats" / "ok.png").write_bytes(_png(1))
    _undecodable_name(src / "cats", b"\xff.png").write_bytes(_png(2))
    (src / "cats" / "out").symlink_to(tmp_path)
    os.mkfifo(src / "cats" / "pipe")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "pages" / "3_Dataset.py"), default_timeout=60)
    at.run()
    at.session_state["ds_import"] = True  # the import box, opened (drawn only while open)
    at.run()
    at.text_input[0].input(str(src)).run()
    next(b for b in at.button if b.label == "Import folder").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("1 image(s) added" in s.value and "3 rejected" in s.value for s in at.warning)  # not a plain success
    reasons = " ".join(str(v) for df in at.dataframe for v in df.value["reason"])
    assert "name is not valid text" in reasons and "symbolic link" in reasons and "a fifo" in reasons


def test_a_folder_nested_deeper_than_the_recursion_limit_imports(empty_store: Store, tmp_path: Path) -> None:
    # A low recursion limit instead of a thousand folders: pytest's own clean-up of old temp
    # folders (shutil.rmtree) recurses too and would trip on such a tree.
    frames = len(traceback.extract_stack())
    depth = 300
    deep = tmp_path / "src" / "cats"
    deep.mkdir(parents=True)
    for _ in range(depth):  # one level at a time: mkdir(parents=True) itself recurses
        deep /= "d"
        deep.mkdir()
    (deep / "a.png").write_bytes(_png(1))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(frames + 200)  # room for the import itself, not for 300 nested calls
    try:
        report = import_folder(empty_store, tmp_path / "src")
    finally:
        sys.setrecursionlimit(limit)
    assert len(report.added) == 1 and report.rejected == []
