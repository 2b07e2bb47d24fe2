"""Library errors in one sentence: what happened and what to do.

Error boundaries (the CLI's, every page's, a failed job's message) turn what torch, PIL, httpx and
the OS raise into a sentence naming the bad value and the fix. It sits above ``errors`` and
``settings`` (it quotes the pixel limit's default), so neither imports the other through it.
"""

from __future__ import annotations

import logging
import re

from lotr_labeler.errors import LabelerError, is_disk_full
from lotr_labeler.settings import setting

log = logging.getLogger(__name__)

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
