"""Tests for paperlib.data.sources: IDX/CIFAR parsing, data root, downloads, digits.

Hermetic: fixtures are written to tmp_path, the network and torchvision are patched out
(see ``_offline``); only the last tests read the real copies in ../shared/data, and skip
when they are absent.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import types
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from paperlib.data import downloads, sources
from paperlib.data.sources import SOURCES, RawSplit, load_source, resolve_data_root
from paperlib.core import paths
from paperlib.core.errors import DataNotFound, PaperlibError

# The real files, where this machine has them: $PAPERLIB_DATA as the shell set it (conftest clears it for each
# test, not for collection), else the team's shared folder beside the checkout; the tests on them skip without.
SHARED_DATA = Path(os.environ.get("PAPERLIB_DATA") or Path(__file__).parents[2] / "shared" / "data")
MNIST_URL = sources.SOURCES["mnist"].mirror


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the network or depend on torchvision or the caller's environment."""

    def no_network(url: str, dest: Path) -> None:
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(downloads, "_fetch", no_network)
    monkeypatch.setattr(downloads, "_import_torchvision", lambda: None)
    monkeypatch.delenv("PAPERLIB_DATA", raising=False)


# --------------------------------------------------------------------------- fixtures


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (magic 0x0800 | ndim, big-endian dims, payload)."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def fake_mnist(n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10


def write_idx_split(
    root: Path, folder: str = "MNIST", split_prefix: str = "train", gz: bool = True, n: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Write images and labels of one split under <root>/<folder>/raw; return them."""
    images, labels = fake_mnist(n)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem, array in ((f"{split_prefix}-images-idx3-ubyte", images), (f"{split_prefix}-labels-idx1-ubyte", labels)):
        data = idx_bytes(array)
        if gz:
            (raw / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / stem).write_bytes(data)
    return images, labels


def cifar_batch(n: int, offset: int) -> dict[bytes, object]:
    data = ((np.arange(n * 3072) + offset) % 256).astype(np.uint8).reshape(n, 3072)
    return {b"batch_label": b"fake", b"data": data, b"labels": [(i + offset) % 10 for i in range(n)]}


def write_cifar(root: Path, n: int = 4) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        (folder / name).write_bytes(pickle.dumps(cifar_batch(n, offset=k)))
    return folder


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --------------------------------------------------------------------------- data root


def test_sources_constant() -> None:
    assert SOURCES.names() == ("mnist", "fashion_mnist", "cifar10", "digits")


def test_data_root_explicit_beats_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERLIB_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_root(str(tmp_path / "explicit")) == tmp_path / "explicit"


def test_data_root_env_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAPERLIB_DATA", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"


@pytest.fixture
def outside_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in ``tmp_path`` as outside any checkout (it may lie inside one: a TMPDIR in the repository), where the
    default data root is ``./data``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(paths, "find_repo_root", lambda start=None: None)
    return tmp_path


def test_data_root_default_is_cwd_data(outside_checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = outside_checkout
    assert resolve_data_root() == tmp_path / "data"
    monkeypatch.setenv("PAPERLIB_DATA", "")  # empty counts as unset
    assert resolve_data_root() == tmp_path / "data"


def test_relative_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root("rel") == tmp_path / "rel"


def test_load_uses_env_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, _ = write_idx_split(tmp_path)
    monkeypatch.setenv("PAPERLIB_DATA", str(tmp_path))
    assert torch.equal(load_source("mnist", "train").images[:, 0], torch.from_numpy(images))


@pytest.mark.parametrize("use_env", [False, True])
def test_missing_explicit_root_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_env: bool) -> None:
    missing = tmp_path / "typo"
    if use_env:
        monkeypatch.setenv("PAPERLIB_DATA", str(missing))
    with pytest.raises(PaperlibError, match="does not exist") as info:
        load_source("mnist", "train", None if use_env else missing)
    message = str(info.value)
    assert str(missing) in message and "PAPERLIB_DATA" in message
    assert "MNIST/raw/train-images-idx3-ubyte[.gz]" in message
    assert ("from $PAPERLIB_DATA" in message) == use_env
    (tmp_path / "data").symlink_to(tmp_path / "moved")  # a link to a folder since moved
    with pytest.raises(PaperlibError, match="data root .*data .* is a symbolic link to .*moved, which leads nowhere"):
        load_source("mnist", "train", tmp_path / "data")
    (tmp_path / "file").write_text("")
    with pytest.raises(PaperlibError, match="data root .*file .* is not a folder; point"):
        load_source("mnist", "train", tmp_path / "file")
    assert not missing.exists()


def test_unknown_name_or_split() -> None:
    with pytest.raises(PaperlibError, match="mnist, fashion_mnist, cifar10, digits"):
        load_source("svhn", "train")
    with pytest.raises(PaperlibError, match="train, test"):
        load_source("digits", "val")


# --------------------------------------------------------------------------- IDX parsing


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_roundtrip(tmp_path: Path, gz: bool, name: str, folder: str) -> None:
    train_images, train_labels = write_idx_split(tmp_path, folder, "train", gz=gz, n=20)
    write_idx_split(tmp_path, folder, "t10k", gz=gz, n=10)
    train = load_source(name, "train", tmp_path, download=False)
    test = load_source(name, "test", tmp_path, download=False)
    assert train.images.shape == (20, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.shape == (20,) and train.labels.dtype == torch.int64
    assert torch.equal(train.images[:, 0], torch.from_numpy(train_images))
    assert torch.equal(train.labels, torch.from_numpy(train_labels).long())
    assert test.images.shape == (10, 1, 28, 28)


def test_idx_mixed_plain_and_gz(tmp_path: Path) -> None:
    images, labels = write_idx_split(tmp_path, gz=True)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_bytes(gzip.decompress((raw / "train-labels-idx1-ubyte.gz").read_bytes()))
    (raw / "train-labels-idx1-ubyte.gz").unlink()
    split = load_source("mnist", "train", tmp_path, download=False)
    assert torch.equal(split.labels, torch.from_numpy(labels).long())


def test_loaded_tensors_are_writable(tmp_path: Path) -> None:
    write_idx_split(tmp_path)
    split = load_source("mnist", "train", tmp_path, download=False)
    split.images[0, 0, 0, 0] = 7  # would fail or warn on a read-only numpy buffer
    assert int(split.images[0, 0, 0, 0]) == 7


def _rewrite(path: Path, transform) -> None:
    """Apply ``transform`` to the uncompressed bytes of a .gz or plain IDX file."""
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(transform(gzip.decompress(path.read_bytes()))))
    else:
        path.write_bytes(transform(path.read_bytes()))


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_truncated_idx(tmp_path: Path, gz: bool) -> None:
    write_idx_split(tmp_path, gz=gz)
    path = tmp_path / "MNIST" / "raw" / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    _rewrite(path, lambda data: data[:-100])
    with pytest.raises(PaperlibError, match="truncated") as info:
        load_source("mnist", "train", tmp_path, download=False)
    message = str(info.value)
    assert str(path) in message and "delete it" in message and "\n" not in message


def test_trailing_bytes_idx(tmp_path: Path) -> None:
    write_idx_split(tmp_path, gz=False)
    _rewrite(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", lambda data: data + b"\0")
    with pytest.raises(PaperlibError, match="train-labels-idx1-ubyte.*trailing bytes"):
        load_source("mnist", "train", tmp_path, download=False)


def test_truncated_header(tmp_path: Path) -> None:
    write_idx_split(tmp_path, gz=False)
    _rewrite(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte", lambda data: data[:9])
    with pytest.raises(PaperlibError, match="header"):
        load_source("mnist", "train", tmp_path, download=False)


@pytest.mark.parametrize(
    "magic",
    [bytes([0, 0, 0x08, 1]), bytes([0, 0, 0x0D, 3]), b"\x89PNG", b"<htm"],
    ids=["labels-magic-in-images", "float-type", "png", "html"],
)
def test_bad_magic(tmp_path: Path, magic: bytes) -> None:
    write_idx_split(tmp_path, gz=False)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    _rewrite(path, lambda data: magic + data[4:])
    with pytest.raises(PaperlibError, match="magic number .* expected 0x00000803") as info:
        load_source("mnist", "train", tmp_path, download=False)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda gz: b"this is not gzip at all" * 10,  # BadGzipFile
        lambda gz: gz[: len(gz) // 2],  # EOFError: truncated stream
        lambda gz: gz[:12] + bytes(b ^ 0xFF for b in gz[12:40]) + gz[40:],  # zlib.error / bad CRC
    ],
    ids=["not-gzip", "truncated-stream", "corrupt-deflate"],
)
def test_corrupt_gzip(tmp_path: Path, corrupt) -> None:
    write_idx_split(tmp_path, gz=True)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(PaperlibError) as info:
        load_source("mnist", "train", tmp_path, download=False)
    message = str(info.value)
    assert str(path) in message and "re-download" in message and "\n" not in message
    assert info.value.__suppress_context__  # an uncaught error prints one traceback, not the gzip error's too


def test_count_mismatch(tmp_path: Path) -> None:
    write_idx_split(tmp_path, gz=False, n=20)
    labels = np.arange(19, dtype=np.uint8) % 10
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(PaperlibError, match="20 images but .* 19 labels"):
        load_source("mnist", "train", tmp_path, download=False)


def test_label_out_of_range(tmp_path: Path) -> None:
    write_idx_split(tmp_path, gz=False, n=20)
    labels = np.full(20, 10, dtype=np.uint8)
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(PaperlibError, match="outside 0..9"):
        load_source("mnist", "train", tmp_path, download=False)


def test_wrong_image_size(tmp_path: Path) -> None:
    write_idx_split(tmp_path, gz=False, n=5)
    images = np.zeros((5, 32, 32), dtype=np.uint8)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(idx_bytes(images))
    with pytest.raises(PaperlibError, match="32x32, expected 28x28"):
        load_source("mnist", "train", tmp_path, download=False)


# --------------------------------------------------------------------------- missing files and download


def test_missing_files_download_disabled(tmp_path: Path) -> None:
    with pytest.raises(PaperlibError) as info:
        load_source("mnist", "train", tmp_path, download=False)
    message = str(info.value)
    assert message.startswith("MNIST not found under") and str(tmp_path) in message
    assert "MNIST/raw/train-images-idx3-ubyte[.gz]" in message
    assert "MNIST/raw/train-labels-idx1-ubyte[.gz]" in message
    assert "PAPERLIB_DATA" in message and "data_dir" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_files_no_network(tmp_path: Path, name: str) -> None:
    with pytest.raises(PaperlibError, match="could not be downloaded") as info:
        load_source(name, "test", tmp_path)
    message = str(info.value)
    expected = {
        "mnist": "MNIST/raw/t10k-images-idx3-ubyte[.gz]",
        "fashion_mnist": "FashionMNIST/raw/t10k-labels-idx1-ubyte[.gz]",
        "cifar10": "cifar-10-batches-py/test_batch",
    }[name]
    assert expected in message and "PAPERLIB_DATA" in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # the reason is in the message
    assert list(tmp_path.iterdir()) == []  # no partial file, not even an empty folder


def test_default_root_not_left_behind(outside_checkout: Path) -> None:
    tmp_path = outside_checkout
    with pytest.raises(PaperlibError, match=r"not found under .*data"):
        load_source("mnist", "train")
    assert list(tmp_path.iterdir()) == []


def test_partial_download_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_then_fail(url: str, dest: Path) -> None:
        dest.write_bytes(b"\x1f\x8b partial")
        raise TimeoutError("timed out")

    monkeypatch.setattr(downloads, "_fetch", half_then_fail)
    with pytest.raises(PaperlibError, match="could not be downloaded.*TimeoutError"):
        load_source("mnist", "train", tmp_path)
    assert all_files(tmp_path) == []


def test_checksum_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(downloads, "_fetch", lambda url, dest: dest.write_bytes(b"not the real file"))
    with pytest.raises(PaperlibError, match="md5 .* expected f68b3c2dcbeaaa9fbdd348bbdeb94873") as info:
        load_source("mnist", "train", tmp_path)
    assert "\n" not in str(info.value)
    assert all_files(tmp_path) == []


def test_stdlib_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = fake_mnist(12)
    payloads = {
        f"{MNIST_URL}t10k-images-idx3-ubyte.gz": gzip.compress(idx_bytes(images)),
        f"{MNIST_URL}t10k-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(labels)),
    }
    for url, payload in payloads.items():
        monkeypatch.setitem(sources._MD5_BY_URL, url, md5(payload))
    fetched: list[str] = []

    def fake_fetch(url: str, dest: Path) -> None:
        fetched.append(url)
        dest.write_bytes(payloads[url])

    monkeypatch.setattr(downloads, "_fetch", fake_fetch)
    split = load_source("mnist", "test", tmp_path)
    assert torch.equal(split.images[:, 0], torch.from_numpy(images))
    assert torch.equal(split.labels, torch.from_numpy(labels).long())
    raw = tmp_path / "MNIST" / "raw"
    assert all_files(tmp_path) == [raw / "t10k-images-idx3-ubyte.gz", raw / "t10k-labels-idx1-ubyte.gz"]
    load_source("mnist", "test", tmp_path)  # present now: nothing is fetched again
    assert len(fetched) == 2


def test_stdlib_download_only_fetches_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = write_idx_split(tmp_path, split_prefix="t10k", gz=False)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    payload = gzip.compress(idx_bytes(labels))
    url = f"{MNIST_URL}t10k-labels-idx1-ubyte.gz"
    monkeypatch.setitem(sources._MD5_BY_URL, url, md5(payload))
    fetched: list[str] = []
    monkeypatch.setattr(downloads, "_fetch", lambda u, dest: (fetched.append(u), dest.write_bytes(payload)))
    load_source("mnist", "test", tmp_path)
    assert fetched == [url]


def test_torchvision_download_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = fake_mnist(8)
    calls: list[tuple[str, bool, bool]] = []

    class FakeMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            raw = Path(root) / "MNIST" / "raw"
            raw.mkdir(parents=True)
            for prefix in ("train", "t10k"):
                (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
                (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))

    fake = types.SimpleNamespace(datasets=types.SimpleNamespace(MNIST=FakeMNIST))
    monkeypatch.setattr(downloads, "_import_torchvision", lambda: fake)
    split = load_source("mnist", "train", tmp_path)
    assert calls and calls[0][1:] == (True, True)
    assert torch.equal(split.images[:, 0], torch.from_numpy(images))
    raw = tmp_path / "MNIST" / "raw"
    # torchvision fetched the test split too: kept, it is not fetched a second time
    assert all_files(tmp_path) == sorted(raw / f"{prefix}-{kind}-idx{dims}-ubyte" for prefix in ("train", "t10k")
                                         for kind, dims in (("images", 3), ("labels", 1)))
    assert torch.equal(load_source("mnist", "test", tmp_path).labels, split.labels) and len(calls) == 1


def test_a_data_root_that_cannot_take_the_files_is_a_one_line_error(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A file where the source's folder goes (or a read-only root) raised NotADirectoryError from the download."""
    (tmp_path / "MNIST").write_text("not a folder")
    monkeypatch.setattr(downloads, "_import_torchvision", lambda: None)
    monkeypatch.setattr(downloads, "_fetch", lambda url, dest: pytest.fail("fetched into a folder that is a file"))
    with pytest.raises(DataNotFound, match=r"^MNIST not found under .* and cannot be downloaded there \(.*MNIST"
                                           r".*\): expected .*a folder you can write to, or copy the files in by hand"):
        load_source("mnist", "train", tmp_path)
    assert (tmp_path / "MNIST").read_text() == "not a folder"


def test_torchvision_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FailingMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            raw = Path(root) / "MNIST" / "raw"
            raw.mkdir(parents=True)
            (raw / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    fake = types.SimpleNamespace(datasets=types.SimpleNamespace(MNIST=FailingMNIST))
    monkeypatch.setattr(downloads, "_import_torchvision", lambda: fake)
    with pytest.raises(PaperlibError, match="could not be downloaded.*torchvision"):
        load_source("mnist", "train", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_import_torchvision_tolerates_broken_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    monkeypatch.undo()  # restore the real _import_torchvision
    monkeypatch.setattr(builtins, "__import__", broken)
    assert downloads._import_torchvision() is None


# --------------------------------------------------------------------------- CIFAR-10


def test_cifar_fake_batches(tmp_path: Path) -> None:
    write_cifar(tmp_path, n=4)
    train = load_source("cifar10", "train", tmp_path, download=False)
    test = load_source("cifar10", "test", tmp_path, download=False)
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.shape == (20,) and train.labels.dtype == torch.int64
    assert test.images.shape == (4, 3, 32, 32)
    # Row layout: 1024 red, 1024 green, 1024 blue values, each 32x32 row-major.
    row = cifar_batch(4, offset=5)[b"data"][1]
    assert int(test.images[1, 1, 2, 3]) == int(row[1024 + 2 * 32 + 3])
    assert int(test.images[1, 2, 31, 0]) == int(row[2048 + 31 * 32])
    assert test.labels.tolist() == [5, 6, 7, 8]
    assert train.labels[:4].tolist() == [0, 1, 2, 3] and train.labels[4:8].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "content",
    [
        b"garbage, not a pickle",
        pickle.dumps(cifar_batch(2, 0))[:-30],
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}),
        pickle.dumps([1, 2, 3]),
    ],
    ids=["garbage", "truncated", "wrong-shape", "bad-label", "not-a-dict"],
)
def test_cifar_corrupt_batch(tmp_path: Path, content: bytes) -> None:
    folder = write_cifar(tmp_path)
    (folder / "test_batch").write_bytes(content)
    with pytest.raises(PaperlibError) as info:
        load_source("cifar10", "test", tmp_path, download=False)
    message = str(info.value)
    assert str(folder / "test_batch") in message and "delete it" in message and "\n" not in message


def test_cifar_stdlib_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_cifar(tmp_path / "src", n=3)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(source.iterdir()):
            tar.add(path, arcname=f"cifar-10-batches-py/{path.name}")
        evil = tarfile.TarInfo("../evil")  # must never be written anywhere
        tar.addfile(evil, io.BytesIO(b""))
    archive = buffer.getvalue()
    monkeypatch.setitem(sources._MD5_BY_URL, sources._CIFAR_URL, md5(archive))
    monkeypatch.setattr(downloads, "_fetch", lambda url, dest: dest.write_bytes(archive))
    root = tmp_path / "root"
    root.mkdir()
    split = load_source("cifar10", "train", root)
    assert split.images.shape == (15, 3, 32, 32)
    names = [p.relative_to(root).as_posix() for p in all_files(root)]
    assert names == sorted(f"cifar-10-batches-py/{p.name}" for p in source.iterdir())
    assert not (tmp_path / "evil").exists()


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> tuple[RawSplit, RawSplit]:
    return load_source("digits", "train"), load_source("digits", "test")


def test_digits_shape_and_dtype(digits: tuple[RawSplit, RawSplit]) -> None:
    train, test = digits
    for split in digits:
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (1, 28, 28)
        assert split.labels.dtype == torch.int64 and split.labels.shape == (split.images.shape[0],)
    assert len(train.labels) + len(test.labels) == 1797
    assert len(train.labels) == 1433 and len(test.labels) == 364
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0


def test_digits_stratified_and_disjoint(digits: tuple[RawSplit, RawSplit]) -> None:
    train, test = digits
    train_counts = torch.bincount(train.labels, minlength=10)
    test_counts = torch.bincount(test.labels, minlength=10)
    assert bool((train_counts > 0).all()) and bool((test_counts > 0).all())
    totals = train_counts + test_counts
    assert torch.equal(train_counts, totals * 4 // 5)  # floor(80%) of each class
    # Disjoint and complete: the splits' indices partition 0..1796.
    all_images, all_labels = sources._digits_images()
    train_index, test_index = sources._digits_split(all_labels)
    assert set(train_index.tolist()).isdisjoint(test_index.tolist())
    assert sorted(train_index.tolist() + test_index.tolist()) == list(range(1797))
    assert torch.equal(all_images[train_index], train.images)
    assert torch.equal(all_labels[test_index], test.labels)
    # which digits are trained on is pinned: another split would move every smoke result without failing above
    assert train_index[:8].tolist() == [1, 2, 5, 6, 7, 8, 9, 10]
    assert hashlib.sha256(train_index.numpy().tobytes()).hexdigest()[:16] == "f32c6190c7a83e29"


def test_digits_deterministic_and_ignores_data_dir(tmp_path: Path, digits: tuple[RawSplit, RawSplit]) -> None:
    again = load_source("digits", "train", data_dir=tmp_path / "does-not-exist", download=False)
    assert torch.equal(again.images, digits[0].images) and torch.equal(again.labels, digits[0].labels)
    torch.manual_seed(123)  # the global RNG must not matter
    assert torch.equal(load_source("digits", "test").labels, digits[1].labels)


def test_digits_resize_matches_rule() -> None:
    from sklearn.datasets import load_digits

    pixels, _ = load_digits(return_X_y=True)
    first = torch.tensor(pixels[:1], dtype=torch.float32).reshape(1, 1, 8, 8) * (255 / 16)
    expected = torch.nn.functional.interpolate(first, size=(28, 28), mode="bilinear", align_corners=False)
    all_images, _ = sources._digits_images()
    assert torch.equal(all_images[0], expected.round().clamp(0, 255).to(torch.uint8)[0])


def test_rawsplit_is_frozen_and_validated() -> None:
    split = RawSplit(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(AttributeError):
        split.images = split.images  # type: ignore[misc]
    with pytest.raises(PaperlibError, match="RawSplit.images must be a uint8 tensor"):
        RawSplit(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.int64))  # float images


# --------------------------------------------------------------------------- real data (optional)

_REAL_MD5 = {
    "MNIST/raw/train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "MNIST/raw/train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "MNIST/raw/t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "MNIST/raw/t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(),
                    reason="no MNIST files in $PAPERLIB_DATA or ../shared/data")
def test_real_mnist() -> None:
    for relative, expected in _REAL_MD5.items():
        packed = SHARED_DATA / f"{relative}.gz"  # the loader takes either form
        raw = gzip.decompress(packed.read_bytes()) if packed.is_file() else (SHARED_DATA / relative).read_bytes()
        assert md5(raw) == expected
    train = load_source("mnist", "train", SHARED_DATA, download=False)
    test = load_source("mnist", "test", SHARED_DATA, download=False)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert torch.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.skipif(not (SHARED_DATA / "FashionMNIST" / "raw").is_dir(),
                    reason="no Fashion-MNIST files in $PAPERLIB_DATA or ../shared/data")
def test_real_fashion_mnist_test_split() -> None:
    test = load_source("fashion_mnist", "test", SHARED_DATA, download=False)
    assert test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(test.labels).tolist() == [1000] * 10


def test_a_source_is_found_present_without_reading_or_downloading_it(tmp_path: Path, monkeypatch) -> None:
    """make plan downloaded CIFAR-10 (on a machine online) to decide whether to list CIFAR10-S's runs."""
    monkeypatch.setattr(downloads, "download", lambda *a: pytest.fail("downloaded to test presence"))
    assert sources.source_present("digits", tmp_path / "nowhere")  # embedded
    assert not sources.source_present("mnist", tmp_path / "nowhere") and not sources.source_present("mnist", tmp_path)
    write_idx_split(tmp_path, "MNIST", "train", gz=True, n=4)
    assert not sources.source_present("mnist", tmp_path)  # the test split still missing
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"not read")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"not read")
    assert sources.source_present("mnist", tmp_path)
    assert not sources.source_present("cifar10", tmp_path)
    write_cifar(tmp_path)
    assert sources.source_present("cifar10", tmp_path)


def test_downloads_trust_certifis_authorities_beside_the_systems():
    """python.org's macOS Python trusts no authority until "Install Certificates" runs: the https mirrors failed."""
    certifi = pytest.importorskip("certifi")
    import ssl

    bundle = set(ssl.create_default_context(cafile=certifi.where()).get_ca_certs(binary_form=True))
    assert bundle and bundle <= set(downloads._tls_context().get_ca_certs(binary_form=True))
