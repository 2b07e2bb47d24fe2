"""The ``settings`` table: a project's stored setting values (declarations: ``lotr_labeler.settings``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lotr_labeler.settings import Settings, Value, setting
from lotr_labeler.store.history import HistoryMixin


class SettingsMixin(HistoryMixin):
    def settings(self) -> Settings:
        """The project's settings, typed; a setting never stored has its default."""
        rows = self.conn.execute("SELECT key, value FROM settings")
        return Settings.from_values({row["key"]: json.loads(row["value"]) for row in rows})

    def get_setting(self, key: str) -> Value:
        return self.settings().get(key)

    def set_setting(self, key: str, value: Any) -> Value:
        """Store ``value`` after validating it through the setting's declaration; returns it parsed."""
        parsed = setting(key).parse(value)
        with self.transaction():
            self.conn.execute(
                "INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(parsed)),
            )
        return parsed

    def set_settings(self, values: Mapping[str, Any]) -> dict[str, Value]:
        """Store several settings at once: all are validated first, so one bad value stores none.

        Raises
        ------
        InvalidInput
            A key names no setting or a value does not fit its declaration (the first one found).
        """
        parsed = {key: setting(key).parse(value) for key, value in values.items()}
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(key, json.dumps(value)) for key, value in parsed.items()],
            )
        return parsed

    def reset_setting(self, key: str) -> Value:
        """Forget the stored value of ``key`` so it follows its declared default; returns that default."""
        declared = setting(key)
        with self.transaction():
            self.conn.execute("DELETE FROM settings WHERE key = ?", (declared.key,))
        return declared.default
