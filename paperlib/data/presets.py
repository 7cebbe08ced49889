"""Dataset presets, named as the papers name them, and the cached builder.

============  ===============  ====================================================
preset        default source   bias / protected attribute
============  ===============  ====================================================
mnist         mnist            none (plain, unbiased; sanity runs and benchmarks)
fashion_mnist fashion_mnist    none
cmnist        mnist            digit colour with noise (Learning from Failure);
                               ``conflict_ratio``, ``severity``
cmnist_fg     mnist            FairDD C-MNIST (FG): digit colour; ``majority_ratio``
cmnist_bg     mnist            FairDD C-MNIST (BG): background colour
cfmnist_fg    fashion_mnist    FairDD C-FMNIST (FG): intensity x colour
cfmnist_bg    fashion_mnist    FairDD C-FMNIST (BG): background colour
bg_fmnist     fashion_mnist    paper A's BG-FMNIST (construction unknown; ours:
                               ten coloured stripe textures behind the object);
                               ``conflict_ratio``
celeba        celeba           FairDD CelebA: Attractive, protected attribute Male
utkface       utkface          FairDD UTKFace: age in 3 bins, race (4 groups)
bffhq         bffhq            BFFHQ: age, gender; 0.5% conflicting (fixed by the data)
corrupted_    cifar10          paper A's Corrupted CIFAR-10: class c tied to
cifar10                        corruption type c of :data:`corruptions.CORRUPTIONS`
                               (noises, blurs, fog, frost, digital); ``conflict_ratio``,
                               ``severity`` (1..5, the corruption strength); also
                               builds on mnist / fashion_mnist / digits
cifar10_s     cifar10          FairDD CIFAR10-S: grayscale (0) vs colour (1); classes
                               0-4 mostly gray, 5-9 mostly colour; ``majority_ratio``;
                               test = every test image twice (gray and colour)
============  ===============  ====================================================

CIFAR-10 cannot be downloaded on the CPU development machines, so the
corruption-bias finding is demonstrated there on
``corrupted_cifar10`` with ``source=fashion_mnist`` (or ``mnist``): the
grayscale images are repeated to three channels before they are corrupted, and
the dataset key, ``describe`` output and every record name the source, so a
result on that source is labelled as Corrupted Fashion-MNIST, not CIFAR-10.

Every MNIST-family preset accepts ``source=digits`` (scikit-learn's bundled
digits at 28 px), the hermetic source for tests and the smoke profile.
The face presets (64 px, read from their own files only) are built by
:mod:`paperlib.data.faces`.
Training splits carry the bias; test splits are balanced over
(class, attribute) groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from paperlib.config import Params, derive_seed, stable_hash, with_overrides
from paperlib.data import bias, corruptions
from paperlib.data.container import BiasedDataset, DatasetInfo, Split
from paperlib.data.faces import FACES_VERSION, build_face_dataset
from paperlib.data.sources import load_source
from paperlib.errors import PaperlibError
from paperlib.store import cache_root, load_tensors, report_rebuild, save_tensors

# Bump when a builder's output changes, so stale cached datasets are not reused.
BUILDER_VERSION = 1

MNIST_FAMILY = ("mnist", "fashion_mnist", "digits")
NUM_CLASSES = 10
# Enter the dataset keys of corrupted_cifar10 / cifar10_s only: bump when their output changes.
CORRUPTED_VERSION = 1
CIFAR10S_VERSION = 1
CIFAR10S_GROUPS = ("grayscale", "colour")  # FairDD's CIFAR10-S protected attribute, 0 and 1

Renderer = Callable[[Tensor, Tensor, Params, torch.Generator], Tensor]


@dataclass(frozen=True)
class Preset:
    """How one named dataset is made from a grayscale source."""

    default_source: str
    attribute_kind: str  # "none", "colour", "background"
    ratio_param: str | None  # which parameter sets the training bias
    render: Renderer | None  # None: keep the grayscale images, no attribute
    palette: tuple[tuple[float, float, float], ...] = ()
    uses_severity: bool = False
    sources: tuple[str, ...] = MNIST_FAMILY
    # A preset with its own builder (params, dataset key) -> dataset; render etc. are then unused.
    build: Callable[[Params, dict], BiasedDataset] | None = None
    version: int = 0  # when set, enters this preset's dataset key (BUILDER_VERSION stays as it is)
    attribute_names: tuple[str, ...] = ()  # () -> "<attribute_kind> <a>"


def _lff(gray: Tensor, attrs: Tensor, params: Params, gen: torch.Generator) -> Tensor:
    return bias.colour_noise_digits(gray, attrs, params.severity, gen)


def _fg_binary(gray: Tensor, attrs: Tensor, params: Params, gen: torch.Generator) -> Tensor:
    return bias.colour_foreground(gray, attrs, binarize=True)


def _fg_shaded(gray: Tensor, attrs: Tensor, params: Params, gen: torch.Generator) -> Tensor:
    return bias.colour_foreground(gray, attrs, binarize=False)


def _bg_colour(gray: Tensor, attrs: Tensor, params: Params, gen: torch.Generator) -> Tensor:
    return bias.colour_background(gray, attrs)


def _bg_texture(gray: Tensor, attrs: Tensor, params: Params, gen: torch.Generator) -> Tensor:
    backgrounds = bias.textured_backgrounds(attrs, gray.shape[-1], gen)
    return bias.composite_on_background(gray, backgrounds)


def _corrupted(images: Tensor, attrs: Tensor, params: Params, gen: torch.Generator) -> Tensor:
    # Grayscale sources ([N, 1, H, W]) are repeated to three channels inside corrupt().
    return corruptions.corrupt_by_attribute(images, attrs, params.severity, gen)


def _build_cifar10_s(params: Params, key: dict) -> BiasedDataset:
    """FairDD's CIFAR10-S: the protected attribute is grayscale (0) or colour (1).

    Train: in classes 0-4 exactly ``round(majority_ratio * n_c)`` random images are gray
    and the rest keep their colour; classes 5-9 the reverse (4500 / 500 per class at 0.9).
    Aligned = in the class's majority group. Test: every test image twice, gray and in
    colour, so each (class, group) cell holds the whole test class.
    """
    train_raw = load_source("cifar10", "train", params.data_dir)
    test_raw = load_source("cifar10", "test", params.data_dir)
    gen = torch.Generator().manual_seed(derive_seed(params.seed, "dataset", params.dataset, "train"))
    labels = train_raw.labels
    majority = (labels >= NUM_CLASSES // 2).long()  # 0 (gray) for classes 0-4, 1 (colour) for 5-9
    _, aligned = bias.assign_attributes(labels, params.majority_ratio, NUM_CLASSES, gen)
    attrs = torch.where(aligned, majority, 1 - majority)
    gray = (attrs == 0)[:, None, None, None]
    train = Split(torch.where(gray, bias.grayscale(train_raw.images), train_raw.images), labels, attrs, aligned)
    test_labels = test_raw.labels.repeat(2)
    test_attrs = torch.arange(2).repeat_interleave(len(test_raw.labels))
    test = Split(torch.cat([bias.grayscale(test_raw.images), test_raw.images]), test_labels, test_attrs,
                 test_attrs == (test_labels >= NUM_CLASSES // 2).long())
    mean, std = _channel_stats(train.images)
    info = DatasetInfo(preset=params.dataset, params=key, num_classes=NUM_CLASSES, num_attributes=2,
                       attribute_kind="grayscale", attribute_names=list(CIFAR10S_GROUPS), palette=[],
                       mean=mean, std=std)
    info.group_counts = {name: split.group_counts(NUM_CLASSES, 2).tolist() for name, split in
                         (("train", train), ("test", test))}
    return BiasedDataset(train, test, info)


PRESETS: dict[str, Preset] = {
    "mnist": Preset("mnist", "none", None, None),
    "fashion_mnist": Preset("fashion_mnist", "none", None, None),
    "cmnist": Preset("mnist", "colour", "conflict_ratio", _lff, bias.LFF_COLOURS, uses_severity=True),
    "cmnist_fg": Preset("mnist", "colour", "majority_ratio", _fg_binary, bias.DISTINCT_COLOURS),
    "cmnist_bg": Preset("mnist", "background", "majority_ratio", _bg_colour, bias.DISTINCT_COLOURS),
    "cfmnist_fg": Preset("fashion_mnist", "colour", "majority_ratio", _fg_shaded, bias.DISTINCT_COLOURS),
    "cfmnist_bg": Preset("fashion_mnist", "background", "majority_ratio", _bg_colour, bias.DISTINCT_COLOURS),
    "bg_fmnist": Preset("fashion_mnist", "background", "conflict_ratio", _bg_texture, bias.DISTINCT_COLOURS),
    "celeba": Preset("celeba", "gender", None, None, sources=("celeba",), build=build_face_dataset,
                     version=FACES_VERSION),
    "utkface": Preset("utkface", "race", None, None, sources=("utkface",), build=build_face_dataset,
                      version=FACES_VERSION),
    "bffhq": Preset("bffhq", "gender", None, None, sources=("bffhq",), build=build_face_dataset,
                    version=FACES_VERSION),
    "corrupted_cifar10": Preset("cifar10", "corruption", "conflict_ratio", _corrupted, uses_severity=True,
                                sources=("cifar10", *MNIST_FAMILY), version=CORRUPTED_VERSION,
                                attribute_names=corruptions.CORRUPTIONS),
    "cifar10_s": Preset("cifar10", "grayscale", "majority_ratio", None, sources=("cifar10",),
                        build=_build_cifar10_s, version=CIFAR10S_VERSION,
                        attribute_names=CIFAR10S_GROUPS),
}


def check_source(dataset: str, source: str | None) -> None:
    """Raise a clear error when ``source`` cannot feed preset ``dataset``."""
    preset = PRESETS[dataset]
    if source is not None and source not in preset.sources:
        raise PaperlibError(
            f"dataset {dataset!r} cannot use source {source!r}; choose one of: {', '.join(preset.sources)}"
        )


def dataset_key(params: Params) -> dict:
    """The parameters that define a dataset (and nothing else), normalised."""
    preset = PRESETS[params.dataset]
    key = {
        "dataset": params.dataset,
        "source": params.source or preset.default_source,
        "seed": params.seed,
        "builder_version": BUILDER_VERSION,
    }
    if preset.ratio_param:
        key[preset.ratio_param] = getattr(params, preset.ratio_param)
    if preset.uses_severity:
        key["severity"] = params.severity
    if preset.version:
        key["version"] = preset.version
    return key


def _aligned_fraction(preset: Preset, params: Params) -> float:
    if preset.ratio_param == "conflict_ratio":
        return 1.0 - params.conflict_ratio
    return params.majority_ratio


def _make_split(preset: Preset, params: Params, source: str, split: str) -> Split:
    raw = load_source(source, split, params.data_dir)
    labels = raw.labels.long()
    if preset.render is None:
        zeros = torch.zeros_like(labels)
        return Split(raw.images, labels, zeros, torch.ones_like(labels, dtype=torch.bool))
    gen = torch.Generator().manual_seed(derive_seed(params.seed, "dataset", params.dataset, split))
    fraction = _aligned_fraction(preset, params) if split == "train" else 1.0 / NUM_CLASSES
    attrs, aligned = bias.assign_attributes(labels, fraction, NUM_CLASSES, gen)
    gray = raw.images.float().div_(255.0)
    coloured = preset.render(gray, attrs, params, gen)
    images = coloured.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return Split(images, labels, attrs, aligned)


def _channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    x = images.float().div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def _build(params: Params) -> BiasedDataset:
    preset = PRESETS[params.dataset]
    if preset.build is not None:
        return preset.build(params, dataset_key(params))
    source = params.source or preset.default_source
    train = _make_split(preset, params, source, "train")
    test = _make_split(preset, params, source, "test")
    num_attr = 1 if preset.render is None else NUM_CLASSES
    mean, std = _channel_stats(train.images)
    info = DatasetInfo(
        preset=params.dataset,
        params=dataset_key(params),
        num_classes=NUM_CLASSES,
        num_attributes=num_attr,
        attribute_kind=preset.attribute_kind,
        attribute_names=list(preset.attribute_names) or [f"{preset.attribute_kind} {a}" for a in range(num_attr)],
        palette=[list(c) for c in preset.palette],
        mean=mean,
        std=std,
    )
    info.group_counts = {
        name: split.group_counts(NUM_CLASSES, num_attr).tolist() for name, split in (("train", train), ("test", test))
    }
    return BiasedDataset(train, test, info)


def _to_payload(ds: BiasedDataset) -> dict:
    return {
        "train": ds.train.tensors(),
        "test": ds.test.tensors(),
        "info": ds.info.__dict__,
    }


def _from_payload(payload: dict) -> BiasedDataset:
    return BiasedDataset(Split(**payload["train"]), Split(**payload["test"]), DatasetInfo(**payload["info"]))


def build_dataset(params: Params | None = None, **overrides) -> BiasedDataset:
    """Build (or load from the cache) the dataset ``params`` describe.

    Accepts a :class:`Params` or keyword overrides, e.g.
    ``build_dataset(dataset="cmnist", conflict_ratio=0.01, source="digits")``.
    The cache file is keyed by :func:`dataset_key` and written atomically.
    """
    params = with_overrides(params, overrides)
    key = dataset_key(params)
    path = cache_root(params.cache_dir) / "datasets" / f"{params.dataset}-{stable_hash(key)}.pt"
    payload = load_tensors(path, rebuild=True)  # a dataset takes seconds to rebuild
    if payload is not None:
        try:
            return _from_payload(payload)
        except (KeyError, TypeError) as err:  # an entry from an incompatible version
            report_rebuild(path, err)
    dataset = _build(params)
    save_tensors(path, _to_payload(dataset))
    return dataset
