"""Accuracy and fairness metrics over (class, attribute) groups.

With ``acc[y, a]`` the recall of class ``y`` within attribute group ``a``
(FairDD's ``acc_{a,y}``), ``gap_y = max_a acc[y, a] - min_a acc[y, a]``,
``DEO_M = 100 * max_y gap_y`` and ``DEO_A = 100 * mean_y gap_y``. Groups with
no test sample are left out of the max / min, and a class then enters the max and mean only where two of its
groups (its one group, for a dataset of one) have test samples: one group's gap would read as a fair 0. A
protocol may give empty groups an accuracy instead (FairDD's code counts them as 0, and keeps every class, as it
does). All results are in percent.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from paperlib.core.errors import PaperlibError
from paperlib.core.runtime import index_range_problem
from paperlib.data.container import cell_ids

# Every metric a record holds (how tables and figures name them: paperlib.report.metric_names).
METRIC_KEYS = ("acc", "acc_aligned", "acc_conflicting", "worst_group_acc", "deo_m", "deo_a")


def _group_accuracy(predictions: Tensor, labels: Tensor, attributes: Tensor, num_classes: int,
                    num_attributes: int) -> tuple[Tensor, Tensor]:
    """Per-(class, attribute) accuracy and counts, both ``[num_classes, num_attributes]``; accuracy is NaN where
    a group has no sample."""
    flat = cell_ids(labels, attributes, num_attributes).cpu()
    correct = (predictions.cpu() == labels.cpu()).double()
    size = num_classes * num_attributes
    counts = torch.bincount(flat, minlength=size).double()
    hits = torch.bincount(flat, weights=correct, minlength=size)
    acc = torch.where(counts > 0, hits / counts.clamp_min(1), torch.full_like(counts, math.nan))
    return acc.view(num_classes, num_attributes), counts.view(num_classes, num_attributes)


def _check_scored(predictions: Tensor, labels: Tensor, attributes: Tensor, num_classes: int,
                  num_attributes: int) -> None:
    """One integer prediction, label and attribute per test sample, each in range, or a one-line error: an
    attribute out of range would be counted in the next class's cells without a word."""
    if predictions.dim() == 2:
        raise PaperlibError(f"predictions are scores {tuple(predictions.shape)}; pass the predicted classes, "
                            "scores.argmax(1)")
    n = labels.shape[0] if labels.dim() == 1 else -1
    given = (predictions, labels, attributes)
    if n < 1 or any(t.shape != (n,) or t.is_floating_point() for t in given):
        raise PaperlibError("predictions, labels and attributes must be integer tensors [N] of one length N >= 1, "
                            f"got {', '.join(f'{t.dtype} {tuple(t.shape)}' for t in given)}")
    for name, values, limit in (("predictions", predictions, num_classes), ("labels", labels, num_classes),
                                ("attributes", attributes, num_attributes)):
        problem = index_range_problem(values, limit)
        if problem:
            raise PaperlibError(f"{name} {problem}")


def _masked_mean(correct: Tensor, mask: Tensor) -> float:
    return float(correct[mask].mean()) * 100 if bool(mask.any()) else math.nan


def classification_metrics(predictions: Tensor, labels: Tensor, attributes: Tensor, aligned: Tensor | None,
                           num_classes: int, num_attributes: int,
                           empty_cell_accuracy: float | None = None) -> dict[str, float]:
    """All metrics (:data:`METRIC_KEYS`) of one model's test predictions, in percent; every tensor holds one
    integer (or for ``aligned``, bool) per test sample.

    ``acc``: overall; ``acc_aligned`` / ``acc_conflicting``: on bias-aligned /
    bias-conflicting test samples (NaN when there are none, or ``aligned`` is ``None``); ``worst_group_acc``:
    the lowest (class, attribute) group accuracy; ``deo_m`` / ``deo_a``: the
    equalised-odds gaps defined in the module docstring, with an empty (class, attribute)
    cell counted as ``empty_cell_accuracy``, a fraction in [0, 1] (FairDD's code: 0; ``None``: left out).
    """
    if empty_cell_accuracy is not None and not 0.0 <= empty_cell_accuracy <= 1.0:
        raise PaperlibError(f"empty_cell_accuracy={empty_cell_accuracy} is a fraction; give a value in [0, 1]")
    if aligned is None:
        aligned = torch.full_like(labels, -1)  # neither aligned nor conflicting: both accuracies NaN
    predictions, labels, attributes, aligned = (t.cpu() for t in (predictions, labels, attributes, aligned))
    _check_scored(predictions, labels, attributes, num_classes, num_attributes)
    correct = (predictions == labels).double()
    acc, _ = _group_accuracy(predictions, labels, attributes, num_classes, num_attributes)
    present = ~torch.isnan(acc)
    scored = acc if empty_cell_accuracy is None else torch.nan_to_num(acc, nan=empty_cell_accuracy)
    counted = ~torch.isnan(scored)
    high = torch.where(counted, scored, torch.full_like(acc, -math.inf)).amax(dim=1)
    low = torch.where(counted, scored, torch.full_like(acc, math.inf)).amin(dim=1)
    # a fill value scores every cell, as FairDD's code does; otherwise a gap needs two groups to compare
    has_gap = counted.sum(dim=1) >= min(2, num_attributes)
    gaps = (high - low)[has_gap]
    return {
        "acc": float(correct.mean()) * 100,
        "acc_aligned": _masked_mean(correct, aligned == 1),
        "acc_conflicting": _masked_mean(correct, aligned == 0),
        "worst_group_acc": float(acc[present].min()) * 100,
        "deo_m": float(gaps.max()) * 100 if len(gaps) else math.nan,
        "deo_a": float(gaps.mean()) * 100 if len(gaps) else math.nan,
    }


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean and (population) standard deviation of each metric over ``runs``: every evaluation model of every
    training set of a run (the official code pools its experiments' models the same way, ``np.std``).

    Returns ``{key: mean, key_std: std}`` for every key in :data:`METRIC_KEYS`.
    """
    out: dict[str, float] = {}
    for key in METRIC_KEYS:
        values = torch.tensor([r[key] for r in runs], dtype=torch.float64)
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(unbiased=False)) if len(runs) > 1 else 0.0
    return out
