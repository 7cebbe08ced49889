"""Studies that are not runs: KDE weights under many settings, and the FairDD = group-balanced check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from paperlib.core.runtime import resolve_device
from paperlib.data.presets import build_dataset
from paperlib.distill.kde import weight_ablation
from paperlib.distill.theorem import fairdd_vs_group_balanced
from paperlib.experiments.profiles import profile_params


def kde_ablation(settings: Mapping[str, Any], variants: list[Mapping[str, Any]], profile: str) -> pd.DataFrame:
    """:func:`paperlib.distill.kde.weight_ablation` on the dataset ``settings`` with the profile's defaults."""
    params = profile_params(settings, profile)
    rows = weight_ablation(build_dataset(params), params, [dict(v) for v in variants], resolve_device(params.device))
    return pd.DataFrame(rows).round(1)


def theorem_check(settings: Mapping[str, Any], profile: str, batches: int = 3) -> pd.DataFrame:
    """:func:`paperlib.distill.theorem.fairdd_vs_group_balanced` on ``settings`` with the profile's defaults."""
    params = profile_params(settings, profile)
    return pd.DataFrame(fairdd_vs_group_balanced(build_dataset(params), params, resolve_device(params.device),
                                                 batches))
