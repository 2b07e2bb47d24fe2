"""Turning untrusted bytes into a stored image: decode, guard, orient, RGB, resize, JPEG."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import imagehash
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageRejected

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


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
) -> Normalized:
    """Decode ``data`` fully and re-encode it as an RGB JPEG no larger than ``max_side``.

    The decode is the validation: Content-Type and file suffixes are not trusted.
    Raises ImageRejected with reason ``not an image``, ``bomb`` or ``corrupt``.
    """
    if not data:
        raise ImageRejected(f"{name} is empty (0 bytes).", "empty")
    try:
        with warnings.catch_warnings():
            # PIL only warns between max_pixels and 2x; we refuse explicitly below.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
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
            img.load()
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected(f"{name} is not an image PIL can read.", "not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(f"{name} is a decompression bomb (too many pixels).", "bomb") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(f"{name} is a damaged image ({exc}).", "corrupt") from None

    if _storable_as_is(img, max_side):
        # Re-encoding a JPEG that needs no change only loses quality and changes its hash
        # (an exported bundle imported back would not be recognised).
        rgb: Image.Image = img
        jpeg = data
    else:
        rgb = to_rgb(ImageOps.exif_transpose(img))
        if max(rgb.size) > max_side:
            rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=quality, optimize=True)
        jpeg = buf.getvalue()
    return Normalized(
        jpeg=jpeg,
        width=rgb.width,
        height=rgb.height,
        sha256=hashlib.sha256(jpeg).hexdigest(),
        phash=str(imagehash.phash(rgb)),
    )


def _storable_as_is(img: Image.Image, max_side: int) -> bool:
    return (
        img.format == "JPEG"
        and img.mode == "RGB"
        and max(img.size) <= max_side
        and img.getexif().get(0x0112, 1) == 1  # no rotation pending
    )


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB with transparency flattened onto white (black would look like a dark photo)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    if img.mode == "I;16" or img.mode == "I":
        # 16-bit greyscale: scale to 8 bits before converting.
        img = img.point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


def hamming(a: str, b: str) -> int:
    """Bit distance between two hex phashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
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
