"""Studies that are not runs: KDE weights under many settings, and the FairDD = |A| x barycenter check.

Each study's table is stored like a run's record (``tables/<study>-<key>.json`` in the cache, and in the
results store), keyed by the cache keys of what it computes (the KDE weights of each variant; the distilled set
of the FairDD run whose gradients it compares) and the study's own settings, so a notebook shows it again
without the data or the compute.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from paperlib.core.keys import key_values, stable_hash
from paperlib.core.params import Params
from paperlib.core.results_store import find_or_make, next_step_for
from paperlib.core.runtime import resolve_device
from paperlib.core.errors import PaperlibError
from paperlib.core.store import load_json, unreadable_message
from paperlib.data.presets import build_dataset
from paperlib.distill.kde import ablation_params, weight_ablation
from paperlib.distill.theorem import fairdd_vs_barycenter
from paperlib.experiments.profiles import profile_params


def kde_ablation(settings: Mapping[str, Any], variants: list[Mapping[str, Any]], profile: str) -> pd.DataFrame:
    """:func:`paperlib.distill.kde.weight_ablation` on the dataset ``settings`` with the profile's defaults."""
    params = profile_params(settings, profile)
    variants = [dict(v) for v in variants]

    def compute() -> pd.DataFrame:
        return pd.DataFrame(weight_ablation(build_dataset(params), params, variants, resolve_device(params.device)))

    keys = [key_values(ablation_params(params, v), "weights") for v in variants]
    labels = [v.get("label") for v in variants]
    # unrounded: the notebooks show one decimal, rounded as every other table (pandas' .round would give 41.8
    # for 41.85)
    return stored_table("kde_ablation", params, {"weights": keys, "labels": labels}, compute)


def theorem_check(settings: Mapping[str, Any], profile: str, batches: int = 3) -> pd.DataFrame:
    """:func:`paperlib.distill.theorem.fairdd_vs_barycenter` on ``settings`` with the profile's defaults."""
    # fairdd_vs_barycenter reads the network, IPC, real batch and seed of a FairDD-DM run, at the profile's scale
    # for DM: that run's set keys it
    params = profile_params({**settings, "method": "dm", "target": "groups"}, profile)

    def compute() -> pd.DataFrame:
        return pd.DataFrame(fairdd_vs_barycenter(build_dataset(params), params, resolve_device(params.device),
                                                     batches))

    fairdd = key_values(params, "distilled")
    return stored_table("theorem", params, {"run": fairdd, "batches": batches}, compute)


def stored_table(study: str, params: Params, settings: Mapping[str, Any],
                 compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The table of ``study`` keyed by ``settings`` (the cache key values of what it computes, and its own
    settings): from the cache or the results store, else ``compute()``, stored (atomically) in the cache.
    ``params`` give the cache folder and ``force`` (``force=true`` recomputes)."""
    key = stable_hash({"study": study, "settings": dict(settings)})
    relative = f"tables/{study}-{key}.json"
    # Per column, so dtypes are kept; shown as stored: the same table whether computed now or not.
    found = find_or_make(relative, params.cache_dir,
                         lambda: json.dumps({"columns": compute().to_dict(orient="list")}).encode(), params.force)
    next_step = next_step_for(found)
    saved = load_json(found, next_step)
    if not isinstance(saved.get("columns"), dict):
        raise PaperlibError(unreadable_message(found, "no columns", next_step))
    return pd.DataFrame(saved["columns"])
