"""FairDD's real-world face datasets, read from their standard on-disk layouts.

==========  ===========  ======================================  ==========================  ===========
preset      classes      protected attribute (groups)            files under the data root   train/test
==========  ===========  ======================================  ==========================  ===========
celeba      Attractive   Male: female, male                      ``celeba/``                 official
            (no, yes)                                                                        partitions
utkface     age <= 19,   race: White, Black, Asian, Indian       ``UTKFace/``                100 test per
            20-39, >= 40 ("Others" dropped)                                                  cell (fairdd);
                                                                                             seeded 20%
                                                                                             (companion)
bffhq       age: young,  gender: female, male                    ``bffhq/``                  align +
            old                                                                              conflict / test
==========  ===========  ======================================  ==========================  ===========

* **CelebA**: ``celeba/list_attr_celeba.txt`` (a count line, a header line of
  the 40 attribute names, then ``name.jpg  1 -1 ...``),
  ``celeba/list_eval_partition.txt`` (``name.jpg 0|1|2``) and the aligned
  images ``celeba/img_align_celeba/*.jpg`` (torchvision's layout). Train is
  partition 0, test partition 2; the validation partition 1 is not used.
* **UTKFace**: the "Aligned & Cropped Faces" archive unpacked into
  ``UTKFace/``, files named ``{age}_{gender}_{race}_{datetime}.jpg[.chip.jpg]``.
  Names that do not parse (a few published files lack a field) are skipped.
  The age bins (<= 19 / 20-39 / >= 40) and the four race groups are our
  choice: the papers only say "age in 3 bins" and "race (4 groups)". UTKFace
  has no official split. ``protocol=fairdd`` (the default, the official FairDD
  code's) tests on the same number of images of every (age bin, race) cell, 100
  or the smallest cell's size if that is less, and trains on the rest;
  ``protocol=companion`` tests on a rounded 20%
  of every cell. Either draw comes from
  ``derive_seed(seed, "dataset", "utkface", "split")``.
* **BFFHQ** (Kim et al., DFA): ``bffhq/align/``, ``bffhq/conflict/`` (train;
  ``bffhq/train/{align,conflict}`` and ``bffhq/0.5pct/{align,conflict}`` are
  accepted too) and ``bffhq/test/``, searched recursively, files named
  ``..._{target}_{bias}.png``: target age 0 young / 1 old, bias gender 0 female /
  1 male (the aligned pairs are young women and old men, as DFA describes).

Every image is centre-cropped to its largest square and resized to 64 x 64
(Pillow, bilinear with antialiasing; JPEGs are decoded at reduced DCT scale
when that still leaves at least 64 px). Test splits are subsampled to the
same number of images in every (class, group) cell, drawn from
``derive_seed(seed, "dataset", <preset>, "test")``.

**Aligned** samples: for BFFHQ those whose target equals their bias label (the
``align`` folder); for CelebA and UTKFace, where the bias is observational,
those in the majority group of their class *in the training split*, computed
from the data (expected: CelebA attractive -> female, not attractive -> male;
UTKFace White for every bin). The test split uses the same per-class majority
group.

None of these can be downloaded automatically; a missing dataset raises a
one-line error that says where to get it and where to put which files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from paperlib.core.keys import derive_seed, key_values
from paperlib.core.params import Params
from paperlib.data.container import (BiasedDataset, Split, assemble, cell_counts, cell_ids, rank_within_cells,
                                     take_per_cell)
from paperlib.data.protocols import PROTOCOLS
from paperlib.data.sources import DATA_ENV_VAR, resolve_data_root
from paperlib.core.errors import DataNotFound, PaperlibError
from paperlib.core.runtime import generator, progress

FACE_SIZE = 64
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

UTK_AGE_EDGES = (20, 40)  # class 0: age <= 19, 1: 20..39, 2: >= 40 (our choice; the papers say "3 bins")
UTK_RACES = ("White", "Black", "Asian", "Indian")  # UTKFace race codes 0..3; code 4 "Others" is dropped
UTK_TEST_FRACTION = 0.2  # protocol=companion: per (class, race) cell, before the balanced test subsampling
_UTK_NAME = re.compile(r"^(\d+)_([01])_([0-4])_[^_]*\.(?:jpe?g|png)$", re.IGNORECASE)

_DECODE_WORKERS = 8
_DECODE_CHUNK = 256  # images per thread task


@dataclass(frozen=True)
class FaceTable:
    """One split as its annotations describe it, before any image is decoded."""

    files: list[Path]
    labels: np.ndarray  # int64 class per file
    groups: np.ndarray  # int64 protected group per file

    def subset(self, index: np.ndarray) -> FaceTable:
        """The rows ``index`` (an integer array), in its order."""
        return FaceTable([self.files[i] for i in index], self.labels[index], self.groups[index])


# reads the train and test tables of the dataset a FaceSpec describes (the spec itself, for its messages)
Reader = Callable[["FaceSpec", Path, Params], tuple[FaceTable, FaceTable]]


@dataclass(frozen=True)
class FaceSpec:
    """How one face dataset is found, read and described."""

    title: str
    class_names: tuple[str, ...]
    group_names: tuple[str, ...]
    attribute_kind: str
    layout: str  # the expected files, for messages
    where: str  # where to get them, for messages
    read: Reader
    aligned_when_equal: bool  # True: aligned = (label == group); False: the class's majority group in train
    protocols: tuple[str, ...] = ("companion",)  # the ways it can be split (paperlib.data.protocols), default first
    version: int = 1  # the preset's version: bump it when what ``read`` returns changes (a new cache key)


# --------------------------------------------------------------------------- errors


def _not_found(spec: FaceSpec, root: Path, missing: list[str] | None = None) -> DataNotFound:
    problem = (f"not found under {root}: missing {', '.join(missing)}" if missing
               else f"not found: the data root {root} does not exist")
    return DataNotFound(
        f"{spec.title} {problem}. It cannot be downloaded automatically: get it from {spec.where}, put it under "
        f"the data root as {spec.layout}, and point {DATA_ENV_VAR} or data_dir at that root"
    )


def _corrupt(path: Path, problem: str) -> PaperlibError:
    return PaperlibError(f"{path} is not a valid annotation file ({problem}); re-copy it from the original archive")


def _check_paths(spec: FaceSpec, root: Path, paths: dict[str, Path]) -> None:
    missing = [shown for shown, path in paths.items() if not path.exists()]
    if missing:
        raise _not_found(spec, root, missing)


def _check_images_exist(directory: Path, names: list[str], what: str) -> None:
    present = set(os.listdir(directory))
    absent = [name for name in names if name not in present]
    if absent:
        raise PaperlibError(
            f"{len(absent)} images listed in {what} are missing from {directory} (e.g. {absent[0]}); "
            f"re-extract the image archive there"
        )


# --------------------------------------------------------------------------- CelebA

CELEBA_TARGET, CELEBA_GROUP = "Attractive", "Male"
_CELEBA_TRAIN, _CELEBA_TEST = 0, 2  # list_eval_partition: 0 train, 1 validation (unused), 2 test


def _celeba_flag(token: str, path: Path, line: int) -> int:
    if token == "1":
        return 1
    if token in ("-1", "0"):
        return 0
    raise _corrupt(path, f"line {line}: attribute value {token!r}, expected 1 or -1")


def parse_celeba_attributes(path: Path, wanted: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """File names and the 0/1 values of the ``wanted`` attributes from ``list_attr_celeba.txt``."""
    lines = path.read_text().splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise _corrupt(path, "the first line must be the number of images")
    count, header = int(lines[0]), lines[1].split()
    columns = []
    for name in wanted:
        if name not in header:
            raise _corrupt(path, f"no {name!r} in the attribute header line")
        columns.append(header.index(name) + 1)  # + 1: rows start with the file name
    rows = [line.split() for line in lines[2:] if line.strip()]
    if len(rows) != count:
        raise _corrupt(path, f"the first line says {count} images but {len(rows)} are listed")
    names, values = [], np.empty((count, len(wanted)), dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row) != len(header) + 1:
            raise _corrupt(path, f"line {i + 3} has {len(row) - 1} values for {len(header)} attributes")
        names.append(row[0])
        values[i] = [_celeba_flag(row[c], path, i + 3) for c in columns]
    return names, values


def parse_celeba_partition(path: Path) -> dict[str, int]:
    """File name -> partition (0 train, 1 validation, 2 test) from ``list_eval_partition.txt``."""
    partition = {}
    for i, line in enumerate(path.read_text().splitlines()):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise _corrupt(path, f"line {i + 1} is {line!r}, expected 'name.jpg 0|1|2'")
        partition[parts[0]] = int(parts[1])
    return partition


def _read_celeba(spec: FaceSpec, root: Path, params: Params) -> tuple[FaceTable, FaceTable]:
    folder = root / "celeba"
    attr_path, part_path, image_dir = (folder / "list_attr_celeba.txt", folder / "list_eval_partition.txt",
                                       folder / "img_align_celeba")
    _check_paths(spec, root, {"celeba/list_attr_celeba.txt": attr_path,
                              "celeba/list_eval_partition.txt": part_path,
                              "celeba/img_align_celeba/": image_dir})
    names, values = parse_celeba_attributes(attr_path, (CELEBA_TARGET, CELEBA_GROUP))
    partition = parse_celeba_partition(part_path)
    unlisted = [name for name in names if name not in partition]
    if unlisted:
        raise _corrupt(part_path, f"{len(unlisted)} images of list_attr_celeba.txt are not listed, e.g. {unlisted[0]}")
    which = np.array([partition[name] for name in names])
    used = [name for name, p in zip(names, which) if p in (_CELEBA_TRAIN, _CELEBA_TEST)]
    _check_images_exist(image_dir, used, "list_attr_celeba.txt")

    def table(part: int) -> FaceTable:
        index = np.flatnonzero(which == part)
        return FaceTable([image_dir / names[i] for i in index], values[index, 0], values[index, 1])

    return table(_CELEBA_TRAIN), table(_CELEBA_TEST)


# --------------------------------------------------------------------------- UTKFace


def parse_utkface_name(name: str) -> tuple[int, int] | None:
    """``(age class, race group)`` from a UTKFace file name, or ``None`` (unparsable, or race "Others")."""
    match = _UTK_NAME.match(name)
    if match is None:
        return None
    age, race = int(match.group(1)), int(match.group(3))
    if race >= len(UTK_RACES):
        return None
    return int(np.digitize(age, UTK_AGE_EDGES)), race


def _read_utkface(spec: FaceSpec, root: Path, params: Params) -> tuple[FaceTable, FaceTable]:
    folder = root / "UTKFace"
    _check_paths(spec, root, {"UTKFace/": folder})
    files, labels, groups = [], [], []
    for name in sorted(os.listdir(folder)):  # sorted: listdir order differs between file systems
        parsed = parse_utkface_name(name)
        if parsed is not None:
            files.append(folder / name)
            labels.append(parsed[0])
            groups.append(parsed[1])
    if not files:
        raise _not_found(spec, root, ["UTKFace/{age}_{gender}_{race}_{datetime}.jpg.chip.jpg images"])
    everything = FaceTable(files, np.array(labels, dtype=np.int64), np.array(groups, dtype=np.int64))
    cells = cell_ids(torch.from_numpy(everything.labels), torch.from_numpy(everything.groups), len(UTK_RACES))
    order, rank = rank_within_cells(cells, generator(derive_seed(params.seed, "dataset", "utkface", "split")))
    sizes = torch.bincount(cells)
    per_cell = PROTOCOLS[params.protocol].test_per_cell  # validated params: the preset filled the protocol in
    if per_cell is not None:  # FairDD: one number of test images in every (age bin, race) cell, the rest train
        # as the official code: 100, or the smallest cell's size (it clamped each cell alone, and the test split's
        # balancing then dropped the other cells' surplus from both splits)
        n_test = torch.full_like(sizes, min(per_cell, int(sizes.min())))
    else:
        n_test = torch.round(sizes.double() * UTK_TEST_FRACTION).long()
    is_test = torch.zeros(len(files), dtype=torch.bool)
    is_test[order[rank < n_test[cells[order]]]] = True
    return (everything.subset(np.flatnonzero(~is_test.numpy())),
            everything.subset(np.flatnonzero(is_test.numpy())))


# --------------------------------------------------------------------------- BFFHQ

_BFFHQ_TRAIN_BASES = ("", "train", "0.5pct")  # bffhq/align, bffhq/train/align, bffhq/0.5pct/align


def parse_bffhq_name(path: Path) -> tuple[int, int]:
    """``(target, bias)`` from a BFFHQ file name ``..._{target}_{bias}.png``."""
    parts = path.stem.split("_")
    if len(parts) < 3 or parts[-2] not in ("0", "1") or parts[-1] not in ("0", "1"):
        raise PaperlibError(f"{path}: a BFFHQ image name must end in _{{age 0|1}}_{{gender 0|1}}; "
                            f"re-extract the original archive")
    return int(parts[-2]), int(parts[-1])


def _bffhq_table(folders: list[Path]) -> FaceTable:
    files = sorted(p for folder in folders for p in folder.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    parsed = np.array([parse_bffhq_name(p) for p in files], dtype=np.int64).reshape(-1, 2)
    return FaceTable(files, parsed[:, 0], parsed[:, 1])


def _read_bffhq(spec: FaceSpec, root: Path, params: Params) -> tuple[FaceTable, FaceTable]:
    folder = root / "bffhq"
    base = next((folder / b for b in _BFFHQ_TRAIN_BASES
                 if (folder / b / "align").is_dir() and (folder / b / "conflict").is_dir()), folder)
    _check_paths(spec, root, {"bffhq/align/": base / "align", "bffhq/conflict/": base / "conflict",
                              "bffhq/test/": folder / "test"})
    train, test = _bffhq_table([base / "align", base / "conflict"]), _bffhq_table([folder / "test"])
    for name, split in (("align + conflict", train), ("test", test)):
        if not split.files:
            raise _not_found(spec, root, [f"the {name} images (none found)"])
    return train, test


# --------------------------------------------------------------------------- registry

FACE_DATASETS: dict[str, FaceSpec] = {
    "celeba": FaceSpec(
        "CelebA", ("not attractive", "attractive"), ("female", "male"), "gender",
        "celeba/list_attr_celeba.txt, celeba/list_eval_partition.txt and celeba/img_align_celeba/*.jpg "
        "(unzip img_align_celeba.zip into celeba/)",
        "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html ('Align&Cropped Images' img_align_celeba.zip, "
        "Anno/list_attr_celeba.txt, Eval/list_eval_partition.txt)",
        _read_celeba, aligned_when_equal=False),
    "utkface": FaceSpec(
        "UTKFace", ("age <= 19", "age 20-39", "age >= 40"), UTK_RACES, "race",
        "UTKFace/{age}_{gender}_{race}_{datetime}.jpg.chip.jpg (unpack UTKFace.tar.gz into the data root)",
        "https://susanqq.github.io/UTKFace/ ('Aligned&Cropped Faces', UTKFace.tar.gz)",
        _read_utkface, aligned_when_equal=False, protocols=("fairdd", "companion"), version=2),
    "bffhq": FaceSpec(
        "BFFHQ", ("young", "old"), ("female", "male"), "gender",
        "bffhq/align/, bffhq/conflict/ (or the archive's bffhq/0.5pct/align/ and bffhq/0.5pct/conflict/) and "
        "bffhq/test/, holding images named *_{age 0|1}_{gender 0|1}.png (subfolders allowed)",
        "the Google Drive link in the README of https://github.com/kakaoenterprise/Learning-Debiased-Disentangled "
        "(bffhq.tar.gz)",
        _read_bffhq, aligned_when_equal=True),
}


# --------------------------------------------------------------------------- images


def load_face_image(path: Path, size: int = FACE_SIZE) -> np.ndarray:
    """One image as uint8 ``[3, size, size]``: centre-cropped to a square and resized (bilinear, antialiased)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at the smallest DCT scale that keeps >= size px
            img = img.convert("RGB")
            w, h = img.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            img = img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
            return np.asarray(img).transpose(2, 0, 1)
    except (OSError, ValueError, SyntaxError) as exc:
        raise PaperlibError(f"{path} cannot be read as an image ({type(exc).__name__}: {exc}); "
                            f"re-extract it from the original archive") from None


def decode_images(files: list[Path], size: int = FACE_SIZE, show_progress: bool = True,
                  desc: str = "decode") -> Tensor:
    """uint8 ``[N, 3, size, size]`` for ``files``, decoded in chunks by a few threads (Pillow releases the GIL)."""
    out = np.empty((len(files), 3, size, size), dtype=np.uint8)
    starts = range(0, len(files), _DECODE_CHUNK)

    def work(start: int) -> int:
        for i in range(start, min(start + _DECODE_CHUNK, len(files))):
            out[i] = load_face_image(files[i], size)
        return min(_DECODE_CHUNK, len(files) - start)

    workers = max(1, min(_DECODE_WORKERS, os.cpu_count() or 1, len(starts)))
    bar = progress(None, total=len(files), desc=desc, enabled=show_progress)
    with ThreadPoolExecutor(workers) as pool:
        for done in pool.map(work, starts):
            bar.update(done)
    bar.close()
    return torch.from_numpy(out)


# --------------------------------------------------------------------------- building


def balanced_test_index(table: FaceTable, num_classes: int, num_groups: int, gen: torch.Generator,
                        where: str) -> np.ndarray:
    """Sorted indices of the same number of random samples in every (class, group) cell: the smallest cell's size."""
    cells = cell_ids(torch.from_numpy(table.labels), torch.from_numpy(table.groups), num_groups)
    sizes = torch.bincount(cells, minlength=num_classes * num_groups)
    if int(sizes.min()) == 0:
        empty = int(torch.argmin(sizes))
        raise PaperlibError(f"{where}: the test split has no image of class {empty // num_groups} in group "
                            f"{empty % num_groups}, so it cannot be balanced; check that the data is complete")
    quota = torch.full((num_classes * num_groups,), int(sizes.min()), dtype=torch.long)
    return np.sort(take_per_cell(cells, quota, gen).numpy())


def _channel_stats(images: Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and (unbiased) std in [0, 1], in chunks (CelebA's train split is 2 GB as uint8)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for part in images.split(chunk):
        x = part.double().div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    var = (squares - count * mean.square()) / max(1, count - 1)
    return mean.tolist(), var.clamp_min(0).sqrt().clamp_min(1e-3).tolist()


def face_files_present(spec: FaceSpec, params: Params) -> bool:
    """Whether the files of the face dataset ``spec`` are under the data root: its annotations are read and its
    image files looked for, none decoded. A file present but unreadable is still an error."""
    root = resolve_data_root(params.data_dir)
    if not root.is_dir():
        return False
    try:
        spec.read(spec, root, params)
    except DataNotFound:
        return False
    return True


def build_face_dataset(spec: FaceSpec, params: Params) -> BiasedDataset:
    """Read, balance the test split, decode at 64 px and describe the face dataset ``spec`` (registered as the
    preset ``params.dataset``)."""
    root = resolve_data_root(params.data_dir)
    if not root.is_dir():
        raise _not_found(spec, root)
    train_table, test_table = spec.read(spec, root, params)
    k, a = len(spec.class_names), len(spec.group_names)
    gen = generator(derive_seed(params.seed, "dataset", params.dataset, "test"))
    test_table = test_table.subset(balanced_test_index(test_table, k, a, gen, spec.title))
    splits = []
    for name, table in (("train", train_table), ("test", test_table)):
        images = decode_images(table.files, FACE_SIZE, params.progress, desc=f"{spec.title} {name}")
        splits.append((images, torch.from_numpy(table.labels), torch.from_numpy(table.groups)))
    train_counts = cell_counts(cell_ids(splits[0][1], splits[0][2], a), k, a)
    majority = train_counts.argmax(1)  # ties: the lower group index
    built = []
    for images, labels, groups in splits:
        aligned = labels == groups if spec.aligned_when_equal else groups == majority[labels]
        built.append(Split(images, labels, groups, aligned))
    train, test = built
    return assemble(train, test, params.dataset, key_values(params, "dataset"), k, a, spec.attribute_kind,
                    list(spec.group_names), [], *_channel_stats(train.images))
