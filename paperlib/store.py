"""Files on disk: the cache root, atomic writes, tensor bundles.

Every file paperlib writes goes through :func:`atomic_write`: it is written
to a temporary file in the same folder and renamed into place only when
complete, so an interrupted or failed run never leaves a half-written result.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: explicit ``cache_dir``, else ``$PAPERLIB_CACHE``, else ``./cache``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("PAPERLIB_CACHE", "cache"))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; move it to ``path`` only on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def save_tensors(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """``torch.save`` a dict of tensors and plain values, atomically."""
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)


def load_tensors(path: str | os.PathLike) -> dict[str, Any] | None:
    """Load what :func:`save_tensors` wrote; ``None`` if absent or unreadable.

    An unreadable file (e.g. from an older, incompatible version) is treated as
    a cache miss, so the caller rebuilds it.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable cache entry is simply rebuilt
        return None
