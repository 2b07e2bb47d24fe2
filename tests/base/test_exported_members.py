"""The public surface of ``lotr_labeler`` (httpx's tests/test_exported_members.py): every name in
``__all__`` imports, ``__all__`` is sorted and exactly the list below, and importing the package loads
none of the heavy libraries (the lazy names load them on first use)."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lotr_labeler

PUBLIC = [
    "DEFAULT_PROJECT",
    "Backbone",
    "BlockedHost",
    "CandidateIn",
    "CandidateRow",
    "ClassRow",
    "Conflict",
    "DownloadJob",
    "DownloadReport",
    "EmbedJob",
    "FetchError",
    "ImageRejected",
    "ImageRow",
    "ImageSource",
    "ImportReport",
    "InvalidInput",
    "LabelerError",
    "Limits",
    "ModelRef",
    "NoResults",
    "NotFound",
    "NothingToUndo",
    "PredictionResult",
    "Predictor",
    "Progress",
    "ReviewItem",
    "Run",
    "ScoreCandidatesJob",
    "SearchError",
    "SearchJob",
    "SearchOptions",
    "SearchRateLimited",
    "SearchReport",
    "SearchTimeout",
    "Settings",
    "Store",
    "StoreError",
    "TrainJob",
    "TrainParams",
    "TrainingError",
    "UnsafeArchive",
    "WeightsUnavailable",
    "__version__",
    "check_choice",
    "create_app",
    "create_project",
    "current_run",
    "data_root",
    "download_candidates",
    "export_dataset",
    "import_folder",
    "import_model",
    "import_urls",
    "import_zip",
    "list_projects",
    "list_runs",
    "load_predictor",
    "open_project",
    "plan_queries",
    "ranking",
    "read_image_file",
    "refresh",
    "resolve_backbone",
    "resolve_model",
    "retrain_head",
    "run_search",
    "score_candidates",
    "serve",
    "train_run",
]
HEAVY = ("torch", "torchvision", "fastai", "sklearn", "ddgs", "httpx", "starlette", "uvicorn", "streamlit")
INIT = Path(lotr_labeler.__file__)


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then CamelCase, then the rest."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


def test_all_is_the_pinned_list_sorted() -> None:
    assert lotr_labeler.__all__ == PUBLIC
    assert sorted(PUBLIC, key=_isort_key) == PUBLIC
    assert len(set(PUBLIC)) == len(PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_imports(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from lotr_labeler import {name}", namespace)
    assert namespace[name] is getattr(lotr_labeler, name)


def test_no_public_member_outside_all() -> None:
    for name in PUBLIC:
        getattr(lotr_labeler, name)  # resolve every lazy name first
    modules = {name for name, value in vars(lotr_labeler).items() if type(value) is type(sys)}
    members = {name for name in vars(lotr_labeler) if not name.startswith("_")} - modules
    assert members == {n for n in PUBLIC if not n.startswith("_")}
    assert set(dir(lotr_labeler)) >= set(PUBLIC)


def test_type_checkers_see_every_lazy_name() -> None:
    """Each lazy name is imported under ``if TYPE_CHECKING:`` from the module ``__getattr__`` uses."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "_typing.TYPE_CHECKING")
    seen = {a.name: node.module for node in ast.walk(block) if isinstance(node, ast.ImportFrom) for a in node.names}
    assert seen == lotr_labeler._LAZY
    eager = set(vars(lotr_labeler.errors)) & set(PUBLIC)
    assert set(seen) | eager | {"__version__"} == set(PUBLIC)


def _sections(doc: str) -> set[str]:
    return set(re.findall(r"^\s*(Parameters|Returns|Raises)\n\s*-{3,}$", doc, re.MULTILINE))


@pytest.mark.parametrize("name", [n for n in PUBLIC if inspect.isfunction(getattr(lotr_labeler, n))])
def test_public_functions_have_numpydoc_sections(name: str) -> None:
    func = getattr(lotr_labeler, name)
    sig = inspect.signature(func)
    need = {"Parameters"} if sig.parameters else set()
    if sig.return_annotation not in ("None", None):
        need.add("Returns")
    assert need <= _sections(inspect.getdoc(func) or ""), f"{name}: add the numpydoc sections {sorted(need)}"


def test_version_matches_pyproject() -> None:
    pyproject = (INIT.parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert found and lotr_labeler.__version__ == found.group(1)


@pytest.mark.slow
def test_import_is_cheap() -> None:
    """A fresh interpreter: ``import lotr_labeler`` loads no heavy library; the names load them on use."""
    code = (
        "import sys, lotr_labeler\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
        "lotr_labeler.Store, lotr_labeler.TrainParams, lotr_labeler.ranking\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'fastai', 'sklearn'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    at_import, after_names = done.stdout.splitlines()
    assert at_import == "[]", f"import lotr_labeler loaded {at_import}"
    assert after_names == "[]", f"resolving Store/TrainParams/ranking loaded {after_names}: keep those imports lazy"


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = lotr_labeler.no_such_name  # type: ignore[attr-defined]
