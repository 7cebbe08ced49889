"""Figures: image grids, KDE weight shares, metric comparisons with the papers' values."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from paperlib.core.images import image_grid
from paperlib.core.runtime import generator
from paperlib.core.store import atomic_write
from paperlib.data.container import BiasedDataset, sample_per_class
from paperlib.report.metric_names import axis_label, figure_title
from paperlib.report.styles import run_styles

if TYPE_CHECKING:  # matplotlib and pandas load when a figure is drawn, not when paperlib is imported
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _matplotlib():
    """pyplot, imported when a figure is drawn (matplotlib picks its backend: inline in a notebook, a
    file-only one on a machine without a display); the backend is never switched here."""
    import matplotlib.pyplot as plt

    return plt


def plot_weight_shares(diagnostics: list[dict], ax: Axes | None = None, title: str = "KDE weights per class") -> Axes:
    """Bars per class: bias-conflicting share of the samples vs share of the KDE weight.

    ``diagnostics`` is :func:`paperlib.distill.kde.weight_diagnostics` (also stored
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
    _legend_outside(ax)
    return ax


def _legend_outside(ax: Axes, title: str | None = None) -> None:
    """The legend right of the axes, where it covers no bar or point."""
    ax.legend(fontsize="small", title=title, title_fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)


def _errors(std: pd.Series) -> pd.Series | None:
    """Error-bar half-lengths: ``std`` where it is positive, ``None`` where no row has a spread (one evaluation
    model, or std 0), so a run without a spread gets no bar or cap."""
    spread = std.where(std > 0)
    return spread if spread.notna().any() else None


def _paper_name(source: Any) -> str:
    """The legend entry of a paper's reported value: its source up to the first parenthesis ("paper B (FairDD,
    NeurIPS 2025)" -> "paper B (reported)"); "paper (reported)" when the table names no source."""
    text = str(source).split(" (")[0].strip() if isinstance(source, str) and source.strip() else "paper"
    return f"{text} (reported)"


# Marker styles of the papers' values, one per source in order of appearance (face colour, marker).
_PAPER_MARKERS = (("black", "D"), ("white", "D"), ("black", "s"), ("white", "s"))


def plot_comparison(table: pd.DataFrame, metric: str = "acc", ax: Axes | None = None,
                    title: str | None = None, legend: bool = True) -> Axes:
    """Bars of ``metric`` (mean ± std over evaluation models) per experiment and run.

    ``table`` is :func:`paperlib.report.tables.results_table`; rows not run are left
    out. Where a paper reports the same setting, its value is drawn as a diamond, one
    style per ``paper_source`` and labelled with it ("paper B (reported)"); the legend's
    title (runs grouped by experiment) or the x axis names the protocol of the bars. A bar has its run's colour
    and hatch (:func:`paperlib.report.styles.run_styles`: its distilled set's colour, as in every figure). When the same
    runs repeat over several experiments (the same methods on several datasets), the runs are named in the
    legend and the bars grouped per experiment; otherwise each bar is named
    "experiment / run", or by its run alone under an axis named after the one
    experiment. A row without a spread (one evaluation model) gets no error bar. ``legend=False`` leaves the
    legend out (the left panel of two that share one).
    """
    import pandas as pd  # loaded when a figure is drawn, as matplotlib
    from matplotlib.patches import Patch

    plt = _matplotlib()
    done = table[table["status"] == "done"]
    runs, experiments = list(dict.fromkeys(done["run"])), list(dict.fromkeys(done["experiment"]))
    blocks = [e for i, e in enumerate(done["experiment"]) if i == 0 or e != done["experiment"].iloc[i - 1]]
    # the same runs over several experiments, each experiment's rows together: one colour per run, one group each
    by_run = 1 < len(runs) < len(done) and len(runs) <= 10 and len(blocks) == len(experiments)
    # one experiment: its runs name the bars and the experiment the axis; several: "experiment / run"
    single = len(experiments) == 1
    labels = experiments if by_run else list(done["run"]) if single else [
        f"{e} / {r}" for e, r in zip(done["experiment"], done["run"])]
    if ax is None:  # taller for long labels, which are drawn slanted below the bars
        longest = max((len(label) for label in labels), default=0)
        _, ax = plt.subplots(figsize=(max(6, 0.6 * len(done)), max(3.2, 1.8 + 0.065 * longest)))
    protocols = sorted(set(done["protocol"])) if "protocol" in done else []  # which construction the bars used
    ours = "this companion" + (f" ({protocols[0]} protocol)" if len(protocols) == 1
                               else f" (protocols: {', '.join(protocols)})" if protocols else "")
    styles = run_styles(done, "run")  # each run as in every other figure
    x = np.arange(len(done))
    if by_run:
        x = x + 0.8 * np.array([experiments.index(e) for e in done["experiment"]])
    ax.bar(x, done[metric], yerr=_errors(done[f"{metric}_std"]), capsize=3, label="_bars",
           color=[styles[r][0] for r in done["run"]], hatch=[styles[r][1] for r in done["run"]],
           edgecolor="white", linewidth=0)  # the hatch in white over the bar's colour; no outline
    paper = f"paper_{metric}"
    if paper in done and done[paper].notna().any():
        reported = done[paper].notna()
        sources = (done["paper_source"].map(_paper_name) if "paper_source" in done
                   else pd.Series("paper (reported)", index=done.index))
        for (face, marker), name in zip(_PAPER_MARKERS * 4, dict.fromkeys(sources[reported])):
            values = done[paper].where(sources == name)  # every x, NaN where another source (or none) reports
            ax.scatter(x, values, marker=marker, facecolor=face, edgecolor="black", zorder=3, label=name)
    ax.set(ylabel=axis_label(metric), title=title or figure_title(metric),
           ylim=(0, 105), yticks=range(0, 101, 20))
    handles = [Patch(facecolor=styles[run][0], hatch=styles[run][1], edgecolor="white", label=run) for run in runs] \
        if by_run else []
    handles += ax.get_legend_handles_labels()[0]
    ax.grid(axis="x", visible=False)  # a vertical line would cut through a group of bars
    if by_run:  # one tick per experiment, under the middle of its group; the runs told apart by colour
        centres = [x[(done["experiment"] == e).to_numpy()].mean() for e in experiments]
        slanted = max(map(len, labels)) > 12
        ax.set_xticks(centres, labels, rotation=20 if slanted else 0, ha="right" if slanted else "center",
                      rotation_mode="anchor", fontsize="small")
    else:
        ax.set_xticks(x, labels, rotation=60, ha="right", rotation_mode="anchor", fontsize="small")
        # what the bars are, under the ticks: wrapped, as a long label would run past a narrow figure's edge
        ax.set_xlabel(textwrap.fill(f"run (experiment {experiments[0]}): {ours}" if single else ours, 50))
    if not legend or not handles:  # nothing to name: the ticks name the runs, and no paper reports
        return ax
    # beside the axes, covering no bar or marker; long source names wrapped
    wrapped = [textwrap.fill(h.get_label(), 24, break_on_hyphens=False) for h in handles]
    ax.legend(handles=handles, labels=wrapped, fontsize="small", title=textwrap.fill(ours, 28) if by_run else None,
              title_fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return ax


def save_figure(ax: Axes, path: str | Path) -> Path:
    """Lay out the figure of ``ax``, save it with :func:`write_figure` and close it."""
    plt = _matplotlib()
    ax.figure.tight_layout()
    write_figure(ax.figure, path)
    plt.close(ax.figure)
    return Path(path)


def write_figure(figure: Figure, path: str | Path) -> None:
    """Write ``figure`` as it is laid out (PNG or PDF by suffix) atomically: the same figure, the same bytes."""
    path = Path(path)
    kind = path.suffix.lstrip(".") or "png"
    with atomic_write(path) as tmp:
        # No creation date in PDFs, so an unchanged figure gives an unchanged file.
        figure.savefig(tmp, format=kind, dpi=150, metadata={"CreationDate": None} if kind == "pdf" else None)


def framed_sample_grid(dataset: BiasedDataset, per_class: int = 8, seed: int = 0) -> np.ndarray:
    """:func:`image_grid` of ``per_class`` random training images per class (one row per class), with every
    bias-conflicting (minority-group) image framed: a red outer line and a white inner one, so that the frame
    shows on every background (a red background hides a red line alone, a white one a white line)."""
    train = dataset.train
    index = sample_per_class(train.labels, per_class, generator(seed))
    images = dataset.denormalize(dataset.normalized(train.subset(index))).clamp(0, 1)
    framed = images.expand(-1, 3, -1, -1).clone()
    conflicting = torch.nonzero(~train.aligned[index].bool()).flatten()
    h, w = framed.shape[-2:]
    for inset, colour in ((0, (1.0, 0.0, 0.0)), (1, (1.0, 1.0, 1.0))):
        line = torch.tensor(colour).view(1, 3, 1)
        for edge in (inset, h - 1 - inset):
            framed[conflicting, :, edge, inset:w - inset] = line
        for edge in (inset, w - 1 - inset):
            framed[conflicting, :, inset:h - inset, edge] = line
    return image_grid(framed, per_class)


def plot_sample_grid(dataset: BiasedDataset, per_class: int = 8, seed: int = 0, ax: Axes | None = None,
                     title: str | None = None) -> Axes:
    """:func:`framed_sample_grid` drawn without axes, so the bias ratio is visible at a glance."""
    plt = _matplotlib()
    if ax is None:
        _, ax = plt.subplots(figsize=(per_class * 0.45, dataset.num_classes * 0.45))
    ax.imshow(framed_sample_grid(dataset, per_class, seed), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title or f"{dataset.info.preset}: rows = classes, framed = bias-conflicting", fontsize="small")
    return ax


def plot_group_counts(counts: np.ndarray | Tensor, attribute_names: list[str], ax: Axes | None = None,
                      title: str = "training samples per group") -> Axes:
    """Heatmap of samples per (class, attribute) group on a log colour scale."""
    import seaborn as sns
    from matplotlib.colors import LogNorm

    plt = _matplotlib()
    counts = np.asarray(counts, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * counts.shape[1] + 2, 0.35 * counts.shape[0] + 1))
    shown = np.where(counts > 0, counts, np.nan)
    names, kind = _attribute_ticks(attribute_names)
    sns.heatmap(shown, ax=ax, norm=LogNorm(vmin=1, vmax=max(2.0, counts.max())), cmap="viridis",
                annot=counts.shape[1] <= 10, fmt=".0f", annot_kws={"fontsize": 6},
                xticklabels=names, cbar_kws={"label": "samples (log)"})
    ax.set(xlabel=f"{kind or 'attribute'} (bias / protected group)", ylabel="class", title=title)
    if max(map(len, names), default=0) > 3:  # slanted: upright names as long as "gaussian_noise" squeeze the panel
        ax.set_xticks(ax.get_xticks(), names, rotation=40, ha="right", rotation_mode="anchor")
    return ax


def _attribute_ticks(attribute_names: list[str]) -> tuple[list[str], str]:
    """Tick labels of the attribute axis and the kind they share: numbered names ("background 0",
    "background 1", ...) become "0", "1", ... with the kind "background"; other names stay whole."""
    names = [str(name) for name in attribute_names]
    kinds = {name.rsplit(" ", 1)[0] for name in names if " " in name}
    if len(names) > 1 and len(kinds) == 1 and all(" " in name for name in names):
        kind = kinds.pop()
        return [name.rsplit(" ", 1)[1] for name in names], "" if kind == "none" else kind  # "none": no bias
    return names, ""


def plot_ratio_curves(table: pd.DataFrame, metric: str = "acc", ax: Axes | None = None,
                      title: str | None = None, hue: str = "run") -> Axes:
    """``metric`` against the bias ratio, one line per value of ``hue``: the run label (``whole``, ``dm``, ...)
    or, with ``hue="distilled_set"``, the set's name ("whole data", "DM + KDE"; each must name one run per ratio).

    ``table`` is :func:`paperlib.report.tables.results_table` with a ``ratio`` column;
    the x axis is logarithmic because the ratios span 0.5% to 20% (paper A's line of work: 0.5-5%). Paper B's
    majority ratios (all above 0.5) are drawn as the minority share, ``1 - ratio``, on the same kind of axis.
    """
    done = table[table["status"] == "done"]
    majority = len(done) > 0 and bool((done["ratio"] > 0.5).all())
    shown = table.assign(ratio=1 - table["ratio"]) if majority else table
    ax = plot_against(shown, "ratio", metric, hue=hue, ax=ax, title=title or figure_title(metric))
    ax.set_xlabel("minority share (1 - majority ratio)" if majority else "bias-conflicting ratio")
    _legend_outside(ax)
    return ax


def plot_aligned_conflicting(table: pd.DataFrame, ax: Axes | None = None,
                             title: str = "bias-aligned vs bias-conflicting test accuracy") -> Axes:
    """Paired horizontal bars per run, top to bottom in the table's order: accuracy on bias-aligned and on
    bias-conflicting test samples (± std over evaluation models where there is a spread), each run labelled
    "experiment / run" on the left, where a long label costs no bar height."""
    plt = _matplotlib()
    done = table[table["status"] == "done"]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.9 + 0.42 * len(done)))
    y = np.arange(len(done))
    for offset, key, name, colour in ((-0.2, "acc_aligned", "aligned", "#7570b3"),
                                      (0.2, "acc_conflicting", "conflicting", "#d95f02")):
        ax.barh(y + offset, done[key], 0.4, xerr=_errors(done[f"{key}_std"]), color=colour, label=name, capsize=2)
    ax.set_yticks(y, [f"{e} / {r}" for e, r in zip(done["experiment"], done["run"])], fontsize="small")
    ax.set_ylim(len(done) - 0.5, -0.5)  # the first run on top
    ax.grid(axis="y", visible=False)
    ax.set(xlabel="test accuracy (%)", xlim=(0, 105), xticks=range(0, 101, 20), title=title)
    _legend_outside(ax, title="test samples")
    return ax


def plot_grouped_bars(table: pd.DataFrame, x: str, hue: str, metric: str = "acc", ax: Axes | None = None,
                      title: str = "") -> Axes:
    """Bars of ``metric`` (mean ± std over evaluation models) grouped by ``table[x]``, one colour per ``hue``
    value (its distilled set's, :func:`paperlib.report.styles.run_styles`), in the order the values first
    appear; e.g. ``x="eval_model", hue="target"`` puts the vanilla and
    the reweighted set side by side for each architecture that trained on them."""
    plt = _matplotlib()
    done = table[table["status"] == "done"]
    groups, hues = list(dict.fromkeys(done[x])), list(dict.fromkeys(done[hue]))
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4, 1.2 * len(groups) * len(hues) / 2 + 1), 3.2))
    width, styles = 0.8 / len(hues), run_styles(done, hue)
    for i, value in enumerate(hues):
        rows = done[done[hue] == value].set_index(x).reindex(groups)
        colour, hatch = styles[value]
        ax.bar(np.arange(len(groups)) + (i - (len(hues) - 1) / 2) * width, rows[metric], width,
               yerr=_errors(rows[f"{metric}_std"]), capsize=3, label=str(value), color=colour, hatch=hatch,
               edgecolor="white", linewidth=0)
    ax.set_xticks(np.arange(len(groups)), [str(g) for g in groups])
    ax.set(xlabel=x.replace("_", " "), ylabel=axis_label(metric), ylim=(0, 105), yticks=range(0, 101, 20),
           title=title or figure_title(metric))
    _legend_outside(ax, title=hue.replace("_", " "))
    return ax


def show_image_file(path: str | Path, ax: Axes | None = None, title: str = "") -> Axes:
    """Draw a stored PNG (e.g. a distilled set's ``synthetic.png``) without axes."""
    plt = _matplotlib()
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(np.asarray(Image.open(path)), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize="small")
    return ax


def plot_conflicting_counts(per_class: pd.DataFrame, ax: Axes | None = None,
                            title: str = "bias-conflicting training images per class") -> Axes:
    """Bars of bias-conflicting (minority) images per class, one colour per ratio value (log y).

    ``per_class`` is the first frame of :func:`paperlib.notebook.ratio_sweep`.
    """
    import seaborn as sns

    plt = _matplotlib()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    if per_class.empty:  # no dataset of the sweep on this machine (said where the sweep was built)
        ax.text(0.5, 0.5, "no dataset of this sweep is on this machine", ha="center", va="center",
                transform=ax.transAxes)
        ax.set(title=title)
        ax.set_axis_off()
        return ax
    frame = per_class.assign(setting=per_class["dataset"] + " " + per_class["ratio"].str.replace("_ratio", "")
                             + " " + per_class["value"].map(lambda v: f"{100 * v:.3g}%"))
    sns.barplot(data=frame, x="class", y="conflicting", hue="setting", ax=ax)
    ax.set_yscale("log")
    # from 1: a log axis cut just below the smallest bar would draw 54 images as nothing beside 68
    ax.set(ylabel="conflicting images (log)", title=title, ylim=(1, None))
    _legend_outside(ax)
    return ax


def subplots(*args: Any, **kwargs: Any) -> tuple[Figure, Any]:
    """``matplotlib.pyplot.subplots`` with this module's backend choice."""
    return _matplotlib().subplots(*args, **kwargs)


def plot_bars(frame: pd.DataFrame, label: str, value: str, ax: Axes | None = None, title: str = "") -> Axes:
    """Horizontal bars of ``frame[value]`` per ``frame[label]`` (0-100 scale)."""
    import seaborn as sns

    plt = _matplotlib()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(frame) + 1))
    sns.barplot(data=frame, y=label, x=value, color="#d95f02", ax=ax)
    ax.set(xlim=(0, 100), ylabel="", title=title)
    return ax


def plot_against(table: pd.DataFrame, x: str, metric: str = "acc", hue: str = "target", ax: Axes | None = None,
                 title: str = "") -> Axes:
    """``metric`` of the done runs against a numeric column ``x``, one line per ``hue`` value, in its distilled
    set's colour (:func:`paperlib.report.styles.run_styles`) and its own marker."""
    import seaborn as sns

    plt = _matplotlib()
    done = table[table["status"] == "done"]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    palette = {value: colour for value, (colour, _) in run_styles(done, hue).items()}
    sns.lineplot(data=done, x=x, y=metric, hue=hue, style=hue, markers=True, dashes=False, palette=palette, ax=ax)
    values = sorted(done[x].unique())
    ax.set_xscale("log")
    ax.set_xticks(values, [f"{100 * v:.3g}%" if x == "ratio" else f"{v:g}" for v in values])
    ax.minorticks_off()  # the log axis's minor ticks would print as 2×10¹: only the values run are labelled
    if ax.get_legend() is not None:
        ax.get_legend().set_title(hue.replace("_", " "))
    ax.set(xlabel={"ipc": "images per class (IPC)"}.get(x, x), ylabel=axis_label(metric),
           ylim=(0, 105), title=title)
    return ax


def sample_grid_png(dataset: BiasedDataset, per_class: int = 8, seed: int = 0, scale: int = 2) -> bytes:
    """:func:`framed_sample_grid` as PNG bytes, upscaled by ``scale`` (for the explorer's image widget)."""
    grid = Image.fromarray(framed_sample_grid(dataset, per_class, seed))
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()
