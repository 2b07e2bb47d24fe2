"""Export the dataset as a zip: the fastai folder layout plus manifest.csv."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import zipfile
from pathlib import Path

from lotr_labeler.errors import InvalidInput
from lotr_labeler.imaging import new_file_mode
from lotr_labeler.progress import Progress, Report
from lotr_labeler.store import Store

MANIFEST_FIELDS = (
    "id",
    "class",
    "split",
    "sha256",
    "path",
    "source",
    "source_url",
    "page_url",
    "title",
    "query",
    "added_at",
)


# Spreadsheets run a cell starting with one of these as a formula (CSV injection): OWASP's
# advice is to prefix such a cell with a single quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _needs_quote(value: str) -> bool:
    """True for values that, after any leading quotes, start like a formula."""
    return value.lstrip("'").startswith(_FORMULA_START)


def csv_safe(value: object) -> object:
    """A manifest cell a spreadsheet shows as text. Reversible: ``csv_unsafe`` undoes it, also for
    values that already started with quotes (only quote runs before a formula start are touched)."""
    if isinstance(value, str) and _needs_quote(value):
        return "'" + value
    return value


def csv_unsafe(value: str) -> str:
    """The value ``csv_safe`` was given."""
    if value.startswith("'") and _needs_quote(value):
        return value[1:]
    return value


def export_dataset(store: Store, out: Path, progress: Report | None = None) -> int:
    """Write ``images/<class>/<id>.jpg`` and ``manifest.csv`` to ``out``; returns the image count.

    The zip is built under a temporary name and renamed, so ``out`` is never half written.
    ``ImageDataLoaders.from_folder('images')`` or ``lotr-labeler import zip`` read it back.

    Parameters
    ----------
    store
        The project.
    out
        The ``.zip`` file to write.
    progress
        Called with a ``Progress`` after each image written (done of total).

    Returns
    -------
    int
        The number of images written.

    Raises
    ------
    InvalidInput
        ``out`` does not end in ``.zip``, or the project has no images.
    """
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise InvalidInput(f"Export target {out} must end in .zip.")
    images = store.images()
    if not images:
        raise InvalidInput(f"Project {store.name!r} has no images to export. Import or download some first.")
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest = io.StringIO()
    writer = csv.DictWriter(manifest, fieldnames=MANIFEST_FIELDS)
    writer.writeheader()
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".export-", suffix=".zip")
    os.fchmod(fd, new_file_mode())  # a zip to share, not mkstemp's owner-only 0600
    os.close(fd)
    try:
        # JPEGs are compressed already: store them, deflate only the manifest.
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for done, img in enumerate(images, start=1):
                zf.write(store.path(img), img.relpath)
                row = {
                    "id": img.id,
                    "class": img.label,
                    "split": img.split,
                    "sha256": img.sha256,
                    "path": img.relpath,
                    "source": img.source,
                    "source_url": img.source_url or "",
                    "page_url": img.page_url or "",
                    "title": img.title or "",
                    "query": img.query or "",
                    "added_at": img.added_at,
                }
                writer.writerow({key: csv_safe(value) for key, value in row.items()})
                if progress:
                    progress(Progress(done=done, total=len(images)))
            zf.writestr("manifest.csv", manifest.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
        Path(tmp).replace(out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(images)
