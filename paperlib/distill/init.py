"""Synthetic-set initialisation: ``real``, ``noise`` or ``balanced``."""

from __future__ import annotations

import torch
from torch import Tensor

from paperlib.config import INITS
from paperlib.data.container import BiasedDataset, sample_per_class, take_per_cell
from paperlib.errors import PaperlibError


def balanced_quota(cell_sizes: Tensor, per_class: int) -> Tensor:
    """``[K, A]`` counts that spread ``per_class`` images evenly over each class's groups.

    Non-empty groups get ``per_class // G`` each and the largest ones one more;
    a group too small for its share gives the shortfall to the class's largest group.
    """
    present = cell_sizes > 0
    num_present = present.sum(1, keepdim=True)
    size_rank = torch.argsort(torch.argsort(cell_sizes, dim=1, descending=True, stable=True), dim=1)
    quota = (per_class // num_present) + (size_rank < per_class % num_present).long()
    quota = torch.minimum(quota * present, cell_sizes)
    shortfall = per_class - quota.sum(1)
    largest = cell_sizes.argmax(1)
    quota[torch.arange(quota.shape[0]), largest] += shortfall
    if bool((quota > cell_sizes).any()):
        raise PaperlibError(f"a class has fewer than ipc={per_class} training images; lower ipc")
    return quota


def initial_images(dataset: BiasedDataset, ipc: int, init: str, gen: torch.Generator) -> Tensor:
    """``[K * ipc, C, H, W]`` normalised images, class-major (class 0's first)."""
    train = dataset.train
    k = dataset.num_classes
    if init == "noise":
        return torch.randn(k * ipc, dataset.channels, dataset.image_size, dataset.image_size, generator=gen)
    if init == "real":
        index = sample_per_class(train.labels, ipc, gen)
    elif init == "balanced":
        a = dataset.info.num_attributes
        cells = train.labels * a + train.attributes
        sizes = torch.bincount(cells, minlength=k * a).view(k, a)
        index = take_per_cell(cells, balanced_quota(sizes, ipc).flatten(), gen)
    else:
        raise PaperlibError(f"unknown init {init!r}; choose one of: {', '.join(INITS)}")
    if index.shape[0] != k * ipc:
        raise PaperlibError(f"a class has fewer than ipc={ipc} training images; lower ipc")
    return dataset.normalized(train.subset(index))
