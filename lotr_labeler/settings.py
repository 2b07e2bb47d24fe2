"""Every tunable of a project, declared once (datasette's ``Setting``), and a typed view of them.

Each setting is a field of the frozen ``Settings`` dataclass: its annotation is the type, its default
the default, and the field's metadata carries the help text and bounds. ``SETTINGS`` (the declarations
the CLI lists and ``Store.set_setting`` validates through) is derived from those fields, so a new
setting is one line here. Code reads ``store.settings().page_size``, never a cast of a dict entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lotr_labeler.errors import InvalidInput, check_choice

Value = int | float | bool


# The type a value must have, in words ("is not a int" before).
_KIND_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false"}


@dataclass(frozen=True)
class Setting:
    """One declared setting: key, default (whose type is the setting's type), help and bounds."""

    key: str
    default: Value
    help: str
    minimum: float | None = None
    maximum: float | None = None

    def parse(self, value: Any) -> Value:
        """Coerce ``value`` to this setting's type or raise InvalidInput naming the bad value."""
        kind = type(self.default)
        try:
            if kind is bool:
                if isinstance(value, str):
                    lowered = value.strip().lower()
                    if lowered not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
                        raise ValueError(value)
                    parsed: Value = lowered in {"true", "1", "yes", "on"}
                else:
                    parsed = bool(value)
            elif kind is int:
                parsed = int(value)
            else:
                parsed = float(value)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"Setting {self.key}={value!r} is not {_KIND_WORDS.get(kind.__name__, kind.__name__)}. "
                f"Example: {self.default!r}."
            ) from None
        if not isinstance(parsed, bool):
            if self.minimum is not None and parsed < self.minimum:
                raise InvalidInput(f"Setting {self.key}={parsed} is below its minimum {self.minimum}.")
            if self.maximum is not None and parsed > self.maximum:
                raise InvalidInput(f"Setting {self.key}={parsed} is above its maximum {self.maximum}.")
        return parsed


def _declare(default: Value, help: str, minimum: float | None = None, maximum: float | None = None) -> Any:
    # Any: the dataclass field takes the default's type from its annotation.
    return dataclasses.field(default=default, metadata={"help": help, "minimum": minimum, "maximum": maximum})


@dataclass(frozen=True)
class Settings:
    """The settings of one project, typed. Stored per project in the DB; missing ones take the default."""

    valid_pct: int = _declare(20, "Percent of images put in the validation split (by content hash).", 1, 50)
    max_side: int = _declare(512, "Longest side, in pixels, of stored images (larger ones are shrunk).", 64, 4096)
    jpeg_quality: int = _declare(90, "JPEG quality of stored images.", 50, 100)
    max_pixels: int = _declare(60_000_000, "Images with more pixels are refused (decompression bombs).", 1e5, 5e8)
    max_bytes: int = _declare(15_000_000, "Largest file or download accepted, in bytes.", 10_000, 500_000_000)
    thumb_size: int = _declare(192, "Longest side of cached thumbnails in the grids.", 64, 512)
    page_size: int = _declare(48, "Cards per page in the grids.", 8, 200)
    grid_columns: int = _declare(
        8, "Cards per row in the Search, Dataset and Review grids, at most (a narrow window shows fewer).", 2, 16
    )
    near_dup_distance: int = _declare(8, "Near duplicates: largest phash Hamming distance.", 0, 32)
    download_workers: int = _declare(
        32, "Parallel downloads (each mostly waits on the network: sized to cover a slow server).", 1, 64
    )
    connect_timeout: float = _declare(5.0, "Download connect timeout, seconds.", 0.5, 120)
    read_timeout: float = _declare(15.0, "Download read timeout, seconds.", 0.5, 600)
    allow_private_hosts: bool = _declare(False, "Allow downloads from loopback/private addresses (local use).")
    search_max_results: int = _declare(30, "Search results per query.", 1, 500)
    search_delay: float = _declare(1.5, "Pause between search queries, seconds (be polite).", 0, 60)
    min_images_per_class: int = _declare(10, "Fewest images per class before training is suggested.", 1, 10_000)
    embed_size: int = _declare(224, "Review: side, in pixels, images are resized to for backbone embeddings.", 32, 512)
    tiny_side: int = _declare(64, "Review: images whose shorter side is below this are flagged tiny.", 1, 4096)
    weak_model_error_rate: float = _declare(
        0.3, "A model with a higher validation error rate is shown as a hint, not the primary action.", 0, 1
    )

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Settings:
        """Settings from stored values: each parsed through its declaration, unknown keys ignored.

        Raises
        ------
        InvalidInput
            A stored value does not fit its declaration (wrong type, out of bounds).
        """
        parsed: dict[str, Any] = {k: SETTINGS_BY_KEY[k].parse(v) for k, v in values.items() if k in SETTINGS_BY_KEY}
        return cls(**parsed)

    def as_dict(self) -> dict[str, Value]:
        """Every setting by key, in declaration order."""
        return {s.key: getattr(self, s.key) for s in SETTINGS}

    def get(self, key: str) -> Value:
        """The value of the setting named ``key`` (for generic code such as the CLI)."""
        value: Value = getattr(self, setting(key).key)
        return value


def _declaration(f: dataclasses.Field[Any]) -> Setting:
    if not isinstance(f.default, int | float):  # bool is an int
        raise TypeError(f"Setting {f.name} needs a bool, int or float default, got {f.default!r}.")
    return Setting(f.name, f.default, f.metadata["help"], f.metadata["minimum"], f.metadata["maximum"])


SETTINGS: tuple[Setting, ...] = tuple(_declaration(f) for f in dataclasses.fields(Settings))
SETTINGS_BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}


# How the Settings page groups them: (group, what it governs, keys). A setting left out of every group
# is shown under "Other", so a new declaration is never hidden.
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Downloads",
        "How accepted candidates are fetched: parallelism, timeouts, size limits, which hosts.",
        ("download_workers", "connect_timeout", "read_timeout", "max_bytes", "allow_private_hosts"),
    ),
    ("Search", "How DuckDuckGo is queried.", ("search_max_results", "search_delay")),
    (
        "Images",
        "How downloaded and imported images are checked, stored and split.",
        ("max_side", "jpeg_quality", "max_pixels", "valid_pct", "near_dup_distance"),
    ),
    (
        "Grids",
        "The thumbnail grids of the Search, Dataset and Review pages.",
        ("page_size", "thumb_size", "grid_columns"),
    ),
    (
        "Review and training",
        "Label review and when training is suggested.",
        ("min_images_per_class", "weak_model_error_rate", "embed_size", "tiny_side"),
    ),
)

# Settings that weaken a safeguard: the risk, said wherever the setting can be changed.
CAUTIONS: dict[str, str] = {
    "allow_private_hosts": (
        "Risk: image URLs come from search results, i.e. from strangers. With this on, such a URL can make "
        "this computer fetch from your own network — the router's admin page, a local service, a cloud "
        "metadata address (169.254.169.254) — and store the answer in the project. Turn it on only to "
        "download from a server on this machine or your LAN that you trust, and turn it off afterwards."
    ),
}


def grouped() -> list[tuple[str, str, list[Setting]]]:
    """Every setting once, in its group and the group's order (ungrouped ones under "Other")."""
    placed: set[str] = set()
    groups: list[tuple[str, str, list[Setting]]] = []
    for name, about, keys in GROUPS:
        members = [SETTINGS_BY_KEY[key] for key in keys if key in SETTINGS_BY_KEY]
        placed.update(s.key for s in members)
        if members:
            groups.append((name, about, members))
    rest = [s for s in SETTINGS if s.key not in placed]
    if rest:
        groups.append(("Other", "Settings not in a group yet.", rest))
    return groups


def group_of(key: str) -> str:
    """The name of the group the setting ``key`` is shown in."""
    return next(name for name, _, members in grouped() for s in members if s.key == key)


def setting(key: str) -> Setting:
    """The declaration of the setting named ``key``.

    Raises
    ------
    InvalidInput
        ``key`` names no setting; the message lists every setting.
    """
    return SETTINGS_BY_KEY[check_choice(key, SETTINGS_BY_KEY, "Setting")]
