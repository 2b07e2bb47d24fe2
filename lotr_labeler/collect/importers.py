"""Imports: a folder of class sub-folders, a zip of the same, a CSV/list of image URLs.

Files are validated by decoding them (see ``imaging.normalize``); a zip is read in
memory entry by entry and never extracted, so no entry can land outside the project.
URL lists become candidates for review, not images.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import lzma
import os
import stat
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import urlsplit

from lotr_labeler.collect.export import csv_unsafe
from lotr_labeler.errors import ImageRejected, InvalidInput, LabelerError, NotFound, is_disk_full
from lotr_labeler.imaging import normalize
from lotr_labeler.progress import Progress, Report
from lotr_labeler.project import validate_name
from lotr_labeler.store import CandidateIn, Store
from lotr_labeler.store.images import ImageIn, ImportRecord
from lotr_labeler.urls import clean_url, has_credentials, redact

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
    in_trash: list[int] = field(default_factory=list)  # the duplicates' existing images that are in the trash

    def summary(self) -> str:
        parts = []
        if self.added or not self.candidates_added:
            parts.append(f"{len(self.added)} image(s) added")
        if self.candidates_added or self.candidates_known:
            parts.append(f"{self.candidates_added} candidate(s) added, {self.candidates_known} already known")
        skipped = f"{len(self.duplicates)} duplicate(s) skipped"
        if self.in_trash:  # images deleted on their own stay there (those of a deleted class come back)
            skipped += f" ({len(self.in_trash)} of them in the trash: restore them in the Dataset page's Trash view)"
        parts.append(skipped)
        parts.append(f"{len(self.rejected)} rejected")
        if self.created_classes:
            parts.append(f"new classes: {', '.join(self.created_classes)}")
        return "; ".join(parts) + "."

    def duplicate_notes(self) -> list[tuple[str, str]]:
        """(file, "image N", with " (in the trash)" where it is) for each duplicate skipped."""
        trash = set(self.in_trash)
        return [(f, f"image {i}" + (" (in the trash)" if i in trash else "")) for f, i in self.duplicates]

    def as_dict(self) -> dict[str, object]:
        return {
            "added": self.added,
            "duplicates": [{"file": f, "existing_id": i} for f, i in self.duplicates],
            "rejected": [{"item": f, "reason": r} for f, r in self.rejected],
            "created_classes": self.created_classes,
            "candidates_added": self.candidates_added,
            "candidates_known": self.candidates_known,
            "in_trash": self.in_trash,
        }


def _class_for(store: Store, raw: str, report: ImportReport) -> str:
    """The existing class matching ``raw`` (case-insensitive), created when missing.

    Race-free: two processes importing the same folder both get the one class.
    """
    return store.ensure_class(raw, created=report.created_classes).name


def _known_class(store: Store, raw: str, known: list[str]) -> str:
    """The existing class matching ``raw`` (case-insensitive); an unknown one is refused by name."""
    try:
        return store.get_class(raw).name
    except NotFound:
        raise InvalidInput(
            f"{raw.strip()!r} is not a class of this project (classes: {', '.join(known) or 'none yet'}). "
            "Fix the label, or tick 'Create classes for new labels' (CLI: --create-classes)."
        ) from None


def _check_label(store: Store, raw: str) -> None:
    """Raise InvalidInput when ``raw`` is neither an existing class nor a valid new name."""
    try:
        store.get_class(raw)
    except NotFound:
        validate_name(raw)


@dataclass(frozen=True)
class _Entry:
    label: str
    name: str  # shown in reports
    read: Callable[[], bytes]
    size: int
    provenance: dict[str, str | None]


# A batch commits when it holds this many images or is this old: a kill loses at most one batch's work,
# and what was committed before is in the import's one history event.
BATCH_IMAGES = 32
BATCH_SECONDS = 0.5


class _Batches:
    """Normalized images waiting for their commit, and the import's one growing history event."""

    def __init__(self, store: Store, source: str, report: ImportReport) -> None:
        self.store = store
        self.report = report
        self.source = source
        self.record = ImportRecord(f"imported {{n}} image(s) from {source}")
        self.items: list[tuple[str, ImageIn]] = []
        self.started = time.monotonic()

    def add(self, name: str, item: ImageIn) -> None:
        if not self.items:
            self.started = time.monotonic()
        self.items.append((name, item))
        if len(self.items) >= BATCH_IMAGES or time.monotonic() - self.started >= BATCH_SECONDS:
            self.commit()

    def commit(self) -> None:
        if not self.items:
            return
        names = [n for n, _ in self.items]
        items = [item for _, item in self.items]
        self.items = []
        # Staged before the lock and committed with the event's growth in one transaction.
        results = self.store.add_images(items, record=self.record)
        for name, result in zip(names, results, strict=True):
            if isinstance(result, LabelerError):  # the class was deleted meanwhile, or may not be made
                self.report.rejected.append((name, str(result)))
            elif result.duplicate:
                self.report.duplicates.append((name, result.image.id))
                if result.image.deleted:
                    self.report.in_trash.append(result.image.id)
            else:
                self.report.added.append(result.image.id)
                label = result.image.label
                if result.image.class_id in self.record.classes and label not in self.report.created_classes:
                    self.report.created_classes.append(label)


def _ingest(
    store: Store, entries: list[_Entry], source: str, report: ImportReport, progress: Report | None
) -> ImportReport:
    settings = store.settings()
    max_bytes = settings.max_bytes
    valid: dict[str, bool] = {}  # folder name -> usable as a class
    batches = _Batches(store, source, report)
    for done, entry in enumerate(entries, start=1):
        try:
            if entry.label not in valid:
                try:
                    _check_label(store, entry.label)
                    valid[entry.label] = True
                except InvalidInput as exc:
                    valid[entry.label] = False
                    report.rejected.append((display_name(entry.label) + "/", f"bad class folder name: {exc}"))
            if not valid[entry.label]:
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
                max_side=settings.max_side,
                max_pixels=settings.max_pixels,
                quality=settings.jpeg_quality,
                name=entry.name,
            )
            # Classes are made only for folders holding an image (in the commit that stores it), so
            # junk folders leave none behind and a killed import leaves none without its event.
            ready = ImageIn(
                img,
                entry.label,
                source,
                source_url=entry.provenance.get("source_url"),
                page_url=entry.provenance.get("page_url"),
                title=entry.provenance.get("title"),
                query=entry.provenance.get("query"),
                original_name=entry.name,
                create_class=True,
            )
        except ImageRejected as exc:
            report.rejected.append((entry.name, exc.reason))
        except LabelerError as exc:  # e.g. its class was deleted meanwhile: skip this file, not the import
            report.rejected.append((entry.name, str(exc)))
        except _UNREADABLE as exc:
            if is_disk_full(exc):  # not this file's fault: the import stops with one clear error
                raise
            report.rejected.append((entry.name, f"unreadable: {getattr(exc, 'strerror', None) or exc}"))
        else:
            # Outside the per-file handlers: a commit that fails (a full disk) ends the import, it is
            # not one file's "unreadable". What committed before is in the import's event.
            batches.add(entry.name, ready)
        finally:
            if progress:
                progress(Progress(done=done, total=len(entries)))
    batches.commit()
    return report


def display_name(name: str) -> str:
    """``name`` safe to print and store: undecodable bytes shown as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _undecodable(name: str) -> bool:
    """A name that was not valid in the file system's encoding (Python keeps it as surrogates)."""
    return any("\udc80" <= ch <= "\udcff" for ch in name)


_KINDS = (
    (stat.S_ISFIFO, "a fifo"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)
# Where the OS allows it, files are opened one component at a time relative to the folder with
# O_NOFOLLOW, so a symlink swapped in after the walk cannot lead outside the folder either.
_BENEATH = os.open in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: a fifo or a blocking pseudo-file (/proc/kmsg) swapped in cannot hang the import.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | _NOFOLLOW


def _special_kind(mode: int) -> str:
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a regular file"


def _read_beneath(root: Path, parts: tuple[str, ...], limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file ``root/parts``, never through a symlink."""
    fds: list[int] = []
    try:
        if _BENEATH:
            fds.append(os.open(root, os.O_RDONLY | os.O_DIRECTORY))
            for part in parts[:-1]:
                fds.append(os.open(part, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=fds[-1]))
            fd = os.open(parts[-1], _READ_FLAGS, dir_fd=fds[-1])
        else:
            fd = os.open(root.joinpath(*parts), _READ_FLAGS)
        fds.append(fd)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(f"{_special_kind(mode)}, not a file")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(limit)
    finally:
        for fd in fds:
            os.close(fd)


def _listing(root: Path, parts: tuple[str, ...], report: ImportReport) -> Iterator[os.DirEntry[str]] | None:
    """The entries of ``root/parts`` sorted by name, or None (reported) when it cannot be listed."""
    try:
        with os.scandir(root.joinpath(*parts)) as it:
            return iter(sorted(it, key=lambda e: e.name))
    except OSError as exc:
        where = "/".join(display_name(p) for p in parts)
        report.rejected.append((where + "/", f"cannot list folder: {exc.strerror or exc}"))
        return None


def _walk(root: Path, report: ImportReport) -> Iterator[tuple[tuple[str, ...], int]]:
    """Regular files under ``root`` (relative parts, size), depth first, sorted; symlinks, special
    files, undecodable names and unlistable folders are reported, not followed. A stack rather
    than recursion: a folder nested a thousand deep is no RecursionError."""
    top = _listing(root, (), report)
    stack: list[tuple[tuple[str, ...], Iterator[os.DirEntry[str]]]] = [((), top)] if top else []
    while stack:
        parts, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        if entry.name.startswith("."):
            continue
        sub = (*parts, entry.name)
        shown = "/".join(display_name(p) for p in sub)
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            report.rejected.append((shown, f"cannot read: {exc.strerror or exc}"))
            continue
        if _undecodable(entry.name):
            report.rejected.append((shown, "name is not valid text (UTF-8): rename it"))
        elif stat.S_ISLNK(st.st_mode):
            report.rejected.append((shown, "symbolic link: not followed (copy the files into the folder)"))
        elif stat.S_ISDIR(st.st_mode):
            listing = _listing(root, sub, report)
            if listing is not None:
                stack.append((sub, listing))
        elif stat.S_ISREG(st.st_mode):
            yield sub, st.st_size
        else:
            report.rejected.append((shown, f"{_special_kind(st.st_mode)}: skipped"))


def import_folder(store: Store, folder: Path, progress: Report | None = None) -> ImportReport:
    """Import ``folder/<class>/**/<file>``: one class per first-level sub-folder.

    Only regular files inside ``folder`` are read: symbolic links (to files or folders), fifos,
    devices and sockets are skipped and reported, so the import never leaves the folder.

    Parameters
    ----------
    store
        The project; missing classes are created.
    folder
        The folder of class folders (e.g. a fastai ``from_folder`` layout).
    progress
        Called with a ``Progress`` after each file (done of total).

    Returns
    -------
    ImportReport
        Images added, duplicates, and every skipped file with its reason.

    Raises
    ------
    InvalidInput
        ``folder`` is not a readable folder.
    """
    given = Path(folder)
    try:
        root = given.resolve(strict=True)  # the folder itself may be reached through a link
    except (OSError, RuntimeError):
        root = given
    if not root.is_dir():
        raise InvalidInput(
            f"{display_name(str(given))} is not a folder. Give a folder holding one sub-folder per class."
        )
    report = ImportReport()
    max_bytes = store.settings().max_bytes
    entries: list[_Entry] = []
    for parts, size in _walk(root, report):
        name = "/".join(display_name(p) for p in parts)
        if len(parts) < 2:
            report.rejected.append((name, "not in a class folder"))
            continue
        read = functools.partial(_read_beneath, root, parts, max_bytes + 1)
        entries.append(_Entry(parts[0], name, read, size, {}))
    if not entries and not report.rejected:
        raise InvalidInput(
            f"{display_name(str(given))} holds no class sub-folders with files. Expected <folder>/<class>/<image>."
        )
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


def import_zip(store: Store, archive: Path | io.BytesIO, progress: Report | None = None) -> ImportReport:
    """Import a zip of ``<class>/<file>`` (optionally under one top folder, e.g. an export).

    Parameters
    ----------
    store
        The project; missing classes are created.
    archive
        The zip file, or its bytes (an upload).
    progress
        Called with a ``Progress`` after each entry (done of total).

    Returns
    -------
    ImportReport
        Images added, duplicates, and every skipped entry with its reason.

    Raises
    ------
    InvalidInput
        Not a readable zip, or one whose names cannot be imported.
    """
    shown = "the zip" if isinstance(archive, io.BytesIO) else display_name(str(archive))
    try:
        zf = zipfile.ZipFile(archive)
    except UnicodeDecodeError as exc:
        # zipfile decodes every name when it opens the archive, so one bad name stops it all.
        raise InvalidInput(
            f"{shown} has an entry whose name is flagged UTF-8 but is not valid UTF-8 "
            f"(byte {exc.object[exc.start : exc.start + 1]!r} at position {exc.start}). "
            "Re-create the zip with a tool that writes valid names, or rename that file."
        ) from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InvalidInput(f"{shown} is not a readable zip file ({exc}). Give a .zip of class folders.") from None
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
        max_bytes = store.settings().max_bytes
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


# A damaged member: EOFError, zlib/lzma errors; RuntimeError: encrypted; NotImplementedError: unsupported compression.
_UNREADABLE = (OSError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, RuntimeError, NotImplementedError)
MANIFEST_MAX_BYTES = 64 * 1024 * 1024  # an export's manifest of 100,000 images is well under this
MANIFEST_MAX_LINE = 64 * 1024  # a row is a path, two URLs, a title and a query: a few KB at most


def _manifest_lines(fh: IO[bytes], limit: int, line_limit: int) -> Iterator[str]:
    """The manifest's lines, decoded, read as a stream: never more than ``line_limit`` bytes
    held at once and ``limit`` bytes in all, so a one-line bomb costs a few KB, not gigabytes."""
    total = 0
    for lineno in itertools.count(1):
        raw = fh.readline(line_limit + 1)
        if not raw:
            return
        total += len(raw)
        if len(raw) > line_limit:
            raise InvalidInput(
                f"{MANIFEST} in the zip has a line longer than {line_limit:,} bytes (line {lineno}): "
                "it is not an export's manifest. Remove it from the zip or fix that line."
            )
        if total > limit:
            raise InvalidInput(
                f"{MANIFEST} in the zip is larger than {limit:,} bytes. Remove it from the zip or split the zip."
            )
        yield raw.decode("utf-8", errors="replace")


def _read_manifest(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    *,
    limit: int | None = None,
    line_limit: int | None = None,
) -> dict[str, dict[str, str | None]]:
    """Provenance from an exported bundle's manifest.csv, keyed by file path.

    Read as a stream under a byte cap (the header's size may lie); URLs go through ``clean_url``,
    so credentials in a manifest are never stored.
    """
    out: dict[str, dict[str, str | None]] = {}
    try:
        with zf.open(info) as fh:
            lines = _manifest_lines(fh, limit or MANIFEST_MAX_BYTES, line_limit or MANIFEST_MAX_LINE)
            for raw in csv.DictReader(lines):
                row = {k: csv_unsafe(v) for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}
                if row.get("path"):
                    out[row["path"]] = {
                        "source_url": clean_url(row.get("source_url")),
                        "page_url": clean_url(row.get("page_url")),
                        "title": row.get("title") or None,
                        "query": row.get("query") or None,
                    }
    except csv.Error as exc:
        raise InvalidInput(
            f"{MANIFEST} in the zip is not valid CSV ({exc}). Remove it from the zip or fix it."
        ) from None
    except _UNREADABLE as exc:
        raise InvalidInput(f"{MANIFEST} in the zip cannot be read ({exc}). Remove it from the zip.") from None
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


def import_urls(
    store: Store,
    text: str,
    default_label: str | None = None,
    *,
    source: str = "csv",
    create_classes: bool = False,
) -> ImportReport:
    """Turn URL rows into pending candidates; bad rows are reported with their line number.

    Parameters
    ----------
    store
        The project.
    text
        CSV rows ``url[,class]`` (or one URL per line).
    default_label
        The class of rows that name none.
    source
        Recorded as each candidate's source.
    create_classes
        Create a class for a label that is not one yet. Off by default: a typo in a label would
        otherwise become a new, empty class; such rows are refused with the known classes named.

    Returns
    -------
    ImportReport
        Candidates added and every refused row with its line number and reason.
    """
    report = ImportReport()
    known = store.class_names()
    items: list[CandidateIn] = []
    for lineno, cells in parse_url_rows(text, default_label):
        where = f"line {lineno}"
        url = cells[0]
        if not _valid_url(url):
            report.rejected.append((where, f"{url!r} is not an http(s) URL"))
            continue
        # Credentials would be stored, shown in the grid and exported in manifest.csv.
        if has_credentials(url):
            report.rejected.append(
                (where, f"{redact(url)!r} carries a user name or password (user:secret@); remove it from the URL")
            )
            continue
        if len(cells) < 2 or not cells[1]:
            report.rejected.append((where, "no label: expected url,label[,thumbnail]"))
            continue
        thumb = cells[2] if len(cells) > 2 and cells[2] else None
        if thumb and not _valid_url(thumb):
            report.rejected.append((where, f"thumbnail {thumb!r} is not an http(s) URL"))
            continue
        if thumb and has_credentials(thumb):
            report.rejected.append((where, f"thumbnail {redact(thumb)!r} carries a user name or password; remove it"))
            continue
        try:
            label = _class_for(store, cells[1], report) if create_classes else _known_class(store, cells[1], known)
        except LabelerError as exc:
            report.rejected.append((where, f"bad label: {exc}"))
            continue
        items.append(CandidateIn(label=label, image_url=url, thumbnail_url=thumb, source=source))
    report.candidates_added, report.candidates_known = store.add_candidates(items)
    return report


IMPORT_KINDS = ("folder", "zip", "urls")


def import_from(
    store: Store,
    kind: str,
    path: Path,
    *,
    label: str | None = None,
    create_classes: bool = False,
    progress: Report | None = None,
) -> ImportReport:
    """Import ``path`` as ``kind``: a folder of class folders, a zip of them, or a CSV file of URLs.

    Parameters
    ----------
    store
        The project.
    kind
        ``folder`` (``import_folder``), ``zip`` (``import_zip``) or ``urls`` (``import_urls``).
    path
        The folder, the .zip or the CSV file (read as UTF-8, a BOM allowed).
    label, create_classes
        For ``urls``: the class of rows that name none, and whether unknown labels become classes.
    progress
        For a folder or a zip: called with a ``Progress`` after each file.

    Raises
    ------
    InvalidInput
        An unknown kind, or a zip or CSV path that is not a file.
    """
    if kind == "folder":
        return import_folder(store, path, progress)
    if kind not in IMPORT_KINDS:
        raise InvalidInput(f"Unknown import kind {kind!r}: use one of {', '.join(IMPORT_KINDS)}.")
    if not path.is_file():
        what = "the path of a .zip" if kind == "zip" else "a CSV of url,label[,thumbnail] rows"
        raise InvalidInput(f"{path} is not a file. Give {what}.")
    if kind == "zip":
        return import_zip(store, path, progress)
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    return import_urls(store, text, label, create_classes=create_classes)
