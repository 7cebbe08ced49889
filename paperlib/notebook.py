"""What the numbered notebooks call, in one namespace (``from paperlib import notebook as nb``).

A façade: every function lives in its layer (:mod:`paperlib.experiments.profiles` for experiment files and
runs, :mod:`paperlib.report.tables` and :mod:`paperlib.report.figures` for what is shown,
:mod:`paperlib.report.checks` for the verdicts); this module only gathers them and adds the three calls that
exist for notebooks: :func:`setup`, :func:`run_all` and :func:`verdicts`.

Every notebook starts with a ``parameters`` cell holding ``profile`` (smoke, quick or paper) and the values of
its experiment file: ``suite`` and ``claims`` in notebooks 02-07 (with a few settings of their own in 04
and 05, and ``explorer`` in 06), ``datasets`` and ``ratio_sweep`` in 01. ``None`` means "read
``params/experiments/<notebook>.yaml`` as the profile sees it" (``make reproduce`` injects ``profile`` alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from paperlib.core.paths import figures_dir
from paperlib.experiments.profiles import (  # noqa: F401  (re-exported for the notebooks)
    check_profile,
    notebook_parameters,
    parameters_or_file,
    present_only,
    profile_defaults,
    suite_specs,
)
from paperlib.experiments.studies import kde_ablation, theorem_check  # noqa: F401
from paperlib.experiments.suite import RunSpec, run_suite
from paperlib.report import checks
from paperlib.report.explorer_model import explorer_coverage  # noqa: F401
from paperlib.report.figures import save, save_table, show_grids  # noqa: F401
from paperlib.report.dataset_tables import build_datasets, ratio_sweep  # noqa: F401
from paperlib.report.tables import (  # noqa: F401
    bias_effect,
    first_kde_diagnostics,
    metrics_view,
    overhead_view,
    paper_vs_companion,
    results_table,
    theorem_summary,
    weight_shares,
)

# How the notebooks show tables: one decimal, whole claims in the verdict tables (never cut with "...").
PANDAS_DISPLAY = {"display.precision": 1, "display.max_columns": 30, "display.width": 160,
                  "display.max_colwidth": None}


def setup(profile: str) -> Path:
    """Check ``profile``, apply the notebooks' display style to this kernel (seaborn's whitegrid theme and
    :data:`PANDAS_DISPLAY`: process-wide settings, which is why only notebooks call this), and return
    ``figures/<profile>/`` (created)."""
    import seaborn as sns

    check_profile(profile)
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)
    for option, value in PANDAS_DISPLAY.items():
        pd.set_option(option, value)
    return figures_dir(profile)


def run_all(specs: list[RunSpec]) -> pd.DataFrame:
    """Run every spec (stored runs load at once) under one progress bar; return the results table."""
    run_suite(specs)
    return results_table(specs)


def verdicts(notebook: str, profile: str, claims: list[Mapping[str, Any]] | None,
             *tables: pd.DataFrame) -> pd.DataFrame:
    """The notebook's checks (:mod:`paperlib.report.checks`): its claims (``claims``, else those of its parameter
    file), then its runs against the profile's reference numbers, one verdict per row."""
    if claims is None:
        claims = notebook_parameters(profile, notebook).get("claims")
    return checks.verdicts(notebook, profile, claims, *tables)
