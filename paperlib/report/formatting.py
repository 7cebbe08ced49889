"""How every table of the companion writes a value: one decimal, a missing value as "–", a paper's number as
published, a ratio as a percentage, ``mean ± std``."""

from __future__ import annotations

from typing import Any

import pandas as pd

MISSING = "–"  # how a table shows a value that does not exist (a ratio a dataset lacks, a metric a paper omits)


def number(value: Any, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals, or :data:`MISSING` where it does not exist (``None`` or NaN: a metric
    of a group absent from the test split, one a paper does not report)."""
    return MISSING if pd.isna(value) else f"{value:.{digits}f}"


def as_published(value: Any) -> str:
    """A paper's number to 6 significant digits (99.96, 100, 23.8: not cut to the notebooks' one decimal; a
    printed trailing zero is not kept, 6.60 shows as 6.6), or :data:`MISSING` where the paper gives none."""
    return MISSING if pd.isna(value) else f"{float(value):g}"


def mean_std(mean: Any, std: Any, digits: int = 1) -> str:
    """``mean ± std`` with ``digits`` decimals; the mean alone where the spread does not exist (one model)."""
    if pd.isna(mean) or pd.isna(std):
        return number(mean, digits)
    return f"{number(mean, digits)} ± {number(std, digits)}"


# Shares shown as percentages in the display tables.
PERCENT_COLUMNS = ("ratio", "hidden_groups", "imputed_right")


def percent(ratio: float | None) -> str:
    """A ratio as readers write it: 0.05 -> ``5%``, 0.005 -> ``0.5%`` (:data:`MISSING` when missing)."""
    return MISSING if pd.isna(ratio) else f"{100 * ratio:.3g}%"


def rounded_value(value: Any, digits: int = 1) -> float | str:
    """``value`` to ``digits`` decimals as a number (the table stays numeric), or :data:`MISSING` (``None``: a
    metric a record holds as undefined)."""
    return MISSING if pd.isna(value) else round(value, digits)


def rounded(values: pd.Series | pd.DataFrame, digits: int = 1) -> pd.Series | pd.DataFrame:
    """Floats rounded as Python's ``round`` and the f-strings of the other tables and the README do (41.85 ->
    41.9); pandas' ``.round`` scales first and gives 41.8, so one value would read differently in two tables."""
    if isinstance(values, pd.DataFrame):
        return values.apply(lambda column: rounded(column, digits) if pd.api.types.is_float_dtype(column) else column)
    return values.map(lambda value: rounded_value(value, digits))
