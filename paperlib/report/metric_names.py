"""How tables and figures name each metric of :data:`paperlib.train.metrics.METRIC_KEYS`, in one table, and which
of them a headline table shows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricNames:
    """One metric's names: a table's column header (``short``), a figure's title, a figure's axis label."""

    short: str
    title: str
    axis: str


# Keyed by METRIC_KEYS, in their order (a test holds the two together).
METRIC_NAMES: dict[str, MetricNames] = {
    "acc": MetricNames("acc", "test accuracy (%)", "accuracy (%)"),
    "acc_aligned": MetricNames("aligned", "bias-aligned test accuracy (%)", "aligned accuracy (%)"),
    "acc_conflicting": MetricNames("conflicting", "bias-conflicting test accuracy (%)", "conflicting accuracy (%)"),
    "worst_group_acc": MetricNames("worst group", "worst-group accuracy (%)", "worst-group accuracy (%)"),
    "deo_m": MetricNames("DEO_M", "DEO_M (max over classes; lower is fairer)", "DEO_M (%)"),
    "deo_a": MetricNames("DEO_A", "DEO_A (mean over classes; lower is fairer)", "DEO_A (%)"),
}


# The metrics a headline table shows, and those the papers report beside them (paper B's acc / DEO_M / DEO_A)
HEADLINE_METRICS = ("acc", "acc_aligned", "acc_conflicting", "deo_m", "deo_a")
PAPER_METRICS = ("acc", "deo_m", "deo_a")


def short_name(column: str) -> str:
    """A metric's column header; any other column keeps its own name."""
    return METRIC_NAMES[column].short if column in METRIC_NAMES else column


def figure_title(column: str) -> str:
    """A metric's figure title; any other column keeps its own name."""
    return METRIC_NAMES[column].title if column in METRIC_NAMES else column


def axis_label(column: str) -> str:
    """A metric's axis label; any other column keeps its own name."""
    return METRIC_NAMES[column].axis if column in METRIC_NAMES else column
