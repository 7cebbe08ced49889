"""How the real samples of a class form the statistic the synthetic set is matched to.

The one mechanism shared by DM and gradient matching: a target turns a real
batch into an *aggregation matrix* ``M`` of shape ``[K, J, B]``. Row ``M[k, j]``
holds the weights with which the B real samples of class k are averaged into
the j-th statistic of that class; each non-empty row sums to 1, an all-zero row
is an absent statistic and is skipped. The matching loss is the sum over
classes and statistics of ``D(statistic_kj, synthetic statistic_k)``:

* DM: statistic = weighted mean embedding ``M @ embed(real)``;
* gradient matching: statistic = gradient of the weighted cross-entropy
  ``sum_b M[k, j, b] * CE_b``.

Targets:

* ``vanilla`` — one statistic, the plain average (J = 1);
* ``weighted`` — one statistic, a per-sample weighted average; paper A's KDE
  weights plug in here;
* ``groups`` — FairDD: one statistic per protected group present in the
  batch (J = number of groups), each a plain average over that group, summed
  with weight 1 each.
"""

from __future__ import annotations

import torch
from torch import Tensor

from paperlib.config import TARGETS
from paperlib.distill.sampling import RealBatch
from paperlib.errors import PaperlibError


def _normalise_rows(m: Tensor) -> Tensor:
    total = m.sum(-1, keepdim=True)
    return torch.where(total > 0, m / total.clamp_min(1e-30), torch.zeros_like(m))


class Target:
    """Base class: subclasses implement :meth:`aggregation`."""

    name = "base"

    def aggregation(self, batch: RealBatch) -> Tensor:
        """The ``[K, J, B]`` aggregation matrix for ``batch``."""
        raise NotImplementedError


class VanillaTarget(Target):
    """Uniform average over the class (with stratified sampling: its inclusion weights)."""

    name = "vanilla"

    def aggregation(self, batch: RealBatch) -> Tensor:
        return _normalise_rows(batch.inclusion)[:, None, :]


class WeightedTarget(Target):
    """Average with given per-sample weights (one weight per training sample)."""

    name = "weighted"

    def __init__(self, sample_weights: Tensor) -> None:
        if bool((sample_weights < 0).any()) or not bool(torch.isfinite(sample_weights).all()):
            raise PaperlibError("sample weights must be finite and non-negative")
        self.sample_weights = sample_weights.float()

    def aggregation(self, batch: RealBatch) -> Tensor:
        w = self.sample_weights[batch.index] * batch.inclusion
        return _normalise_rows(w)[:, None, :]


class GroupsTarget(Target):
    """FairDD: one plain average per protected group present in the batch."""

    name = "groups"

    def __init__(self, num_groups: int) -> None:
        self.num_groups = num_groups

    def aggregation(self, batch: RealBatch) -> Tensor:
        onehot = torch.nn.functional.one_hot(batch.groups, self.num_groups).float()  # [K, B, A]
        return _normalise_rows(onehot.transpose(1, 2))  # absent groups: zero rows, skipped


def make_target(name: str, num_groups: int, sample_weights: Tensor | None = None) -> Target:
    """A target by name; ``weighted`` needs ``sample_weights`` (one per training sample)."""
    if name == "vanilla":
        return VanillaTarget()
    if name == "weighted":
        if sample_weights is None:
            raise PaperlibError("target=weighted needs per-sample weights (set weights=...)")
        return WeightedTarget(sample_weights)
    if name == "groups":
        return GroupsTarget(num_groups)
    raise PaperlibError(f"unknown target {name!r}; choose one of: {', '.join(TARGETS)}")
