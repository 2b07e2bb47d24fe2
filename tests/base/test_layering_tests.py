"""The test suite's own layout.

No test module imports another test module or a conftest: shared code lives in helpers.py, shared
fixtures in conftest.py (used as fixtures). Importing a test module would also collect its tests twice
and tie two files' fixtures together by accident.

Test modules mirror the package: ``tests/<part>/test_*.py`` for the part of ``lotr_labeler`` they test,
so a newcomer finds a module's tests where the module is."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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


@pytest.mark.slow
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


# -- where test modules sit: tests/<part>/test_*.py, mirroring the package -------------------------

PACKAGE = TESTS.parent / "lotr_labeler"
NOT_IN_PACKAGE = {"base", "bench", "e2e"}  # the base-layer modules, bench/'s scripts, the browser tests


def _misplaced(tests: Path, package: Path) -> list[str]:
    """Test modules outside a sub-folder named for a part of ``package`` (or NOT_IN_PACKAGE), and
    basenames used twice: the sub-folders are not packages, so pytest imports each module by its name."""
    parts = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    parts |= {p.stem for p in package.glob("*.py")} | NOT_IN_PACKAGE
    found = sorted(tests.rglob("test_*.py"))
    bad = [f"{p.relative_to(tests)}: not in tests/<part>/" for p in found if p.parent == tests]
    bad += [
        f"{p.relative_to(tests)}: no part named {p.relative_to(tests).parts[0]!r}"
        for p in found
        if p.parent != tests and p.relative_to(tests).parts[0] not in parts
    ]
    seen: dict[str, Path] = {}
    for p in found:
        if p.name in seen:
            bad.append(f"{p.relative_to(tests)}: same name as {seen[p.name].relative_to(tests)}")
        seen.setdefault(p.name, p)
    return bad


def test_test_modules_sit_in_the_folder_of_the_part_they_test() -> None:
    assert len(list(TESTS.glob("*/test_*.py"))) > 50  # the scan sees the suite
    bad = _misplaced(TESTS, PACKAGE)
    assert not bad, (
        "move each test module into tests/<part>/ for the package part it tests (store, collect, model, "
        "review, jobs, cli, ui, api, ...; base for the base layer), under a name no other test module has:\n"
        + "\n".join(bad)
    )


def test_the_layout_check_catches_each_misplacement(tmp_path: Path) -> None:
    package, tests = tmp_path / "pkg", tmp_path / "tests"
    for path in (
        "pkg/store/__init__.py",
        "pkg/api.py",
        "tests/store/test_a.py",
        "tests/api/test_b.py",
        "tests/test_flat.py",
        "tests/nowhere/test_c.py",
        "tests/base/test_a.py",
        "tests/e2e/test_d.py",
    ):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("", encoding="utf-8")
    assert _misplaced(tests, package) == [
        "test_flat.py: not in tests/<part>/",
        "nowhere/test_c.py: no part named 'nowhere'",
        "store/test_a.py: same name as base/test_a.py",
    ]


def test_browser_tests_are_marked_slow() -> None:
    """`make quick` must not start Chromium: every e2e module marks all its tests slow."""
    files = sorted((TESTS / "e2e").glob("test_*.py"))
    assert len(files) > 5  # the scan sees the browser tests
    unmarked = [
        path.name
        for path in files
        if not any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
            and "pytest.mark.slow" in ast.unparse(node.value)
            for node in ast.parse(path.read_text(encoding="utf-8")).body
        )
    ]
    assert not unmarked, "add pytest.mark.slow to the pytestmark of: " + ", ".join(unmarked)
