"""The data root: which projects exist, creating them, and which one to open."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lotr_labeler import project as proj
from lotr_labeler.errors import InvalidInput, NotFound
from lotr_labeler.store import DB_NAME, Store

_LAST = ".last_project"


def absolute(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute against the current directory, once, where it enters.

    fastai joins relative paths onto ``learn.path`` (``learn.export("data/p/runs/x/model.pkl")``
    writes to ``data/p/data/p/runs/...``), and a background job may run elsewhere: every path
    the package keeps is absolute. Not ``resolve()``: a symlinked data folder keeps its name.
    """
    return Path(path).expanduser().absolute()


def list_projects(root: Path) -> list[str]:
    """The projects in ``root``, sorted.

    Parameters
    ----------
    root
        The data folder.

    Returns
    -------
    list[str]
        Names of the sub-folders holding a project database; empty when ``root`` does not exist.
    """
    root = absolute(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / DB_NAME).is_file())


def create_project(
    root: Path, name: str = proj.DEFAULT_PROJECT, template: str = "lotr", classes: Sequence[str] = ()
) -> Store:
    """Create a project folder and fill in the template's classes, then ``classes`` (each searched by
    its name).

    Parameters
    ----------
    root
        The data folder (created when missing).
    name
        The project's name, also its folder name.
    template
        ``lotr`` (the seed's classes and search queries) or ``empty``.
    classes
        More class names (``project.parse_class_names`` reads them from text), checked before anything
        is created.

    Returns
    -------
    Store
        The new project, open (close it when done); it becomes the last used project.

    Raises
    ------
    InvalidInput
        The name or the template is not valid.
    Conflict
        The project exists already.
    """
    name = proj.validate_name(name, "Project name")
    specs = proj.template_classes(template)
    extra = [proj.validate_name(c) for c in classes]  # a bad name: nothing created
    root = absolute(root)
    store = Store.create(root / name)
    have = {spec.name.casefold() for spec in specs}
    for spec in specs:
        store.add_class(spec.name, spec.names, spec.template, record=False)
    for cls in extra:
        if cls.casefold() not in have:
            have.add(cls.casefold())
            store.add_class(cls, record=False)
    remember(root, name)
    return store


def open_project(root: Path, name: str | None = None) -> Store:
    """Open ``name``, else the only project, else the last one used.

    Parameters
    ----------
    root
        The data folder.
    name
        The project to open; None picks the only or the last used one.

    Returns
    -------
    Store
        The project, open (close it when done).

    Raises
    ------
    NotFound
        No project of that name, or no project at all.
    InvalidInput
        The name is not valid, or several projects and none named or last used.
    """
    root = absolute(root)
    projects = list_projects(root)
    if name is None:
        name = projects[0] if len(projects) == 1 else last_project(root)
    if name is None:
        if not projects:
            raise NotFound(f"No project in {root}. Create one with `lotr-labeler init`.")
        raise InvalidInput(f"Several projects in {root}; pick one with --project: {', '.join(projects)}.")
    name = proj.validate_name(name, "Project name")
    if name not in projects:
        known = ", ".join(projects) or "none"
        raise NotFound(f"No project {name!r} in {root}. Projects: {known}. Create it with `init`.")
    remember(root, name)
    return Store(root / name)


def last_project(root: Path) -> str | None:
    root = absolute(root)
    marker = root / _LAST
    if marker.is_file():
        name = marker.read_text(encoding="utf-8").strip()
        if (root / name / DB_NAME).is_file():
            return name
    return None


def remember(root: Path, name: str) -> None:
    root = absolute(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / _LAST).write_text(name, encoding="utf-8")
