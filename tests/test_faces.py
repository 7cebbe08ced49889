"""FairDD's face datasets, parsed from tiny fixture trees in their exact on-disk formats."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from paperlib.cli import main
from paperlib.core.params import make_params
from paperlib.data import build_dataset, faces
from paperlib.data.faces import UTK_RACES, parse_bffhq_name, parse_utkface_name
from paperlib.core.errors import PaperlibError

UTKFACE = faces.FACE_DATASETS["utkface"]

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
RED, GREEN = (255, 0, 0), (0, 160, 60)


def _face(path, width, height, border=0):
    """A green image whose outer ``border`` rows (top and bottom) are red: a centre crop removes them."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:] = GREEN
    if border:
        pixels[:border], pixels[height - border:] = RED, RED
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(pixels).save(path)


def _build(dataset, root, tmp_path, **kw):
    # A cache of its own: dataset keys do not include data_dir.
    return build_dataset(make_params(dataset=dataset, data_dir=str(root), cache_dir=str(tmp_path / "cache"),
                                     progress=False, **kw))


def _no_red(images):
    return bool((images[:, 0].int() - images[:, 1].int() < 100).all())


# --------------------------------------------------------------------------- CelebA

# (partition, attractive, male, how many): train is skewed, test is unbalanced, validation is unused.
CELEBA_ROWS = [(0, 1, 0, 10), (0, 1, 1, 2), (0, 0, 1, 12), (0, 0, 0, 4), (1, 1, 1, 4),
               (2, 0, 0, 4), (2, 0, 1, 3), (2, 1, 0, 2), (2, 1, 1, 3)]


def _celeba_tree(root):
    folder = root / "celeba"
    rows, partition = [], []
    index = 0
    for part, attractive, male, count in CELEBA_ROWS:
        for _ in range(count):
            index += 1
            name = f"{index:06d}.jpg"
            values = [-1] * 40
            values[CELEBA_ATTRIBUTES.index("Attractive")] = 1 if attractive else -1
            values[CELEBA_ATTRIBUTES.index("Male")] = 1 if male else -1
            values[CELEBA_ATTRIBUTES.index("Young")] = 1
            rows.append(name + " " + " ".join(f"{v:2d}" for v in values))
            partition.append(f"{name} {part}")
            _face(folder / "img_align_celeba" / name, 178, 218, border=20)
    (folder / "list_attr_celeba.txt").write_text(f"{len(rows)}\n{' '.join(CELEBA_ATTRIBUTES)} \n" + "\n".join(rows)
                                                 + "\n")
    (folder / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return root


def test_celeba_targets_groups_sizes_and_balanced_test(tmp_path):
    ds = _build("celeba", _celeba_tree(tmp_path / "data"), tmp_path)
    assert ds.info.num_classes == 2 and ds.info.num_attributes == 2
    assert ds.info.attribute_names == ["female", "male"] and ds.info.params["dataset_version"] == 1
    assert ds.train.images.shape == (28, 3, 64, 64) and ds.train.images.dtype == torch.uint8
    assert ds.info.group_counts["train"] == [[4, 12], [10, 2]]  # [not attractive, attractive] x [female, male]
    assert ds.info.group_counts["test"] == [[2, 2], [2, 2]]  # the smallest test cell holds 2
    # aligned: the majority group of the class in train (not attractive -> male, attractive -> female)
    expected = torch.where(ds.train.labels == 0, ds.train.attributes == 1, ds.train.attributes == 0)
    assert torch.equal(ds.train.aligned, expected)
    assert float(ds.test.aligned.float().mean()) == 0.5
    assert _no_red(ds.train.images) and _no_red(ds.test.images)  # centre crop removed the red borders


def test_celeba_reads_the_right_columns(tmp_path):
    root = _celeba_tree(tmp_path)
    names, values = faces.parse_celeba_attributes(root / "celeba" / "list_attr_celeba.txt", ("Attractive", "Male"))
    assert names[0] == "000001.jpg" and len(names) == sum(r[3] for r in CELEBA_ROWS)
    assert values[:10].tolist() == [[1, 0]] * 10 and values[12:24].tolist() == [[0, 1]] * 12


def test_celeba_count_line_mismatch_is_a_clear_error(tmp_path):
    root = _celeba_tree(tmp_path / "data")
    attr = root / "celeba" / "list_attr_celeba.txt"
    attr.write_text("999\n" + attr.read_text().split("\n", 1)[1])
    with pytest.raises(PaperlibError, match="says 999 images"):
        _build("celeba", root, tmp_path)


def test_celeba_missing_image_is_named(tmp_path):
    root = _celeba_tree(tmp_path / "data")
    (root / "celeba" / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(PaperlibError, match="000003.jpg"):
        _build("celeba", root, tmp_path)


# --------------------------------------------------------------------------- UTKFace

def _utk_tree(root, per_cell=5):
    folder = root / "UTKFace"
    stamp = 20170109150557335
    for ages in ((3, 19), (20, 39), (40, 85)):
        for race in range(4):
            for i in range(per_cell):
                stamp += 1
                _face(folder / f"{ages[i % 2]}_{i % 2}_{race}_{stamp}.jpg.chip.jpg", 96, 96)
    _face(folder / f"30_0_4_{stamp + 1}.jpg.chip.jpg", 96, 96)  # race 4 "Others": dropped
    _face(folder / "39_1_20170116174525125.jpg.chip.jpg", 96, 96)  # a published name without race: skipped
    return root


def test_utkface_name_parsing_and_age_bins():
    assert parse_utkface_name("19_0_1_20170116174525125.jpg.chip.jpg") == (0, 1)
    assert parse_utkface_name("20_1_3_20170116174525125.jpg") == (1, 3)
    assert parse_utkface_name("39_0_0_20170116174525125.jpg.chip.jpg") == (1, 0)
    assert parse_utkface_name("40_0_2_20170116174525125.jpg.chip.jpg") == (2, 2)
    assert parse_utkface_name("30_0_4_20170116174525125.jpg.chip.jpg") is None  # Others
    assert parse_utkface_name("39_1_20170116174525125.jpg.chip.jpg") is None
    assert len(UTK_RACES) == 4


def test_utkface_split_is_stratified_seeded_and_test_balanced(tmp_path):
    root = _utk_tree(tmp_path / "data")
    ds = _build("utkface", root, tmp_path, protocol="companion")  # 20% per cell (fairdd: 100, below)
    assert ds.info.num_classes == 3 and ds.info.num_attributes == 4
    assert ds.train.images.shape[1:] == (3, 64, 64)
    assert ds.info.group_counts["train"] == [[4] * 4] * 3  # 5 per cell, round(0.2 * 5) = 1 to test
    assert ds.info.group_counts["test"] == [[1] * 4] * 3
    assert len(ds.train) + len(ds.test) == 60  # Others and the malformed name are left out
    assert torch.equal(ds.train.aligned, ds.train.attributes == 0)  # equal counts: the first group (White)
    again = _build("utkface", root, tmp_path / "again", protocol="companion")
    assert torch.equal(again.test.images, ds.test.images) and torch.equal(again.train.labels, ds.train.labels)
    chosen = _chosen_test_files(root, 0)  # the images all look alike: compare the files the seed chose
    assert chosen == _chosen_test_files(root, 0) and chosen != _chosen_test_files(root, 1)


def _chosen_test_files(root, seed):
    _, test = faces._read_utkface(UTKFACE, root, make_params(dataset="utkface", seed=seed, protocol="companion"))
    return sorted(p.name for p in test.files)


# --------------------------------------------------------------------------- BFFHQ

def _bffhq_tree(root, base=""):
    folder = root / "bffhq"
    train = folder / base if base else folder
    n = 0
    for sub, target, bias, count in (("align", 0, 0, 10), ("align", 1, 1, 10), ("conflict", 0, 1, 1),
                                     ("conflict", 1, 0, 1)):
        for _ in range(count):
            n += 1
            _face(train / sub / str(target) / f"{n}_{target}_{bias}.png", 128, 128)
    for target, bias, count in ((0, 0, 3), (0, 1, 4), (1, 0, 3), (1, 1, 5)):
        for _ in range(count):
            n += 1
            _face(folder / "test" / f"{n}_{target}_{bias}.png", 128, 128)
    return root


@pytest.mark.parametrize("base", ["", "0.5pct"], ids=["flat", "0.5pct"])
def test_bffhq_targets_groups_aligned_and_balanced_test(tmp_path, base):
    ds = _build("bffhq", _bffhq_tree(tmp_path / "data", base), tmp_path)
    assert ds.info.group_counts["train"] == [[10, 1], [1, 10]]
    assert ds.info.group_counts["test"] == [[3, 3], [3, 3]]
    assert torch.equal(ds.train.aligned, ds.train.labels == ds.train.attributes)
    assert int((~ds.train.aligned).sum()) == 2
    assert ds.test.images.shape == (12, 3, 64, 64)
    assert bool((ds.test.images[:, 1] > 100).all())  # the green face survives the resize


def test_bffhq_name_parsing(tmp_path):
    assert parse_bffhq_name(tmp_path / "12345_1_0.png") == (1, 0)
    with pytest.raises(PaperlibError, match="must end in"):
        parse_bffhq_name(tmp_path / "12345_young.png")


def test_built_face_dataset_is_cached(tmp_path, monkeypatch):
    root = _bffhq_tree(tmp_path / "data")
    first = _build("bffhq", root, tmp_path)
    monkeypatch.setattr(faces, "decode_images", lambda *a, **k: pytest.fail("decoded again"))
    again = _build("bffhq", root, tmp_path)
    assert torch.equal(first.train.images, again.train.images)


def test_describe_works_on_a_fixture(tmp_path, capsys):
    root = _bffhq_tree(tmp_path / "data")
    assert main(["describe", "--set", "dataset=bffhq", "--set", f"data_dir={root}",
                 "--set", f"cache_dir={tmp_path / 'cache'}"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["train"]["n"] == 22 and summary["test"]["aligned_fraction"] == 0.5


# --------------------------------------------------------------------------- missing data

@pytest.mark.parametrize("dataset,mentions", [
    ("celeba", ["celeba/list_attr_celeba.txt", "celeba/list_eval_partition.txt", "celeba/img_align_celeba/",
                "mmlab.ie.cuhk.edu.hk"]),
    ("utkface", ["UTKFace/", "susanqq.github.io/UTKFace"]),
    ("bffhq", ["bffhq/align/", "bffhq/conflict/", "bffhq/test/", "Learning-Debiased-Disentangled"]),
])
def test_missing_face_data_is_one_error_line_with_instructions(dataset, mentions, tmp_path, capsys, cache_entries):
    empty = tmp_path / "data"
    empty.mkdir()
    assert main(["describe", "--set", f"dataset={dataset}", "--set", f"data_dir={empty}",
                 "--set", f"cache_dir={tmp_path / 'cache'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert "cannot be downloaded automatically" in err and "PAPERLIB_DATA" in err and str(empty) in err
    for text in mentions:
        assert text in err
    assert cache_entries(tmp_path / "cache") == []


def test_face_presets_accept_only_their_own_source():
    with pytest.raises(PaperlibError, match="cannot use source 'digits'"):
        make_params(dataset="celeba", source="digits")


def test_utkface_under_fairdd_tests_on_100_images_per_cell_and_trains_on_the_rest(tmp_path):
    folder = tmp_path / "data" / "UTKFace"
    folder.mkdir(parents=True)
    for cell in range(12):  # 103 names per (age bin, race) cell; the split reads names only
        age, race = (10, 30, 50)[cell // 4], cell % 4
        for i in range(103):
            (folder / f"{age}_0_{race}_{20170109150557335 + cell * 1000 + i}.jpg.chip.jpg").touch()
    assert make_params(dataset="utkface").protocol == "fairdd"
    train, test = faces._read_utkface(UTKFACE, tmp_path / "data", make_params(dataset="utkface"))
    assert len(test.files) == 1200 and len(train.files) == 36
    assert np.bincount(test.labels * 4 + test.groups).tolist() == [100] * 12
    _, ours = faces._read_utkface(UTKFACE, tmp_path / "data", make_params(dataset="utkface", protocol="companion"))
    assert len(ours.files) == 12 * round(0.2 * 103)
    # a cell of 60: every cell tests on 60 and trains on the rest, as the official code (it took 100 of the
    # others, and balancing the test split then lost their 40 extra from both splits)
    for i in range(60, 103):
        (folder / f"50_0_3_{20170109150557335 + 11 * 1000 + i}.jpg.chip.jpg").unlink()
    train, test = faces._read_utkface(UTKFACE, tmp_path / "data", make_params(dataset="utkface"))
    assert np.bincount(test.labels * 4 + test.groups).tolist() == [60] * 12
    assert np.bincount(train.labels * 4 + train.groups, minlength=12).tolist() == [43] * 11 + [0]


def test_a_face_preset_registered_under_another_name_reads_its_own_spec(tmp_path):
    """The builder is bound to its spec, not looked up by the preset's name: a copy registered as ``utk2`` asks
    for UTKFace's files (it stopped on KeyError: 'utk2' before reading anything)."""
    from paperlib.core.errors import DataNotFound
    from paperlib.data.presets import PRESETS

    PRESETS.register("utk2", PRESETS["utkface"])
    try:
        (tmp_path / "data").mkdir()
        with pytest.raises(DataNotFound, match="UTKFace"):
            PRESETS["utk2"].build(make_params(dataset="utk2", data_dir=str(tmp_path / "data")))
    finally:
        PRESETS.unregister("utk2")


def test_a_face_dataset_is_found_present_without_decoding_an_image(tmp_path, monkeypatch):
    """make plan built (decoded) every optional face dataset just to list its runs."""
    from paperlib.data import dataset_present

    def present(root):
        return dataset_present(dataset="utkface", data_dir=str(root), cache_dir=str(tmp_path / "cache"))

    monkeypatch.setattr(faces, "decode_images", lambda *a, **k: pytest.fail("decoded to test presence"))
    assert not present(tmp_path / "absent") and not present(tmp_path)  # no root; a root without UTKFace/
    assert present(_utk_tree(tmp_path / "data"))
    (tmp_path / "data" / "UTKFace" / "1_0_0_20170109150557400.jpg.chip.jpg").write_text("x")  # read, not decoded
    assert present(tmp_path / "data")
    monkeypatch.undo()
    _build("bffhq", _bffhq_tree(tmp_path / "b"), tmp_path)  # cached: present without its files
    assert dataset_present(dataset="bffhq", data_dir=str(tmp_path / "absent"), cache_dir=str(tmp_path / "cache"))
