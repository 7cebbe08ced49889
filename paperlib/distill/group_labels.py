"""Protected-group labels when only some are known: what FairDD and COBRA need and KDE does not.

``hidden_groups`` (a share in [0, 1]) hides that many training samples' group labels, drawn from the run's
seed. ``hidden_groups_fill`` says what the group targets do with them: ``drop`` leaves them out of every group
statistic (they still count nowhere), ``impute`` gives each the group of the nearest group centroid of its
class, in the features of a random ConvNet (KDE's ``random`` encoder: it needs no training and no labels
beyond the class), computed from the samples whose group is known.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from paperlib.core.errors import PaperlibError
from paperlib.core.keys import derive_seed
from paperlib.core.params import Params
from paperlib.core.runtime import generator
from paperlib.data.container import BiasedDataset
from paperlib.distill.kde import random_network_features

HIDDEN = -1  # the group label of a sample left out of every group statistic


def partial_group_labels(dataset: BiasedDataset, params: Params,
                         device: torch.device) -> tuple[Tensor | None, dict[str, Any]]:
    """Each training sample's group label as the group targets see it (``None``: all known), and facts: how
    many were hidden and, when imputed, the share imputed right."""
    if not params.hidden_groups:
        return None, {}
    groups = dataset.train.attributes.clone().long()
    n = groups.shape[0]
    count = round(params.hidden_groups * n)
    hidden = torch.randperm(n, generator=generator(derive_seed(params.seed, "hidden-groups")))[:count]
    known = torch.ones(n, dtype=torch.bool)
    known[hidden] = False
    labels, a = dataset.train.labels.long(), dataset.info.num_attributes
    unknown_classes = (torch.bincount(labels[known], minlength=dataset.num_classes) == 0).nonzero().flatten()
    if len(unknown_classes):  # drop would match nothing there, impute would have no centroid
        raise PaperlibError(f"hidden_groups={params.hidden_groups} hides every group label of class "
                            f"{int(unknown_classes[0])}; the group targets need at least one known label per "
                            "class: lower hidden_groups")
    facts: dict[str, Any] = {"hidden_groups": count}
    if params.hidden_groups_fill == "drop":
        groups[hidden] = HIDDEN
        return groups, facts
    features = random_network_features(dataset, params, device).values.cpu()
    cells = labels * a + groups  # one centroid per (class, group) among the known samples
    sums = torch.zeros(dataset.num_classes * a, features.shape[1]).index_add_(0, cells[known], features[known])
    sizes = torch.bincount(cells[known], minlength=dataset.num_classes * a).float()
    centroids = (sums / sizes.clamp_min(1)[:, None]).view(dataset.num_classes, a, -1)
    imputed = _nearest_centroid(features[hidden], labels[hidden], centroids, sizes.view(dataset.num_classes, a) > 0)
    facts["imputed_right"] = float((imputed == groups[hidden]).float().mean()) if count else 1.0
    groups[hidden] = imputed
    return groups, facts


# torch.cdist's default switches to a matrix product above 25 rows on either side; up to it, it sums each pair
_CDIST_MM_ABOVE = 25


def _nearest_centroid(features: Tensor, labels: Tensor, centroids: Tensor, present: Tensor) -> Tensor:
    """For each ``[H, D]`` feature row, the index of the nearest of its class's ``[K, A, D]`` ``centroids``,
    skipping groups not ``present`` (``[K, A]``).

    Class by class, without the ``[H, A, D]`` copy of the centroids a batched ``cdist`` makes (2.5 GB for MNIST
    with half the labels hidden), and bit-identical to that batched call.
    """
    a = centroids.shape[1]
    if a > _CDIST_MM_ABOVE:  # the batched call took a matrix product whose bits depend on the batch: keep it whole
        distances = torch.cdist(features[:, None, :], centroids[labels]).squeeze(1)  # [H, A]
        distances[present[labels].logical_not()] = float("inf")  # no known sample there
        return distances.argmin(1)
    imputed = torch.empty(labels.shape[0], dtype=torch.long)
    for c in labels.unique().tolist():
        rows = (labels == c).nonzero().flatten()
        # the batched call summed each pair directly (no matrix product): so does this mode, bit for bit
        distances = torch.cdist(features[rows], centroids[c], compute_mode="donot_use_mm_for_euclid_dist")
        distances[:, present[c].logical_not()] = float("inf")  # no known sample there
        imputed[rows] = distances.argmin(1)
    return imputed
