"""The settings declarations and the typed Settings object built from stored values."""

from __future__ import annotations

import dataclasses

import pytest

from lotr_labeler.errors import InvalidInput
from lotr_labeler.settings import SETTINGS, SETTINGS_BY_KEY, Settings, setting
from lotr_labeler.store import Store


def test_every_field_is_declared_once_with_help_and_a_typed_default() -> None:
    fields = dataclasses.fields(Settings)
    assert [f.name for f in fields] == [s.key for s in SETTINGS] == list(SETTINGS_BY_KEY)
    for f, s in zip(fields, SETTINGS, strict=True):
        assert s.help
        assert type(s.default).__name__ == f.type, (s.key, f.type)


def test_from_values_parses_each_value_and_ignores_unknown_keys() -> None:
    got = Settings.from_values({"page_size": "20", "allow_private_hosts": "yes", "gone_setting": 1})
    assert (got.page_size, got.allow_private_hosts) == (20, True)
    assert got.as_dict() == {**Settings().as_dict(), "page_size": 20, "allow_private_hosts": True}
    with pytest.raises(InvalidInput, match="page_size=1 is below its minimum 8"):
        Settings.from_values({"page_size": 1})


def test_unknown_setting_names_every_allowed_one() -> None:
    with pytest.raises(InvalidInput, match=r"Setting 'nope' is not valid\. Must be one of: valid_pct, max_side"):
        setting("nope")


def test_store_settings_are_typed_and_validated(store: Store) -> None:
    assert store.settings() == Settings()
    assert store.set_setting("read_timeout", "7") == 7.0
    assert store.settings().read_timeout == 7.0
    assert store.get_setting("read_timeout") == 7.0
    with pytest.raises(InvalidInput, match="not a whole number"):
        store.set_setting("page_size", "many")
    assert store.settings().page_size == Settings().page_size


def test_the_readme_configuration_table_lists_every_setting_with_its_default() -> None:
    """The README is where a user looks a setting up: every declared one has its row and true default."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, flags=re.M))
    assert list(rows) == [s.key for s in SETTINGS]
    for s in SETTINGS:
        shown = rows[s.key].strip().replace(",", "")
        default = str(s.default).lower() if isinstance(s.default, bool) else s.default
        assert shown == str(default) or float(shown) == s.default, (s.key, shown, s.default)
