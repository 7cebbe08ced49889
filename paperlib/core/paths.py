"""Where the repository's folders are, from any working directory (notebooks run from ``notebooks/``).

Nothing here changes the process environment: every default is resolved when it is needed, so a
notebook kernel, the command line and the tests each see exactly the variables they were started with.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from paperlib.core.errors import PaperlibError

FIGURES_ENV_VAR = "PAPERLIB_FIGURES"


def how_absent(path: Path) -> str:
    """How ``path``, which cannot be opened, is missing: a symbolic link that leads nowhere (to a missing file, or
    round in a loop) says so, since "does not exist" would send its reader looking for a typo."""
    if path.is_symlink():
        return f"is a symbolic link to {os.readlink(path)}, which leads nowhere (a missing file, or a loop)"
    return "does not exist"


def find_repo_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory) holding ``params/`` and
    ``paperlib/``, or ``None`` outside the repository."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params").is_dir() and (folder / "paperlib").is_dir():
            return folder
    return None


def repo_root(start: Path | None = None) -> Path:
    """:func:`find_repo_root`, or a clear error outside the repository."""
    root = find_repo_root(start)
    if root is None:
        raise PaperlibError(f"no repository root (a folder with params/ and paperlib/) at or above "
                            f"{(start or Path.cwd()).resolve()}; run from inside the repository")
    return root


def default_folder(name: str) -> Path:
    """``<repository root>/<name>`` when working inside the repository, else ``./<name>``.

    Notebooks run from ``notebooks/``: anchoring at the root lets them find the runs and data of the
    command line, which runs from the root.
    """
    root = find_repo_root()
    return (root if root is not None else Path.cwd()) / name


def configured_folder(explicit: str | os.PathLike | None, argument: str, env_var: str,
                      name: str) -> tuple[str | os.PathLike, str | None]:
    """The folder a setting names, and who named it (for messages): ``explicit`` (the ``argument``) if given, else
    ``$env_var``, else :func:`default_folder` ``(name)`` (``None``: nobody). Empty is unset at both levels, not
    the current directory."""
    if explicit not in (None, ""):
        return explicit, f"the {argument} argument"
    from_env = os.environ.get(env_var, "")
    if from_env:
        return from_env, f"${env_var}"
    return default_folder(name), None


def params_dir() -> Path:
    """``params/`` of the repository."""
    return repo_root() / "params"


def file_in_the_way(folder: Path) -> Path | None:
    """The first of ``folder`` and the folders above it that exists as something other than a folder (a file
    where a folder must be made), or ``None``."""
    return next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)


def why_not_made(folder: Path, err: OSError) -> str:
    """Why ``folder`` (or a file in it) could not be made, for a one-line error: the file in the way if one is,
    else the system's reason."""
    blocking = file_in_the_way(folder)
    return f"{blocking} is a file, not a folder" if blocking else err.strerror or str(err) or type(err).__name__


def figures_dir(profile: str) -> Path:
    """``$PAPERLIB_FIGURES/<profile>/`` if set (the notebook checks write there), else ``figures/<profile>/``
    of the repository (created)."""
    base = os.environ.get(FIGURES_ENV_VAR)
    folder = (Path(base) if base else repo_root() / "figures") / profile
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PaperlibError(f"cannot make the figures folder {folder} ({why_not_made(folder, err)}); point "
                            f"{FIGURES_ENV_VAR} at a writable folder, or unset it") from None
    return folder


def notebook_sources() -> list[Path]:
    """``notebooks/NN_*.py`` in number order."""
    found = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.py"))
    if not found:
        raise PaperlibError("no notebooks/NN_*.py found; run from the repository")
    return found


def code_digest() -> str:
    """A short digest of what a rendered notebook's outputs follow from: ``paperlib/**/*.py``,
    ``params/**/*.yaml`` and ``notebooks/NN_*.py`` (paths and contents, line endings normalised). Rendered
    notebooks carry it (``metadata.paperlib.code``), so a notebook left from older code is found out."""
    root = repo_root()
    files = sorted([*root.glob("paperlib/**/*.py"), *root.glob("params/**/*.yaml"),
                    *root.glob("notebooks/[0-9][0-9]_*.py")])
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()[:16]
