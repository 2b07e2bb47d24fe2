"""Imports (folder, zip, URL CSV), image validation, and export."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest
from helpers import SHAPES, files_under, image_bytes, shape_image
from PIL import Image

from lotr_labeler.collect.export import export_dataset
from lotr_labeler.collect.importers import import_folder, import_from, import_urls, import_zip
from lotr_labeler.errors import ImageRejected, InvalidInput
from lotr_labeler.imaging import normalize
from lotr_labeler.store import Store

# -- image validation ----------------------------------------------------------------------


def test_normalize_rejects_non_images_and_damaged_files() -> None:
    with pytest.raises(ImageRejected) as e:
        normalize(b"<html>not an image</html>", name="page.jpg")
    assert e.value.reason == "not an image" and "page.jpg" in str(e.value)
    truncated = image_bytes(shape_image("circle", 1), "JPEG")[:200]
    with pytest.raises(ImageRejected) as e:
        normalize(truncated)
    assert e.value.reason == "corrupt"
    with pytest.raises(ImageRejected, match="empty"):
        normalize(b"")


def test_normalize_refuses_decompression_bombs() -> None:
    # 1-bit 20000x20000 PNG: a few KB on disk, 400 Mpx decoded.
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG")
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(ImageRejected) as e:
        normalize(buf.getvalue(), max_pixels=60_000_000)
    assert e.value.reason == "bomb" and "decompression bomb" in str(e.value)
    # Below PIL's own limit, our max_pixels setting decides, and says the size.
    with pytest.raises(ImageRejected, match="4,000,000 pixels") as e:
        normalize(image_bytes(Image.new("L", (2000, 2000))), max_pixels=1_000_000)
    assert e.value.reason == "bomb"


def test_normalize_applies_exif_orientation_and_resizes() -> None:
    img = Image.new("RGB", (800, 400), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    data = image_bytes(img, "JPEG", exif=exif.tobytes())
    out = normalize(data, max_side=512)
    assert (out.width, out.height) == (256, 512)
    stored = Image.open(io.BytesIO(out.jpeg))
    assert stored.format == "JPEG" and stored.mode == "RGB" and stored.size == (256, 512)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK", "I;16"])
def test_normalize_converts_every_mode_to_rgb(mode: str) -> None:
    img = shape_image("square", 3).convert(mode) if mode != "I;16" else Image.new("I;16", (32, 32), 40000)
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    out = normalize(image_bytes(img, fmt))
    assert Image.open(io.BytesIO(out.jpeg)).mode == "RGB"


def test_transparent_pixels_become_white() -> None:
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    out = Image.open(io.BytesIO(normalize(image_bytes(img)).jpeg))
    assert min(out.getpixel((5, 5))) > 240  # type: ignore[arg-type]


def test_gif_keeps_first_frame() -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = Image.open(io.BytesIO(normalize(buf.getvalue()).jpeg))
    r, _, b = out.getpixel((10, 10))  # type: ignore[misc]
    assert r > 200 and b < 60


# -- folder --------------------------------------------------------------------------------


def test_import_folder_creates_classes_and_layout(empty_store: Store, shapes_dir: Path) -> None:
    seen: list[tuple[int, int]] = []
    report = import_folder(empty_store, shapes_dir, lambda p: seen.append((p.done, p.total)))
    assert len(report.added) == 18 and report.created_classes == list(SHAPES)
    assert seen[-1] == (18, 18)
    for shape in SHAPES:
        assert len(files_under(empty_store.root / "images" / shape)) == 6
    img = empty_store.images("circle")[0]
    assert img.source == "folder" and img.original_name and img.original_name.startswith("circle/")
    # Every stored file is a real RGB JPEG.
    assert Image.open(empty_store.path(img)).format == "JPEG"


def test_import_folder_reports_non_images_duplicates_and_bad_folders(empty_store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "cats").mkdir(parents=True)
    (src / "cats" / "a.png").write_bytes(image_bytes(shape_image("circle", 1)))
    (src / "cats" / "copy.png").write_bytes(image_bytes(shape_image("circle", 1)))
    (src / "cats" / "notes.txt").write_text("hello")
    (src / "bad..name").mkdir()
    (src / "bad..name" / "x.png").write_bytes(image_bytes(shape_image("square", 2)))
    (src / "loose.png").write_bytes(image_bytes(shape_image("square", 3)))
    report = import_folder(empty_store, src)
    assert len(report.added) == 1
    assert [f for f, _ in report.duplicates] == ["cats/copy.png"]
    reasons = dict(report.rejected)
    assert reasons["cats/notes.txt"] == "not an image"
    assert reasons["loose.png"] == "not in a class folder"
    assert "bad class folder name" in reasons["bad..name/"]
    assert empty_store.class_names() == ["cats"]
    # Importing again adds nothing: every file is an exact duplicate.
    again = import_folder(empty_store, src)
    assert again.added == [] and len(again.duplicates) == 2


def test_import_folder_errors(empty_store: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a folder"):
        import_folder(empty_store, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no class sub-folders"):
        import_folder(empty_store, tmp_path / "empty")


def test_previously_deleted_duplicate_stays_deleted(store: Store, shapes_dir: Path) -> None:
    victim = store.images("circle")[0]
    store.delete_images([victim.id])
    report = import_folder(store, shapes_dir)
    assert report.added == [] and victim.id in {i for _, i in report.duplicates}
    assert store.get_image(victim.id).deleted


# -- zip -----------------------------------------------------------------------------------


def _zip(entries: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


def test_import_zip_with_top_folder_zip_slip_and_non_image(empty_store: Store, tmp_path: Path) -> None:
    good = image_bytes(shape_image("circle", 7))
    archive = _zip(
        {
            "dataset/elves/1.png": good,
            "dataset/elves/2.jpg": image_bytes(shape_image("circle", 8), "JPEG"),
            "dataset/dwarves/1.png": image_bytes(shape_image("square", 9)),
            "dataset/dwarves/readme.txt": b"not an image",
            "../../evil/escape.png": good,
            "/abs/evil.png": image_bytes(shape_image("triangle", 10)),
            "__MACOSX/dataset/._1.png": b"junk",
        }
    )
    outside_before = set(tmp_path.parent.rglob("evil*"))
    report = import_zip(empty_store, archive)
    assert len(report.added) == 3
    assert empty_store.class_names() == ["elves", "dwarves"]
    reasons = dict(report.rejected)
    assert reasons["../../evil/escape.png"].startswith("refused")
    assert reasons["/abs/evil.png"].startswith("refused")
    assert reasons["dataset/dwarves/readme.txt"] == "not an image"
    # Nothing written outside the project, nothing named after the escaping entries.
    assert set(tmp_path.parent.rglob("evil*")) == outside_before
    assert not list(empty_store.root.rglob("escape*"))
    assert files_under(empty_store.root / "images") == {f"{r.label}/{r.id}.jpg" for r in empty_store.images()}


def test_import_zip_refuses_symlink_entries(empty_store: Store) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("cls/link.png")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
        zf.writestr("cls/ok.png", image_bytes(shape_image("circle", 1)))
    report = import_zip(empty_store, io.BytesIO(buf.getvalue()))
    assert len(report.added) == 1
    assert dict(report.rejected)["cls/link.png"] == "refused: symbolic link"


def test_import_zip_not_a_zip(empty_store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"nope")
    with pytest.raises(InvalidInput, match="not a readable zip"):
        import_zip(empty_store, bad)


def test_oversize_entries_are_rejected(empty_store: Store) -> None:
    empty_store.set_setting("max_bytes", 10_000)
    big = image_bytes(Image.effect_noise((200, 200), 60).convert("RGB"), "PNG")
    assert len(big) > 10_000
    report = import_zip(empty_store, _zip({"c/big.png": big, "c/ok.png": image_bytes(shape_image("circle", 2))}))
    assert len(report.added) == 1
    assert dict(report.rejected)["c/big.png"].startswith("too large")


# -- export ----------------------------------------------------------------------------------


def test_export_round_trip_keeps_layout_split_and_provenance(store: Store, data_root: Path, tmp_path: Path) -> None:
    from lotr_labeler.workspace import create_project

    img = store.images("square")[0]
    store.conn.execute(
        "UPDATE images SET source_url='http://img/x.jpg', page_url='http://page', query='q sq' WHERE id=?", (img.id,)
    )
    store.delete_images([store.images("triangle")[0].id])  # deleted images are not exported
    out = tmp_path / "bundle.zip"
    assert export_dataset(store, out) == 17
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
    assert names == {r.relpath for r in store.images()} | {"manifest.csv"}
    assert len(rows) == 17
    row = next(r for r in rows if r["id"] == str(img.id))
    assert row["class"] == "square" and row["split"] == img.split and row["sha256"] == img.sha256
    assert (row["source_url"], row["page_url"], row["query"]) == ("http://img/x.jpg", "http://page", "q sq")
    assert set(rows[0]) >= {"id", "class", "split", "sha256", "source_url", "page_url", "query", "added_at"}

    other = create_project(data_root, "copy", "empty")
    report = import_zip(other, out)
    assert len(report.added) == 17
    copied = next(r for r in other.images() if r.sha256 == img.sha256)
    assert (copied.label, copied.split, copied.source_url) == ("square", img.split, "http://img/x.jpg")
    other.close()


def test_export_refuses_bad_target_and_empty_project(store: Store, data_root: Path, tmp_path: Path) -> None:
    from lotr_labeler.workspace import create_project

    with pytest.raises(InvalidInput, match=r"\.zip"):
        export_dataset(store, tmp_path / "out.tar")
    with create_project(data_root, "empty", "empty") as empty, pytest.raises(InvalidInput, match="no images"):
        export_dataset(empty, tmp_path / "out.zip")
    assert not list(tmp_path.glob("*.zip")) and not list(tmp_path.glob(".export-*"))


# -- URL lists ---------------------------------------------------------------------------------


def test_import_urls_csv_with_bad_rows(store: Store) -> None:
    text = "\n".join(
        [
            "url,label,thumbnail",
            "http://img.example/a.jpg,circle,http://thumb.example/a.jpg",
            "https://img.example/b.jpg,Square",
            "ftp://img.example/c.jpg,circle",
            "not a url,circle",
            "http://img.example/d.jpg",
            "http://img.example/e.jpg,bad/label",
            "http://img.example/f.jpg,circle,javascript:alert(1)",
            "http://img.example/a.jpg,circle",
            "http://img.example/g.jpg,hexagon",
        ]
    )
    report = import_urls(store, text, create_classes=True)
    assert report.candidates_added == 3 and report.candidates_known == 1
    reasons = dict(report.rejected)
    assert set(reasons) == {"line 4", "line 5", "line 6", "line 7", "line 8"}
    assert "not an http(s) URL" in reasons["line 4"]
    assert "no label" in reasons["line 6"]
    assert "bad label" in reasons["line 7"]
    assert report.created_classes == ["hexagon"]
    a = store.candidates(state="pending")[0]
    assert (a.image_url, a.label, a.thumbnail_url, a.source) == (
        "http://img.example/a.jpg",
        "circle",
        "http://thumb.example/a.jpg",
        "csv",
    )
    assert store.candidates("square")[0].image_url == "https://img.example/b.jpg"
    assert store.count() == 18  # candidates are not images


def test_import_bare_urls_with_default_class(store: Store) -> None:
    report = import_urls(store, "http://x/1.jpg\nhttp://x/2.jpg\n\n# comment\n", "triangle")
    assert report.candidates_added == 2
    assert {c.label for c in store.candidates()} == {"triangle"}


def test_small_rgb_jpeg_is_stored_byte_identical() -> None:
    data = image_bytes(shape_image("circle", 4), "JPEG", quality=75)
    assert normalize(data, max_side=512).jpeg == data  # no generation loss, stable hash
    assert normalize(data, max_side=32).jpeg != data  # too large: resized and re-encoded


def test_encrypted_or_unsupported_zip_entries_are_rejected_not_fatal(empty_store: Store) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("c/ok.png", image_bytes(shape_image("circle", 11)))
        zf.writestr("c/locked.png", image_bytes(shape_image("circle", 12)))
    data = bytearray(buf.getvalue())
    # Set the "encrypted" flag bit of the second entry in both its local and central headers.
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = data.find(sig, data.find(sig) + 1)
        flag_at = at + (6 if sig == b"PK\x03\x04" else 8)
        data[flag_at] |= 0x1
    report = import_zip(empty_store, io.BytesIO(bytes(data)))
    assert len(report.added) == 1
    assert dict(report.rejected)["c/locked.png"].startswith("unreadable")
    assert empty_store.history()[0].kind == "import"  # the import is still one undoable event


def test_malformed_url_rows_are_reported(store: Store) -> None:
    report = import_urls(store, "http://[::1,circle\nhttp://ok.test/1.jpg,circle")
    assert report.candidates_added == 1
    assert "not an http(s) URL" in dict(report.rejected)["line 1"]


def test_import_from_picks_the_importer_as_the_cli_does(empty_store: Store, shapes_dir: Path, tmp_path: Path) -> None:
    seen: list[int] = []
    report = import_from(empty_store, "folder", shapes_dir, progress=lambda p: seen.append(p.done))
    assert len(report.added) == 18 and seen == list(range(1, 19))
    urls = tmp_path / "urls.csv"
    urls.write_text("\ufeffhttp://x/1.jpg\nhttp://x/2.jpg,circle\n", encoding="utf-8")
    listed = import_from(empty_store, "urls", urls, label="square")
    assert sorted((c.image_url, c.label) for c in empty_store.candidates()) == [
        ("http://x/1.jpg", "square"),
        ("http://x/2.jpg", "circle"),
    ]
    assert listed.candidates_added == 2
    with pytest.raises(InvalidInput, match=r"is not a file\. Give the path of a \.zip"):
        import_from(empty_store, "zip", tmp_path / "missing.zip")
    with pytest.raises(InvalidInput, match=r"is not a file\. Give a CSV"):
        import_from(empty_store, "urls", tmp_path)
    with pytest.raises(InvalidInput, match="Unknown import kind 'tar'"):
        import_from(empty_store, "tar", shapes_dir)


def test_an_undone_import_imported_again_brings_its_images_back(empty_store: Store, shapes_dir: Path) -> None:
    """After `undo` of an import, its images were in the trash with their classes deleted: their restore was
    refused ("undo the class deletion first") and the same folder imported again skipped all 18 as duplicates
    of the trash. Now they come back as part of the new import (one undo step again); an image deleted on its
    own, its class alive, stays in the trash and is named in the report."""
    first = import_folder(empty_store, shapes_dir)
    assert len(first.added) == 18
    empty_store.undo()
    assert empty_store.count() == 0 and empty_store.classes() == []
    again = import_folder(empty_store, shapes_dir)
    assert sorted(again.added) == sorted(first.added) and not again.duplicates  # the same rows, back
    assert empty_store.count() == 18 and sorted(empty_store.class_names()) == sorted(SHAPES)
    root = empty_store.root
    assert files_under(root / "images") == {f"{img.label}/{img.id}.jpg" for img in empty_store.images()}
    assert files_under(root / "trash") == set()

    empty_store.undo()  # the new import, one step: back to the trash
    assert empty_store.count() == 0 and len(files_under(root / "trash")) == 18
    import_folder(empty_store, shapes_dir)
    victim = empty_store.images()[0]
    empty_store.delete_images([victim.id])  # thrown out on purpose: an import of the folder leaves it there
    third = import_folder(empty_store, shapes_dir)
    assert third.added == [] and len(third.duplicates) == 18 and third.in_trash == [victim.id]
    assert "(1 of them in the trash: restore them in the Dataset page's Trash view)" in third.summary()
    assert empty_store.get_image(victim.id).deleted
