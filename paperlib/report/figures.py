"""Figures and table files of the notebooks and suites: saved atomically, reproducible byte for byte."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from paperlib.core.store import atomic_write
from paperlib.experiments.runner import load_record, stored_grid
from paperlib.experiments.suite import RunSpec
from paperlib.report.plots import (plot_comparison, plot_weight_shares, save_figure, show_image_file, subplots,
                                   write_figure)
from paperlib.report.tables import write_csv

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes


def save(ax: Axes, folder: Path, name: str, pdf: bool = False) -> Path:
    """Save the figure of ``ax`` as ``folder/name.png`` (and ``.pdf`` for the papers' figures).

    The figure stays open, so the notebook still shows it below the cell.
    """
    ax.figure.tight_layout()  # once: laid out again after drawing the PNG, the PDF's axes would move
    for suffix in ("png", "pdf") if pdf else ("png",):
        write_figure(ax.figure, Path(folder) / f"{name}.{suffix}")
    return Path(folder) / f"{name}.png"


def save_table(table: pd.DataFrame, folder: Path, name: str) -> Path:
    """Write ``table`` as ``folder/name.csv`` (atomically)."""
    return write_csv(table, Path(folder) / f"{name}.csv")


def show_grids(specs: list[RunSpec], folder: Path, name: str, per_figure_width: float = 3.2,
               max_ipc: int = 20) -> np.ndarray | None:
    """Draw the distilled-image grid of every spec that has one (up to ``max_ipc`` images per class, so each
    stays legible), four per row; save as ``folder/name.png``. A set that several specs share (runs that only
    evaluate it differently, e.g. with another trainer) is drawn once, under the first spec's name. Returns the
    array of axes (``None``: no grid stored yet)."""
    grids = {}  # stored grid -> the first spec that uses it
    for spec in specs:
        grid = stored_grid(spec.params) if spec.params.ipc <= max_ipc else None
        if grid is not None:
            grids.setdefault(grid, spec)
    shown = [(spec, grid) for grid, spec in grids.items()]
    if not shown:
        print("no distilled set stored for these runs yet")
        return None
    columns = min(4, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure, axes = subplots(rows, columns, figsize=(per_figure_width * columns, per_figure_width * rows),
                            squeeze=False)
    figure.suptitle("distilled images: one row per class, panels titled experiment / run", fontsize="medium")
    for ax in axes.flat[len(shown):]:
        ax.set_axis_off()
    for ax, (spec, path) in zip(axes.flat, shown):
        show_image_file(path, ax=ax, title=f"{spec.experiment} / {spec.label}")
    save(axes.flat[0], folder, name)
    return axes


def save_suite_figures(specs: list[RunSpec], table: pd.DataFrame, folder: str | Path, stem: str) -> list[Path]:
    """Write the figures of a suite's stored runs into ``folder``; returns the paths.

    ``<stem>_<metric>.png`` comparison bars (acc, conflicting acc, DEO_M);
    ``grids/<experiment>_<run>.png`` each distilled set;
    ``weights/<experiment>_<run>.png`` the KDE weight shares of each KDE run.
    """
    folder = Path(folder)
    written = []
    if not (table["status"] == "done").any():
        return written
    for metric in ("acc", "acc_conflicting", "deo_m"):
        written.append(save_figure(plot_comparison(table, metric), folder / f"{stem}_{metric}.png"))
    for spec in specs:
        record = load_record(spec.params)
        if record is None:
            continue
        name = f"{spec.experiment}_{spec.label}.png"
        grid = stored_grid(spec.params)
        if grid is not None:
            with atomic_write(folder / "grids" / name) as tmp:
                shutil.copyfile(grid, tmp)
            written.append(folder / "grids" / name)
        if record.get("kde_diagnostics"):
            title = f"{spec.experiment} / {spec.label}: KDE weight on bias-conflicting samples"
            ax = plot_weight_shares(record["kde_diagnostics"], title=title)
            written.append(save_figure(ax, folder / "weights" / name))
    return written
