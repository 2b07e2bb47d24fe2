"""Real pictures with no download: emoji from the Noto Color Emoji font (Debian's fonts-noto-color-emoji,
installed by ``make browser`` beside Chromium), drawn on varied backgrounds at varied sizes, offsets and
crops. Three to five classes of everyday things; each class has many different emoji, and a picture's
emoji, background, scale and position come from a seeded generator, so the same call gives the same files.

Used by the benches and tests that judge model quality (a model that cannot see scores near chance here;
an ImageNet-pretrained backbone does not).
"""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_PATHS = (
    Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"),
    Path("/usr/share/fonts/noto/NotoColorEmoji.ttf"),
)
# Noto Color Emoji is a bitmap font: 109 px is its one size.
FONT_SIZE = 109

EMOJI: dict[str, str] = {
    "animals": (
        "🐶🐱🐭🐹🐰🦊🐻🐼🐨🐯🦁🐮🐷🐸🐵🐔🐧🐦🐤🦆🦅🦉🐺🐗🐴🦄🐝🐛🦋🐌🐞🐢🐍🦎🐙🦑🦀🐡🐠🐟"
        "🐬🐳🐋🦈🐊🐅🐆🦓🦍🐘🦛🦏🐪🐫🦒🦘🐃🐂🐄🐎🐖🐏🐑🦙🐐🦌🐕🐩🐈🐓🦃🦚🦜🦢🦩🐇🦝🦨🦡🦦"
        "🦥🐁🐀🐿🦔"
    ),
    "food": (
        "🍏🍎🍐🍊🍋🍌🍉🍇🍓🍈🍒🍑🥭🍍🥥🥝🍅🍆🥑🥦🥬🥒🌶🌽🥕🧄🧅🥔🍠🥐🥯🍞🥖🥨🧀🥚🍳🧈🥞🧇"
        "🥓🥩🍗🍖🌭🍔🍟🍕🥪🥙🧆🌮🌯🥗🥘🥫🍝🍜🍲🍛🍣🍱🥟🦪🍤🍙🍚🍘🍥🥠🥮🍢🍡🍧🍨🍦🥧🧁🍰🎂"
        "🍮🍭🍬🍫🍿🍩🍪"
    ),
    "vehicles": (
        "🚗🚕🚙🚌🚎🏎🚓🚑🚒🚐🚚🚛🚜🛴🚲🛵🏍🛺🚨🚔🚍🚘🚖🚡🚠🚟🚃🚋🚞🚝🚄🚅🚈🚂🚆🚇🚊🚉✈🛫🛬🛩💺🛰🚀🛸🚁🛶⛵🚤🛥🛳⛴🚢"
    ),
    "plants": ("🌵🎄🌲🌳🌴🌱🌿☘🍀🎍🎋🍃🍂🍁🍄🌾💐🌷🌹🥀🌺🌸🌼🌻"),
    "sports": ("⚽🏀🏈⚾🥎🎾🏐🏉🥏🎱🪀🏓🏸🏒🏑🥍🏏🥅⛳🪁🏹🎣🤿🥊🥋🎽🛹🛷⛸🥌🎿⛷🏂"),
}
DEFAULT_CLASSES = ("animals", "food", "vehicles")


def font_path() -> Path:
    """The Noto Color Emoji font file; raises FileNotFoundError naming the package to install."""
    for path in FONT_PATHS:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "Noto Color Emoji is not installed: `make browser` installs it (Debian package fonts-noto-color-emoji)."
    )


_glyphs: dict[str, Image.Image] = {}


def glyph(char: str) -> Image.Image:
    """One emoji as an RGBA picture cropped to its ink (cached per process)."""
    if char not in _glyphs:
        font = ImageFont.truetype(str(font_path()), FONT_SIZE)
        canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((8, 8), char, font=font, embedded_color=True)
        box = canvas.getbbox()
        if box is None:
            raise ValueError(f"The emoji font draws nothing for {char!r}")
        _glyphs[char] = canvas.crop(box)
    return _glyphs[char]


def picture(char: str, rng: random.Random, px: int = 96) -> Image.Image:
    """``char`` on a random background (plain, two-tone or noisy), scaled 45-95 %, shifted, maybe cut at an edge."""
    bg = tuple(rng.randrange(256) for _ in range(3))
    img = Image.new("RGB", (px, px), bg)
    if rng.random() < 0.5:  # a second tone: half the picture in another colour
        other = tuple(rng.randrange(256) for _ in range(3))
        draw = ImageDraw.Draw(img)
        if rng.random() < 0.5:
            draw.rectangle((0, rng.randrange(px), px, px), fill=other)
        else:
            draw.ellipse(
                (rng.randrange(-px, px), rng.randrange(-px, px), rng.randrange(px, 2 * px), px * 2), fill=other
            )
    g = glyph(char)
    side = max(8, int(px * rng.uniform(0.45, 0.95)))
    g = g.resize((side, side), Image.Resampling.LANCZOS)
    if rng.random() < 0.3:
        g = g.rotate(rng.uniform(-30, 30), expand=True, resample=Image.Resampling.BICUBIC)
    x = rng.randrange(-side // 5, max(1, px - side + side // 5))
    y = rng.randrange(-side // 5, max(1, px - side + side // 5))
    img.paste(g, (x, y), g)
    return img


def samples(
    per_class: int, classes: tuple[str, ...] = DEFAULT_CLASSES, *, seed: int = 0, px: int = 96
) -> list[tuple[str, Image.Image]]:
    """``per_class`` pictures per class, as (class, picture), in class order; each emoji of a class in turn."""
    unknown = [c for c in classes if c not in EMOJI]
    if unknown:
        raise ValueError(f"Unknown emoji class {unknown[0]!r}. Must be one of: {', '.join(EMOJI)}")
    rng = random.Random(seed)
    out: list[tuple[str, Image.Image]] = []
    for name in classes:
        chars = list(EMOJI[name])
        rng.shuffle(chars)
        out += [(name, picture(chars[i % len(chars)], rng, px)) for i in range(per_class)]
    return out


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_folder(
    root: Path, per_class: int, classes: tuple[str, ...] = DEFAULT_CLASSES, *, seed: int = 0, px: int = 96
) -> Path:
    """``root/<class>/<class>-<i>.jpg`` for ``import folder``; returns ``root``."""
    for i, (name, img) in enumerate(samples(per_class, classes, seed=seed, px=px)):
        path = root / name / f"{name}-{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg(img))
    return root
