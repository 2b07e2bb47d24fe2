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
import re
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


# -- library errors in one sentence -------------------------------------------------------------

_CONNECTION = re.compile(
    r"dnserror|dns error|name resolution|name or service not known|nodename nor servname|getaddrinfo|"
    r"no address associated|connecterror|connection refused|connection reset|network is unreachable|"
    r"no route to host|proxyerror|proxy error|error sending request|urlopen error|failed to establish",
    re.IGNORECASE,
)


def is_connection_failure(exc: BaseException | str) -> bool:
    """Whether an error (or its text) says the network cannot be reached at all: DNS, refused
    connection, unreachable network, proxy. Timeouts and HTTP errors are not connection failures."""
    if isinstance(exc, BaseException):
        import_name = type(exc).__module__.split(".")[0]
        if import_name == "httpx" and type(exc).__name__ in ("ConnectError", "ProxyError"):
            return True
        if isinstance(exc, (ConnectionRefusedError, ConnectionResetError)):
            return True
        text = f"{type(exc).__name__}: {exc}"
    else:
        text = exc
    return bool(_CONNECTION.search(text))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def not_weights_file(name: str) -> str:
    """The sentence for a file ``torch.load`` cannot read as weights (text, an image, a pickle of
    something else, a truncated download: torch raises anything from IndexError to UnpicklingError)."""
    return (
        f"{name} is not a PyTorch weights file or it is damaged. "
        "Use the .pth file saved with torch.save(model.state_dict()) for the chosen architecture."
    )


def wrong_weights(name: str) -> str:
    """The sentence for weights that load but do not fit the network."""
    return f"{name} holds weights of another network. Use the torchvision .pth state dict of the chosen architecture."


# Where pretrained weights come from: torchvision's URLs, the torch.hub cache and repos, the
# Hugging Face hub (fastai/timm). Not the bare word "hub": it is in github.com, and in hosts of images.
_WEIGHTS_SOURCE = re.compile(
    r"download\.pytorch\.org|torch[./\\]hub|hub[/\\]checkpoints|hubconf|huggingface\.co|huggingface_hub|\bhf\.co\b",
    re.IGNORECASE,
)

# PIL's wording: "Image size (N pixels) exceeds limit of M pixels, could be decompression bomb DOS attack."
_BOMB_SIZES = re.compile(r"image size \((\d+) pixels\) exceeds limit of (\d+) pixels", re.IGNORECASE)


def _bomb(text: str, subject: str) -> str:
    """The sentence for an image PIL refuses to open for its pixel count (its limit, when it says it)."""
    from lotr_labeler.settings import setting  # lazy: settings imports this module

    default = setting("max_pixels").default
    knob = f"the project keeps images up to its max_pixels setting ({default:,} pixels by default)"
    sizes = _BOMB_SIZES.search(text)
    if sizes is None:
        return f"{subject} has too many pixels to open safely (possible decompression bomb). Use a smaller one; {knob}."
    pixels, limit = int(sizes.group(1)), int(sizes.group(2))
    return (
        f"{subject} is {pixels:,} pixels, over the limit of {limit:,} pixels for opening an image safely "
        f"(possible decompression bomb). Use a smaller image; {knob}."
    )


def _server_of(exc: BaseException) -> str | None:
    """'The server <host[:port]>' of the request an httpx error carries (None without one)."""
    try:
        url = getattr(exc, "request", None)
        url = getattr(url, "url", None)
    except RuntimeError:  # httpx: "The .request property has not been set."
        return None
    host = getattr(url, "host", None)
    if not isinstance(host, str) or not host:
        return None
    port = getattr(url, "port", None)
    return f"The server {host}:{port}" if isinstance(port, int) else f"The server {host}"


def _explain_one(exc: BaseException, subject: str, server: str | None = None) -> str | None:
    """The sentence for one error of a chain. ``server`` names the subject of network errors
    (timeouts, connection failures) when the caller named none."""
    # Each test looks at what the library really raises (type name or its fixed wording), so no
    # import of torch, PIL or httpx is needed here.
    text = str(exc)
    name = type(exc).__name__
    if "Weights only load failed" in text or "invalid load key" in text or "PytorchStreamReader" in text:
        return not_weights_file(subject)
    if "Missing key(s) in state_dict" in text or "size mismatch for" in text or "Unexpected key(s)" in text:
        return wrong_weights(subject)
    if name == "UnidentifiedImageError" or "cannot identify image file" in text:
        return f"{subject} is not an image that can be read. Use a jpg, png, webp, gif or bmp file."
    if name in ("DecompressionBombError",) or "decompression bomb" in text.lower():
        return _bomb(text, subject)
    if _WEIGHTS_SOURCE.search(text) and is_connection_failure(text):
        return (
            "The pretrained ImageNet weights cannot be downloaded: there is no internet connection. "
            "Untick 'Pretrained weights' (CLI: --no-pretrained) or give a local weights file."
        )
    if name in ("ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException") or isinstance(
        exc, TimeoutError
    ):
        return f"{server or subject} did not answer in time. Check the connection and try again."
    if is_connection_failure(exc):
        return f"{server or subject} cannot be reached. Check the network connection or proxy and try again."
    if is_disk_full(exc):
        return "The disk is full. Free some space (e.g. empty the trash or delete old runs) and try again."
    if isinstance(exc, PermissionError):
        return f"No permission to use {exc.filename or subject}. Check the file's owner and permissions."
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename or subject} does not exist. Check the path."
    return None


def _chain_server(chain: list[BaseException], subject: str | None) -> str | None:
    """The server a network error in ``chain`` was talking to, unless the caller named a subject."""
    if subject:
        return None
    return next((s for s in map(_server_of, chain) if s), None)


def explain(exc: BaseException, subject: str | None = None) -> str:
    """One sentence for the user: what happened and what to do.

    A ``LabelerError`` says it already (wrappers build theirs with ``explain`` of the cause).
    Known library errors (torch weights, PIL images, httpx and
    socket connection errors, a full disk) are translated, looking through the ``__cause__`` chain;
    anything else becomes its type and first line. The full original is logged.

    Parameters
    ----------
    exc
        The error.
    subject
        What the error is about, as the user knows it (an uploaded file's name, a host): replaces
        the temporary path or URL the library would name. None: "The file", or for network errors
        the server of the request the error carries.
    """
    if isinstance(exc, LabelerError):
        return str(exc)
    log.info("explained error", exc_info=exc)
    chain = _chain(exc)
    server = _chain_server(chain, subject)
    for link in chain:
        sentence = _explain_one(link, subject or "The file", server)
        if sentence is not None:
            return sentence
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    raw = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"{subject}: {raw}" if subject else raw


def explain_known(exc: BaseException, subject: str | None = None) -> str | None:
    """``explain(exc)`` for a domain error or a library error it recognises, else None: error
    boundaries show those to the user and let the rest (bugs) surface."""
    if isinstance(exc, LabelerError):
        return str(exc)
    chain = _chain(exc)
    server = _chain_server(chain, subject)
    for link in chain:
        sentence = _explain_one(link, subject or "The file", server)
        if sentence is not None:
            log.info("explained error", exc_info=exc)
            return sentence
    return None
