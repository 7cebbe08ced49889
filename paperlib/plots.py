"""Figures: image grids, KDE weight shares, metric comparisons with the papers' values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from paperlib.store import atomic_write


def image_grid(images01: Tensor, per_row: int, pad: int = 2) -> np.ndarray:
    """Tile ``[N, C, H, W]`` images in [0, 1] into one ``[rows*(H+pad), per_row*(W+pad), 3]`` uint8 array.

    Grayscale images are shown in gray; the background between tiles is white.
    """
    x = images01.detach().cpu().float().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    n, _, h, w = x.shape
    rows = math.ceil(n / per_row)
    canvas = torch.ones(rows * per_row, 3, h + pad, w + pad)
    canvas[:n, :, :h, :w] = x
    tiles = canvas.view(rows, per_row, 3, h + pad, w + pad).permute(0, 3, 1, 4, 2)
    return (tiles.reshape(rows * (h + pad), per_row * (w + pad), 3) * 255).round().byte().numpy()


def save_image_grid(images01: Tensor, path: str | Path, per_row: int, scale: int = 2) -> Path:
    """Write :func:`image_grid` as a PNG (nearest-neighbour upscaled by ``scale``), atomically."""
    grid = Image.fromarray(image_grid(images01, per_row))
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    with atomic_write(path) as tmp:
        grid.save(tmp, format="PNG")
    return Path(path)


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg", force=False)  # files only unless a notebook already chose a backend
    import matplotlib.pyplot as plt

    return plt


def plot_weight_shares(diagnostics: list[dict], ax=None, title: str = "KDE weights per class"):
    """Bars per class: bias-conflicting share of the samples vs share of the KDE weight.

    ``diagnostics`` is :func:`paperlib.reweight.weight_diagnostics` (also stored
    in a KDE run's record). Weight bars far above sample bars mean the
    reweighting moves the matching target towards the conflicting samples.
    """
    plt = _matplotlib()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    classes = np.array([row["class"] for row in diagnostics])
    samples = [100 * row["conflicting_sample_share"] for row in diagnostics]
    weights = [100 * row["conflicting_weight_share"] for row in diagnostics]
    ax.bar(classes - 0.2, samples, width=0.4, label="share of samples", color="#9e9e9e")
    ax.bar(classes + 0.2, weights, width=0.4, label="share of weight", color="#d95f02")
    ax.set(xlabel="class", ylabel="bias-conflicting (%)", ylim=(0, 100), xticks=classes, title=title)
    ax.legend(loc="upper left", fontsize="small")
    return ax


METRIC_LABELS = {
    "acc": "test accuracy (%)",
    "acc_aligned": "bias-aligned test accuracy (%)",
    "acc_conflicting": "bias-conflicting test accuracy (%)",
    "worst_group_acc": "worst-group accuracy (%)",
    "deo_m": "DEO_M (max over classes; lower is fairer)",
    "deo_a": "DEO_A (mean over classes; lower is fairer)",
}


def plot_comparison(table, metric: str = "acc", ax=None, title: str | None = None):
    """Grouped bars of ``metric`` (mean ± std over evaluation models) per experiment and run.

    ``table`` is :func:`paperlib.suite.results_table`; rows not run are left
    out. Where a paper reports the same setting, its value is drawn as a
    black diamond labelled "paper".
    """
    plt = _matplotlib()
    done = table[table["status"] == "done"]
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 0.6 * len(done)), 3.2))
    x = np.arange(len(done))
    ax.bar(x, done[metric], yerr=done[f"{metric}_std"], color="#1b9e77", capsize=3, label="this companion")
    paper = f"paper_{metric}"
    if paper in done and done[paper].notna().any():
        ax.scatter(x, done[paper], marker="D", color="black", zorder=3, label="paper")
    ax.set_xticks(x, [f"{e}\n{r}" for e, r in zip(done["experiment"], done["run"])], rotation=60,
                  ha="right", fontsize="small")
    ax.set(ylabel=metric, title=title or METRIC_LABELS.get(metric, metric), ylim=(0, 105))
    ax.legend(fontsize="small")
    return ax


def save_figure(ax, path: str | Path) -> Path:
    """Save the figure of ``ax`` (PNG or PDF by suffix) atomically and close it."""
    plt = _matplotlib()
    figure = ax.figure
    figure.tight_layout()
    path = Path(path)
    with atomic_write(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=150)
    plt.close(figure)
    return path
