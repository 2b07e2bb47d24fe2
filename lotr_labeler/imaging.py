"""Turning untrusted bytes into a stored image: decode, guard, orient, RGB, resize, JPEG.

Memory: a decoded image costs 3-8 bytes per pixel, so 16 downloads of a 56 MP PNG (0.2 MB on
the wire each) decoded at once would take gigabytes. Every decode of untrusted bytes
(``normalize``: downloads and imports; ``predict.decode_image``; the API) therefore reserves
its pixel count from one process-wide budget (``decode_budget``) and waits its turn when the
budget is spent. Large decodes run one or a few at a time; ordinary photos never wait long.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import io
import os
import tempfile
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from lotr_labeler.errors import ImageRejected, InvalidInput
from lotr_labeler.progress import Cancel

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})

DECODE_BUDGET_PIXELS = 64_000_000
"""Pixels decoded at once in this process (~200-500 MB of pixel memory at 3-8 bytes each)."""
_WAIT_POLL_S = 0.2  # how often a waiting decode looks at its cancel flag
_TRIM_PIXELS = 4_000_000  # after a decode this large, hand freed memory back to the OS

# -- the pixel budget ---------------------------------------------------------------------------


class PixelBudget:
    """A first-come, first-served pool of pixels being decoded at once.

    A reservation larger than the whole budget is allowed: it waits until it can run
    alone. Reservations nest per thread: inside ``reserve`` the same thread's further
    reservations are covered by the outer one (so a caller can hold a budget across a
    decode and the work on its result without deadlocking against itself).
    """

    def __init__(self, pixels: int) -> None:
        self._total = _positive(pixels)
        self._used = 0
        self._queue: deque[object] = deque()
        self._cond = threading.Condition()
        self._local = threading.local()

    @property
    def total(self) -> int:
        return self._total

    @property
    def in_use(self) -> int:
        with self._cond:
            return self._used

    def resize(self, pixels: int) -> None:
        with self._cond:
            self._total = _positive(pixels)
            self._cond.notify_all()

    @contextmanager
    def reserve(self, pixels: int, *, cancel: Cancel | None = None, name: str = "image") -> Iterator[None]:
        """Hold ``pixels`` of the budget for the block. Raises ImageRejected (reason ``cancelled``)
        when ``cancel`` is set while waiting."""
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        want = self._acquire(max(0, int(pixels)), cancel, name)
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            with self._cond:
                self._used -= want
                self._cond.notify_all()
            if want >= _TRIM_PIXELS:
                release_memory()

    def _acquire(self, pixels: int, cancel: Cancel | None, name: str) -> int:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while True:
                    want = min(pixels, self._total)
                    if self._queue[0] is ticket and self._used + want <= self._total:
                        self._used += want
                        return want
                    if cancel is not None and cancel.is_set():
                        raise ImageRejected(f"Decoding {name} was cancelled while waiting for memory.", "cancelled")
                    self._cond.wait(_WAIT_POLL_S if cancel is not None else None)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()  # the next in line may fit now


def _positive(pixels: int) -> int:
    if int(pixels) < 1:
        raise InvalidInput(f"A decode budget of {pixels} pixels is not possible. Give at least 1 pixel.")
    return int(pixels)


_BUDGET = PixelBudget(DECODE_BUDGET_PIXELS)


def decode_budget(pixels: int, *, cancel: Cancel | None = None, name: str = "image") -> AbstractContextManager[None]:
    """Context manager: reserve ``pixels`` of the process-wide decode budget for the block.

    Wrap any work that holds a large decoded image (decode, then predict on it). Nested
    reservations in the same thread are covered by the outer one; ``normalize`` and
    ``predict.decode_image`` reserve on their own when called outside one.
    """
    return _BUDGET.reserve(pixels, cancel=cancel, name=name)


def release_memory() -> None:
    """Hand freed heap memory back to the OS (glibc keeps freed large blocks of busy threads'
    arenas otherwise, and a burst of big decodes would leave the process at its peak)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _load_malloc_trim() -> Callable[[int], int] | None:
    path = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(path).malloc_trim if path else None
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def pixel_count(data: bytes) -> int:
    """Width x height from the header alone (no decode); 0 when PIL cannot read the header.

    For sizing a ``decode_budget`` before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return int(img.width * img.height)
    except Exception:  # any unreadable header: the decode itself reports why
        return 0


# -- normalize ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalized:
    """An image ready to store: JPEG bytes and what the manifest records about them."""

    jpeg: bytes
    width: int
    height: int
    sha256: str
    phash: str


def normalize(
    data: bytes,
    *,
    max_side: int = 512,
    max_pixels: int = 60_000_000,
    quality: int = 90,
    name: str = "image",
    cancel: Cancel | None = None,
) -> Normalized:
    """Decode ``data`` fully and re-encode it as an RGB JPEG no larger than ``max_side``.

    The decode is the validation: Content-Type and file suffixes are not trusted.
    Raises ImageRejected with reason ``not an image``, ``bomb``, ``corrupt`` (or ``cancelled``
    when ``cancel`` is set while waiting for the decode budget).

    A JPEG much larger than ``max_side`` is decoded at 1/2, 1/4 or 1/8 scale (``draft``),
    never below twice ``max_side``: what ``Image.thumbnail`` would do itself, at a fraction
    of the memory. Other images are decoded in full under the pixel budget.
    """
    if not data:
        raise ImageRejected(f"{name} is empty (0 bytes).", "empty")
    with _guarded(name):
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        if width * height > max_pixels:
            raise ImageRejected(
                f"{name} is {width}x{height} = {width * height:,} pixels, over the "
                f"max_pixels limit of {max_pixels:,} (possible decompression bomb).",
                "bomb",
            )
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # animated GIF/WebP: keep the first frame
        if img.format == "JPEG" and max(img.size) > max_side:
            img.draft(img.mode, (2 * max_side, 2 * max_side))
    with decode_budget(img.width * img.height, cancel=cancel, name=name):
        with _guarded(name):
            img.load()
        return _encode(img, data, max_side, quality)


@contextmanager
def _guarded(name: str) -> Iterator[None]:
    """PIL's many failure types as ImageRejected."""
    try:
        with warnings.catch_warnings():
            # PIL only warns between its own limit and 2x; max_pixels refuses explicitly.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected(f"{name} is not an image PIL can read.", "not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(f"{name} is a decompression bomb (too many pixels).", "bomb") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(f"{name} is a damaged image ({exc}).", "corrupt") from None


def _encode(img: Image.Image, data: bytes, max_side: int, quality: int) -> Normalized:
    if _storable_as_is(img, max_side):
        # Re-encoding a JPEG that needs no change only loses quality and changes its hash
        # (an exported bundle imported back would not be recognised).
        rgb: Image.Image = img
        jpeg = data
    else:
        # In place where possible: each copy of a 56 MP image is another 170 MB.
        ImageOps.exif_transpose(img, in_place=True)
        rgb = to_rgb(img)
        del img
        if max(rgb.size) > max_side:
            # Area averaging (BOX: each output pixel is the mean of the input it covers, OpenCV's
            # INTER_AREA), after a plain box reduce for large factors (reducing_gap): the resize
            # was the biggest CPU cost of a download; BOX takes ~30% less than bilinear, is
            # sharper and never rings (fine stripes near the pixel pitch may alias a little more).
            rgb.thumbnail((max_side, max_side), Image.Resampling.BOX, reducing_gap=2.0)
        buf = io.BytesIO()
        # No optimize=True: its second Huffman pass costs ~20% of a download's CPU for ~6% smaller files.
        rgb.save(buf, format="JPEG", quality=quality)
        jpeg = buf.getvalue()
    return Normalized(
        jpeg=jpeg,
        width=rgb.width,
        height=rgb.height,
        sha256=hashlib.sha256(jpeg).hexdigest(),
        phash=phash(rgb),
    )


PHASH_SIDE = 32
"""imagehash's phash resizes to 32x32 (hash_size 8 x highfreq_factor 4) before its DCT."""


def phash(img: Image.Image) -> str:
    """imagehash's perceptual hash (64 bits, hex) of ``img``, with a box reduce before its resize.

    imagehash resizes the whole image to 32x32 with LANCZOS (a 96-tap kernel at 512 px): about
    1 ms, 15% of a download's CPU. The same resize with ``reducing_gap=2`` (an exact integer box
    reduce to >= 64 px first) takes a third of that and moves the hash by at most a bit or two,
    as much as hashing the full-size original instead of the stored copy does. imagehash then
    gets an image already 32x32 (its resize is a copy) and computes the DCT hash as ever.
    """
    import imagehash  # lazy: it loads numpy and scipy, which the home page never needs

    side = (PHASH_SIDE, PHASH_SIDE)
    return str(imagehash.phash(img.convert("L").resize(side, Image.Resampling.LANCZOS, reducing_gap=2.0)))


def _storable_as_is(img: Image.Image, max_side: int) -> bool:
    return (
        img.format == "JPEG"
        and img.mode == "RGB"
        and max(img.size) <= max_side
        and img.getexif().get(0x0112, 1) == 1  # no rotation pending
    )


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB with transparency flattened onto white (black would look like a dark photo).

    Returns ``img`` itself when it is RGB already (no copy), else a new image."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(rgba, mask=rgba)  # an RGBA mask pastes through its alpha channel
        return background
    if img.mode == "I;16" or img.mode == "I":
        # 16-bit greyscale: scale to 8 bits before converting.
        img = img.point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


def hamming(a: str, b: str) -> int:
    """Bit distance between two hex phashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process's umask (Linux reports it in
    /proc; elsewhere the usual 0o644). ``tempfile.mkstemp`` makes 0o600 files, and a file renamed from
    one into place (a stored image, an exported zip) is the user's file, as if written directly."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), new_file_mode())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def thumbnail(src: Path, cache_dir: Path, sha256: str, size: int) -> Path:
    """A cached JPEG thumbnail of ``src``, keyed by content hash so relabels keep it."""
    out = cache_dir / "thumbs" / str(size) / sha256[:2] / f"{sha256}.jpg"
    if out.exists():
        return out
    with Image.open(src) as img:
        img.thumbnail((size, size), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=80)
    write_atomic(out, buf.getvalue())
    return out
