"""Imports: a folder of class sub-folders, a zip of the same, a CSV/list of image URLs.

Files are validated by decoding them (see ``imaging.normalize``); a zip is read in
memory entry by entry and never extracted, so no entry can land outside the project.
URL lists become candidates for review, not images.
"""

from __future__ import annotations

import csv
import io
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from .errors import ImageRejected, InvalidInput, LabelerError, NotFound
from .imaging import normalize
from .store import CandidateIn, Store

Progress = Callable[[int, int], None]
MANIFEST = "manifest.csv"


@dataclass
class ImportReport:
    """What an import did, for the UI and the CLI."""

    added: list[int] = field(default_factory=list)
    duplicates: list[tuple[str, int]] = field(default_factory=list)  # (file, existing image id)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file or row, reason)
    created_classes: list[str] = field(default_factory=list)
    candidates_added: int = 0
    candidates_known: int = 0

    def summary(self) -> str:
        parts = []
        if self.added or not self.candidates_added:
            parts.append(f"{len(self.added)} image(s) added")
        if self.candidates_added or self.candidates_known:
            parts.append(f"{self.candidates_added} candidate(s) added, {self.candidates_known} already known")
        parts.append(f"{len(self.duplicates)} duplicate(s) skipped")
        parts.append(f"{len(self.rejected)} rejected")
        if self.created_classes:
            parts.append(f"new classes: {', '.join(self.created_classes)}")
        return "; ".join(parts) + "."

    def as_dict(self) -> dict[str, object]:
        return {
            "added": self.added,
            "duplicates": [{"file": f, "existing_id": i} for f, i in self.duplicates],
            "rejected": [{"item": f, "reason": r} for f, r in self.rejected],
            "created_classes": self.created_classes,
            "candidates_added": self.candidates_added,
            "candidates_known": self.candidates_known,
        }


def _class_for(store: Store, raw: str, report: ImportReport) -> str:
    """The existing class matching ``raw`` (case-insensitive), created when missing."""
    try:
        return store.get_class(raw).name
    except NotFound:
        created = store.add_class(raw).name
        report.created_classes.append(created)
        return created


@dataclass(frozen=True)
class _Entry:
    label: str
    name: str  # shown in reports
    read: Callable[[], bytes]
    size: int
    provenance: dict[str, str | None]


def _ingest(
    store: Store, entries: list[_Entry], source: str, report: ImportReport, progress: Progress | None
) -> ImportReport:
    settings = store.settings()
    max_bytes = int(settings["max_bytes"])
    labels: dict[str, str | None] = {}
    for done, entry in enumerate(entries, start=1):
        try:
            if entry.label not in labels:
                try:
                    labels[entry.label] = _class_for(store, entry.label, report)
                except InvalidInput as exc:
                    labels[entry.label] = None
                    report.rejected.append((entry.label + "/", f"bad class folder name: {exc}"))
            label = labels[entry.label]
            if label is None:
                report.rejected.append((entry.name, "in a folder with an invalid class name"))
                continue
            if entry.size > max_bytes:
                report.rejected.append((entry.name, f"too large ({entry.size:,} bytes > {max_bytes:,})"))
                continue
            data = entry.read()
            if len(data) > max_bytes:
                report.rejected.append((entry.name, f"too large (> {max_bytes:,} bytes)"))
                continue
            img = normalize(
                data,
                max_side=int(settings["max_side"]),
                max_pixels=int(settings["max_pixels"]),
                quality=int(settings["jpeg_quality"]),
                name=entry.name,
            )
            result = store.add_image(
                img,
                label,
                source=source,
                original_name=entry.name,
                source_url=entry.provenance.get("source_url"),
                page_url=entry.provenance.get("page_url"),
                title=entry.provenance.get("title"),
                query=entry.provenance.get("query"),
            )
            if result.duplicate:
                report.duplicates.append((entry.name, result.image.id))
            else:
                report.added.append(result.image.id)
        except ImageRejected as exc:
            report.rejected.append((entry.name, exc.reason))
        except (OSError, zipfile.BadZipFile, RuntimeError, NotImplementedError) as exc:
            # RuntimeError: encrypted zip entry; NotImplementedError: unsupported compression.
            report.rejected.append((entry.name, f"unreadable: {exc}"))
        finally:
            if progress:
                progress(done, len(entries))
    store.record_import(report.added, f"imported {len(report.added)} image(s) from {source}")
    return report


def import_folder(store: Store, folder: Path, progress: Progress | None = None) -> ImportReport:
    """Import ``folder/<class>/**/<file>``: one class per first-level sub-folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder. Give a folder holding one sub-folder per class.")
    report = ImportReport()
    entries: list[_Entry] = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_file():
            report.rejected.append((child.name, "not in a class folder"))
            continue
        for f in sorted(p for p in child.rglob("*") if p.is_file() and not p.name.startswith(".")):
            entries.append(_Entry(child.name, str(f.relative_to(folder)), f.read_bytes, f.stat().st_size, {}))
    if not entries and not report.rejected:
        raise InvalidInput(f"{folder} holds no class sub-folders with files. Expected {folder}/<class>/<image>.")
    return _ingest(store, entries, "folder", report, progress)


def unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why a zip entry must not be used, or None when it is safe (zip-slip guard)."""
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in parts:
        return "path escapes the archive ('..')"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return None


def import_zip(store: Store, archive: Path | io.BytesIO, progress: Progress | None = None) -> ImportReport:
    """Import a zip of ``<class>/<file>`` (optionally under one top folder, e.g. an export)."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{archive} is not a readable zip file ({exc}).") from None
    report = ImportReport()
    with zf:
        files: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        manifest: zipfile.ZipInfo | None = None
        for info in zf.infolist():
            if info.is_dir():
                continue
            reason = unsafe_reason(info)
            if reason:
                report.rejected.append((info.filename, f"refused: {reason}"))
                continue
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if parts[0] == "__MACOSX" or parts[-1].startswith("."):
                continue
            if parts[-1] == MANIFEST and len(parts) == 1:
                manifest = info
                continue
            files.append((info, parts))
        prefix = _common_prefix([p for _, p in files])
        provenance = _read_manifest(zf, manifest) if manifest else {}
        max_bytes = int(store.get_setting("max_bytes"))
        entries: list[_Entry] = []
        for info, parts in files:
            rel = parts[len(prefix) :]
            if len(rel) < 2:
                report.rejected.append((info.filename, "not in a class folder"))
                continue
            entries.append(
                _Entry(
                    rel[0],
                    info.filename,
                    _zip_reader(zf, info, max_bytes),
                    info.file_size,
                    provenance.get("/".join(parts), {}),
                )
            )
        return _ingest(store, entries, "zip", report, progress)


def _common_prefix(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    """Strip shared top folders while every file would still sit in a class folder."""
    prefix: tuple[str, ...] = ()
    while paths and all(len(p) > len(prefix) + 2 for p in paths):
        head = {p[len(prefix)] for p in paths}
        if len(head) != 1:
            break
        prefix += (head.pop(),)
    return prefix


def _zip_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> Callable[[], bytes]:
    def read() -> bytes:
        with zf.open(info) as fh:
            return fh.read(max_bytes + 1)  # a lying header cannot make us read more

    return read


def _read_manifest(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict[str, dict[str, str | None]]:
    """Provenance from an exported bundle's manifest.csv, keyed by file path."""
    text = zf.read(info).decode("utf-8", errors="replace")
    out: dict[str, dict[str, str | None]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("path"):
            out[row["path"]] = {k: (row.get(k) or None) for k in ("source_url", "page_url", "title", "query")}
    return out


def _valid_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return False


def parse_url_rows(text: str, default_label: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """Rows of ``url,label[,thumbnail]`` (header optional) or bare URLs, with line numbers."""
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if lineno == 1 and cells[0].lower() == "url":
            continue
        if len(cells) == 1 and default_label:
            cells.append(default_label)
        yield lineno, cells


def import_urls(store: Store, text: str, default_label: str | None = None, *, source: str = "csv") -> ImportReport:
    """Turn URL rows into pending candidates; bad rows are reported with their line number."""
    report = ImportReport()
    items: list[CandidateIn] = []
    for lineno, cells in parse_url_rows(text, default_label):
        where = f"line {lineno}"
        url = cells[0]
        if not _valid_url(url):
            report.rejected.append((where, f"{url!r} is not an http(s) URL"))
            continue
        if len(cells) < 2 or not cells[1]:
            report.rejected.append((where, "no label: expected url,label[,thumbnail]"))
            continue
        thumb = cells[2] if len(cells) > 2 and cells[2] else None
        if thumb and not _valid_url(thumb):
            report.rejected.append((where, f"thumbnail {thumb!r} is not an http(s) URL"))
            continue
        try:
            label = _class_for(store, cells[1], report)
        except LabelerError as exc:
            report.rejected.append((where, f"bad label: {exc}"))
            continue
        items.append(CandidateIn(label=label, image_url=url, thumbnail_url=thumb, source=source))
    report.candidates_added, report.candidates_known = store.add_candidates(items)
    return report
