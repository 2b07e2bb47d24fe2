"""normalize's cheaper steps (area resize, phash from a reduced copy) keep what they must."""

from __future__ import annotations

import io
import random
from typing import Any

import imagehash
import numpy as np
import pytest
from helpers import image_bytes
from PIL import Image, ImageDraw

from lotr_labeler import imaging
from lotr_labeler.imaging import hamming, normalize


def photo_like(seed: int, w: int = 600, h: int = 480) -> Image.Image:
    """Gradient, shapes and noise, as the download bench's bodies."""
    r = random.Random(seed)
    img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y, s = r.randrange(w), r.randrange(h), r.randrange(20, 150)
        draw.ellipse((x - s, y - s, x + s, y + s), fill=tuple(r.randrange(256) for _ in range(3)))
    noise = np.random.default_rng(seed).normal(0, 8, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def test_shrinking_averages_the_area_each_pixel_covers() -> None:
    # Columns 0, 0, 200, 200 halved: area averaging gives 0 and 200; a bilinear (triangle)
    # filter would mix the neighbours in (about 29 and 171).
    src = Image.new("L", (4, 2))
    src.putdata([0, 0, 200, 200] * 2)
    out = normalize(image_bytes(src.convert("RGB")), max_side=2)
    assert (out.width, out.height) == (2, 1)
    left, right = (int(np.asarray(Image.open(io.BytesIO(out.jpeg)).convert("L"))[0, x]) for x in (0, 1))
    assert left < 12 and right > 188, (left, right)


@pytest.mark.slow
def test_phash_is_imagehash_after_a_reducing_resize() -> None:
    for seed in range(12):
        img = photo_like(seed, 512, 400)
        side = (imaging.PHASH_SIDE, imaging.PHASH_SIDE)
        reduced = img.convert("L").resize(side, Image.Resampling.LANCZOS, reducing_gap=2.0)
        assert imaging.phash(img) == str(imagehash.phash(reduced))


@pytest.mark.slow
def test_phash_stays_within_two_bits_of_imagehash_on_the_full_image() -> None:
    # Hashes stored before this change (imagehash on the stored image) stay comparable.
    distances = [hamming(imaging.phash(img), str(imagehash.phash(img))) for img in map(photo_like, range(30))]
    assert max(distances) <= 2 and sum(distances) / len(distances) < 0.5, distances


def test_phash_box_reduces_a_large_image_before_lanczos(monkeypatch: pytest.MonkeyPatch) -> None:
    reduced: list[tuple[tuple[int, int], Any]] = []
    real = Image.Image.reduce

    def spy(self: Image.Image, factor: Any, *args: Any, **kw: Any) -> Image.Image:
        reduced.append((self.size, factor))
        return real(self, factor, *args, **kw)

    monkeypatch.setattr(Image.Image, "reduce", spy)
    imaging.phash(photo_like(0, 512, 512))
    # 512 px to 64 (factor 8) by box, so LANCZOS's 96-tap kernel runs on 64 px, not 512.
    assert reduced == [((512, 512), (8, 8))], reduced


def test_small_and_large_images_still_hash_alike() -> None:
    # A 40 px image is hashed exactly as imagehash does (nothing to reduce); 8x its size lands close.
    small = photo_like(3, 40, 40)
    assert imaging.phash(small) == str(imagehash.phash(small))
    assert hamming(imaging.phash(small.resize((320, 320), Image.Resampling.BICUBIC)), imaging.phash(small)) <= 4


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "fmt"),
    [
        (lambda: photo_like(5).convert("CMYK"), "JPEG"),
        (lambda: photo_like(6).convert("RGBA"), "PNG"),
        (lambda: photo_like(7), "PNG"),
    ],
)
def test_other_inputs_are_still_reencoded_and_shrunk(make: Any, fmt: str) -> None:
    data = image_bytes(make(), fmt)
    out = normalize(data, max_side=512)
    stored = Image.open(io.BytesIO(out.jpeg))
    assert out.jpeg != data and stored.format == "JPEG" and stored.mode == "RGB"
    assert (out.width, out.height) == stored.size == (512, 410)
    assert hamming(out.phash, str(imagehash.phash(stored))) <= 2
