"""The package's structure in figures: import cycles, layer violations, the largest module and function,
CLI lines, progress/cancel declarations. One scan shared with ``tests/base/test_layers.py``, which pins the rules.

    python bench/architecture.py                 # this checkout
    python bench/architecture.py --root /tmp/old --layers docs/architecture.md
                                                 # another checkout (``git worktree add /tmp/old <rev>``),
                                                 # judged by this checkout's layer table

Imports are read from the source (``ast``), at every depth: module level, inside functions and under
``TYPE_CHECKING``. A function-level import runs later, but it still ties the two modules: moving one
breaks the other, and a cycle through one is still a cycle to a reader.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "lotr_labeler"
LAYER_HEADING = "## Layers"


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module of the package, dotted (a name imported from a module counts as the module)
    line: int


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name (a package by its ``__init__``)."""
    found: dict[str, Path] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: Mapping[str, Path]) -> str:
    """The longest known module ``name`` starts with (``a.b.func`` → ``a.b``)."""
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports(root: Path) -> list[Import]:
    """Every import of a package module by another, at any depth of the source."""
    known = modules(root)
    found: list[Import] = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                # `from pkg import sub` imports the submodule; `from mod import name` the module
                targets = [f"{module}.{alias.name}" for alias in node.names]
            for target in targets:
                if target == PACKAGE or target.startswith(PACKAGE + "."):
                    resolved = _resolve(target, known)
                    if resolved != name:
                        found.append(Import(name, resolved, node.lineno))
    return found


def graph(edges: Iterable[Import]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for edge in edges:
        out.setdefault(edge.source, set()).add(edge.target)
    return out


def cycles(adjacency: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (each is at least one cycle), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    nodes = sorted(set(adjacency) | {t for ts in adjacency.values() for t in ts})

    def visit(node: str) -> None:  # Tarjan; the package's depth is small, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(adjacency.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return sorted(found)


def layer_table(doc: Path) -> list[tuple[str, list[str]]]:
    """The layers of ``docs/architecture.md``, bottom up: (layer name, module patterns). A pattern is a
    file (``errors.py``, ``jobs/table.py``), a folder (``store/``) or ``pages/``-style front-end folders
    outside the package (kept, matched by nothing)."""
    text = doc.read_text(encoding="utf-8")
    section = text.split(LAYER_HEADING, 1)[1].split("\n## ", 1)[0]
    rows: list[tuple[str, list[str]]] = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("layer", "") or set(cells[0]) <= {"-"}:
            continue
        rows.append((cells[0], re.findall(r"`([^`]+)`", cells[1])))
    return rows


def layer_of(module: str, table: list[tuple[str, list[str]]]) -> tuple[int, str] | None:
    """(position, name) of the layer whose patterns name ``module``; the most specific pattern wins."""
    rel = module.replace(".", "/").removeprefix(PACKAGE).lstrip("/")
    best: tuple[int, int, str] | None = None  # (specificity, position, name)
    for position, (name, patterns) in enumerate(table):
        for pattern in patterns:
            if pattern.endswith("/"):
                hit = (rel + "/").startswith(pattern)
            else:
                file = pattern.removesuffix(".py")  # a package is named by its __init__.py
                hit = rel == file or (file.endswith("__init__") and rel == file.removesuffix("__init__").rstrip("/"))
            if hit and (best is None or len(pattern) > best[0]):
                best = (len(pattern), position, name)
    return None if best is None else (best[1], best[2])


def violations(edges: Iterable[Import], table: list[tuple[str, list[str]]]) -> list[str]:
    """Each import that goes up a layer: 'source:line imports target (layer a → layer b)'."""
    out: set[str] = set()
    for edge in edges:
        src, dst = layer_of(edge.source, table), layer_of(edge.target, table)
        if src is not None and dst is not None and dst[0] > src[0]:
            out.add(f"{edge.source}:{edge.line} imports {edge.target} (layer {src[1]} → {dst[1]})")
    return sorted(out)


def largest_function(root: Path) -> tuple[str, int]:
    """('module.function', lines) of the longest function or method of the package."""
    best = ("", 0)
    for name, path in modules(root).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > best[1]:
                    best = (f"{name}.{node.name}", length)
    return best


_PROGRESS_DEF = re.compile(r"^\s*(?:class \w*Progress\w*\b|\w*Progress\w* = Callable)", re.MULTILINE)
_CANCEL_PARAM = re.compile(r"\b(should_stop|cancel)[ \t]*:[ \t]*([^=,)\n]+)")


def protocol_counts(root: Path) -> dict[str, int]:
    """How many progress types and callback aliases are declared, and how many distinct cancel
    parameter types (``should_stop: Callable``, ``cancel: threading.Event``, ``cancel: Cancel``) are used."""
    progress = 0
    cancel_kinds: set[str] = set()
    for path in modules(root).values():
        text = path.read_text(encoding="utf-8")
        progress += len(_PROGRESS_DEF.findall(text))
        cancel_kinds |= {f"{name}: {kind.strip()}" for name, kind in _CANCEL_PARAM.findall(text)}
    return {"progress_declarations": progress, "cancel_parameter_kinds": len(cancel_kinds)}


def report(root: Path, doc: Path | None = None) -> dict[str, object]:
    edges = imports(root)
    adjacency = graph(edges)
    table = layer_table(doc or root / "docs" / "architecture.md")
    layer_edges: dict[str, set[str]] = {}
    for edge in edges:
        src, dst = layer_of(edge.source, table), layer_of(edge.target, table)
        if src and dst and src != dst:
            layer_edges.setdefault(src[1], set()).add(dst[1])
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules(root).items()}
    biggest = max(sizes, key=sizes.__getitem__)
    function, function_lines = largest_function(root)
    cli = sorted((root / PACKAGE / "cli").rglob("*.py"))
    return {
        "modules": len(sizes),
        "module_cycles": len(cycles(adjacency)),
        "modules_in_cycles": sum(len(c) for c in cycles(adjacency)),
        "layer_cycles": len(cycles(layer_edges)),
        "upward_imports": len(violations(edges, table)),
        "largest_module": f"{biggest} ({sizes[biggest]} lines)",
        "modules_over_700_lines": sum(1 for n in sizes.values() if n > 700),
        "largest_function": f"{function} ({function_lines} lines)",
        "cli_lines": sum(len(p.read_text(encoding="utf-8").splitlines()) for p in cli),
        **protocol_counts(root),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--layers", type=Path, default=None, help="the architecture page whose layer table applies")
    args = parser.parse_args()
    print(json.dumps(report(args.root.resolve(), args.layers), indent=1))


if __name__ == "__main__":
    main()
