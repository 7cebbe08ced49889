"""Per-training-sample weights for the ``weighted`` target: the registry of ``weights`` values.

``uniform``: all ones (equals ``vanilla``). ``group_balanced``: ``1 / n_(class, group)``, so every group of a
class carries the same total weight. ``kde``: paper A's density-based weights (:mod:`paperlib.distill.kde`);
its facts hold their one-off cost and the per-class share of weight on bias-conflicting samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from paperlib.core.params import Params
from paperlib.core.registry import Registry
from paperlib.data.container import BiasedDataset, cell_counts, cell_ids
from paperlib.distill.kde import kde_weights, weight_diagnostics

Facts = dict[str, Any]


@dataclass(frozen=True)
class SampleWeighting:
    """``weigh(dataset, params, device)``: one non-negative weight per training sample, and facts about them;
    ``paper_family``: how the papers' rows name a run with these weights (``None``: no paper reports it);
    ``display_name``: how tables and figures name a set matched with them ("DM + KDE"; ``None``: the registered
    name)."""

    weigh: Callable[[BiasedDataset, Params, torch.device], tuple[Tensor, Facts]]
    uses: tuple[str, ...] = ()
    paper_family: str | None = None
    display_name: str | None = None
    version: int = 0  # bump when its output changes: the cache then recomputes what was made with it


def _uniform(dataset: BiasedDataset, params: Params, device: torch.device) -> tuple[Tensor, Facts]:
    return torch.ones(len(dataset.train)), {}


def _group_balanced(dataset: BiasedDataset, params: Params, device: torch.device) -> tuple[Tensor, Facts]:
    train, a = dataset.train, dataset.info.num_attributes
    cells = cell_ids(train.labels, train.attributes, a)
    return 1.0 / cell_counts(cells, dataset.num_classes, a).flatten().float()[cells], {}


def _kde(dataset: BiasedDataset, params: Params, device: torch.device) -> tuple[Tensor, Facts]:
    kde = kde_weights(dataset, params, device)
    train = dataset.train
    diagnostics = weight_diagnostics(kde.weights, train.labels, train.aligned, dataset.num_classes)
    return kde.weights, {"kde_seconds": kde.seconds, "kde_diagnostics": diagnostics}


SAMPLE_WEIGHTINGS: Registry[SampleWeighting] = Registry("weights", field="weights")
SAMPLE_WEIGHTINGS.register("uniform", SampleWeighting(_uniform, display_name="uniform weights"))
SAMPLE_WEIGHTINGS.register("group_balanced", SampleWeighting(_group_balanced, display_name="group-balanced weights"))
SAMPLE_WEIGHTINGS.register("kde", SampleWeighting(_kde, uses=("kde_encoder", "kde_bandwidth", "kde_weighting",
                                                               "kde_clip"), paper_family="kde",
                                                display_name="KDE"))


def sample_weights(dataset: BiasedDataset, params: Params, device: torch.device) -> tuple[Tensor, Facts]:
    """The per-sample weights ``params.weights`` names, and facts about them."""
    return SAMPLE_WEIGHTINGS[params.weights].weigh(dataset, params, device)
