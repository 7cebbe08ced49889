"""Figures drawn from results tables: bar heights and error bars come from the table's columns."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from paperlib.core.errors import PaperlibError  # noqa: E402
from paperlib.report.plots import plot_grouped_bars  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")  # pyplot keeps every figure a test opened


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "eval_model": ["convnet", "lenet", "convnet", "lenet", "mlp"],
        "target": ["weighted", "weighted", "vanilla", "vanilla", "vanilla"],
        "acc": [82.7, 70.3, 22.0, 31.6, 24.9],
        "acc_std": [1.2, 6.8, 0.6, 6.4, 1.2],
        "status": ["done", "done", "done", "done", "done"],
    })


def _bar_containers(ax):
    from matplotlib.container import BarContainer

    return [c for c in ax.containers if isinstance(c, BarContainer)]


def test_grouped_bars_put_each_hue_beside_the_other_within_each_group():
    ax = plot_grouped_bars(_table(), "eval_model", "target")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["convnet", "lenet", "mlp"]
    weighted, vanilla = _bar_containers(ax)
    assert [b.get_height() for b in weighted.patches][:2] == [82.7, 70.3]
    assert [b.get_height() for b in vanilla.patches] == [22.0, 31.6, 24.9]
    # the weighted bar of a group sits left of its vanilla bar, both around the group's tick
    assert weighted.patches[1].get_x() < vanilla.patches[1].get_x() < 1.5
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["weighted", "vanilla"]
    errorbars = [c for c in ax.containers if c not in (weighted, vanilla)]
    lenet_weighted = errorbars[0].lines[2][0].get_segments()[1]  # the std is drawn about the mean: 70.3 ± 6.8
    assert [y for _, y in lenet_weighted] == pytest.approx([63.5, 77.1])


def test_grouped_bars_leave_a_gap_for_a_missing_combination_and_skip_unfinished_rows():
    table = _table()
    table.loc[1, "status"] = "missing"
    ax = plot_grouped_bars(table, "eval_model", "target")
    heights = [b.get_height() for b in _bar_containers(ax)[0].patches]
    assert heights[0] == pytest.approx(82.7) and all(h != h for h in heights[1:])  # NaN: no bar drawn


def test_comparison_bars_show_the_paper_only_where_it_reports_and_make_room_for_long_labels():
    from paperlib.report.plots import plot_comparison

    def table(run_names):
        return pd.DataFrame({"experiment": ["e"] * len(run_names), "run": run_names, "acc": [50.0] * len(run_names),
                             "acc_std": [1.0] * len(run_names), "paper_acc": [60.0] + [None] * (len(run_names) - 1),
                             "status": ["done"] * len(run_names)})

    short = plot_comparison(table(["dm", "dm_kde"]))
    from matplotlib.collections import PathCollection

    diamonds = next(c for c in short.collections if isinstance(c, PathCollection)).get_offsets()
    assert [t.get_text() for t in short.get_xticklabels()] == ["dm", "dm_kde"]  # one experiment: the axis's
    assert short.get_xlabel() == "run (experiment e): this companion"  # the bars named where no legend is
    long = plot_comparison(table(["dm"]).assign(experiment="colour_0.05_ipc50", protocol="companion"))
    assert long.get_xlabel() == "run (experiment colour_0.05_ipc50): this companion\n(companion protocol)"
    two = table(["dm", "dm"]).assign(experiment=["e", "f"])
    assert [t.get_text() for t in plot_comparison(two).get_xticklabels()] == ["e / dm", "f / dm"]
    heights = np.ma.filled(np.ma.asarray(diamonds, dtype=float), np.nan)[:, 1]
    assert heights[0] == 60.0 and np.isnan(heights[1])  # no paper value: no diamond
    long = plot_comparison(table(["dm", "dm_fairdd_stratified_with_a_long_name"]))
    assert long.figure.get_figheight() > short.figure.get_figheight() == 3.2


def _comparison_table(experiments, runs, std=0.0, sources=None):
    rows = [(e, r) for e in experiments for r in runs]
    table = pd.DataFrame({"experiment": [e for e, _ in rows], "run": [r for _, r in rows],
                          "acc": [50.0] * len(rows), "acc_std": [std] * len(rows), "status": ["done"] * len(rows),
                          "paper_acc": [None] * len(rows), "paper_source": [None] * len(rows)})
    for i, source in (sources or {}).items():
        table.loc[i, ["paper_acc", "paper_source"]] = [60.0, source]
    return table


def test_comparison_names_each_paper_and_draws_no_error_bar_without_a_spread():
    from matplotlib.container import ErrorbarContainer

    from paperlib.report.plots import plot_comparison

    ax = plot_comparison(_comparison_table(["e"], ["dm", "dm_kde", "dm_fairdd"], std=0.0,
                                           sources={0: "paper A (Cui et al., ICML 2024)",
                                                    2: "paper B (FairDD, NeurIPS 2025)"}))
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "paper A (reported)" in texts and "paper B (reported)" in texts
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]  # one model: no bar, no cap
    unnamed = _comparison_table(["e"], ["dm", "dm_kde"], std=1.0).assign(paper_acc=[60.0, None])
    ax = plot_comparison(unnamed)  # a reported value without a source
    assert "paper (reported)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_comparison_colours_each_run_alike_across_experiments_with_one_tick_per_experiment():
    from paperlib.report.plots import plot_comparison

    table = _comparison_table(["cmnist_fg", "cmnist_bg"], ["vanilla", "fairdd", "cobra"])
    ax = plot_comparison(table.assign(protocol=["fairdd"] * 3 + ["companion"] * 3))
    assert ax.get_legend().get_title().get_text() == "this companion (protocols:\ncompanion, fairdd)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cmnist_fg", "cmnist_bg"]
    bars = _bar_containers(ax)[0].patches
    colours = [b.get_facecolor() for b in bars]
    assert colours[0] == colours[3] and colours[1] == colours[4] and colours[0] != colours[1]
    assert bars[3].get_x() - bars[2].get_x() > bars[1].get_x() - bars[0].get_x()  # a gap between experiments
    assert {"vanilla", "fairdd", "cobra"} <= {t.get_text() for t in ax.get_legend().get_texts()}


def test_group_counts_keep_whole_attribute_names_and_move_a_shared_kind_to_the_axis_label():
    from paperlib.report.plots import plot_group_counts

    counts = np.full((2, 2), 5.0)
    ax = plot_group_counts(counts, ["gaussian_noise", "impulse_noise"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["gaussian_noise", "impulse_noise"]
    ax = plot_group_counts(counts, ["background 0", "background 1"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]
    assert ax.get_xlabel().startswith("background")


def test_lines_against_ipc_label_only_the_values_run():
    from paperlib.report.plots import plot_against

    table = pd.DataFrame({"ipc": [10, 50, 10, 50], "acc": [22.0, 28.0, 83.0, 88.0], "status": ["done"] * 4,
                          "distilled_set": ["DM", "DM", "DM + KDE", "DM + KDE"]})
    ax = plot_against(table, "ipc", "acc", hue="distilled_set")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "50"]
    assert not [t for t in ax.get_xticklabels(minor=True) if t.get_text()]
    assert ax.get_legend().get_title().get_text() == "distilled set"


@pytest.mark.parametrize("ratios, label, ticks", [
    ([0.01, 0.05], "bias-conflicting ratio", ["1%", "5%"]),
    ([0.95, 0.85], "minority share (1 - majority ratio)", ["5%", "15%"]),  # drawn as 1 - ratio, as labelled
])
def test_ratio_curves_draw_what_their_axis_says(ratios, label, ticks):
    from paperlib.report.plots import plot_ratio_curves

    table = pd.DataFrame({"ratio": ratios, "acc": [40.0, 60.0], "status": ["done"] * 2, "run": ["dm"] * 2})
    ax = plot_ratio_curves(table)
    assert ax.get_xlabel() == label
    assert [t.get_text() for t in ax.get_xticklabels()] == ticks


def test_a_conflicting_image_is_framed_red_outside_and_white_inside_and_an_aligned_one_is_not():
    from paperlib.core.params import make_params
    from paperlib.core.runtime import generator
    from paperlib.data import build_dataset
    from paperlib.data.container import sample_per_class
    from paperlib.report.plots import framed_sample_grid

    dataset = build_dataset(make_params(dataset="cmnist_bg", source="digits", majority_ratio=0.5, device="cpu"))
    grid = framed_sample_grid(dataset, per_class=4, seed=0)
    aligned = dataset.train.aligned[sample_per_class(dataset.train.labels, 4, generator(0))].bool().tolist()
    size, pad = dataset.image_size, 2
    for i, is_aligned in enumerate(aligned):
        tile = grid[(i // 4) * (size + pad):(i // 4) * (size + pad) + size, (i % 4) * (size + pad):][:, :size]
        outer, inner = tile[0, size // 2].tolist(), tile[1, size // 2].tolist()
        if is_aligned:  # the image's own pixels: its background colour, never both red and white
            assert not (outer == [255, 0, 0] and inner == [255, 255, 255])
        else:
            assert (outer, inner) == ([255, 0, 0], [255, 255, 255])
    assert not all(aligned) and any(aligned)


def test_aligned_conflicting_bars_lie_flat_with_every_run_named_top_to_bottom():
    from paperlib.report.plots import plot_aligned_conflicting

    table = pd.DataFrame({"experiment": ["colour_0.05"] * 3, "run": ["dm", "dm_kde", "dm_lff"],
                          "acc_aligned": [99.9, 80.4, 99.0], "acc_aligned_std": [0.0] * 3,
                          "acc_conflicting": [13.5, 82.9, 14.0], "acc_conflicting_std": [0.0] * 3,
                          "status": ["done", "done", "missing"]})
    ax = plot_aligned_conflicting(table)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["colour_0.05 / dm", "colour_0.05 / dm_kde"]
    aligned, conflicting = _bar_containers(ax)
    assert [b.get_width() for b in aligned.patches] == [99.9, 80.4]  # horizontal: the accuracy is the width
    assert [b.get_width() for b in conflicting.patches] == [13.5, 82.9]
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # the table's first run on top


def test_comparison_can_leave_its_legend_to_the_neighbouring_panel():
    from paperlib.report.plots import plot_comparison

    table = _comparison_table(["cmnist_fg", "cmnist_bg"], ["vanilla", "fairdd"])
    assert plot_comparison(table, legend=False).get_legend() is None
    ax = plot_comparison(table)
    assert ax.get_legend() is not None
    assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())  # short names: level, under their group
    assert not any(line.get_visible() for line in ax.get_xgridlines())  # no line through a group of bars


def test_grids_draw_a_distilled_set_once_however_many_runs_evaluate_it(tmp_path, monkeypatch):
    """LfF trains on the vanilla DM set: its run shares that set's grid, which is drawn once, under the first
    run's name."""
    from types import SimpleNamespace

    from PIL import Image

    from paperlib.report import figures

    png = tmp_path / "dm.png"
    Image.new("RGB", (8, 8)).save(png)
    other = tmp_path / "dm_kde.png"
    Image.new("RGB", (8, 8)).save(other)
    grids = {"dm": png, "dm_lff": png, "dm_kde": other}
    specs = [SimpleNamespace(experiment="e", label=label, params=SimpleNamespace(ipc=10, label=label))
             for label in grids]
    monkeypatch.setattr(figures, "stored_grid", lambda params: grids[params.label])
    axes = figures.show_grids(specs, tmp_path, "grids")
    titles = [ax.get_title() for ax in axes.flat if ax.get_title()]
    assert titles == ["e / dm", "e / dm_kde"]
    assert axes.flat[0].figure.get_suptitle().startswith("distilled images: one row per class")


def test_conflicting_counts_start_their_log_axis_at_one_image():
    from paperlib.report.plots import plot_conflicting_counts

    per_class = pd.DataFrame({"dataset": ["cmnist"] * 2, "ratio": ["conflict_ratio"] * 2, "value": [0.01, 0.01],
                              "class": [0, 1], "conflicting": [54, 68]})
    ax = plot_conflicting_counts(per_class)
    assert ax.get_ylim()[0] == 1  # the bars of 54 and 68 images rise from 1, not from just below 54


def test_every_metric_a_record_holds_has_its_names_in_the_one_table():
    from paperlib.report.metric_names import METRIC_NAMES, axis_label, figure_title, short_name
    from paperlib.train.metrics import METRIC_KEYS

    assert tuple(METRIC_NAMES) == METRIC_KEYS
    assert (short_name("deo_m"), figure_title("acc"), axis_label("acc_conflicting")) == (
        "DEO_M", "test accuracy (%)", "conflicting accuracy (%)")
    assert short_name("ipc") == figure_title("ipc") == axis_label("ipc") == "ipc"  # not a metric: its own name


def test_fit_width_gives_back_a_2x_grid_pixel_for_pixel_and_leaves_a_narrow_one_alone(tmp_path):
    import io

    import torch
    from PIL import Image

    from paperlib.core.images import fit_width, image_grid, save_image_grid

    images = torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    path = save_image_grid(images, tmp_path / "grid.png", per_row=6, scale=2)  # 6 * 10 * 2 = 120 px wide
    stored = path.read_bytes()
    assert fit_width(stored, 120) is stored
    shrunk = np.asarray(Image.open(io.BytesIO(fit_width(stored, 100))))
    assert np.array_equal(shrunk, image_grid(images, per_row=6))
    assert Image.open(io.BytesIO(fit_width(stored, 35))).width <= 35  # factor 4 (a 30 px wide image)
    with pytest.raises(ValueError, match="max_width must be at least 1"):
        fit_width(stored, 0)


def test_plot_bars_draws_one_bar_per_row_at_its_value_on_a_0_100_axis():
    from paperlib.report.plots import plot_bars

    ax = plot_bars(pd.DataFrame({"name": ["a", "b"], "share": [30.0, 75.5]}), "name", "share", title="t")
    assert [bar.get_width() for bar in ax.patches] == [30.0, 75.5]
    assert ax.get_xlim() == (0, 100) and ax.get_title() == "t"
    assert [label.get_text() for label in ax.get_yticklabels()] == ["a", "b"]


def test_fit_width_averages_a_grid_it_shrinks_by_more_than_its_scale():
    import io

    from PIL import Image

    from paperlib.core.images import fit_width

    stripes = np.zeros((4, 12, 3), dtype=np.uint8)
    stripes[:, 1::2] = 255  # one-pixel columns: nearest neighbour at factor 3 would keep some, drop others
    buffer = io.BytesIO()
    Image.fromarray(stripes).save(buffer, format="PNG")
    shrunk = np.asarray(Image.open(io.BytesIO(fit_width(buffer.getvalue(), 4)))).astype(int)
    assert shrunk.shape == (2, 4, 3) and {85, 170} == set(np.unique(shrunk))  # the mean of each 3 x 3 block


def test_a_distilled_set_has_one_colour_in_every_kind_of_figure_and_runs_sharing_it_are_hatched():
    """Vanilla DM was orange in one notebook's figure and blue in the next (colours went by order of appearance)."""
    from matplotlib.colors import to_rgb

    from paperlib.report.plots import plot_against, plot_comparison
    from paperlib.report.styles import approach_colour, run_styles

    colours = {(m, t): approach_colour(m, t) for m in ("whole", "random", "dm", "dc")
               for t in ("vanilla", "weighted", "groups", "barycenter")}
    distilled = {key: c for key, c in colours.items() if key[0] in ("dm", "dc")}
    assert len(set(distilled.values())) == 8  # every (distilling method, target) its own colour
    assert colours["whole", "vanilla"] == approach_colour("whole", "") != colours["random", "vanilla"]  # no target
    assert set(distilled.values()).isdisjoint({colours["whole", "vanilla"], colours["random", "vanilla"]})
    with pytest.raises(PaperlibError, match="unknown target 'kde'"):
        approach_colour("dm", "kde")

    runs = pd.DataFrame({"experiment": ["e"] * 4, "run": ["dm_kde", "dm", "dm_lff", "whole"],
                         "method": ["dm", "dm", "dm", "whole"], "target": ["weighted", "vanilla", "vanilla", "vanilla"],
                         "acc": [80.0, 20.0, 21.0, 60.0], "acc_std": [0.0] * 4, "status": ["done"] * 4})
    bars = _bar_containers(plot_comparison(runs))[0].patches
    assert [to_rgb(b.get_facecolor()) for b in bars] == [
        colours["dm", "weighted"], colours["dm", "vanilla"], colours["dm", "vanilla"], colours["whole", "vanilla"]]
    assert [b.get_hatch() or "" for b in bars] == ["", "", "//", ""]  # LfF on the DM set: DM's colour, hatched
    many = pd.DataFrame({"run": [f"r{i}" for i in range(12)], "method": "dm", "target": "vanilla"})
    hatches = [hatch for _, hatch in run_styles(many, "run").values()]
    assert len(set(hatches)) == 12 and hatches[:3] == ["", "//", ".."]  # no two alike however many share a colour

    by_set = runs.iloc[:2].assign(eval_model="convnet")
    grouped = _bar_containers(plot_grouped_bars(by_set, "eval_model", "run"))
    assert [to_rgb(c.patches[0].get_facecolor()) for c in grouped] == [colours["dm", "weighted"],
                                                                       colours["dm", "vanilla"]]
    lines = pd.concat([by_set.assign(ipc=10), by_set.assign(ipc=50)])
    drawn = {line.get_label(): to_rgb(line.get_color()) for line in plot_against(lines, "ipc", hue="run").lines}
    assert drawn["dm_kde"] == colours["dm", "weighted"] and drawn["dm"] == colours["dm", "vanilla"]


def test_a_set_is_named_by_its_method_and_target_the_same_in_every_table():
    """Notebook 05 mapped targets to "DM" / "DM + KDE" itself, and notebook 02's legend said ``whole`` / ``dm``."""
    from paperlib.distill.methods import distilling_methods
    from paperlib.distill.targets import TARGETS
    from paperlib.distill.weights import SAMPLE_WEIGHTINGS
    from paperlib.report.styles import distilled_set_name

    named = [("dm", "vanilla"), ("dm", "weighted", "kde"), ("dc", "groups"), ("dm", "barycenter"), ("whole", ""),
             ("random", "groups")]
    assert [distilled_set_name(*args) for args in named] == [
        "DM", "DM + KDE", "DC + FairDD", "DM + COBRA", "whole data", "random real"]
    names = [distilled_set_name(m, t, w) for m in distilling_methods() for t in TARGETS.names()
             for w in (SAMPLE_WEIGHTINGS.names() if t == "weighted" else ("uniform",))]
    assert len(set(names)) == len(names)  # no two sets share a name
    with pytest.raises(PaperlibError, match="unknown target 'kde'"):
        distilled_set_name("dm", "kde")
    with pytest.raises(PaperlibError, match="unknown weights 'kd'"):
        distilled_set_name("dm", "weighted", "kd")
