"""Fetching a source's missing files: through torchvision when it imports, else with :mod:`urllib` from the
standard mirrors, checking the published md5 before a file is moved into place.

Every failure leaves no partial file behind: a network failure is a :class:`DownloadError` (the caller says
the files were not found), a bad checksum or archive a one-line :class:`~paperlib.core.errors.DataNotFound`.
What a source is (its files, mirrors and checksums) is :mod:`paperlib.data.sources`'; this module only fetches.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import pathlib
import shutil
import ssl
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from paperlib.core.errors import DataNotFound
from paperlib.core.store import atomic_write

# Per socket operation, not for the whole file: a dead network fails fast, a slow one still works.
DOWNLOAD_TIMEOUT_S = 20.0

# What a failing network looks like from urllib (URLError and socket timeouts are OSErrors).
_NETWORK_ERRORS = (OSError, http.client.HTTPException, ValueError)
# torchvision reports failed downloads and bad checksums as RuntimeError.
_TORCHVISION_ERRORS = (RuntimeError, OSError, http.client.HTTPException, ValueError)


class DownloadError(Exception):
    """The network path failed; :func:`paperlib.data.sources.load_source` turns this into a 'not found'
    error."""


def download(source: Any, root: pathlib.Path, split: str) -> None:
    """Fetch the missing files of ``split`` of ``source`` (a :class:`~paperlib.data.sources.Source`) into
    ``root``; on failure remove the folders it made."""
    created = _make_dirs(root / source.relative_dir)
    try:
        torchvision = _import_torchvision()
        if torchvision is not None:
            _download_with_torchvision(torchvision, source, root, split)
        else:
            source.fetch(root, split)
    except BaseException:
        _remove_empty_dirs(created)
        raise


@contextlib.contextmanager
def verified_download(url: str, md5: str, directory: pathlib.Path) -> Iterator[pathlib.Path]:
    """Download ``url`` to a temporary file in ``directory``, check that its md5 is ``md5`` and yield it.

    The temporary file sits next to its destination so that ``os.replace`` is atomic; it is
    removed on exit whatever happens, so a failure never leaves a partial file.
    """
    handle, temporary_name = tempfile.mkstemp(prefix=".paperlib-", suffix=".part", dir=directory)
    os.close(handle)
    temporary = pathlib.Path(temporary_name)
    try:
        try:
            _fetch(url, temporary)
        except _NETWORK_ERRORS as exc:
            raise DownloadError(f"{type(exc).__name__}: {exc} for {url}") from exc
        actual = _md5(temporary)
        if actual != md5:
            raise DataNotFound(
                f"download of {url} has md5 {actual}, expected {md5}; the file was discarded: "
                f"retry later, or copy the original files into {directory} by hand"
            )
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def extract_members(archive: pathlib.Path, folder: str, names: tuple[str, ...], target_dir: pathlib.Path,
                    title: str) -> None:
    """Copy the files ``folder/<name>`` of a ``.tar.gz`` ``archive`` into ``target_dir``, in one streaming pass.

    Members are read by their known names rather than with ``extractall``, so no path in
    the archive can write outside ``target_dir``.
    """
    wanted = {f"{folder}/{file_name}": file_name for file_name in names}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                file_name = wanted.get(member.name)
                extracted = tar.extractfile(member) if file_name and member.isfile() else None
                if extracted is not None:
                    with atomic_write(target_dir / file_name) as tmp:
                        tmp.write_bytes(extracted.read())
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataNotFound(
            f"the downloaded {title} archive cannot be unpacked ({type(exc).__name__}: {exc}); "
            f"delete {target_dir} and retry"
        ) from None


def _import_torchvision() -> ModuleType | None:
    """torchvision if it imports; a wheel built for another torch raises RuntimeError, not ImportError."""
    try:
        import torchvision
    except (ImportError, RuntimeError, OSError):
        return None
    return torchvision


def _download_with_torchvision(torchvision: ModuleType, source: Any, root: pathlib.Path, split: str) -> None:
    """Let torchvision download into a staging folder, then move the needed files into place.

    Staging keeps any partial file torchvision may leave out of the data root: the staging
    folder is always deleted.
    """
    dataset_class = getattr(torchvision.datasets, source.torchvision_class)
    with tempfile.TemporaryDirectory(prefix=".paperlib-download-", dir=root) as staging:
        try:
            dataset_class(staging, train=(split == "train"), download=True)
        except _TORCHVISION_ERRORS as exc:
            raise DownloadError(f"torchvision: {type(exc).__name__}: {exc}") from exc
        staged_dir = pathlib.Path(staging) / source.relative_dir
        target_dir = root / source.relative_dir
        for file_name in source.installable(split):
            staged, target = staged_dir / file_name, target_dir / file_name
            if staged.is_file() and not target.exists():
                os.replace(staged, target)


def _tls_context() -> ssl.SSLContext:
    """The system's certificate authorities, and certifi's where it is installed: python.org's macOS Python has
    none of its own until its "Install Certificates" step, and an https mirror then fails to verify."""
    context = ssl.create_default_context()
    try:
        import certifi
    except ImportError:
        return context
    context.load_verify_locations(certifi.where())
    return context


def _fetch(url: str, dest: pathlib.Path) -> None:
    """Write the bytes at ``url`` to ``dest``. The only function that touches the network."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S, context=_tls_context()) as response, \
            open(dest, "wb") as out:
        shutil.copyfileobj(response, out)


def _md5(path: pathlib.Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # an integrity check, not security
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _make_dirs(path: pathlib.Path) -> list[pathlib.Path]:
    """Create ``path`` and its missing parents; return the created ones, deepest first."""
    created = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty_dirs(created: list[pathlib.Path]) -> None:
    for directory in created:
        try:
            directory.rmdir()
        except OSError:
            return  # not empty (a file was installed): its parents are not empty either
