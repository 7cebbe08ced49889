"""Synthetic-set initialisation: ``real``, ``noise`` or ``balanced``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from paperlib.core.registry import Registry

from paperlib.data.container import (BiasedDataset, cell_counts, cell_ids, require_per_class, sample_per_class,
                                     take_per_cell)


def balanced_quota(cell_sizes: Tensor, per_class: int) -> Tensor:
    """``[K, A]`` counts that spread ``per_class`` images evenly over each class's groups.

    Non-empty groups get ``per_class // G`` each and the largest ones one more; what groups too small for their
    share leave over goes to the class's largest group, what that cannot take to the next largest, and so on
    (ties: the lower group index first). A one-line error names the first class with fewer than ``per_class``.
    """
    require_per_class(cell_sizes.sum(1), "ipc", per_class)
    present = cell_sizes > 0
    num_present = present.sum(1, keepdim=True).clamp_min(1)  # an empty class has per_class == 0 here
    by_size = torch.argsort(cell_sizes, dim=1, descending=True, stable=True)  # rank 0: argmax, the old largest
    size_rank = torch.argsort(by_size, dim=1)
    quota = (per_class // num_present) + (size_rank < per_class % num_present).long()
    quota = torch.minimum(quota * present, cell_sizes)
    shortfall = per_class - quota.sum(1, keepdim=True)
    # Water-fill in size order: each group takes what the larger ones had no room for (all of it, the largest).
    room = cell_sizes - quota
    room_by_rank = torch.gather(room, 1, by_size)
    room_before = torch.gather(room_by_rank.cumsum(1) - room_by_rank, 1, size_rank)
    return quota + torch.minimum(room, (shortfall - room_before).clamp_min(0))


def real_per_class(dataset: BiasedDataset, ipc: int, gen: torch.Generator) -> Tensor:
    """Indices of ``ipc`` random training images of every class, class-major; a one-line error when a class
    has fewer (the synthetic set and the ``random`` baseline need as many of every class)."""
    drawn = sample_per_class(dataset.train.labels, ipc, gen)
    if drawn.shape[0] != dataset.num_classes * ipc:
        require_per_class(torch.bincount(dataset.train.labels, minlength=dataset.num_classes), "ipc", ipc)
    return drawn


def _balanced(dataset: BiasedDataset, ipc: int, gen: torch.Generator) -> Tensor:
    train, k, a = dataset.train, dataset.num_classes, dataset.info.num_attributes
    cells = cell_ids(train.labels, train.attributes, a)
    return take_per_cell(cells, balanced_quota(cell_counts(cells, k, a), ipc).flatten(), gen)


def _noise(dataset: BiasedDataset, ipc: int, gen: torch.Generator) -> Tensor:
    size = dataset.image_size
    return torch.randn(dataset.num_classes * ipc, dataset.channels, size, size, generator=gen)


@dataclass(frozen=True)
class Init:
    """How the synthetic set starts: ``draw(dataset, ipc, gen)`` gives training-split indices (class-major), or
    the images themselves when ``images`` is set; ``reads_groups`` marks a draw that reads the true group labels."""

    draw: Callable[[BiasedDataset, int, torch.Generator], Tensor]
    images: bool = False
    reads_groups: bool = False  # draws by the training samples' true group labels
    version: int = 0  # bump when its output changes: the cache then recomputes what was made with it


INITS: Registry[Init] = Registry("init", field="init")
INITS.register("real", Init(real_per_class))  # random real images of each class (the reference)
INITS.register("balanced", Init(_balanced, reads_groups=True))  # real images spread evenly over each class's groups
INITS.register("noise", Init(_noise, images=True))  # standard normal noise


def class_major_labels(num_classes: int, per_class: int) -> Tensor:
    """The labels of a set of ``per_class`` images per class in class order (0, 0, ..., 1, 1, ...): the layout of
    every synthetic set and of the real batches matched to it."""
    return torch.arange(num_classes).repeat_interleave(per_class)


def initial_images(dataset: BiasedDataset, ipc: int, init: str, gen: torch.Generator) -> Tensor:
    """``[K * ipc, C, H, W]`` normalised images, class-major (class 0's first)."""
    chosen = INITS[init]
    drawn = chosen.draw(dataset, ipc, gen)
    if chosen.images:
        return drawn
    return dataset.normalized(dataset.train.subset(drawn))
