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
* ``barycenter`` — COBRA: one statistic, the uniform average of the group means
  present in the batch (each sample weighted 1 / (groups present x its group's
  size)). For DM its gradient is FairDD's divided by the number of groups
  present (:mod:`paperlib.distill.theorem`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from paperlib.core.errors import PaperlibError
from paperlib.core.keys import relevant_fields
from paperlib.core.params import Params
from paperlib.core.registry import Registry
from paperlib.data.container import BiasedDataset
from paperlib.distill.group_labels import HIDDEN, partial_group_labels
from paperlib.distill.init import INITS
from paperlib.distill.sampling import SAMPLINGS, RealBatch, check_batch_fits
from paperlib.distill.weights import SAMPLE_WEIGHTINGS, sample_weights


def normalise_rows(m: Tensor) -> Tensor:
    """Each row of ``m`` (the last dimension) divided by its sum, so it sums to 1; an all-zero row (an absent
    statistic, skipped by the matching loss) stays zero."""
    total = m.sum(-1, keepdim=True)
    return torch.where(total > 0, m / total.clamp_min(1e-30), torch.zeros_like(m))


class Target:
    """Base class: subclasses implement :meth:`aggregation` and :meth:`for_run`.

    ``uses`` lists the parameters that matter only with this target (they enter the cache key); bump ``version``
    when its aggregation changes, so the cache does not serve sets made by the old code. The facts
    :meth:`for_run` returns are stored as JSON with the distilled set.
    Every subclass sets ``name``, the name it is registered under.
    ``paper_family`` is how the papers' rows name its runs (:func:`paperlib.report.reference.variant`): ``None``
    where no paper reports it. ``display_name`` is how tables and figures name a set matched to it, after the
    method ("DM + FairDD"; ``""``: the plain target, the set is "DM"; ``None``: the registered name);
    :meth:`shown_as` reads it. With ``named_by_weighting`` the run's sample weighting gives both instead
    ("DM + KDE", paper A's KDE rows). These three belong to the class that sets them: a subclass that does not
    set them is another target, named by its registered name and shown beside no paper's numbers.
    """

    name = "base"
    uses: tuple[str, ...] = ()
    paper_family: str | None = None
    display_name: str | None = None
    named_by_weighting: bool = False
    version: int = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in vars(cls):  # an inherited name would label its sets as the parent's ("DM + groups")
            raise TypeError(f"{cls.__name__} sets no name: give the class name = '...', the name it is registered "
                            "under (TARGETS.register(cls.name, cls))")
        # "DM + FairDD" and paper B's FairDD numbers must not label a subclass that changes FairDD's aggregation
        for label, unset in (("paper_family", None), ("display_name", None), ("named_by_weighting", False)):
            if label not in vars(cls):
                setattr(cls, label, unset)

    @classmethod
    def shown_as(cls, weights: str) -> str:
        """The target's part of a set's name (``weights``: the run's sample weighting, read when it names the set)."""
        if cls.named_by_weighting:
            shown = SAMPLE_WEIGHTINGS[weights].display_name
            return weights if shown is None else shown
        return cls.name if cls.display_name is None else cls.display_name

    @classmethod
    def family(cls, weights: str) -> str | None:
        """How the papers' rows name a run matched to this target (``weights``: the run's sample weighting, read
        when it names the set); ``None`` where no paper reports one."""
        return SAMPLE_WEIGHTINGS[weights].paper_family if cls.named_by_weighting else cls.paper_family

    @classmethod
    def for_run(cls, dataset: BiasedDataset, params: Params, device: torch.device) -> tuple[Target, dict[str, Any]]:
        """The target of a run of ``params`` on ``dataset``, and facts about its making."""
        raise NotImplementedError

    def aggregation(self, batch: RealBatch) -> Tensor:
        """The ``[K, J, B]`` aggregation matrix for ``batch``."""
        raise NotImplementedError


class VanillaTarget(Target):
    """Uniform average over the class (with stratified sampling: its inclusion weights)."""

    name = "vanilla"
    paper_family = "vanilla"
    display_name = ""

    @classmethod
    def for_run(cls, dataset: BiasedDataset, params: Params, device: torch.device) -> tuple[Target, dict[str, Any]]:
        return cls(), {}

    def aggregation(self, batch: RealBatch) -> Tensor:
        return normalise_rows(batch.inclusion)[:, None, :]


class WeightedTarget(Target):
    """Average with given per-sample weights (one weight per training sample)."""

    name = "weighted"
    uses = ("weights",)
    named_by_weighting = True  # "DM + KDE", paper A's KDE rows

    @classmethod
    def for_run(cls, dataset: BiasedDataset, params: Params, device: torch.device) -> tuple[Target, dict[str, Any]]:
        weights, facts = sample_weights(dataset, params, device)
        return cls(weights, dataset.train.labels), facts

    def __init__(self, sample_weights: Tensor, labels: Tensor | None = None) -> None:
        """``labels`` (each training sample's class) only name the class of a bad weight in the error."""
        if sample_weights.dim() != 1 or (labels is not None and sample_weights.shape != labels.shape):
            expected = "[N]" if labels is None else f"[{labels.shape[0]}], one per training sample"
            raise PaperlibError(f"sample weights of shape {tuple(sample_weights.shape)}; a weighting gives "
                                f"{expected}")
        bad = (sample_weights < 0) | ~torch.isfinite(sample_weights)
        if bool(bad.any()):  # the one host wait, once per target
            first = int(bad.nonzero()[0, 0])
            where = f"class {int(labels[first])}" if labels is not None else f"sample {first}"
            raise PaperlibError(f"{int(bad.sum())} of {bad.numel()} sample weights are negative or not finite (the "
                                f"first in {where}); KDE weights are cached under the cache's weights/ folder: "
                                "recompute them with force=true (with the supcon encoder, a lower supcon_lr)")
        self.sample_weights = sample_weights.float()

    def aggregation(self, batch: RealBatch) -> Tensor:
        w = self.sample_weights[batch.index] * batch.inclusion
        return normalise_rows(w)[:, None, :]


class GroupsTarget(Target):
    """FairDD: one plain average per protected group present in the batch.

    With ``sample_groups`` (one label per training sample, :data:`~paperlib.distill.group_labels.HIDDEN` for a
    sample in no group), those labels replace the dataset's: group labels only partly known.
    """

    name = "groups"
    uses = ("hidden_groups", "hidden_groups_fill")
    paper_family = "fairdd"
    display_name = "FairDD"

    @classmethod
    def for_run(cls, dataset: BiasedDataset, params: Params, device: torch.device) -> tuple[Target, dict[str, Any]]:
        sample_groups, facts = partial_group_labels(dataset, params, device)
        return cls(dataset.info.num_attributes, sample_groups), facts

    @classmethod
    def check(cls, params: Params) -> None:
        """Hidden group labels cannot stay hidden from a sampling or an initialisation that reads every true one:
        raise rather than run an experiment that is not the one it is named."""
        if "hidden_groups" not in relevant_fields(params):
            return
        readers = [f"sampling={params.sampling}"] if SAMPLINGS[params.sampling].stratified else []
        # init "" is the method's own (Method.init, real): it reads no group
        readers += [f"init={params.init}"] if params.init and INITS[params.init].reads_groups else []
        if readers:
            raise PaperlibError(f"hidden_groups={params.hidden_groups} hides group labels that {' and '.join(readers)} "
                                "would read in full; use sampling=uniform and init=real with hidden_groups")

    def __init__(self, num_groups: int, sample_groups: Tensor | None = None) -> None:
        self.num_groups, self.sample_groups = num_groups, sample_groups

    def aggregation(self, batch: RealBatch) -> Tensor:
        groups = batch.groups if self.sample_groups is None else self.sample_groups[batch.index]
        groups = torch.where(groups == HIDDEN, self.num_groups, groups)  # an extra slot, cut off below
        onehot = torch.nn.functional.one_hot(groups, self.num_groups + 1)[..., :self.num_groups].float()  # [K, B, A]
        return normalise_rows(onehot.transpose(1, 2))  # absent groups: zero rows, skipped


class BarycenterTarget(GroupsTarget):
    """COBRA: the uniform barycenter of the group means present in the batch, one statistic per class."""

    name = "barycenter"
    paper_family = None  # COBRA's paper is not one of the two this companion reproduces
    display_name = "COBRA"

    def aggregation(self, batch: RealBatch) -> Tensor:
        groups = super().aggregation(batch)  # [K, A, B], a zero row per absent group
        present = (groups.sum(-1) > 0).float().sum(-1).clamp_min(1.0)  # [K]
        return (groups.sum(1) / present[:, None])[:, None, :]


TARGETS: Registry[type[Target]] = Registry("target", field="target")
for _target in (VanillaTarget, WeightedTarget, GroupsTarget, BarycenterTarget):
    TARGETS.register(_target.name, _target)


def make_target(dataset: BiasedDataset, params: Params, device: torch.device) -> tuple[Target, dict[str, Any]]:
    """The registered target ``params.target`` for a run on ``dataset``, and facts about its making.

    The real batch is checked first: a target can take minutes to make (KDE's encoder), the sampler's error
    would come after them."""
    check_batch_fits(dataset.train.labels, dataset.num_classes, params.batch_real)
    return TARGETS[params.target].for_run(dataset, params, device)
