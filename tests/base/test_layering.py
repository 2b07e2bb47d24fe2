"""Layering rules of the package, checked on its source.

- Only the store (``lotr_labeler/store/``) and the jobs table (``lotr_labeler/jobs/table.py``) touch
  the SQLite connection (``.conn``): everything else goes through their functions and methods.
- Every table created in ``store/schema.py`` has exactly one owner module (``store.TABLE_OWNERS``),
  and every SQL statement that writes a table (INSERT/UPDATE/DELETE) sits in that owner.
- Every undoable event kind the store records has an inverse registered with ``@undoes``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from lotr_labeler.store import TABLE_OWNERS, UNDO, schema

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "lotr_labeler"
CONN_ALLOWED = ("lotr_labeler/store/", "lotr_labeler/jobs/table.py")
WRITE = re.compile(r"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|DELETE\s+FROM|UPDATE)\s+(\w+)")
NOT_TABLES = {"SET", "_migration_guard"}  # "ON CONFLICT ... DO UPDATE SET"; the migrator's temp table


pytestmark = pytest.mark.slow  # parses every module of the package


def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def _strings(tree: ast.Module) -> list[tuple[int, str]]:
    """Every string constant (f-string parts included) with its line."""
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_only_the_store_and_the_jobs_table_touch_the_connection() -> None:
    offenders = [
        f"{rel}:{node.lineno}"
        for rel, tree in _modules()
        if not rel.startswith(CONN_ALLOWED)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "conn"
    ]
    assert not offenders, f"`.conn` used outside {CONN_ALLOWED}: {offenders}. Add a function to the owning module."


def test_every_table_has_exactly_one_owner_module() -> None:
    created = [
        name for _, sql in schema.MIGRATIONS for name in re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", sql)
    ]
    assert len(created) == len(set(created)), f"a table is created twice: {created}"
    assert sorted(TABLE_OWNERS) == sorted(created), "TABLE_OWNERS must name exactly the tables of schema.py"
    for table, owner in TABLE_OWNERS.items():
        assert (ROOT / owner).is_file(), f"owner {owner} of table {table!r} does not exist"


def test_every_write_statement_sits_in_its_tables_owner() -> None:
    misplaced: list[str] = []
    seen: set[str] = set()
    for rel, tree in _modules():
        if rel == "lotr_labeler/store/schema.py":
            continue  # the migrations create and alter every table
        for line, text in _strings(tree):
            for table in WRITE.findall(text):
                if table in NOT_TABLES:
                    continue
                seen.add(table)
                owner = TABLE_OWNERS.get(table)
                if owner != rel:
                    misplaced.append(f"{rel}:{line} writes {table!r} (owner: {owner})")
    assert not misplaced, "\n".join(misplaced)
    assert seen <= set(TABLE_OWNERS), f"statements write unknown tables: {sorted(seen - set(TABLE_OWNERS))}"


def test_every_recorded_event_kind_can_be_undone() -> None:
    recorded: set[str] = set()
    for rel, tree in _modules():
        if not rel.startswith("lotr_labeler/store/"):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "_event"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                recorded.add(str(node.args[0].value))
    assert recorded, "no _event(...) call found: the scan is broken"
    assert recorded == set(UNDO), f"recorded {sorted(recorded)} but inverses for {sorted(UNDO)}"
