"""What the numbered notebooks call: their suite, its table, and where figures and tables go.

Every notebook starts with a ``parameters`` cell holding ``profile`` (smoke,
quick or paper) and ``suite`` (``None``: read ``params/<profile>/<notebook>.yaml``;
papermill injects the file's values instead). The helpers below keep the
notebooks to a few calls per step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from paperlib.report import checks
from paperlib.core.params import DISTILL_METHODS, load_yaml
from paperlib.core.errors import PaperlibError
from paperlib.train.metrics import METRIC_SHORT_NAMES
from paperlib.core.paths import figures_dir, params_dir
from paperlib.core.runtime import progress
from paperlib.core.store import atomic_write
from paperlib.experiments.suite import RunSpec, load_suite, profile_defaults, results_table, write_csv

PROFILES = ("smoke", "quick", "paper")


def setup(profile: str) -> Path:
    """Check ``profile`` and set the plotting style (cache and data default to the repository root's).

    Returns ``figures/<profile>/`` (created).
    """
    import seaborn as sns

    if profile not in PROFILES:
        raise PaperlibError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)
    pd.set_option("display.precision", 1)
    pd.set_option("display.max_columns", 30)
    pd.set_option("display.width", 160)
    pd.set_option("display.max_colwidth", None)  # verdict tables: whole claims, never cut with "..."
    return figures_dir(profile)


def notebook_parameters(profile: str, notebook: str) -> dict[str, Any]:
    """The values of ``params/<profile>/<notebook>.yaml``."""
    path = params_dir() / profile / f"{notebook}.yaml"
    if not path.is_file():
        raise PaperlibError(f"no parameter file {path}; every profile needs one per notebook")
    return load_yaml(path)


def suite_specs(profile: str, suite: Mapping[str, Any] | None, notebook: str) -> list[RunSpec]:
    """The runs of a notebook: ``suite`` as given (papermill), else the profile's file, on the profile's defaults."""
    if suite is None:
        suite = notebook_parameters(profile, notebook).get("suite")
        if suite is None:
            raise PaperlibError(f"params/{profile}/{notebook}.yaml has no 'suite'")
    return load_suite(suite, base=profile_defaults(profile))


def run_all(specs: list[RunSpec]) -> pd.DataFrame:
    """Run every spec (stored runs load at once) under one progress bar; return the results table."""
    from paperlib.experiments.runner import run

    for spec in progress(specs, total=len(specs), desc="runs", leave=True):
        run(spec.params)
    return results_table(specs)


def metrics_view(table: pd.DataFrame, keys: tuple[str, ...] = ("acc", "acc_aligned", "acc_conflicting"),
                 extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Display copy of a results table: comparison, run, ``extra`` columns, then metrics in % (1 decimal).

    With more than one evaluation model each metric gets a ``± std`` column.
    """
    done = table[table["status"] == "done"]
    view = done[["experiment", "run", *extra]].copy()
    several = bool((done["num_eval"] > 1).any()) if "num_eval" in done else False
    for key in keys:
        view[METRIC_SHORT_NAMES.get(key, key)] = done[key].round(1)
        if several:
            view[f"± {METRIC_SHORT_NAMES.get(key, key)}"] = done[f"{key}_std"].round(1)
    missing = table[table["status"] != "done"]
    if len(missing):
        print(f"not run: {', '.join(missing['experiment'] + '/' + missing['run'])}")
    return view.reset_index(drop=True)


def _setting(row: pd.Series) -> str:
    ipc = "whole data" if pd.isna(row.get("ipc")) else f"IPC {int(row['ipc'])}"
    return f"{row['dataset']}, ratio {row['ratio']:g}, {ipc}"


def paper_vs_companion(table: pd.DataFrame, profile: str) -> pd.DataFrame:
    """Rows where a paper reports the same setting: the paper's numbers beside ours, each labelled.

    ``setting`` names the dataset, ratio and IPC; the column groups say which
    numbers are the paper's (and which paper) and which this companion measured
    under ``profile``'s settings.
    """
    done = table[(table["status"] == "done") & table.get("paper_acc", pd.Series(dtype=float)).notna()]
    rows = []
    for _, row in done.iterrows():
        entry = {("", "setting"): _setting(row), ("", "run"): row["run"],
                 ("", "paper source"): row.get("paper_source", "")}
        for key in ("acc", "deo_m", "deo_a"):
            paper = row.get(f"paper_{key}")
            entry[("paper", METRIC_SHORT_NAMES[key])] = None if paper is None or math.isnan(paper) else round(paper, 1)
            entry[(f"this companion ({profile})", METRIC_SHORT_NAMES[key])] = round(row[key], 1)
        rows.append(entry)
    if not rows:
        print("no run of this table has a number reported by the papers for the same setting")
        return pd.DataFrame()
    return pd.DataFrame(rows).set_axis(pd.MultiIndex.from_tuples(rows[0].keys()), axis=1)


def save(ax, folder: Path, name: str, pdf: bool = False) -> Path:
    """Save the figure of ``ax`` as ``folder/name.png`` (and ``.pdf`` for the papers' figures).

    The figure stays open, so the notebook still shows it below the cell.
    """
    figure = ax.figure
    figure.tight_layout()
    for suffix in ("png", "pdf") if pdf else ("png",):
        with atomic_write(Path(folder) / f"{name}.{suffix}") as tmp:
            # No creation date in PDFs, so an unchanged figure gives an unchanged file.
            figure.savefig(tmp, format=suffix, dpi=150, metadata={"CreationDate": None} if suffix == "pdf" else None)
    return Path(folder) / f"{name}.png"


def save_table(table: pd.DataFrame, folder: Path, name: str) -> Path:
    """Write ``table`` as ``folder/name.csv`` (atomically)."""
    return write_csv(table, Path(folder) / f"{name}.csv")


def build_datasets(settings: Mapping[str, Mapping[str, Any]]) -> tuple[dict, pd.DataFrame]:
    """Build each named dataset; return those built and an overview table.

    A dataset whose files are absent gets a row saying so, and its error (where
    to get the files and where to put them) is printed.
    """
    from paperlib.data.presets import build_dataset

    built, rows = {}, []
    for name, values in settings.items():
        try:
            dataset = build_dataset(**values)
        except PaperlibError as err:
            print(f"{name}: {err}")
            rows.append({"name": name, "preset": values.get("dataset"), "status": "data absent (see above)"})
            continue
        built[name] = dataset
        summary = dataset.summary()
        rows.append({"name": name, "preset": dataset.info.preset,
                     "source": dataset.info.params.get("source") or "", "bias": dataset.info.attribute_kind,
                     "image": f"{dataset.channels}x{dataset.image_size}x{dataset.image_size}",
                     "train": summary["train"]["n"], "test": summary["test"]["n"],
                     "groups": dataset.info.num_attributes,
                     "train aligned %": round(100 * summary["train"]["aligned_fraction"], 2),
                     "test aligned %": round(100 * summary["test"]["aligned_fraction"], 2), "status": "built"})
    overview = pd.DataFrame(rows)
    counts = [c for c in ("train", "test", "groups") if c in overview]
    return built, overview.astype({c: "Int64" for c in counts}).fillna({"source": "", "bias": "", "image": ""})


def ratio_sweep(sweeps: list[Mapping[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build a dataset at each value of its bias ratio; return per-class counts and a summary per value.

    Each sweep is ``{dataset, ratio: conflict_ratio | majority_ratio, values: [...], **other settings}``.
    The per-class frame has one row per (dataset, value, class) with the number of
    bias-conflicting (minority-group) training images.
    """
    from paperlib.data.presets import build_dataset

    per_class, summary = [], []
    for sweep in sweeps:
        sweep = dict(sweep)
        name, values = sweep.pop("ratio"), sweep.pop("values")
        for value in values:
            dataset = build_dataset(**sweep, **{name: value})
            train = dataset.train
            conflicting = (~train.aligned.bool()).long()
            counts = train.labels.new_zeros(dataset.num_classes).index_add_(0, train.labels, conflicting)
            per_class += [{"dataset": sweep["dataset"], "ratio": name, "value": value, "class": c,
                           "conflicting": int(counts[c])} for c in range(dataset.num_classes)]
            summary.append({"dataset": sweep["dataset"], "ratio": name, "value": value, "train images": len(train),
                            "conflicting %": round(100 * float(conflicting.float().mean()), 2),
                            "fewest per class": int(counts.min()), "most per class": int(counts.max()),
                            "test aligned %": round(100 * float(dataset.test.aligned.float().mean()), 2)})
    return pd.DataFrame(per_class), pd.DataFrame(summary)


AMPLIFIED_GAP = 10.0  # conflicting-accuracy points below whole data that we read as amplification
SHORTCUT_LEVEL = 25.0  # whole-data conflicting accuracy below this: the whole-data model follows the bias too


def bias_effect(table: pd.DataFrame) -> pd.DataFrame:
    """Each distilled run of a comparison against its whole-data and random-real runs (accuracy points).

    ``reading`` is *amplified* when the distilled model's bias-conflicting
    accuracy is more than :data:`AMPLIFIED_GAP` points below the whole-data
    model's; *whole data biased too* when the whole-data model itself stays
    below :data:`SHORTCUT_LEVEL` on conflicting images (nothing left to
    amplify); else *suppressed* (distillation loses little or helps).
    """
    done = table[table["status"] == "done"]
    rows = []
    for experiment, group in done.groupby("experiment", sort=False):
        base = {m: group[group["method"] == m].iloc[0] for m in ("whole", "random") if (group["method"] == m).any()}
        for _, run in group[group["method"].isin(DISTILL_METHODS) & (group["target"] == "vanilla")].iterrows():
            row = {"comparison": experiment, "run": run["run"], "ipc": run["ipc"], "acc": round(run["acc"], 1),
                   "conflicting": round(run["acc_conflicting"], 1)}
            if "random" in base:
                row["acc vs random"] = round(run["acc"] - base["random"]["acc"], 1)
            if "whole" in base:
                whole = base["whole"]
                row["acc vs whole"] = round(run["acc"] - whole["acc"], 1)
                gap = run["acc_conflicting"] - whole["acc_conflicting"]
                row["conflicting vs whole"] = round(gap, 1)
                row["reading"] = ("amplified" if gap < -AMPLIFIED_GAP else "whole data biased too"
                                  if whole["acc_conflicting"] < SHORTCUT_LEVEL else "suppressed")
            rows.append(row)
    return pd.DataFrame(rows)


def show_grids(specs: list[RunSpec], folder: Path, name: str, per_figure_width: float = 3.2, max_ipc: int = 20):
    """Draw the distilled-image grid of every spec that has one (up to ``max_ipc`` images per class, so each
    stays legible), four per row; save as ``folder/name.png``."""
    from paperlib.report.plots import show_image_file, subplots
    from paperlib.experiments.runner import distilled_dir

    shown = [(spec, distilled_dir(spec.params) / "synthetic.png") for spec in specs
             if spec.params.method in DISTILL_METHODS and spec.params.ipc <= max_ipc
             and (distilled_dir(spec.params) / "synthetic.png").is_file()]
    if not shown:
        print("no distilled set stored for these runs yet")
        return None
    columns = min(4, len(shown))
    rows = math.ceil(len(shown) / columns)
    _, axes = subplots(rows, columns, figsize=(per_figure_width * columns, per_figure_width * rows), squeeze=False)
    for ax in axes.flat[len(shown):]:
        ax.set_axis_off()
    for ax, (spec, path) in zip(axes.flat, shown):
        show_image_file(path, ax=ax, title=f"{spec.experiment} / {spec.label}")
    save(axes.flat[0], folder, name)
    return axes


def _kde_records(specs: list[RunSpec]) -> list[tuple[RunSpec, dict]]:
    from paperlib.experiments.runner import load_record

    found = []
    for spec in specs:
        record = load_record(spec.params)
        if record and record.get("kde_diagnostics"):
            found.append((spec, record))
    return found


def weight_shares(specs: list[RunSpec]) -> pd.DataFrame:
    """Per KDE run: the bias-conflicting share of the samples and of the weight (mean and lowest class, %)."""
    from paperlib.distill.reweight import summarize_diagnostics

    rows = [{"comparison": spec.experiment, "run": spec.label, **summarize_diagnostics(record["kde_diagnostics"])}
            for spec, record in _kde_records(specs)]
    table = pd.DataFrame(rows).round(1)
    if len(table):
        table["effective samples per class"] = table["effective samples per class"].round().astype(int)
    return table


def first_kde_diagnostics(specs: list[RunSpec]) -> list[dict]:
    """The per-class KDE diagnostics of the first KDE run with a stored record."""
    found = _kde_records(specs)
    if not found:
        raise PaperlibError("no KDE run of this suite has a stored record; run the suite first")
    return found[0][1]["kde_diagnostics"]


def present_only(experiments: list[Mapping[str, Any]], profile: str) -> list[RunSpec]:
    """The runs of ``experiments`` whose dataset files are on this machine; a printed note for the others."""
    from paperlib.data.presets import build_dataset

    specs = []
    for experiment in experiments or []:
        found = load_suite({"experiments": [experiment]}, base=profile_defaults(profile))
        try:
            build_dataset(found[0].params)
        except PaperlibError as err:
            print(f"{experiment['name']}: skipped, its data is not on this machine. {err}")
            continue
        specs += found
    return specs


def _profile_params(settings: Mapping[str, Any], profile: str):
    from paperlib.core.params import make_params

    return make_params({**profile_defaults(profile), **settings})


def kde_ablation(settings: Mapping[str, Any], variants: list[Mapping[str, Any]], profile: str) -> pd.DataFrame:
    """:func:`paperlib.distill.reweight.weight_ablation` on the dataset ``settings`` with the profile's defaults."""
    from paperlib.data.presets import build_dataset
    from paperlib.distill.reweight import weight_ablation
    from paperlib.core.runtime import resolve_device

    params = _profile_params(settings, profile)
    rows = weight_ablation(build_dataset(params), params, [dict(v) for v in variants], resolve_device(params.device))
    return pd.DataFrame(rows).round(1)


def theorem_check(settings: Mapping[str, Any], profile: str, batches: int = 3) -> pd.DataFrame:
    """:func:`paperlib.distill.theorem.fairdd_vs_group_balanced` on ``settings`` with the profile's defaults."""
    from paperlib.data.presets import build_dataset
    from paperlib.distill.theorem import fairdd_vs_group_balanced
    from paperlib.core.runtime import resolve_device

    params = _profile_params(settings, profile)
    return pd.DataFrame(fairdd_vs_group_balanced(build_dataset(params), params, resolve_device(params.device),
                                                 batches))


def explorer_coverage(model) -> pd.DataFrame:
    """For every (dataset, ratio, IPC, method, target) of an explorer: ``profile``, ``live`` or ``none`` stored."""
    from paperlib.report.explore import TARGETS, Point

    settings = model.settings
    rows = []
    for dataset in settings["datasets"]:
        for method in settings["methods"]:
            for target in (["vanilla"] if method == "random" else list(TARGETS)):
                row = {"dataset": dataset, "method": method, "target": target}
                for ratio in settings["ratios"]:
                    for ipc in settings["ipcs"]:
                        row[f"{ratio:g} / {ipc}"] = model.stored(Point(dataset, ratio, ipc, method, target))[1]
                rows.append(row)
    frame = pd.DataFrame(rows)
    frame.columns.name = "ratio / IPC"
    return frame


def verdicts(notebook: str, profile: str, claims: list[Mapping[str, Any]] | None, *tables: pd.DataFrame):
    """The notebook's checks (:mod:`paperlib.report.checks`): its claims (``claims``, else those of its parameter
    file), then its runs against the profile's reference numbers, one verdict per row."""
    if claims is None:
        claims = notebook_parameters(profile, notebook).get("claims")
    return checks.verdicts(notebook, profile, claims, *tables)
