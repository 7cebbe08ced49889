"""Where the repository's folders are, from any working directory (notebooks run from ``notebooks/``)."""

from __future__ import annotations

import os
from pathlib import Path

from paperlib.errors import PaperlibError


def repo_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) holding ``params/``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params").is_dir() and (folder / "paperlib").is_dir():
            return folder
    raise PaperlibError(f"no repository root (a folder with params/ and paperlib/) at or above {here}; "
                        "run from inside the repository")


def params_dir() -> Path:
    """``params/`` of the repository."""
    return repo_root() / "params"


def figures_dir(profile: str) -> Path:
    """``figures/<profile>/`` of the repository (created)."""
    folder = repo_root() / "figures" / profile
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def anchor_environment() -> None:
    """Point an unset ``$PAPERLIB_CACHE`` / ``$PAPERLIB_DATA`` at the repository's ``cache/`` and ``data/``.

    Notebooks run from ``notebooks/``; without this, their relative defaults
    would miss the runs and data of the command line, which runs from the root.
    """
    root = repo_root()
    for variable, folder in (("PAPERLIB_CACHE", "cache"), ("PAPERLIB_DATA", "data")):
        if not os.environ.get(variable):
            os.environ[variable] = str(root / folder)
