"""Files on disk: the cache root, atomic writes, tensor bundles.

Every file paperlib writes goes through :func:`atomic_write`: it is written
to a temporary file in the same folder and renamed into place only when
complete, so an interrupted or failed run never leaves a half-written result.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from paperlib.core.errors import PaperlibError
from paperlib.core.paths import configured_folder, why_not_made

CACHE_ENV_VAR = "PAPERLIB_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: explicit ``cache_dir``, else ``$PAPERLIB_CACHE``, else ``cache/`` at the repository
    root (``./cache`` outside the repository). ``~`` is expanded; a relative ``cache_dir`` or ``$PAPERLIB_CACHE`` is
    taken from the current directory, as a relative ``data_dir`` is; an empty one is unset (not the current
    directory)."""
    return Path(configured_folder(cache_dir, "cache_dir", CACHE_ENV_VAR, "cache")[0]).expanduser()


@contextlib.contextmanager
def _writable(path: Path) -> Iterator[None]:
    """Turn a failure to create ``path`` or its folders (a folder on the way that is a file, no permission, a
    read-only disk) into a one-line error."""
    try:
        yield
    except OSError as err:
        raise PaperlibError(f"cannot write {path} ({why_not_made(path.parent, err)}); point the cache "
                            f"({CACHE_ENV_VAR} or cache_dir) or the output path at a writable folder") from None


# What flock answers on a file system that has no locks
_NO_LOCKS = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP}

# What a write can meet half-way through on a disk that was writable when it began
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; move it to ``path`` only on success.

    On any exception the temporary file is removed and ``path`` is untouched. The file is flushed to disk
    before the move (a crash right after cannot leave an empty ``path``) and gets the usual permissions (0666
    less the umask, unlike ``mkstemp``'s 0600), so a cache shared by a cluster's users stays readable.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    with _writable(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        try:
            yield tmp
            with open(tmp, "rb+") as written:
                os.fsync(written.fileno())
        except OSError as err:
            if err.errno not in _NO_ROOM:  # another failure (a file read while writing, say) speaks for itself
                raise
            raise PaperlibError(f"cannot write {path} ({err.strerror}); free some space, or point the cache "
                                f"({CACHE_ENV_VAR} or cache_dir) or the output path at another disk") from None
        try:
            os.replace(tmp, path)
        except IsADirectoryError:
            raise PaperlibError(f"cannot write {path}: it is a folder; name a file") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def unreadable_message(path: str | os.PathLike, why: BaseException | str, next_step: str) -> str:
    """The one-line report of a cache entry that cannot be read: the file, ``why`` (a reason or the error
    raised reading it), and ``next_step``."""
    # The first line, kept short (a torch unpickling error can be long); load_record's four named problems fit.
    text = f"no {why}" if isinstance(why, KeyError) and why.args else str(why).strip()  # its text: the bare key
    reason = text.splitlines()[0][:300] if text else type(why).__name__ if isinstance(why, BaseException) \
        else "no reason given"
    return f"cache entry {path} cannot be read ({reason}); {next_step}"


def cannot_open_message(path: str | os.PathLike, err: OSError) -> str:
    """The one-line report of a cache entry that exists but cannot be opened (no permission, an I/O error): its
    content may be whole, so it is neither called damaged nor rebuilt over."""
    return (f"cache entry {path} cannot be opened ({err.strerror or type(err).__name__}); make it readable (ask "
            f"whoever wrote it), or point {CACHE_ENV_VAR} or cache_dir at a cache of your own")


def report_rebuild(path: str | os.PathLike, why: BaseException | str) -> None:
    """Say on stderr, in one line, that the unreadable cache entry ``path`` is being rebuilt."""
    print(f"warning: {unreadable_message(path, why, 'rebuilding it')}", file=sys.stderr)


KEEP_AND_STOP = ("nothing was recomputed: delete it to recompute that entry, or run with force=true "
                 "to recompute the run")


def refuse_folder(path: Path) -> None:
    """A one-line error for a folder where the cache entry ``path`` goes: an entry not stored yet would be
    computed (hours, for a run) and then not written. Called before computing."""
    if path.is_dir():
        raise PaperlibError(f"cache entry {path} is a folder, not a file; move it away (nothing was computed)")


def save_tensors(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """``torch.save`` a dict of tensors and plain values, atomically."""
    with atomic_write(path) as tmp, open(tmp, "wb") as file:
        try:  # through a Python file, whose OSError says why a write failed (torch's own writer does not)
            torch.save(payload, file)
        except RuntimeError as err:  # torch's clean-up after that OSError fails too, and replaces it
            if isinstance(err.__context__, OSError):
                raise err.__context__ from None
            raise


def load_tensors(path: str | os.PathLike, rebuild: bool = False, keys: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Load what :func:`save_tensors` wrote; ``None`` if absent.

    An entry that exists but cannot be read (cut short, from an incompatible version, or without one of
    ``keys``) is an error naming the file, so hours of work are never redone silently; with ``rebuild``
    (entries that take seconds to remake) it is reported in one line on stderr and ``None`` is returned instead.
    """
    path = Path(path)
    if not path.is_file():
        refuse_folder(path)
        return None
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below; opened apart, so a refusal is not called damage
    except FileNotFoundError:  # removed since it was seen: absent
        return None
    except OSError as err:
        raise PaperlibError(cannot_open_message(path, err)) from None
    try:
        with handle:
            payload = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load raises many types, with long texts, for a damaged file
        problem = f"not a torch file this version reads: cut short, damaged or incompatible ({type(err).__name__})"
    else:
        if keys and not isinstance(payload, dict):
            problem = f"a {type(payload).__name__}, not a mapping"
        else:
            missing = [key for key in keys if key not in payload]
            if not missing:
                return payload
            problem = f"no {', '.join(repr(k) for k in missing)}"
    if rebuild:
        report_rebuild(path, problem)
        return None
    raise PaperlibError(unreadable_message(path, problem, KEEP_AND_STOP))


def load_json(path: str | os.PathLike, next_step: str = KEEP_AND_STOP) -> dict[str, Any] | None:
    """A JSON object written by paperlib; ``None`` if absent, a one-line error ending in ``next_step`` if it
    cannot be read."""
    path = Path(path)
    if not path.is_file():
        refuse_folder(path)
        return None
    try:
        data = path.read_bytes()  # bytes: a file that is not UTF-8 is damaged (below), not unopenable
    except FileNotFoundError:  # removed since it was seen: absent
        return None
    except OSError as err:
        raise PaperlibError(cannot_open_message(path, err)) from None
    try:
        value = json.loads(data)
        if not isinstance(value, dict):
            raise ValueError(f"a JSON object was expected, not {type(value).__name__}")
        return value
    except (ValueError, UnicodeDecodeError) as err:
        raise PaperlibError(unreadable_message(path, err, next_step)) from None


def entry_lock(cache_dir: str | os.PathLike | None, name: str) -> contextlib.AbstractContextManager[None]:
    """:func:`exclusive` on the cache's lock of the entry ``name`` (``<cache>/locks/<name>.lock``): processes
    computing the same entry wait for one another, and the later ones find it stored."""
    return exclusive(cache_root(cache_dir) / "locks" / f"{name}.lock")


def _wait_for_lock(fcntl: Any, handle: Any) -> None:
    # Polled, not a blocking flock: a thread blocked in flock sits in C, where nothing raised in it (the explorer's
    # stop of a live run) arrives until another process releases the lock, perhaps hours later.
    delay = 0.01
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as err:  # held elsewhere: EWOULDBLOCK, or EACCES where flock is emulated by fcntl locks
            if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise
            time.sleep(delay)
            delay = min(2 * delay, 0.25)


@contextlib.contextmanager
def exclusive(lock: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (created) for the block; other processes asking wait.

    Two processes computing the same run then compute it once: the second finds the first's record when
    it gets the lock. Where ``fcntl`` is missing (Windows) there is no lock, and where the file system has none
    a warning says so; atomic writes still leave every file whole.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock = Path(lock)
    with _writable(lock):
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")  # noqa: SIM115 - closed below, once the lock is released
    with handle:
        try:
            _wait_for_lock(fcntl, handle)
        except OSError as err:  # a file system without locks (Lustre mounted noflock, some FUSE mounts)
            if err.errno not in _NO_LOCKS:
                raise
            warnings.warn(f"no file locks on {lock.parent} ({err.strerror}): processes running the same entry at "
                          f"once may each compute it; every file written stays whole", stacklevel=3)
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
