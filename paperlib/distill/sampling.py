"""Real-batch sampling for distillation: ``batch_real`` images of every class per step.

Both modes return a :class:`RealBatch` with fixed shape ``[K, B]`` (K classes,
B images each), so every class is processed in one batched call.

* ``uniform`` — B random images of the class, as the public reference does; a
  small protected group may be absent from a batch.
* ``stratified`` — every (class, group) cell present in the data contributes
  at least ``min(stratified_min, cell size)`` images; the rest of the batch is
  allocated in proportion to what each cell has left (its size less that
  floor). ``inclusion`` weights undo the
  over-sampling, so a uniform average with them still estimates the class mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from paperlib.core.registry import Registry
from paperlib.data.container import cell_counts, cell_ids, require_per_class, take_per_cell
from paperlib.core.errors import PaperlibError


@dataclass
class RealBatch:
    """Indices into the training split and the per-sample facts the targets need.

    ``index``, ``groups`` (attribute ids) and ``inclusion`` are ``[K, B]``;
    ``inclusion`` rows sum to 1 and weight each sample by how under-sampled
    its group is (uniform sampling: all ``1/B``).
    """

    index: Tensor
    groups: Tensor
    inclusion: Tensor


def stratified_quota(cell_sizes: Tensor, batch: int, minimum: int) -> Tensor:
    """Per-(class, group) sample counts ``[K, A]`` that sum to ``batch`` in every class.

    Each non-empty cell gets ``min(minimum, size)`` first; the remainder is
    shared in proportion to the cells' remaining capacity (largest remainder).
    """
    floor = torch.minimum(cell_sizes, torch.full_like(cell_sizes, minimum))
    remaining = batch - floor.sum(1, keepdim=True)
    if bool((remaining < 0).any()):
        raise PaperlibError(
            f"batch_real={batch} is too small to hold {minimum} images of every group; "
            "raise batch_real or lower stratified_min")
    capacity = cell_sizes - floor
    share = remaining.double() * capacity.double() / capacity.sum(1, keepdim=True).clamp_min(1).double()
    extra = share.floor().long()
    leftover = (remaining - extra.sum(1, keepdim=True)).squeeze(1)
    # Largest fractional parts get the leftover images, one each.
    frac_rank = torch.argsort(torch.argsort(share - extra, dim=1, descending=True), dim=1)
    extra += (frac_rank < leftover[:, None]).long()
    return torch.minimum(floor + extra, cell_sizes)


@dataclass(frozen=True)
class Sampling:
    """How a class's real batch is drawn: ``stratified`` fills a quota per group (at least ``stratified_min``,
    or all of a smaller group)."""

    stratified: bool
    uses: tuple[str, ...] = ()
    version: int = 0  # bump when its output changes: the cache then recomputes what was made with it


SAMPLINGS: Registry[Sampling] = Registry("sampling", field="sampling")
SAMPLINGS.register("uniform", Sampling(stratified=False))  # the reference: B random images of the class
SAMPLINGS.register("stratified", Sampling(stratified=True, uses=("stratified_min",)))


def check_batch_fits(labels: Tensor, num_classes: int, batch: int) -> None:
    """Raise unless every class has ``batch`` training images: fixed shapes need the same B for every class, and
    a smaller class cannot fill its row."""
    require_per_class(torch.bincount(labels, minlength=num_classes), "batch_real", batch)


class RealSampler:
    """Draws a :class:`RealBatch` per step from a training split's labels and groups."""

    def __init__(self, labels: Tensor, groups: Tensor, num_classes: int, num_groups: int, batch: int,
                 mode: str = "uniform", stratified_min: int = 16) -> None:
        self.stratified = SAMPLINGS[mode].stratified
        self.labels, self.groups = labels, groups
        self.num_classes = num_classes
        check_batch_fits(labels, num_classes, batch)
        self.batch = batch
        self.cells = cell_ids(labels, groups, num_groups)
        cell_sizes = cell_counts(self.cells, num_classes, num_groups)
        if not self.stratified:
            self.quota = torch.full((num_classes,), self.batch, dtype=torch.long)
            self.weights = torch.full((num_classes, self.batch), 1.0 / self.batch)
        else:
            quota = stratified_quota(cell_sizes, self.batch, stratified_min)
            self.quota = quota.flatten()
            # inclusion weight of a sample in cell (c, g): share of g in c / quota of g.
            share = cell_sizes.double() / cell_sizes.sum(1, keepdim=True)
            self.cell_weight = torch.where(quota > 0, share / quota.clamp_min(1), 0.0).float().flatten()

    def sample(self, gen: torch.Generator) -> RealBatch:
        """One batch: ``[K, B]`` indices sorted by class; with ``sampling=stratified`` each class's groups are also
        contiguous (sampling by cell), with ``uniform`` they come in random order within the class."""
        cells = self.cells if self.stratified else self.labels
        index = take_per_cell(cells, self.quota, gen).view(self.num_classes, self.batch)
        groups = self.groups[index]
        inclusion = self.cell_weight[self.cells[index]] if self.stratified else self.weights
        return RealBatch(index, groups, inclusion)
