"""The one exception tree of lotr_labeler.

Every message names the bad value and says how to fix it. Pages and the CLI
turn a ``LabelerError`` into a user message; anything else is a bug and is
allowed to surface.

    LabelerError
    ├── InvalidInput          bad names, settings, arguments
    ├── NotFound              project, class, image or candidate that does not exist
    ├── Conflict              the value exists already, or the state forbids the action
    │   └── NothingToUndo
    ├── ImageRejected         a file or body that is not a usable image (reason attached)
    ├── UnsafeArchive         zip entries that would escape the target folder
    ├── StoreError            the project database cannot be opened or migrated
    │   └── DiskFull          a write failed for want of space (imports and downloads stop)
    ├── TrainingError         training cannot start or failed (dataset, weights)
    │   └── WeightsUnavailable
    ├── SearchError           image search failed
    │   ├── SearchRateLimited
    │   ├── SearchTimeout
    │   ├── SearchUnreachable the search engine cannot be reached at all (offline, DNS, proxy)
    │   └── NoResults
    └── FetchError            one download failed (reason attached)
        └── BlockedHost
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


class LabelerError(Exception):
    """Base of every error the user can act on."""


class InvalidInput(LabelerError, ValueError):
    """A name, setting or argument is not acceptable."""


class NotFound(LabelerError, LookupError):
    """The named project, class, image or candidate does not exist."""


class Conflict(LabelerError):
    """The value exists already, or the current state forbids the action."""


class NothingToUndo(Conflict):
    """The history holds no action that can be undone."""


class ImageRejected(LabelerError):
    """Bytes that are not a usable image. ``reason`` is a short machine-friendly tag."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnsafeArchive(LabelerError):
    """A zip entry whose path would land outside the target folder."""


class StoreError(LabelerError):
    """The project database cannot be opened, migrated or repaired."""


class DiskFull(StoreError):
    """A write failed for want of space: the command stops with an error, never a per-file reason."""


class TrainingError(LabelerError):
    """Training cannot start (dataset not ready) or failed."""


class WeightsUnavailable(TrainingError):
    """Pretrained weights could not be downloaded or loaded."""


class SearchError(LabelerError):
    """Image search failed."""


class SearchRateLimited(SearchError):
    """The search engine refused because of too many requests."""


class SearchTimeout(SearchError):
    """The search engine did not answer in time."""


class SearchUnreachable(SearchError):
    """No connection to the search engine (DNS, refused connection, proxy): every query would fail."""


class NoResults(SearchError):
    """The query returned nothing."""


class FetchError(LabelerError):
    """One download failed. ``reason`` is a short tag stored with the candidate."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class BlockedHost(FetchError):
    """The URL points at a loopback, private or otherwise non-public address."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "blocked host")


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    """A write failed for want of space: an OSError ENOSPC/EDQUOT, or SQLite's SQLITE_FULL."""
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL_ERRNOS
    return type(exc).__name__ == "OperationalError" and "disk is full" in str(exc)


def check_choice(value: str, allowed: Iterable[str], what: str, *, hint: str = "") -> str:
    """Return ``value`` when it is one of ``allowed``, else raise one ``InvalidInput`` that names
    the bad value and every allowed one (cleanvision's "X is not supported. Must be one of: ...").

    Parameters
    ----------
    value
        The value to check.
    allowed
        The accepted values, in the order the message lists them.
    what
        The kind of value that starts the message ("Split", "Sort").
    hint
        Appended to the message, e.g. how to see the choices.

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    InvalidInput
        ``value`` is not one of ``allowed``.
    """
    options = list(allowed)
    if value in options:
        return value
    raise InvalidInput(f"{what} {value!r} is not valid. Must be one of: {', '.join(options)}.{hint}")
