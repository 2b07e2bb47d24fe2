"""No test module imports another test module or a conftest: shared code lives in helpers.py, shared
fixtures in conftest.py (used as fixtures). Importing a test module would also collect its tests twice
and tie two files' fixtures together by accident."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in ``path``; relative ones keep their leading dots."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.append((node.lineno, base))
            if not node.module:  # `from . import conftest`: the names are the modules
                found += [(node.lineno, base + alias.name) for alias in node.names]
    return found


def _is_test_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last == "conftest" or last.startswith("test_")


def test_no_test_module_imports_another_or_a_conftest() -> None:
    files = sorted(TESTS.rglob("*.py"))
    assert len(files) > 20 and TESTS / "helpers.py" in files  # the scan sees the suite
    bad = [
        f"{path.relative_to(TESTS)}:{line}: imports {name}"
        for path in files
        for line, name in _imported_modules(path)
        if _is_test_module(name)
    ]
    assert not bad, "import shared code from helpers.py, use shared fixtures as fixtures:\n" + "\n".join(bad)


def test_the_scan_catches_each_form(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import test_predict\nfrom conftest import x\nfrom .conftest import record\n"
        "from . import conftest\nfrom e2e.test_journey import y\nfrom helpers import shape_image\n",
        encoding="utf-8",
    )
    flagged = [name for _, name in _imported_modules(sample) if _is_test_module(name)]
    assert flagged == ["test_predict", "conftest", ".conftest", ".conftest", "e2e.test_journey"]
