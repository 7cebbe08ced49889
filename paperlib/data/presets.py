"""Dataset presets, named as the papers name them, and the cached builder.

============  ===============  ====================================================
preset        default source   bias / protected attribute
============  ===============  ====================================================
mnist         mnist            none (plain, unbiased; sanity runs and benchmarks)
fashion_mnist fashion_mnist    none
cmnist        mnist            digit colour with noise (Learning from Failure);
                               ``conflict_ratio``, ``severity``
cmnist_fg     mnist            FairDD C-MNIST (FG): digit colour; ``majority_ratio``,
                               ``protocol`` (fairdd: the official code's images, 32 px;
                               companion: ours, 28 px; see :mod:`paperlib.data.protocols`)
cmnist_bg     mnist            FairDD C-MNIST (BG): background colour
cfmnist_fg    fashion_mnist    FairDD C-FMNIST (FG): intensity x colour
cfmnist_bg    fashion_mnist    FairDD C-FMNIST (BG): background colour (fairdd: as coded,
                               the object garbled by a uint8 wrap-around)
bg_fmnist     fashion_mnist    paper A's BG-FMNIST (construction unknown; ours:
                               ten coloured stripe textures behind the object);
                               ``conflict_ratio``
celeba        celeba           FairDD CelebA: Attractive, protected attribute Male
utkface       utkface          FairDD UTKFace: age in 3 bins, race (4 groups); ``protocol``
                               (fairdd: 100 test images per cell; companion: 20%)
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

import functools
import stat
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from paperlib.core.errors import PaperlibError
from paperlib.core.keys import cache_key, derive_seed, key_values
from paperlib.core.params import Params, default_of, with_overrides
from paperlib.core.registry import Registry
from paperlib.core.runtime import generator
from paperlib.core.store import cache_root, entry_lock, load_tensors, refuse_folder, report_rebuild, save_tensors
from paperlib.data import bias, corruptions
from paperlib.data.container import BiasedDataset, DatasetInfo, Split, assemble, channel_stats
from paperlib.data.faces import FACE_DATASETS, build_face_dataset, face_files_present
from paperlib.data.protocols import PROTOCOLS, Protocol
from paperlib.data.sources import SOURCES, load_source, source_present

MNIST_FAMILY = ("mnist", "fashion_mnist", "digits")
NUM_CLASSES = 10
CIFAR10S_GROUPS = ("grayscale", "colour")  # FairDD's CIFAR10-S protected attribute, 0 and 1
# The normalisation FairDD's code gives CIFAR10-S (data_handler/cifar10.py, CIFAR_10s): fixed, at every ratio
CIFAR10S_MEAN = [0.4890520609319886, 0.48451061542917323, 0.46714946730198426]
CIFAR10S_STD = [0.24278049202200438, 0.24082296066838135, 0.25098309397306334]

Renderer = Callable[[Tensor, Tensor, Params, torch.Generator], Tensor]


# The parameters that set a preset's training bias: the share of bias-conflicting samples, or of the majority group.
BIAS_RATIO_NAMES = ("conflict_ratio", "majority_ratio")
# The dataset parameters a preset reads only when it lists them in its ``uses``: set on one that does not, they
# would be ignored without a word while the run's record shows them.
DATASET_KNOBS = (*BIAS_RATIO_NAMES, "severity")


def bias_ratio_name(dataset: str) -> str | None:
    """The parameter that sets the training bias of preset ``dataset`` (``None``: the data fixes it)."""
    return next((name for name in BIAS_RATIO_NAMES if name in PRESETS[dataset].uses), None)


@dataclass(frozen=True)
class Preset:
    """A named dataset: which sources it accepts, which parameters shape it, how it is built.

    ``uses`` names the parameters besides ``source`` and ``seed`` that change the built dataset (they enter
    its cache key); bump ``version`` when the builder's output changes. Subclasses implement :meth:`build`.
    """

    default_source: str
    attribute_kind: str  # "none", "colour", "background", "gender", ...
    sources: tuple[str, ...] = MNIST_FAMILY
    uses: tuple[str, ...] = ()
    version: int = 1
    protocols: tuple[str, ...] = ("companion",)  # the ways it can be built (paperlib.data.protocols), default first

    def check(self, params: Params) -> None:
        """Raise a clear error when ``params.source`` cannot feed this preset, it has no ``params.protocol``, or
        one of :data:`DATASET_KNOBS` it does not read is set (away from its default)."""
        if params.source is not None and params.source not in self.sources:
            raise PaperlibError(f"dataset {params.dataset!r} cannot use source {params.source!r}; "
                                f"choose one of: {', '.join(self.sources)}")
        if params.protocol and params.protocol not in self.protocols:
            accepting = [name for name, preset in PRESETS.items() if params.protocol in preset.protocols]
            raise PaperlibError(f"dataset {params.dataset!r} is built by protocol {' or '.join(self.protocols)} only; "
                                f"protocol {params.protocol!r} applies to {', '.join(accepting) or 'no dataset'}")
        for name in DATASET_KNOBS:
            value = getattr(params, name)
            if name not in self.uses and value != default_of(name):
                hint = ""
                if name in BIAS_RATIO_NAMES:
                    own = bias_ratio_name(params.dataset)
                    hint = f"its bias is set by {own}; " if own else "its data fixes its bias; "
                raise PaperlibError(f"dataset {params.dataset!r} does not read {name} (given {value}): {hint}"
                                    f"drop {name}")

    def defaults(self, params: Params) -> dict[str, Any]:
        """What an empty ``source`` and ``protocol`` mean for this preset: its default source, its first
        protocol."""
        changes: dict[str, Any] = {} if params.source is not None else {"source": self.default_source}
        if not params.protocol:
            changes["protocol"] = self.protocols[0]
        return changes

    def build(self, params: Params) -> BiasedDataset:
        """The biased dataset of ``params`` (validated, so ``source`` and ``protocol`` are filled in); uncached:
        :func:`build_dataset` caches it."""
        raise NotImplementedError

    def files_present(self, params: Params) -> bool:
        """Whether the files :meth:`build` reads are on this machine, checked without building or downloading."""
        return source_present(params.source, params.data_dir)


@dataclass(frozen=True)
class RenderedPreset(Preset):
    """A grayscale source rendered with a bias: in the training split, exactly round(aligned fraction x class
    size) images of each class c, drawn at random, get attribute c (aligned fraction ``1 - conflict_ratio``, or
    ``majority_ratio``) and the rest are spread evenly over the other attributes
    (:func:`paperlib.data.bias.assign_attributes`); the test split is balanced. ``render`` ``None`` keeps the
    images and gives every image attribute 0 (no bias)."""

    render: Renderer | None = None
    palette: tuple[tuple[float, float, float], ...] = ()
    attribute_names: tuple[str, ...] = ()  # () -> "<attribute_kind> <a>"

    def __post_init__(self) -> None:
        # the aligned fraction is read from one of these; outside ``uses`` it would not enter the cache key, and
        # datasets built at different ratios would share one cache entry
        if self.render is not None and not set(BIAS_RATIO_NAMES) & set(self.uses):
            raise PaperlibError("a RenderedPreset with a render function must list conflict_ratio (or "
                                "majority_ratio) in its uses: the ratio that sets its aligned fraction")

    def build(self, params: Params) -> BiasedDataset:
        train, test = (self._split(params, split) for split in ("train", "test"))
        num_attributes = 1 if self.render is None else NUM_CLASSES
        names = list(self.attribute_names) or [f"{self.attribute_kind} {a}" for a in range(num_attributes)]
        return assemble(train, test, params.dataset, key_values(params, "dataset"), NUM_CLASSES, num_attributes,
                        self.attribute_kind, names, [list(c) for c in self.palette], *channel_stats(train.images))

    def _aligned_fraction(self, params: Params) -> float:
        return 1.0 - params.conflict_ratio if "conflict_ratio" in self.uses else params.majority_ratio

    def _split(self, params: Params, split: str) -> Split:
        raw = load_source(params.source, split, params.data_dir)
        labels = raw.labels.long()
        if self.render is None:
            return Split(raw.images, labels, torch.zeros_like(labels), torch.ones_like(labels, dtype=torch.bool))
        gen = generator(derive_seed(params.seed, "dataset", params.dataset, split))
        fraction = self._aligned_fraction(params) if split == "train" else 1.0 / NUM_CLASSES
        attrs, aligned = bias.assign_attributes(labels, fraction, NUM_CLASSES, gen)
        coloured = self.render(raw.images.float().div_(255.0), attrs, params, gen)
        # not in place: a renderer may return a view (an expanded grey channel) or a tensor it keeps
        return Split((coloured * 255.0).round_().clamp_(0, 255).to(torch.uint8), labels, attrs, aligned)


@dataclass(frozen=True)
class ColourPreset(Preset):
    """One of paper B's colour presets: a grayscale source coloured by ``rule`` (a name of its protocol's
    ``rules``) as its ``protocol`` builds it (:mod:`paperlib.data.protocols`); the training
    split's majority group is the class's colour with share ``majority_ratio``, the test split is balanced."""

    rule: str = "fg_binary"
    protocols: tuple[str, ...] = ("fairdd", "companion")
    uses: tuple[str, ...] = ("majority_ratio", "protocol")

    def build(self, params: Params) -> BiasedDataset:
        protocol = PROTOCOLS[params.protocol]
        train, test = (self._split(params, protocol, split) for split in ("train", "test"))
        names = [f"{self.attribute_kind} {a}" for a in range(NUM_CLASSES)]
        return assemble(train, test, params.dataset, key_values(params, "dataset"), NUM_CLASSES, NUM_CLASSES,
                        self.attribute_kind, names, [list(c) for c in protocol.palette],
                        *protocol.channel_stats(train.images))

    def _split(self, params: Params, protocol: Protocol, split: str) -> Split:
        raw = load_source(params.source, split, params.data_dir)
        labels = raw.labels.long()
        gen = generator(derive_seed(params.seed, "dataset", params.dataset, split))
        fraction = params.majority_ratio if split == "train" else 1.0 / NUM_CLASSES
        attrs, aligned = protocol.assign(labels, fraction, NUM_CLASSES, gen)
        return Split(protocol.render(self.rule, raw.images, attrs), labels, attrs, aligned)


@dataclass(frozen=True)
class BuiltPreset(Preset):
    """A preset with its own builder (faces read from their files, CIFAR10-S)."""

    builder: Callable[[Params], BiasedDataset] | None = None  # required: a keyword, as the fields before have defaults
    present: Callable[[Params], bool] | None = None  # None: the files of its source (a registered one)

    def __post_init__(self) -> None:
        if self.builder is None:
            raise PaperlibError("a BuiltPreset needs builder=, the function that builds its dataset from the Params")
        unregistered = [name for name in self.sources if name not in SOURCES]
        if self.present is None and unregistered:  # else every look for its files (make plan) is an error
            raise PaperlibError(f"a BuiltPreset whose source {unregistered[0]!r} is not in paperlib.data.sources."
                                "SOURCES needs present=, a function of the Params saying whether its files are here")

    def build(self, params: Params) -> BiasedDataset:
        return self.builder(params)

    def files_present(self, params: Params) -> bool:
        return super().files_present(params) if self.present is None else self.present(params)


def _lff(gray: Tensor, attrs: Tensor, params: Params, gen: torch.Generator) -> Tensor:
    return bias.colour_noise_digits(gray, attrs, params.severity, gen)


def _bg_texture(gray: Tensor, attrs: Tensor, params: Params, gen: torch.Generator) -> Tensor:
    backgrounds = bias.textured_backgrounds(attrs, gray.shape[-1], gen)
    return bias.composite_on_background(gray, backgrounds)


def _corrupted(images: Tensor, attrs: Tensor, params: Params, gen: torch.Generator) -> Tensor:
    # Grayscale sources ([N, 1, H, W]) are repeated to three channels inside corrupt().
    return corruptions.corrupt_by_attribute(images, attrs, params.severity, gen)


def _build_cifar10_s(params: Params) -> BiasedDataset:
    """FairDD's CIFAR10-S: the protected attribute is grayscale (0) or colour (1).

    Train: in classes 0-4 exactly ``round(majority_ratio * n_c)`` random images are gray
    and the rest keep their colour; classes 5-9 the reverse (4500 / 500 per class at 0.9).
    Aligned = in the class's majority group. Test: every test image twice, gray and in
    colour, so each (class, group) cell holds the whole test class. Normalised as FairDD's code does
    (:data:`CIFAR10S_MEAN`, :data:`CIFAR10S_STD`).
    """
    train_raw = load_source("cifar10", "train", params.data_dir)
    test_raw = load_source("cifar10", "test", params.data_dir)
    gen = generator(derive_seed(params.seed, "dataset", params.dataset, "train"))
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
    return assemble(train, test, params.dataset, key_values(params, "dataset"), NUM_CLASSES, 2, "grayscale",
                    list(CIFAR10S_GROUPS), [], CIFAR10S_MEAN, CIFAR10S_STD)


_COLOUR_RATIO = ("majority_ratio",)
PRESETS: Registry[Preset] = Registry("dataset", field="dataset")
PRESETS.register("mnist", RenderedPreset("mnist", "none"))
PRESETS.register("fashion_mnist", RenderedPreset("fashion_mnist", "none"))
PRESETS.register("cmnist", RenderedPreset("mnist", "colour", uses=("conflict_ratio", "severity"), render=_lff,
                                          palette=bias.LFF_COLOURS))
PRESETS.register("cmnist_fg", ColourPreset("mnist", "colour", rule="fg_binary"))
PRESETS.register("cmnist_bg", ColourPreset("mnist", "background", rule="bg_binary"))
PRESETS.register("cfmnist_fg", ColourPreset("fashion_mnist", "colour", rule="fg_shaded"))
PRESETS.register("cfmnist_bg", ColourPreset("fashion_mnist", "background", rule="bg_shaded"))
PRESETS.register("bg_fmnist", RenderedPreset("fashion_mnist", "background", uses=("conflict_ratio",),
                                             render=_bg_texture, palette=bias.DISTINCT_COLOURS))
for _name, _spec in FACE_DATASETS.items():
    PRESETS.register(_name, BuiltPreset(_name, _spec.attribute_kind, sources=(_name,),
                                        builder=functools.partial(build_face_dataset, _spec),
                                        present=functools.partial(face_files_present, _spec), protocols=_spec.protocols,
                                        uses=("protocol",)[:len(_spec.protocols) - 1], version=_spec.version))
PRESETS.register("corrupted_cifar10", RenderedPreset("cifar10", "corruption", sources=("cifar10", *MNIST_FAMILY),
                                                     uses=("conflict_ratio", "severity"), render=_corrupted,
                                                     attribute_names=corruptions.CORRUPTIONS))
# version 2: FairDD's fixed normalisation (before: the training split's channel statistics)
PRESETS.register("cifar10_s", BuiltPreset("cifar10", "grayscale", sources=("cifar10",), uses=_COLOUR_RATIO,
                                          builder=_build_cifar10_s, version=2))


# Cached images are zlib-compressed uint8 (level 1: the fastest; docs/performance.md has the sizes and times).
IMAGE_COMPRESSION_LEVEL = 1


def _pack(split: Split) -> dict[str, Any]:
    tensors = split.tensors()
    images = tensors.pop("images").contiguous()
    packed = zlib.compress(images.numpy().tobytes(), IMAGE_COMPRESSION_LEVEL)
    return {**tensors, "images_zlib": torch.frombuffer(bytearray(packed), dtype=torch.uint8),
            "images_shape": list(images.shape)}


def _unpack(packed: dict[str, Any]) -> Split:
    tensors = dict(packed)
    raw = bytearray(zlib.decompress(tensors.pop("images_zlib").numpy().tobytes()))
    images = torch.frombuffer(raw, dtype=torch.uint8).view(tensors.pop("images_shape"))
    return Split(images=images, **tensors)


def _to_payload(ds: BiasedDataset) -> dict:
    return {"train": _pack(ds.train), "test": _pack(ds.test), "info": ds.info.__dict__}


def _from_payload(payload: dict) -> BiasedDataset:
    dataset = BiasedDataset(_unpack(payload["train"]), _unpack(payload["test"]), DatasetInfo(**payload["info"]))
    dataset.check_splits()  # a damaged entry is rebuilt, not a torch error later
    return dataset


def _cache_path(params: Params) -> Path:
    return cache_root(params.cache_dir) / "datasets" / f"{params.dataset}-{cache_key(params, 'dataset')}.pt"


def say_absent(names: Iterable[str], consequence: str) -> None:
    """One printed line: ``consequence`` (``"not built"``, ``"skipped"``) for the datasets ``names``, whose files
    are not on this machine, and how to get them; a name given twice is said once. No path of this machine is
    named: the line may end up in a committed notebook."""
    print(f"{consequence}, their data is not on this machine: {', '.join(dict.fromkeys(names))}. "
          "`python -m paperlib describe --set dataset=PRESET` downloads what can be downloaded (MNIST, "
          "Fashion-MNIST, CIFAR-10) and says where to get the rest.")


def dataset_present(params: Params | None = None, **overrides: Any) -> bool:
    """Whether :func:`build_dataset` would find the data of ``params`` on this machine: its cache entry, or the
    files it is built from. Nothing is built, read whole or downloaded (``make plan`` lists optional datasets'
    runs by it)."""
    params = with_overrides(params, overrides)
    return _cache_path(params).is_file() or PRESETS[params.dataset].files_present(params)


def build_dataset(params: Params | None = None, **overrides: Any) -> BiasedDataset:
    """Build (or load from the cache) the dataset ``params`` describe.

    Accepts a :class:`Params` or keyword overrides, e.g.
    ``build_dataset(dataset="cmnist", conflict_ratio=0.01, source="digits")``.
    The cache file is keyed by ``cache_key(params, "dataset")`` and written atomically.
    """
    params = with_overrides(params, overrides)
    path = _cache_path(params)
    refuse_folder(path)
    seen = _file_version(path)
    dataset = _load_stored(path) if seen else None  # the usual case: stored, read without a lock
    if dataset is None:
        # parallel jobs starting on one dataset build it once (CelebA: minutes of decoding); the others wait, then
        # load what the first wrote (an entry found damaged above, and still the same file, is rebuilt)
        with entry_lock(params.cache_dir, path.stem):
            if _file_version(path) != seen:
                dataset = _load_stored(path)
            if dataset is None:
                dataset = PRESETS[params.dataset].build(params)
                save_tensors(path, _to_payload(dataset))
    return dataset


def _file_version(path: Path) -> tuple[int, int] | None:
    """Which file ``path`` is now (inode, modification time), ``None`` when there is none: an atomic write
    replaces the file, so another job's write shows as a change."""
    try:
        found = path.stat()
    except (FileNotFoundError, NotADirectoryError):  # a file on the way: the cache's write then says which
        return None
    return (found.st_ino, found.st_mtime_ns) if stat.S_ISREG(found.st_mode) else None


def _load_stored(path: Path) -> BiasedDataset | None:
    """The dataset cached at ``path``, or ``None`` when there is none or it cannot be read (said on stderr: it is
    rebuilt, which takes seconds)."""
    payload = load_tensors(path, rebuild=True)
    if payload is None:
        return None
    try:
        return _from_payload(payload)
    # another version's entry, or a damaged one (a shape that does not fit its bytes: RuntimeError)
    except (KeyError, TypeError, RuntimeError, zlib.error, PaperlibError) as err:
        report_rebuild(path, err)
        return None
