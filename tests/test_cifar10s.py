"""CIFAR10-S and corrupted_cifar10 on a small generated CIFAR-10 tree, and their missing-data errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paperlib.cli import main
from paperlib.data import build_dataset
from paperlib.data import downloads
from paperlib.data.bias import grayscale
from paperlib.data.corruptions import CORRUPTIONS
from paperlib.data.sources import load_source
from paperlib.core.errors import PaperlibError

TRAIN_PER_CLASS_AND_BATCH = 4  # 5 batches -> 20 training images per class
TEST_PER_CLASS = 3


def _batch(per_class: int, rng: np.random.Generator) -> dict[bytes, object]:
    labels = [c for _ in range(per_class) for c in range(10)]
    data = rng.integers(0, 256, (len(labels), 3 * 32 * 32), dtype=np.uint8)
    return {b"batch_label": b"fixture", b"data": data, b"labels": labels, b"filenames": [b"x.png"] * len(labels)}


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    """A CIFAR-10 tree in the published pickle layout, with a few random images per class."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(_batch(TRAIN_PER_CLASS_AND_BATCH, rng)))
    (folder / "test_batch").write_bytes(pickle.dumps(_batch(TEST_PER_CLASS, rng)))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}))
    return root


def _cifar10_s(root: Path, **kw):
    # a cache of its own: dataset keys do not hold data_dir, so the fixture's 200 images would be read as
    # CIFAR10-S by any later test that asks the shared cache
    return build_dataset(dataset="cifar10_s", data_dir=str(root), cache_dir=str(root / "cache"), **kw)


@pytest.mark.parametrize("ratio,majority", [(0.9, 18), (0.8, 16)])
def test_train_groups_follow_the_majority_ratio(cifar_root, ratio, majority):
    ds = _cifar10_s(cifar_root, majority_ratio=ratio)
    counts = ds.info.group_counts["train"]
    minority = 20 - majority
    assert counts == [[majority, minority]] * 5 + [[minority, majority]] * 5  # classes 0-4 gray, 5-9 colour
    assert ds.info.num_attributes == 2 and ds.info.attribute_names == ["grayscale", "colour"]
    assert abs(ds.summary()["train"]["aligned_fraction"] - ratio) < 1e-6
    assert ds.info.params["majority_ratio"] == ratio and ds.info.params["source"] == "cifar10"
    # FairDD's code normalises CIFAR10-S with fixed statistics, whatever the ratio and the images
    assert (ds.info.mean, ds.info.std) == ([0.4890520609319886, 0.48451061542917323, 0.46714946730198426],
                                           [0.24278049202200438, 0.24082296066838135, 0.25098309397306334])


def test_train_images_are_gray_or_the_original_colour(cifar_root):
    ds = _cifar10_s(cifar_root)
    raw = load_source("cifar10", "train", cifar_root)
    gray = ds.train.attributes == 0
    images = ds.train.images
    assert images.shape == (200, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(images[~gray], raw.images[~gray])
    assert torch.equal(images[gray], grayscale(raw.images[gray]))
    assert bool((images[gray][:, 0] == images[gray][:, 1]).all())
    assert torch.equal(ds.train.aligned, ds.train.attributes == (ds.train.labels >= 5).long())


def test_test_split_holds_every_image_gray_and_in_colour(cifar_root):
    ds = _cifar10_s(cifar_root)
    raw = load_source("cifar10", "test", cifar_root)
    n = len(raw.labels)
    assert len(ds.test) == 2 * n
    assert torch.equal(ds.test.images[:n], grayscale(raw.images)) and torch.equal(ds.test.images[n:], raw.images)
    assert torch.equal(ds.test.labels, raw.labels.repeat(2))
    assert ds.info.group_counts["test"] == [[TEST_PER_CLASS, TEST_PER_CLASS]] * 10
    assert ds.summary()["test"]["aligned_fraction"] == 0.5


def test_grayscale_matches_pillow(cifar_root):
    raw = load_source("cifar10", "test", cifar_root).images[:5]
    ours = grayscale(raw)[:, 0]
    pillow = torch.stack([torch.from_numpy(np.array(Image.fromarray(img.permute(1, 2, 0).numpy()).convert("L")))
                          for img in raw])
    assert int((ours.int() - pillow.int()).abs().max()) <= 1


def test_cifar10_s_accepts_only_cifar10():
    with pytest.raises(PaperlibError, match="cannot use source 'digits'"):
        build_dataset(dataset="cifar10_s", source="digits")


def test_corrupted_cifar10_on_the_cifar_fixture(cifar_root):
    ds = build_dataset(dataset="corrupted_cifar10", data_dir=str(cifar_root), conflict_ratio=0.1,
                       cache_dir=str(cifar_root / "cache"))
    assert ds.train.images.shape == (200, 3, 32, 32) and ds.info.params["source"] == "cifar10"
    counts = torch.tensor(ds.info.group_counts["train"])
    assert torch.equal(counts.diagonal(), torch.full((10,), 18))
    assert ds.info.attribute_names == list(CORRUPTIONS)
    test_counts = torch.tensor(ds.info.group_counts["test"])
    assert int(test_counts.sum()) == 30 and int(test_counts.max()) == 1  # 3 per class, each a different type


def test_describe_cifar10_s_on_the_fixture(cifar_root, capsys):
    assert main(["describe", "--set", "dataset=cifar10_s", "--set", f"data_dir={cifar_root}",
                 "--set", f"cache_dir={cifar_root / 'cache'}"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["train"]["group_counts"][0] == [18, 2] and result["test"]["n"] == 60


@pytest.mark.parametrize("dataset", ["cifar10_s", "corrupted_cifar10"])
def test_describe_without_cifar10_is_one_line_saying_where_to_get_and_put_it(dataset, tmp_path, capsys,
                                                                              monkeypatch, cache_entries):
    def no_network(url, dest):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(downloads, "_fetch", no_network)
    monkeypatch.setattr(downloads, "_import_torchvision", lambda: None)
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    code = main(["describe", "--set", f"dataset={dataset}", "--set", f"data_dir={data}",
                 "--set", f"cache_dir={cache}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: CIFAR-10 not found under") and len(err.splitlines()) == 1
    assert "cifar-10-batches-py/data_batch_1" in err and "PAPERLIB_DATA" in err
    assert "cifar-10-python.tar.gz" in err  # where to get it
    assert list(data.iterdir()) == []
    assert cache_entries(cache) == []
