"""The papers' reported numbers, for labelled "paper" columns beside ours.

Copied from ``PAPERS.md``; they are reference values only and never enter a
computation. Keys: ``(dataset, ratio, method, variant, ipc)`` where ``ratio``
is the conflict ratio (``cmnist``) or majority ratio (FairDD presets),
``variant`` is ``vanilla``, ``kde``, ``fairdd`` or ``lff`` and ``ipc`` is
``None`` for whole-data training.
"""

from __future__ import annotations

from paperlib.core.params import Params
from paperlib.data.presets import PRESETS, bias_ratio_name
from paperlib.distill.methods import METHODS

_A = "paper A (Cui et al., ICML 2024)"
_B = "paper B (FairDD, NeurIPS 2025)"
_B_KDE = "paper B's re-implementation of paper A"


def _fairdd(acc: float, deo_m: float, deo_a: float, source: str = _B) -> dict:
    return {"acc": acc, "deo_m": deo_m, "deo_a": deo_a, "source": source}


REPORTED: dict[tuple, dict] = {
    ("cmnist", 0.05, "dm", "vanilla", 50): {"acc": 23.8, "source": _A},
    ("cmnist", 0.05, "dm", "kde", 50): {"acc": 91.5, "source": _A},
    # Paper A does not name its "state-of-the-art debiasing" method; LfF is ours.
    ("cmnist", 0.05, "dm", "lff", 50): {"acc": 53.7, "source": _A + ", debiasing on the distilled set"},
    ("cmnist_fg", 0.9, "dm", "kde", 10): _fairdd(90.42, 34.77, 18.46, _B_KDE),
    ("cmnist_fg", 0.9, "whole", "vanilla", None): _fairdd(97.71, 10.10, 5.89),
    ("cmnist_fg", 0.9, "random", "vanilla", 10): _fairdd(30.75, 100.0, 98.72),
    ("cmnist_fg", 0.9, "dm", "vanilla", 10): _fairdd(25.01, 100.0, 99.96),
    ("cmnist_fg", 0.9, "dm", "vanilla", 50): _fairdd(56.84, 100.0, 91.68),
    ("cmnist_fg", 0.9, "dm", "vanilla", 100): _fairdd(78.04, 99.36, 66.38),
    ("cmnist_fg", 0.9, "dm", "fairdd", 10): _fairdd(94.61, 17.04, 7.95),
    ("cmnist_fg", 0.9, "dm", "fairdd", 50): _fairdd(96.58, 10.05, 5.46),
    ("cmnist_fg", 0.9, "dm", "fairdd", 100): _fairdd(96.79, 8.17, 4.86),
    ("cmnist_fg", 0.9, "dc", "vanilla", 10): _fairdd(71.41, 99.85, 65.61),
    ("cmnist_fg", 0.9, "dc", "vanilla", 50): _fairdd(90.54, 46.99, 20.55),
    ("cmnist_fg", 0.9, "dc", "vanilla", 100): _fairdd(91.64, 45.27, 17.45),
    ("cmnist_fg", 0.9, "dc", "fairdd", 10): _fairdd(90.62, 26.75, 11.96),
    ("cmnist_fg", 0.9, "dc", "fairdd", 50): _fairdd(92.68, 18.42, 8.86),
    ("cmnist_fg", 0.9, "dc", "fairdd", 100): _fairdd(93.23, 22.32, 9.49),
    ("cfmnist_fg", 0.9, "dm", "vanilla", 10): _fairdd(33.35, 100.0, 99.05),
    ("cfmnist_fg", 0.9, "dm", "vanilla", 50): _fairdd(49.94, 100.0, 96.46),
    ("cfmnist_fg", 0.9, "dm", "vanilla", 100): _fairdd(57.99, 100.0, 85.11),
    ("cfmnist_fg", 0.9, "dm", "fairdd", 10): _fairdd(77.09, 26.87, 16.38),
    ("cfmnist_fg", 0.9, "dm", "fairdd", 50): _fairdd(82.11, 24.92, 13.74),
    ("cfmnist_fg", 0.9, "dm", "fairdd", 100): _fairdd(83.25, 23.83, 12.75),
}


def variant(params: Params) -> str:
    """``vanilla``, ``kde``, ``fairdd`` or ``lff``: the method family a run belongs to.

    Runs with another weighting (e.g. ``group_balanced``) have no reported
    counterpart and give ``"other"``.
    """
    if params.eval_trainer == "lff":
        return "lff" if params.target == "vanilla" else "other"
    if not METHODS[params.method].distils or params.target == "vanilla":
        return "vanilla"
    if params.target == "groups":
        return "fairdd"
    return "kde" if params.weights == "kde" else "other"


def bias_ratio(params: Params) -> float:
    """The ratio that sets the bias strength: conflict ratio for LfF-style presets, else majority ratio."""
    return params.conflict_ratio if bias_ratio_name(params.dataset) == "conflict_ratio" else params.majority_ratio


def reported(params: Params) -> dict | None:
    """The papers' numbers for the setting of ``params`` (with ``source``), or ``None``.

    Only runs on the preset's own data source have a counterpart.
    """
    if params.source != PRESETS[params.dataset].default_source:
        return None
    ratio = bias_ratio(params)
    ipc = params.ipc if "ipc" in METHODS[params.method].uses else None
    return REPORTED.get((params.dataset, round(ratio, 4), params.method, variant(params), ipc))
