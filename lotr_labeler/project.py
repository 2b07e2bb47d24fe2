"""Projects, class-name rules and query templates. Settings live in ``lotr_labeler.settings``."""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from lotr_labeler.errors import InvalidInput, check_choice

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
    return TEMPLATES[check_choice(template, TEMPLATES, "Template")]


def parse_class_names(text: str) -> list[str]:
    """Class names typed one per line or comma-separated, each validated, in order, duplicates once.

    Raises
    ------
    InvalidInput
        A name that cannot be a class (the message names it and says why).
    """
    names: list[str] = []
    seen: set[str] = set()
    for part in text.replace(",", "\n").splitlines():
        if not part.strip():
            continue
        name = validate_name(part)
        if name.casefold() not in seen:
            seen.add(name.casefold())
            names.append(name)
    return names


def _quoted(text: str) -> str:
    """A name in a message as the user typed it (control characters are refused before): repr() doubled
    each backslash."""
    return f"'{text}'"


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
    q = _quoted
    bad = sorted(set(cleaned) & _FORBIDDEN_CHARS)
    if bad:
        raise InvalidInput(f"{what} {q(cleaned)} contains {q(''.join(bad))}. Use letters, digits, spaces, - or _.")
    if ".." in cleaned or cleaned.startswith("."):
        raise InvalidInput(f"{what} {q(cleaned)} contains '..' or starts with '.'. Remove the dots.")
    if cleaned.endswith("."):  # trailing spaces are stripped above
        raise InvalidInput(f"{what} {q(cleaned)} ends in a dot, which Windows drops. Remove the trailing dot.")
    head, dot, tail = cleaned.partition(".")
    if head.rstrip().casefold() in _RESERVED:
        raise InvalidInput(
            f"{what} {q(cleaned)} is a device name reserved on Windows. Choose another, "
            f"e.g. {q(head.rstrip() + '_' + dot + tail)}."
        )
    if len(cleaned) > MAX_NAME_LEN:
        raise InvalidInput(f"{what} {q(cleaned[:20])}… is {len(cleaned)} characters; the limit is {MAX_NAME_LEN}.")
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
    """--data, else $LOTR_LABELER_DATA, else ./data.

    Parameters
    ----------
    explicit
        A ``--data`` value; empty or None falls through to the environment.

    Returns
    -------
    Path
        As given (maybe relative): the workspace functions make it absolute.
    """
    if explicit:
        return Path(explicit)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path("data")
