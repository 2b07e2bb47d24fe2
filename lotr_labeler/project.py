"""Projects, class-name rules, query templates and settings, declared in one place."""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lotr_labeler.errors import InvalidInput

DEFAULT_PROJECT = "lotr-races"
DATA_ENV = "LOTR_LABELER_DATA"
MAX_NAME_LEN = 64
# Characters that break a folder name on some OS or in a zip made on one.
_FORBIDDEN_CHARS = set('/\\:*?"<>|')
# Device names Windows reserves in every folder, with any extension ("con", "NUL.txt", "COM1.jpg").
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"{dev}{n}" for dev in ("com", "lpt") for n in (*"123456789", "\u00b9", "\u00b2", "\u00b3")}
)


@dataclass(frozen=True)
class Setting:
    key: str
    default: int | float | bool
    help: str
    minimum: float | None = None
    maximum: float | None = None

    def parse(self, value: Any) -> int | float | bool:
        """Coerce ``value`` to this setting's type or raise InvalidInput naming the bad value."""
        kind = type(self.default)
        try:
            if kind is bool:
                if isinstance(value, str):
                    lowered = value.strip().lower()
                    if lowered not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
                        raise ValueError(value)
                    parsed: int | float | bool = lowered in {"true", "1", "yes", "on"}
                else:
                    parsed = bool(value)
            elif kind is int:
                parsed = int(value)
            else:
                parsed = float(value)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"Setting {self.key}={value!r} is not a {kind.__name__}. Example: {self.default!r}."
            ) from None
        if not isinstance(parsed, bool):
            if self.minimum is not None and parsed < self.minimum:
                raise InvalidInput(f"Setting {self.key}={parsed} is below its minimum {self.minimum}.")
            if self.maximum is not None and parsed > self.maximum:
                raise InvalidInput(f"Setting {self.key}={parsed} is above its maximum {self.maximum}.")
        return parsed


# Every tunable of a project, with its default and help. Stored per project in the DB.
SETTINGS: tuple[Setting, ...] = (
    Setting("valid_pct", 20, "Percent of images put in the validation split (by content hash).", 1, 50),
    Setting("max_side", 512, "Longest side, in pixels, of stored images (larger ones are shrunk).", 64, 4096),
    Setting("jpeg_quality", 90, "JPEG quality of stored images.", 50, 100),
    Setting("max_pixels", 60_000_000, "Images with more pixels are refused (decompression bombs).", 1e5, 5e8),
    Setting("max_bytes", 15_000_000, "Largest file or download accepted, in bytes.", 10_000, 500_000_000),
    Setting("thumb_size", 192, "Longest side of cached thumbnails in the grids.", 64, 512),
    Setting("page_size", 48, "Cards per page in the grids.", 8, 200),
    Setting("near_dup_distance", 8, "Near duplicates: largest phash Hamming distance.", 0, 32),
    Setting("download_workers", 16, "Parallel downloads.", 1, 64),
    Setting("connect_timeout", 5.0, "Download connect timeout, seconds.", 0.5, 120),
    Setting("read_timeout", 15.0, "Download read timeout, seconds.", 0.5, 600),
    Setting("allow_private_hosts", False, "Allow downloads from loopback/private addresses (local use)."),
    Setting("search_max_results", 30, "Search results per query.", 1, 500),
    Setting("search_delay", 1.5, "Pause between search queries, seconds (be polite).", 0, 60),
    Setting("min_images_per_class", 10, "Fewest images per class before training is suggested.", 1, 10_000),
    Setting("embed_size", 224, "Review: side, in pixels, images are resized to for backbone embeddings.", 32, 512),
    Setting("tiny_side", 64, "Review: images whose shorter side is below this are flagged tiny.", 1, 4096),
)
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}


def setting(key: str) -> Setting:
    try:
        return SETTINGS_BY_KEY[key]
    except KeyError:
        raise InvalidInput(f"Unknown setting {key!r}. Must be one of: {', '.join(SETTINGS_BY_KEY)}.") from None


@dataclass(frozen=True)
class ClassSpec:
    """A class as a template defines it: its search names and query template."""

    name: str
    names: tuple[str, ...]
    template: str


_MOVIE = "{name} lotr movie face"
# The seed blog's classes: the races of Middle-earth plus ordinary people.
LOTR_CLASSES: tuple[ClassSpec, ...] = (
    ClassSpec("Ainur", ("Gandalf", "Saruman", "Sauron", "Radagast"), _MOVIE),
    ClassSpec("Elves", ("Legolas", "Galadriel", "Elrond", "Arwen", "Thranduil"), _MOVIE),
    ClassSpec("Dwarves", ("Gimli", "Thorin", "Balin", "Dwalin"), _MOVIE),
    ClassSpec("Hobbits", ("Frodo", "Sam", "Merry", "Pippin", "Bilbo"), _MOVIE),
    ClassSpec("Men", ("Aragorn", "Boromir", "Faramir", "Theoden", "Eowyn"), _MOVIE),
    ClassSpec("Orcs", ("Azog", "Bolg", "Gothmog", "Lurtz", "Ugluk"), _MOVIE),
    ClassSpec(
        "no-middle-earth",
        ("man portrait", "woman portrait", "old man portrait", "child portrait", "office worker"),
        "{name} face",
    ),
)
TEMPLATES: dict[str, tuple[ClassSpec, ...]] = {"lotr": LOTR_CLASSES, "empty": ()}


def template_classes(template: str) -> tuple[ClassSpec, ...]:
    try:
        return TEMPLATES[template]
    except KeyError:
        raise InvalidInput(f"Unknown template {template!r}. Must be one of: {', '.join(TEMPLATES)}.") from None


def validate_name(name: str, what: str = "Class name") -> str:
    """Return ``name`` stripped and NFC-normalised, or raise InvalidInput saying what is wrong.

    Names become folder names, so anything that could escape a folder or break on
    another OS is refused.
    """
    if not isinstance(name, str):
        raise InvalidInput(f"{what} must be text, got {name!r}.")
    cleaned = unicodedata.normalize("NFC", name.strip())
    if not cleaned:
        raise InvalidInput(f"{what} is empty. Type a name such as 'Elves'.")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in cleaned):
        raise InvalidInput(f"{what} {cleaned!r} contains control characters. Remove them.")
    if any(unicodedata.category(ch) == "Cs" for ch in cleaned):  # undecodable bytes of a file name
        shown = cleaned.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise InvalidInput(f"{what} {shown!r} is not valid text (UTF-8). Rename it.")
    bad = sorted(set(cleaned) & _FORBIDDEN_CHARS)
    if bad:
        raise InvalidInput(f"{what} {cleaned!r} contains {''.join(bad)!r}. Use letters, digits, spaces, - or _.")
    if ".." in cleaned or cleaned.startswith("."):
        raise InvalidInput(f"{what} {cleaned!r} contains '..' or starts with '.'. Remove the dots.")
    if cleaned.endswith("."):  # trailing spaces are stripped above
        raise InvalidInput(f"{what} {cleaned!r} ends in a dot, which Windows drops. Remove the trailing dot.")
    head, dot, tail = cleaned.partition(".")
    if head.rstrip().casefold() in _RESERVED:
        raise InvalidInput(
            f"{what} {cleaned!r} is a device name reserved on Windows. Choose another, "
            f"e.g. {head.rstrip() + '_' + dot + tail!r}."
        )
    if len(cleaned) > MAX_NAME_LEN:
        raise InvalidInput(f"{what} {cleaned[:20]!r}… is {len(cleaned)} characters; the limit is {MAX_NAME_LEN}.")
    return cleaned


def name_key(name: str) -> str:
    """Case-insensitive identity of a name (``Elves`` and ``elves`` are the same class)."""
    return unicodedata.normalize("NFC", name).casefold()


def validate_template(template: str) -> str:
    """A query template must use ``{name}`` at most as its only field."""
    cleaned = template.strip()
    if not cleaned:
        raise InvalidInput("Query template is empty. Example: '{name} lotr movie face'.")
    try:
        cleaned.format(name="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidInput(
            f"Query template {cleaned!r} is invalid ({exc}). Use {{name}} as the only placeholder."
        ) from None
    return cleaned


def clean_search_names(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Strip, drop empties and case-insensitive repeats, keep order."""
    seen: set[str] = set()
    out: list[str] = []
    for raw in names:
        item = " ".join(raw.split())
        if item and item.casefold() not in seen:
            if any(unicodedata.category(ch) == "Cc" for ch in item):
                raise InvalidInput(f"Search name {item!r} contains control characters. Remove them.")
            seen.add(item.casefold())
            out.append(item)
    return tuple(out)


def queries_for(name: str, names: tuple[str, ...], template: str) -> list[str]:
    """The search queries of a class: one per search name, or the class name itself."""
    return [template.format(name=n) for n in (names or (name,))]


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--data, else $LOTR_LABELER_DATA, else ./data."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path("data")
