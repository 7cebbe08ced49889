"""Raw image sources: MNIST, Fashion-MNIST and CIFAR-10 from their standard files, and digits.

Every source is returned as a :class:`RawSplit`: uint8 images ``[N, C, H, W]`` and int64
labels ``[N]`` with values 0..9.

* ``mnist`` / ``fashion_mnist``: the original IDX files in torchvision's layout,
  ``<root>/MNIST/raw/`` and ``<root>/FashionMNIST/raw/``, plain or ``.gz``.
* ``cifar10``: the python pickles in ``<root>/cifar-10-batches-py/``.
* ``digits``: scikit-learn's bundled 8x8 digits upscaled to 28x28; embedded, so it needs
  neither files nor network (tests and CI use it).

The data root is the ``data_dir`` argument, else ``$PAPERLIB_DATA``, else ``data/`` at the repository root.
Missing files are downloaded when ``download=True`` (:mod:`paperlib.data.downloads`: torchvision, else the
standard mirrors with their published md5). Every failure leaves no partial file behind and raises a
one-line :class:`~paperlib.core.errors.PaperlibError` that says how to fix it.
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import pickle
import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from paperlib.core.errors import DataNotFound, PaperlibError
from paperlib.core.paths import configured_folder, how_absent
from paperlib.core.registry import Registry
from paperlib.core.runtime import generator
from paperlib.data import downloads

SPLITS: tuple[str, ...] = ("train", "test")
DATA_ENV_VAR = "PAPERLIB_DATA"

_NUM_CLASSES = 10
_IDX_SIDE = 28


@dataclass(frozen=True)
class RawSplit:
    """One split of a source: ``images`` uint8 ``[N, C, H, W]``, ``labels`` int64 ``[N]`` in 0..9.

    C=1 at 28x28 for mnist, fashion_mnist and digits; C=3 at 32x32 for cifar10.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise PaperlibError("RawSplit.images must be a uint8 tensor of shape [N, C, H, W]; convert it first")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise PaperlibError("RawSplit.labels must be an int64 tensor of shape [N]; convert it first")
        if self.images.shape[0] != self.labels.shape[0]:
            raise PaperlibError(
                f"RawSplit has {self.images.shape[0]} images but {self.labels.shape[0]} labels; pass matching tensors"
            )


# --------------------------------------------------------------------------- file tables


# (images, labels) file stems per split; each file may also carry a .gz suffix.
_IDX_STEMS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR_FILES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
# Everything worth keeping from the archive (batches.meta holds the class names).
_CIFAR_MEMBERS: tuple[str, ...] = (*_CIFAR_FILES["train"], *_CIFAR_FILES["test"], "batches.meta")

# Published md5 of the original downloads (the same values torchvision checks).
_MD5_BY_URL: dict[str, str] = {
    "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz": (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    ),
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-labels-idx1-ubyte.gz": (
        "25c81989df183df01b3e8a0aad5dffbe"
    ),
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-images-idx3-ubyte.gz": (
        "bef4ecab320f06d8554ea6380940ec79"
    ),
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz": (
        "bb300cfdad3c16e7a12a480ee83cd310"
    ),
    _CIFAR_URL: "c58f30108f718f92721af3b95e74349a",
}

# --------------------------------------------------------------------------- public API


def resolve_data_root(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Return the data root: ``data_dir`` if given, else ``$PAPERLIB_DATA``, else ``data/`` at the repository
    root (``./data`` outside it).

    An empty ``$PAPERLIB_DATA`` counts as unset. The result is absolute (relative paths are
    taken from the current directory) and need not exist.
    """
    return _resolve_root(data_dir)[0]


def load_source(
    name: str, split: str, data_dir: str | os.PathLike | None = None, download: bool = True
) -> RawSplit:
    """Load split ``"train"`` or ``"test"`` of source ``name`` (a name in :data:`SOURCES`).

    File-based sources look in :func:`resolve_data_root` ``(data_dir)``; missing files are
    downloaded when ``download`` is true. ``digits`` is embedded and ignores ``data_dir``
    and ``download``. Raises :class:`PaperlibError` for an unknown name or split, missing
    files that cannot be downloaded, and corrupt files.
    """
    source = SOURCES[name]
    _check_choice("split", split, SPLITS)
    if source.embedded:
        return source.load(None, split)
    root, origin = _resolve_root(data_dir)
    if origin is not None and not root.is_dir():
        # An explicit root that does not exist is most likely a typo: say so instead of creating it.
        raise DataNotFound(
            f"data root {root} (from {origin}) {'is not a folder' if root.exists() else how_absent(root)}; point "
            f"{DATA_ENV_VAR} or "
            f"data_dir at a folder holding {', '.join(source.expected(split))}"
        )
    if source.missing(root, split):
        _obtain(source, root, split, download)
    return source.load(root, split)


def source_present(name: str, data_dir: str | os.PathLike | None = None) -> bool:
    """Whether every file of source ``name`` (both splits) is under the data root, checked without reading or
    downloading any (an embedded source: always)."""
    source = SOURCES[name]
    if source.embedded:
        return True
    root, _ = _resolve_root(data_dir)
    return root.is_dir() and not any(source.missing(root, split) for split in SPLITS)


# --------------------------------------------------------------------------- data root

def _resolve_root(data_dir: str | os.PathLike | None) -> tuple[pathlib.Path, str | None]:
    """Return the data root and who named it (for error messages; ``None``: the default)."""
    chosen, origin = configured_folder(data_dir, "data_dir", DATA_ENV_VAR, "data")
    return _absolute(chosen, "data_dir"), origin


def _absolute(path: str | os.PathLike, what: str) -> pathlib.Path:
    try:
        return pathlib.Path(path).expanduser().absolute()
    except TypeError:
        raise PaperlibError(f"{what} must be a path (str or os.PathLike), got {type(path).__name__}") from None


def _check_choice(what: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise PaperlibError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


# --------------------------------------------------------------------------- expected files


def _find_idx(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
    """The plain file if present (torchvision leaves both; plain reads faster), else the .gz."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------- obtaining missing files


def _obtain(source: Source, root: pathlib.Path, split: str, download: bool) -> None:
    """Download the missing files of a split, or raise a 'not found' PaperlibError."""
    if not download:
        raise _not_found(source, root, split, "(download=False)", "or pass download=True")
    try:
        downloads.download(source, root, split)
    except downloads.DownloadError as exc:
        reason = " ".join(str(exc).split())  # keep the message on one line
        raise _not_found(source, root, split, f"and could not be downloaded (no network? {reason})") from None
    except OSError as exc:  # the data root cannot take the files: read-only, or a file where a folder goes
        raise _not_found(source, root, split, f"and cannot be downloaded there ({exc.strerror or exc}: "
                         f"{exc.filename})", "a folder you can write to, or copy the files in by hand") from None
    if source.missing(root, split):
        raise _not_found(source, root, split, "and the download did not produce them")


def _not_found(source: Source, root: pathlib.Path, split: str, why: str, extra: str = "") -> DataNotFound:
    expected = ", ".join(source.expected(split))
    fix = f"set {DATA_ENV_VAR} or data_dir to a folder with these files"
    if extra:
        fix = f"{fix}, {extra}"
    return DataNotFound(f"{source.title} not found under {root} {why}: expected {expected}; {fix}{source.fetch_hint}")


# --------------------------------------------------------------------------- the sources


class Source:
    """A raw image source: where its files live, how they are loaded and fetched (``embedded``: no files)."""

    title: str
    relative_dir: str = ""  # the folder, relative to the data root, that holds its files
    torchvision_class: str = ""  # torchvision's dataset class, which can download it
    fetch_hint: str = ""  # appended to a 'not found' error
    embedded: bool = False

    def expected(self, split: str) -> list[str]:
        """The files a split needs, as shown in messages."""
        return []

    def missing(self, root: pathlib.Path, split: str) -> list[str]:
        """The files of ``split`` not found under ``root``."""
        return []

    def installable(self, split: str) -> list[str]:
        """The file names worth moving out of a torchvision download."""
        return []

    def fetch(self, root: pathlib.Path, split: str) -> None:
        """Download the missing files of ``split`` without torchvision (checksummed)."""
        raise NotImplementedError

    def load(self, root: pathlib.Path | None, split: str) -> RawSplit:
        """The split, read from ``root`` (``None`` for an embedded source)."""
        raise NotImplementedError


@dataclass(frozen=True)
class IdxSource(Source):
    """MNIST-style IDX files (plain or ``.gz``) in torchvision's ``<Folder>/raw/`` layout."""

    title: str
    folder: str  # torchvision's folder under the data root
    mirror: str  # base URL of the .gz files
    torchvision_class: str

    @property
    def relative_dir(self) -> str:
        return f"{self.folder}/raw"

    def expected(self, split: str) -> list[str]:  # [.gz] marks an optional suffix
        return [f"{self.relative_dir}/{stem}[.gz]" for stem in _IDX_STEMS[split]]

    def missing(self, root: pathlib.Path, split: str) -> list[str]:
        return [stem for stem in _IDX_STEMS[split] if _find_idx(root / self.relative_dir, stem) is None]

    def installable(self, split: str) -> list[str]:
        # torchvision fetches both splits whatever it is asked: both are kept, so the other is not fetched again
        return [f"{stem}{suffix}" for stems in _IDX_STEMS.values() for stem in stems for suffix in ("", ".gz")]

    def fetch(self, root: pathlib.Path, split: str) -> None:
        """Download each missing IDX file of a split as the original, checksummed .gz."""
        directory = root / self.relative_dir
        for stem in _IDX_STEMS[split]:
            if _find_idx(directory, stem) is None:
                url = f"{self.mirror}{stem}.gz"
                with downloads.verified_download(url, _MD5_BY_URL[url], directory) as temporary:
                    os.replace(temporary, directory / f"{stem}.gz")

    def load(self, root: pathlib.Path | None, split: str) -> RawSplit:
        return _load_idx_source(self, root, split)


@dataclass(frozen=True)
class CifarSource(Source):
    """CIFAR-10's python pickles in ``cifar-10-batches-py/``."""

    title: str = "CIFAR-10"
    relative_dir: str = _CIFAR_FOLDER
    torchvision_class: str = "CIFAR10"
    # No offline copy on the development machines: say where to get it.
    fetch_hint: str = f"; on a machine with internet get {_CIFAR_URL} and unpack it into the data root"

    def expected(self, split: str) -> list[str]:
        return [f"{_CIFAR_FOLDER}/{f}" for f in _CIFAR_FILES[split]]

    def missing(self, root: pathlib.Path, split: str) -> list[str]:
        return [f for f in _CIFAR_FILES[split] if not (root / _CIFAR_FOLDER / f).is_file()]

    def installable(self, split: str) -> list[str]:
        return list(_CIFAR_MEMBERS)

    def fetch(self, root: pathlib.Path, split: str) -> None:
        """Download the CIFAR-10 tarball, check it and unpack the batches; the tarball is not kept."""
        with downloads.verified_download(_CIFAR_URL, _MD5_BY_URL[_CIFAR_URL], root) as archive:
            downloads.extract_members(archive, _CIFAR_FOLDER, _CIFAR_MEMBERS, root / _CIFAR_FOLDER, self.title)

    def load(self, root: pathlib.Path | None, split: str) -> RawSplit:
        return _load_cifar(root, split)


@dataclass(frozen=True)
class EmbeddedSource(Source):
    """scikit-learn's bundled 8x8 digits at 28 px: no files, no network (tests and CI use it)."""

    title: str = "digits"
    embedded: bool = True

    def load(self, root: pathlib.Path | None, split: str) -> RawSplit:
        return _load_digits(split)


SOURCES: Registry[Source] = Registry("source")
SOURCES.register("mnist", IdxSource("MNIST", "MNIST", "https://ossci-datasets.s3.amazonaws.com/mnist/", "MNIST"))
SOURCES.register("fashion_mnist", IdxSource("Fashion-MNIST", "FashionMNIST",
                                            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                                            "FashionMNIST"))
SOURCES.register("cifar10", CifarSource())
SOURCES.register("digits", EmbeddedSource())


# --------------------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)


def _load_idx_source(source: IdxSource, root: pathlib.Path, split: str) -> RawSplit:
    directory = root / source.relative_dir
    image_stem, label_stem = _IDX_STEMS[split]
    image_path, label_path = _find_idx(directory, image_stem), _find_idx(directory, label_stem)
    if image_path is None or label_path is None:  # removed since load_source looked
        raise _not_found(source, root, split, "(the files disappeared while loading)")
    images = _read_idx(image_path, ndim=3)
    labels = _read_idx(label_path, ndim=1)
    if images.shape[1:] != (_IDX_SIDE, _IDX_SIDE):
        raise _corrupt(image_path, f"images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if images.shape[0] != labels.shape[0]:
        raise PaperlibError(
            f"{image_path} has {images.shape[0]} images but {label_path} has {labels.shape[0]} labels; "
            f"delete both and re-download them (or re-copy them)"
        )
    if labels.size and int(labels.max()) >= _NUM_CLASSES:
        raise _corrupt(label_path, f"label {int(labels.max())} is outside 0..9")
    # np.frombuffer views are read-only; copy so callers get ordinary writable tensors.
    return RawSplit(
        images=torch.from_numpy(images.copy()).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
    )


def _read_idx(path: pathlib.Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzipped) into a uint8 array of ``ndim`` dims."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PaperlibError(f"cannot read {path} ({exc}); check that it is a readable file") from None
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
            raise _corrupt(path, f"broken gzip stream: {type(exc).__name__}: {exc}") from None
    return _parse_idx(data, ndim, path)


def _parse_idx(data: bytes, ndim: int, path: pathlib.Path) -> np.ndarray:
    """Validate the IDX header (magic, dims) and that the payload has exactly prod(dims) bytes."""
    # Magic: two zero bytes, the type byte 0x08 (unsigned byte) and the number of dims.
    expected_magic = 0x0800 | ndim
    if len(data) < 4:
        raise _corrupt(path, f"only {len(data)} bytes, shorter than an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise _corrupt(path, f"magic number 0x{magic:08X}, expected 0x{expected_magic:08X}")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise _corrupt(path, f"truncated header ({len(data)} bytes, needs {header_size})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    needed, payload = math.prod(dims), len(data) - header_size
    if payload != needed:
        kind = "truncated" if payload < needed else "has trailing bytes"
        raise _corrupt(path, f"{kind}: {payload} data bytes, but its dims {dims} need {needed}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def _corrupt(path: pathlib.Path, problem: str) -> PaperlibError:
    return PaperlibError(
        f"{path} is corrupt or not a valid data file ({problem}); delete it and re-download it (or re-copy it)"
    )


# --------------------------------------------------------------------------- CIFAR-10


def _load_cifar(root: pathlib.Path, split: str) -> RawSplit:
    directory = root / _CIFAR_FOLDER
    batches = [_read_cifar_batch(directory / file_name) for file_name in _CIFAR_FILES[split]]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    # Each row is 1024 red, then 1024 green, then 1024 blue values, each plane row-major.
    return RawSplit(
        images=torch.from_numpy(images.reshape(-1, 3, 32, 32)),
        labels=torch.from_numpy(labels),
    )


def _read_cifar_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch pickle into (uint8 [N, 3072], int64 [N]).

    The files are pickles, as published; only load data roots you trust.
    """
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except OSError as exc:
        raise PaperlibError(f"cannot read {path} ({exc}); check that it is a readable file") from None
    except Exception as exc:  # garbage bytes can make unpickling fail in almost any way
        raise _corrupt(path, f"unreadable pickle: {type(exc).__name__}: {exc}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise _corrupt(path, "not a CIFAR-10 batch: no b'data' and b'labels' entries")
    images, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise _corrupt(path, f"b'data' is {images.dtype} {images.shape}, expected uint8 (N, 3072)")
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise _corrupt(path, f"b'labels' has shape {labels.shape}, expected {images.shape[0]} integers")
    if labels.size and (labels.min() < 0 or labels.max() >= _NUM_CLASSES):
        raise _corrupt(path, "b'labels' has values outside 0..9")
    return images, labels.astype(np.int64)


# --------------------------------------------------------------------------- digits (embedded)

_DIGITS_SEED = 0
_DIGITS_TRAIN_NUMERATOR, _DIGITS_TRAIN_DENOMINATOR = 4, 5  # 80% train per class, rounded down


def _load_digits(split: str) -> RawSplit:
    images, labels = _digits_images()
    train_index, test_index = _digits_split(labels)
    index = train_index if split == "train" else test_index
    return RawSplit(images=images[index], labels=labels[index])


def _digits_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 scikit-learn digits as uint8 [N, 1, 28, 28] images and int64 labels."""
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    pixels, labels = load_digits(return_X_y=True)  # float64 [N, 64] in 0..16
    images = torch.from_numpy(pixels).to(torch.float32).reshape(-1, 1, 8, 8) * (255.0 / 16.0)
    images = F.interpolate(images, size=(_IDX_SIDE, _IDX_SIDE), mode="bilinear", align_corners=False)
    return images.round().clamp(0, 255).to(torch.uint8), torch.from_numpy(labels).to(torch.int64)


def _digits_split(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified, seeded train/test split of the digits.

    One generator seeded with 0 serves the classes 0..9 in ascending order.
    For class c with n samples, the sample indices (ascending) are permuted with
    ``torch.randperm(n, generator=g)``; the first ``floor(4n/5)`` go to train, the rest to
    test. Each split's indices are returned sorted, so samples keep the dataset's order.
    """
    gen = generator(_DIGITS_SEED)
    train_parts, test_parts = [], []
    for cls in range(_NUM_CLASSES):
        members = torch.nonzero(labels == cls).flatten()
        shuffled = members[torch.randperm(len(members), generator=gen)]
        n_train = len(members) * _DIGITS_TRAIN_NUMERATOR // _DIGITS_TRAIN_DENOMINATOR
        train_parts.append(shuffled[:n_train])
        test_parts.append(shuffled[n_train:])
    return torch.cat(train_parts).sort().values, torch.cat(test_parts).sort().values
