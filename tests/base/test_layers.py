"""The layer rule of docs/architecture.md, true and pinned.

The layer table of the architecture page is the rule: a module imports only from its own layer or below,
no import (module level, inside a function, under TYPE_CHECKING) closes a cycle, every module of the package
sits in exactly the row that names it, and every row names files that exist. The scan is bench/architecture.py
(the same one that prints the structure's figures), checked here against a small package built to break each rule.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"


def _architecture() -> ModuleType:
    path = ROOT / "bench" / "architecture.py"
    spec = importlib.util.spec_from_file_location("bench_architecture", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


arch = _architecture()


def test_every_module_sits_in_one_row_and_every_row_names_real_files() -> None:
    table = arch.layer_table(DOC)
    names = [name for name, _ in table]
    assert names[0] == "base" and names[-1] == "front ends", names
    unplaced = [m for m in arch.modules(ROOT) if arch.layer_of(m, table) is None]
    assert not unplaced, f"add these modules to the layer table of {DOC.name}: {unplaced}"
    missing = [
        f"{name}: {pattern}"
        for name, patterns in table
        for pattern in patterns
        if not (ROOT / "lotr_labeler" / pattern).exists()
    ]
    assert not missing, f"the layer table names files that do not exist: {missing}"


def test_no_import_goes_up_a_layer() -> None:
    bad = arch.violations(arch.imports(ROOT), arch.layer_table(DOC))
    assert not bad, "move what the lower layer needs down, or the module up:\n" + "\n".join(bad)


def test_no_two_modules_import_each_other_through_any_path() -> None:
    found = arch.cycles(arch.graph(arch.imports(ROOT)))
    assert not found, f"import cycles (each group imports itself through the others): {found}"


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / "lotr_labeler" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    doc = tmp_path / "docs" / "architecture.md"
    doc.parent.mkdir()
    doc.write_text(
        "# A\n\n## Layers\n\n| layer | modules | what |\n|---|---|---|\n"
        "| base | `errors.py` | e |\n| store | `store/` | s |\n| review | `review/` | r |\n"
        "| front ends | `__init__.py`, `cli.py` | f |\n\n## Next\n",
        encoding="utf-8",
    )
    return tmp_path


@pytest.mark.parametrize(
    "store_source",
    [
        "from lotr_labeler.review import dedupe\n",  # module level
        "def f():\n    from lotr_labeler.review.dedupe import Index\n",  # inside a function
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..review import dedupe\n",  # relative
    ],
)
def test_the_scan_sees_an_upward_import_at_any_depth(tmp_path: Path, store_source: str) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "store/__init__.py": "",
            "store/images.py": store_source,
            "review/__init__.py": "",
            "review/dedupe.py": "from lotr_labeler.store import images\n",
            "cli.py": "import lotr_labeler.review.dedupe\n",
        },
    )
    table = arch.layer_table(root / "docs" / "architecture.md")
    edges = arch.imports(root)
    assert [v.split(" ")[0] for v in arch.violations(edges, table)] == [
        f"lotr_labeler.store.images:{store_source.count(chr(10))}"
    ]
    assert arch.cycles(arch.graph(edges)) == [["lotr_labeler.review.dedupe", "lotr_labeler.store.images"]]


def test_the_scan_places_packages_by_their_init_and_finds_unplaced_modules(tmp_path: Path) -> None:
    root = _package(tmp_path, {"__init__.py": "", "errors.py": "", "store/__init__.py": "", "extra.py": ""})
    table = arch.layer_table(root / "docs" / "architecture.md")
    assert arch.layer_of("lotr_labeler", table) == (3, "front ends")
    assert arch.layer_of("lotr_labeler.store", table) == (1, "store")
    assert arch.layer_of("lotr_labeler.extra", table) is None


def test_the_owner_table_of_the_page_is_the_stores() -> None:
    from lotr_labeler.store import TABLE_OWNERS

    section = DOC.read_text(encoding="utf-8").split("## The store", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[1].startswith("`"):
            owner = cells[1].strip("`")
            for table in re.findall(r"`(\w+)`", cells[0]):
                documented[table] = f"lotr_labeler/{owner}"
    assert documented == TABLE_OWNERS, "make the owner table of docs/architecture.md list store.TABLE_OWNERS"


def _ui_sources() -> list[Path]:
    return [*sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "lotr_labeler" / "ui").glob("*.py"))]


def test_pages_show_errors_through_the_one_boundary_and_open_stores_one_way() -> None:
    """ui/context.py's error_boundary is the only place of the UI that turns an exception into a message
    (no page catches an error `as exc` to show it), and project_store the only place that builds a Store."""
    import ast

    sources = _ui_sources()
    assert len(sources) > 10 and ROOT / "lotr_labeler" / "ui" / "context.py" in sources
    shown: list[str] = []
    built: list[str] = []
    for path in sources:
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if rel == "lotr_labeler/ui/context.py":
                continue
            if isinstance(node, ast.ExceptHandler) and node.name is not None:
                shown.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Store":
                built.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.Name) and node.id in ("explain", "explain_known"):
                shown.append(f"{rel}:{node.lineno}")
    assert not shown, f"use ui.context.error_boundary instead of catching and showing here: {shown}"
    assert not built, f"open the store with ui.context.project_store(): {built}"


def _readme_map() -> set[str]:
    """The package files the README's module map lists: an indented tree under ``lotr_labeler/`` in the
    Development section (two spaces a level; a folder ends in ``/``)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8").split("## Development", 1)[1]
    block = text.split("```", 2)[1]
    listed: set[str] = set()
    stack: list[str] = []
    inside = False
    for line in block.splitlines():
        name = line.strip().split(" ", 1)[0] if line.strip() else ""
        depth = (len(line) - len(line.lstrip(" "))) // 2
        if depth == 0:
            inside = name == "lotr_labeler/"
            stack = ["lotr_labeler/"] if inside else []
            continue
        if not inside or not name.endswith(("/", ".py")):
            continue  # a description's continuation line
        stack = [*stack[:depth], name]
        if name.endswith(".py"):
            listed.add("".join(stack))
    return listed


def test_the_readme_module_map_lists_every_module() -> None:
    actual = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lotr_labeler").rglob("*.py")}
    listed = _readme_map()
    assert listed, "the README's module map was not found under ## Development"
    assert not actual - listed, f"add to the README's module map: {sorted(actual - listed)}"
    assert not listed - actual, f"the README's module map lists files that do not exist: {sorted(listed - actual)}"


def test_every_test_file_the_code_and_docs_name_exists() -> None:
    """Docstrings, comments, the README and the docs point at the tests that pin a rule: those paths
    must exist (the tests moved into tests/<part>/ once; a stale pointer sends a reader nowhere)."""
    sources = [
        *(ROOT / "lotr_labeler").rglob("*.py"),
        *(ROOT / "bench").glob("*.py"),
        *(ROOT / "docs").glob("*.md"),
        ROOT / "README.md",
    ]
    named = {
        (path.relative_to(ROOT).as_posix(), ref)
        for path in sources
        for ref in re.findall(r"\btests/[\w/]+\.py\b", path.read_text(encoding="utf-8"))
    }
    assert len(named) > 10  # the scan finds the pointers
    missing = sorted(f"{where}: {ref}" for where, ref in named if not (ROOT / ref).is_file())
    assert not missing, "point these at the test's current path:\n" + "\n".join(missing)
