"""What a profile's runs still need, before computing anything (``make plan``).

Per run of the notebooks' suites: where its record is (the cache, the results store, or nowhere), and for a
missing one what computing it costs: distillation iterations (none when its distilled set is cached; a set
with a checkpoint is counted in full, although it resumes) and evaluation epochs (``num_eval`` models, each
on the evaluation schedule). A reader times one iteration and one epoch on their machine with
``python -m paperlib bench``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from paperlib.core.params import Params
from paperlib.core.store import cache_root
from paperlib.distill.methods import METHODS
from paperlib.experiments.runner import distilled_dir, find_record, record_key, repeats, training_set_indices
from paperlib.experiments.suite import RunSpec
from paperlib.train.loop import TrainSettings

PLAN_COLUMNS = ("experiment", "run", "dataset", "method", "target", "ipc", "record", "distilled_set",
                "distill_iterations", "eval_epochs")


def plan(specs: list[RunSpec]) -> pd.DataFrame:
    """One row per distinct run of ``specs`` (:data:`PLAN_COLUMNS`): ``record`` is ``cache``, ``store`` or
    ``missing`` (``force=true`` counts as missing); the work columns count what a missing run computes."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    sets: dict[str, str] = {}  # distilled sets counted already (runs differing only in evaluation share one)
    for spec in specs:
        p, key = spec.params, record_key(spec.params)
        if key in seen:
            continue
        seen.add(key)
        method = METHODS[p.method]
        found = None if p.force else find_record(p)
        record = "missing" if found is None else "cache" if cache_root(p.cache_dir) in found.parents else "store"
        distilled, iterations = _distilled_set(p, sets) if method.distils and record == "missing" else ("", 0)
        epochs = repeats(p) * p.num_eval * TrainSettings.from_params(p).epochs_run
        rows.append({"experiment": spec.experiment, "run": spec.label, "dataset": p.dataset, "method": p.method,
                     "target": p.target if method.distils else "", "ipc": p.ipc if "ipc" in method.uses else None,
                     "record": record, "distilled_set": distilled, "distill_iterations": iterations,
                     "eval_epochs": epochs if record == "missing" else 0})
    return pd.DataFrame(rows, columns=list(PLAN_COLUMNS)).astype({"ipc": "Int64"})


def _distilled_set(params: Params, counted: dict[str, str]) -> tuple[str, int]:
    """Where a run's distilled sets stand (``cached``, ``checkpoint``, ``to distil`` or ``shared``: a run listed
    before distils it) and the iterations left to distil (a checkpoint's own progress is not read: its run's
    iterations are counted in full). Adds each set's state to ``counted``."""
    states, iterations = [], 0
    for index in training_set_indices(params):
        folder = distilled_dir(dataclasses.replace(params, distill_run=index))
        if folder.name in counted:
            states.append("cached" if counted[folder.name] == "cached" else "shared")
            continue
        if not params.force and (folder / "facts.json").is_file() and (folder / "synthetic.pt").is_file():
            state = "cached"
        else:
            state = "checkpoint" if not params.force and (folder / "checkpoint.pt").is_file() else "to distil"
            iterations += params.iterations
        counted[folder.name] = state
        states.append(state)
    return ", ".join(sorted(set(states))), iterations


def summary(table: pd.DataFrame) -> str:
    """One line: how many runs are stored where, and the work the missing ones need (an epoch on a whole
    training split, counted apart, passes over thousands of times more images than one on a distilled set)."""
    counts = table["record"].value_counts()
    stored = ", ".join(f"{int(counts.get(where, 0))} in the {name}" for where, name in
                       (("cache", "cache"), ("store", "results store")))
    missing = int(counts.get("missing", 0))
    whole = table["method"].map(lambda name: METHODS[name].whole_data)
    return (f"{len(table)} runs: {stored}, {missing} to compute "
            f"({int(table['distill_iterations'].sum()):,} distillation iterations, "
            f"{int(table.loc[~whole, 'eval_epochs'].sum()):,} evaluation epochs on small sets and "
            f"{int(table.loc[whole, 'eval_epochs'].sum()):,} on whole training splits)")
