"""The one container every dataset builder returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from paperlib.core.errors import PaperlibError
from paperlib.core.keys import cache_key, stable_hash
from paperlib.core.params import Params
from paperlib.core.runtime import index_range_problem, to_device


@dataclass
class Split:
    """One split of a biased dataset; all tensors share the first dimension N.

    ``images`` are uint8 ``[N, C, H, W]`` (small on disk; see
    :meth:`BiasedDataset.normalized` for the float view the models use).
    ``attributes`` is the bias / protected attribute (colour, background, ...),
    and ``aligned`` marks samples whose attribute is their class's bias.
    """

    images: Tensor
    labels: Tensor
    attributes: Tensor
    aligned: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: Tensor) -> Split:
        """The samples at ``index`` (an index or boolean mask tensor)."""
        return Split(self.images[index], self.labels[index], self.attributes[index], self.aligned[index])

    def group_counts(self, num_classes: int, num_attributes: int) -> Tensor:
        """Counts per (class, attribute): an int64 ``[num_classes, num_attributes]`` table."""
        return cell_counts(cell_ids(self.labels, self.attributes, num_attributes), num_classes, num_attributes)

    def tensors(self) -> dict[str, Tensor]:
        """The four tensors by field name (what :class:`Split` is made from again)."""
        return {"images": self.images, "labels": self.labels, "attributes": self.attributes, "aligned": self.aligned}


@dataclass
class DatasetInfo:
    """Metadata: what was built, from what, and how the groups are populated."""

    preset: str
    params: dict[str, Any]  # the parameters that defined this dataset
    num_classes: int
    num_attributes: int
    attribute_kind: str  # "colour", "background", "none", ...
    attribute_names: list[str]
    palette: list[list[float]]  # RGB in [0, 1] per attribute, [] when not colour-based
    mean: list[float]  # per channel, in [0, 1]: the training images' mean, or the protocol's fixed one
    std: list[float]
    group_counts: dict[str, list[list[int]]] = field(default_factory=dict)  # split -> classes x attributes


@dataclass
class BiasedDataset:
    """A train split with a spurious attribute, an unbiased test split, and metadata."""

    train: Split
    test: Split
    info: DatasetInfo

    def check_built_for(self, params: Params, stored: str) -> None:
        """A one-line error unless this is the dataset ``params`` describe: what is cached for a run (``stored``:
        a distilled set, KDE weights) is keyed by its parameters alone, so another dataset's would be served, or
        stored under this one's key."""
        if stable_hash(self.info.params) != cache_key(params, "dataset"):
            raise PaperlibError(f"the dataset given is not the one these parameters describe (dataset="
                                f"{params.dataset!r}), and the {stored} cached under their key would belong to the "
                                "other: pass build_dataset(params), or register a preset for your own data "
                                "(docs/extending.md, 'Adding a dataset') so that its runs get their own keys")

    def check_splits(self) -> None:
        """Both splits as the rest of the package reads them (uint8 square images; int64 labels and attributes in
        range, bool ``aligned``, one per image), or a one-line error naming what is wrong."""
        for name, split in (("train", self.train), ("test", self.test)):
            _check_split(split, f"the {name} split of preset {self.info.preset!r}", self.info.num_classes,
                         self.info.num_attributes)

    @property
    def channels(self) -> int:
        """Channels per image (1: grayscale, 3: colour)."""
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        """Image side in pixels (the images are square)."""
        return int(self.train.images.shape[-1])

    @property
    def num_classes(self) -> int:
        """Number of classes (``info.num_classes``)."""
        return self.info.num_classes

    def normalized(self, split: str | Split, device: torch.device | str = "cpu") -> Tensor:
        """Float images of ``split``, scaled to [0, 1] and standardised per channel."""
        images = getattr(self, split).images if isinstance(split, str) else split.images
        return self.normalize_uint8(images.to(device))

    def normalize_uint8(self, images: Tensor) -> Tensor:
        """uint8 images (on any device) as the float images the models see: :meth:`normalized` of a gathered
        batch, value for value, without a float copy of the whole split."""
        return self.normalize(images.to(torch.float32, copy=True).div_(255.0))  # a float input is left as it is

    def normalize(self, images01: Tensor) -> Tensor:
        """Standardise float images in [0, 1] with the dataset's ``mean`` / ``std``: the training split's channel
        statistics, or the protocol's fixed normalisation (0.5 / 0.5 under ``protocol=fairdd``)."""
        mean, std = self._stats(images01)
        return (images01 - mean) / std

    def denormalize(self, images: Tensor) -> Tensor:
        """Back to [0, 1] for display (clamped)."""
        mean, std = self._stats(images)
        return (images * std + mean).clamp(0.0, 1.0)

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        # made on the host and sent without a wait: a plain torch.tensor(..., device="cuda") waits for the
        # queued kernels, and the engine normalises every real batch
        shape = (1, -1, 1, 1)
        mean = to_device(torch.tensor(self.info.mean, dtype=like.dtype), like.device).view(shape)
        std = to_device(torch.tensor(self.info.std, dtype=like.dtype), like.device).view(shape)
        return mean, std

    def summary(self) -> dict[str, Any]:
        """The ``describe`` view: size, aligned fraction and group counts per split."""
        out = {}
        for name in ("train", "test"):
            split: Split = getattr(self, name)
            out[name] = {
                "n": len(split),
                "aligned_fraction": round(float(split.aligned.float().mean()), 6),
                "group_counts": split.group_counts(self.info.num_classes, self.info.num_attributes).tolist(),
            }
        return out


def assemble(train: Split, test: Split, preset: str, key: dict[str, Any], num_classes: int, num_attributes: int,
             attribute_kind: str, attribute_names: list[str], palette: list[list[float]], mean: list[float],
             std: list[float]) -> BiasedDataset:
    """The one way a builder describes what it built: a :class:`BiasedDataset` with its :class:`DatasetInfo`
    (``key``: the parameters that defined it; ``mean`` / ``std``: what the models normalise with, the training
    split's channel statistics or the protocol's fixed normalisation, 0.5 / 0.5 under ``protocol=fairdd``)."""
    info = DatasetInfo(preset=preset, params=key, num_classes=num_classes, num_attributes=num_attributes,
                       attribute_kind=attribute_kind, attribute_names=attribute_names, palette=palette, mean=mean,
                       std=std)
    dataset = BiasedDataset(train, test, info)
    dataset.check_splits()
    info.group_counts = {name: split.group_counts(num_classes, num_attributes).tolist()
                         for name, split in (("train", train), ("test", test))}
    return dataset


def _check_split(split: Split, what: str, num_classes: int, num_attributes: int) -> None:
    """A builder's split as the rest of the package reads it, or a one-line error naming what is wrong."""
    _require_uint8_images(split.images, what)
    n = split.images.shape[0]
    for field_name, tensor, limit in (("labels", split.labels, num_classes),
                                      ("attributes", split.attributes, num_attributes)):
        if tensor.dtype != torch.int64 or tuple(tensor.shape) != (n,):
            raise PaperlibError(f"{what}: {field_name} must be int64 [N] with N = {n} images, got "
                                f"{tensor.dtype} {tuple(tensor.shape)}")
        problem = index_range_problem(tensor, limit)
        if problem:
            raise PaperlibError(f"{what}: {field_name} {problem}")
    if split.aligned.dtype != torch.bool or tuple(split.aligned.shape) != (n,):
        raise PaperlibError(f"{what}: aligned must be bool [N] with N = {n} images, got {split.aligned.dtype} "
                            f"{tuple(split.aligned.shape)}")


def _require_uint8_images(images: Tensor, what: str) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != images.shape[-2]:
        raise PaperlibError(f"{what}: images must be uint8 [N, C, H, W] with H = W (pixel values 0..255), got "
                            f"{images.dtype} {tuple(images.shape)}; float images in [0, 1]: (x * 255).round()"
                            ".to(torch.uint8)")


def channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (floored at 1e-3) of uint8 images ``[N, C, H, W]``, in [0, 1] units.

    The face presets, too large for one float copy, use their own chunked float64 sums (``faces``); computing
    the digit datasets' statistics that way would move their normalisation by float32 rounding, and so every
    stored result of them.
    """
    _require_uint8_images(images, "channel_stats")  # a float tensor would be divided by 255 in place below
    x = images.float().div_(255.0)
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


def cell_ids(labels: Tensor, groups: Tensor, num_groups: int) -> Tensor:
    """Each sample's (class, group) cell as one id, ``label * num_groups + group``: its row-major index in a
    ``[num_classes, num_groups]`` table."""
    return labels * num_groups + groups


def cell_counts(cells: Tensor, num_classes: int, num_groups: int) -> Tensor:
    """The samples of each cell of :func:`cell_ids` ``cells``: an int64 ``[num_classes, num_groups]`` table."""
    return torch.bincount(cells, minlength=num_classes * num_groups).view(num_classes, num_groups)


def rank_within_cells(cells: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """A random order of the samples grouped by cell, and each one's position in its cell.

    One random permutation, then a stable sort by cell: within a cell the order
    is random. Returns ``(order, rank)``: ``order`` lists sample indices cell by
    cell, and ``rank[i]`` is the position of ``order[i]`` within its cell.
    """
    n = cells.shape[0]
    permutation = torch.randperm(n, generator=generator)
    order = permutation[torch.sort(cells[permutation], stable=True).indices]
    sizes = torch.bincount(cells)
    start = torch.cumsum(sizes, 0) - sizes
    return order, torch.arange(n) - start[cells[order]]


def take_per_cell(cells: Tensor, quota: Tensor, generator: torch.Generator) -> Tensor:
    """Indices of ``quota[cell]`` random samples of every cell (fewer if a cell is smaller).

    ``cells`` holds each sample's cell id (a class, or a class x group pair).
    Returned sorted by cell.
    """
    order, rank = rank_within_cells(cells, generator)
    return order[rank < quota[cells[order]]]


def sample_per_class(labels: Tensor, per_class: int, generator: torch.Generator) -> Tensor:
    """Indices of ``per_class`` random samples of every class, sorted by class."""
    num_classes = int(labels.max()) + 1
    return take_per_cell(labels, torch.full((num_classes,), per_class, dtype=torch.long), generator)


def require_per_class(class_sizes: Tensor, setting: str, value: int) -> None:
    """A one-line error unless every class has at least ``value`` training images (``setting`` names what asks for that
    many per class, e.g. ``ipc``); it names the smallest class, whose size is the largest usable value."""
    smallest = int(class_sizes.argmin())
    size = int(class_sizes[smallest])
    if value > size:
        fix = f"lower {setting} to at most {size}" if size else "the training split needs images of every class"
        raise PaperlibError(f"{setting}={value} is more than class {smallest}'s {size} training images; {fix}")
