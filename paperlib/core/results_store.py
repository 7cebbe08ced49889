"""The results store: the runs a profile's notebooks show, shipped with the repository.

``results/<profile>/`` mirrors the cache's layout (``records/<run>/record.json``, ``distilled/<set>/synthetic.png``,
``tables/<study>-<key>.json``, ``data/<view>.png``) but holds only the small files the notebooks and the explorer show:
no datasets, no tensors. A fresh clone therefore answers at once. Lookups (:func:`find`) take the user's own cache
first, then the store: both are keyed by the same :func:`paperlib.core.keys.cache_key`, so a hit in either is
the same experiment, and a run recomputed here wins over the shipped one.

``make reproduce`` recomputes instead of reading the store (``PAPERLIB_RESULTS=off`` for its kernels) and
records every stored file its notebooks read (``PAPERLIB_PUBLISH=<staging folder>``, :func:`find` copies each
one there); when every notebook succeeded, the staging folder replaces ``results/<profile>/``
(:func:`replace_profile`). The store then holds exactly what the notebooks showed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from paperlib.core.errors import PaperlibError
from paperlib.core.paths import find_repo_root
from paperlib.core.store import KEEP_AND_STOP, atomic_write, cache_root, exclusive, refuse_folder

RESULTS_ENV_VAR = "PAPERLIB_RESULTS"
PUBLISH_ENV_VAR = "PAPERLIB_PUBLISH"
OFF = "off"


def results_root() -> Path | None:
    """The store: ``$PAPERLIB_RESULTS`` if set (``off``, in any case: no store), else ``results/`` at the
    repository root (``None`` outside the repository). A file there is a one-line error; a folder that does not
    exist yet reads as an empty store (``make reproduce`` creates it)."""
    value = os.environ.get(RESULTS_ENV_VAR)
    if value and value.lower() == OFF:
        return None
    if value:
        store = Path(value).expanduser()
        if store.exists() and not store.is_dir():
            raise PaperlibError(f"{RESULTS_ENV_VAR}={value} is a file, not a folder; set it to a results folder "
                                f"or to {OFF}")
        return store
    root = find_repo_root()
    return None if root is None else root / "results"


def next_step_for(path: Path) -> str:
    """What to do about the unreadable file ``path`` (:func:`~paperlib.core.store.unreadable_message`): a file of the
    store ships with the repository, and deleting it would delete a tracked file."""
    store = results_root()
    if store is not None and path.resolve().is_relative_to(store.resolve()):
        return (f"it ships in the results store ({store}): restore it (git checkout -- {path}), or set "
                f"{RESULTS_ENV_VAR}={OFF} to recompute the run in your cache")
    return KEEP_AND_STOP


def find(relative: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The file ``relative`` (a path inside the cache, e.g. ``records/<run>/record.json``) from the cache, else
    from any profile of the store; ``None`` when neither has it. While publishing, the file found is also
    copied into the staging folder."""
    found = cache_root(cache_dir) / relative
    refuse_folder(found)  # else taken for an entry not stored yet, and computed again
    if not found.is_file():
        store = results_root()
        # .<profile>.* folders are publishing leftovers (a staging copy cut short): never served
        profiles = (sorted(p for p in store.iterdir() if p.is_dir() and not p.name.startswith("."))
                    if store is not None and store.is_dir() else [])
        found = next((p / relative for p in profiles if (p / relative).is_file()), None)
    if found is not None:
        publish(found, relative)
    return found


def find_or_make(relative: str, cache_dir: str | os.PathLike | None, make: Callable[[], bytes],
                 force: bool = False) -> Path:
    """The file ``relative`` as :func:`find` gives it; when there is none (or ``force``), ``make()``'s bytes are
    written (atomically) into the cache first. Either way the file is then found again, so what is shown (and
    published) is the stored file, whether made now or not."""
    found = None if force else find(relative, cache_dir)
    if found is None:
        content = make()
        with atomic_write(cache_root(cache_dir) / relative) as tmp:
            tmp.write_bytes(content)
        found = find(relative, cache_dir)
    assert found is not None  # just written into the cache, which find reads first
    return found


def publish(path: Path, relative: str) -> None:
    """Copy ``path`` to ``$PAPERLIB_PUBLISH/relative`` when publishing (atomically; no-op otherwise)."""
    staging = os.environ.get(PUBLISH_ENV_VAR)
    if staging:
        with atomic_write(Path(staging) / relative) as tmp:
            shutil.copyfile(path, tmp)


def replace_profile(staging: Path, store: Path, profile: str) -> Path:
    """Make ``staging`` the folder ``store/<profile>/`` (the old one is removed only once the new one is in
    place); return it. Two replaces of one profile take turns (a lock file beside it), so neither moves the
    other's folders."""
    target = store / profile
    store.mkdir(parents=True, exist_ok=True)
    old = store / f".{profile}.old"
    with exclusive(store / f".{profile}.lock"):
        _put_back(old, target)  # a replace killed between its two moves left the store in its old folder
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        try:
            shutil.move(str(staging), target)
        except BaseException:
            _put_back(old, target)  # the store as it was, not no store
            raise
        shutil.rmtree(old, ignore_errors=True)
    return target


def _put_back(old: Path, target: Path) -> None:
    """Move the previous store ``old`` back to ``target`` when a replace left no ``target``."""
    if old.exists() and not target.exists():
        old.rename(target)


def folder_size(folder: Path) -> tuple[int, int]:
    """Number of files and their total bytes under ``folder``."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)
