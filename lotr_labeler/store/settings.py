"""The ``settings`` table: a project's stored setting values (declarations: ``lotr_labeler.settings``)."""

from __future__ import annotations

import json
from typing import Any

from lotr_labeler import project as proj
from lotr_labeler.store.history import HistoryMixin


class SettingsMixin(HistoryMixin):
    def settings(self) -> dict[str, Any]:
        values: dict[str, Any] = {s.key: s.default for s in proj.SETTINGS}
        for row in self.conn.execute("SELECT key, value FROM settings"):
            if row["key"] in values:
                values[row["key"]] = json.loads(row["value"])
        return values

    def get_setting(self, key: str) -> Any:
        proj.setting(key)
        return self.settings()[key]

    def set_setting(self, key: str, value: Any) -> Any:
        parsed = proj.setting(key).parse(value)
        with self.transaction():
            self.conn.execute(
                "INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(parsed)),
            )
        return parsed
