"""Experiment suites: named comparisons from one YAML file, run and tabulated.

A suite file (``params/<profile>/*.yaml``) holds::

    defaults:          # every run
      net_width: 64
    experiments:
      - name: cmnist_ipc10
        settings: {dataset: cmnist, ipc: 10}   # every run of this comparison
        runs:
          dm: {method: dm}
          dm_kde: {method: dm, target: weighted, weights: kde}

Each run's parameters are ``defaults``, then ``settings``, then its own
values; ``overrides`` (e.g. from ``--set``) win over all. :func:`results_table`
reads the stored records only, so the table (and its CSV) is always what the
runs computed; a run not yet computed is listed with ``status = "not run"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from paperlib.core.params import DISTILL_METHODS, Params, load_yaml, make_params
from paperlib.core.errors import PaperlibError
from paperlib.train.metrics import METRIC_KEYS
from paperlib.report.reference import bias_ratio, reported
from paperlib.core.store import atomic_write


@dataclass(frozen=True)
class RunSpec:
    """One run of a suite: which comparison, which row, which parameters."""

    experiment: str
    label: str
    params: Params


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PaperlibError(f"{where} must be a mapping of name: value, got {value!r}")
    return dict(value)


PROFILE_DEFAULTS = "defaults.yaml"


def profile_defaults(profile: str | Path) -> dict[str, Any]:
    """The run defaults every notebook of a profile shares (``params/<profile>/defaults.yaml``).

    ``profile`` is a profile name (looked up under :func:`paperlib.core.paths.params_dir`)
    or a profile folder as a :class:`~pathlib.Path`. Sharing them is what lets notebooks reuse each other's cached runs.
    """
    from paperlib.core.paths import params_dir

    folder = profile if isinstance(profile, Path) else params_dir() / profile
    path = folder / PROFILE_DEFAULTS
    if not path.is_file():
        raise PaperlibError(f"profile {str(profile)!r} has no {path}; profiles: "
                            f"{', '.join(sorted(p.name for p in params_dir().iterdir() if p.is_dir()))}")
    return _mapping(load_yaml(path), str(path))


def load_suite(source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None,
               only: str | None = None, base: Mapping[str, Any] | None = None) -> list[RunSpec]:
    """The runs a suite file (or an already-loaded mapping) describes, validated.

    ``base`` holds defaults below the suite's own ``defaults``. A notebook's
    parameter file (``params/<profile>/NN_*.yaml``) nests its suite under
    ``suite`` and takes ``base`` from the profile's ``defaults.yaml``.
    ``only`` keeps the experiments whose name contains it. Bad parameters are
    reported with the experiment and run they belong to.
    """
    data = load_yaml(source) if isinstance(source, (str, Path)) else dict(source)
    if "experiments" not in data and isinstance(data.get("suite"), Mapping):
        if base is None and isinstance(source, (str, Path)):
            base = profile_defaults(Path(source).parent)
        data = dict(data["suite"])
    defaults = {**(base or {}), **_mapping(data.get("defaults"), "defaults")}
    experiments = data.get("experiments")
    if not isinstance(experiments, list) or not experiments:
        raise PaperlibError("a suite needs a non-empty list under 'experiments'")
    specs = []
    for experiment in experiments:
        name = experiment.get("name") if isinstance(experiment, Mapping) else None
        if not name:
            raise PaperlibError(f"every experiment needs a name, got {experiment!r}")
        if only and only not in name:
            continue
        settings = _mapping(experiment.get("settings"), f"{name}.settings")
        runs = _mapping(experiment.get("runs"), f"{name}.runs")
        if not runs:
            raise PaperlibError(f"experiment {name!r} has no runs")
        for label, values in runs.items():
            merged = {**defaults, **settings, **_mapping(values, f"{name}.{label}"), **(overrides or {})}
            try:
                specs.append(RunSpec(name, str(label), make_params(merged)))
            except PaperlibError as err:
                raise PaperlibError(f"{name}.{label}: {err}") from None
    if not specs:
        raise PaperlibError(f"no experiment name contains {only!r}")
    return specs


def run_suite(specs: list[RunSpec]) -> pd.DataFrame:
    """Run every spec (cached runs return at once) and return :func:`results_table`."""
    from paperlib.experiments.runner import run

    for i, spec in enumerate(specs, 1):
        print(f"[{i}/{len(specs)}] {spec.experiment}/{spec.label}", flush=True)
        run(spec.params)
    return results_table(specs)


def _row(spec: RunSpec, record: dict | None) -> dict[str, Any]:
    p = spec.params
    row: dict[str, Any] = {"experiment": spec.experiment, "run": spec.label, "dataset": p.dataset,
                           "method": p.method, "target": p.target if p.method in DISTILL_METHODS else "",
                           "ipc": p.ipc if p.method != "whole" else None,
                           "source": p.source or "", "ratio": bias_ratio(p), "weights": p.weights,
                           "sampling": p.sampling, "init": p.init, "eval_model": p.eval_model or p.model,
                           "eval_trainer": p.eval_trainer}
    if record is None:
        return {**row, "status": "not run"}
    metrics = record["metrics"]
    for key in METRIC_KEYS:
        row[key] = metrics[key]
        row[f"{key}_std"] = metrics[f"{key}_std"]
    timings = record["timings"]
    kde = record.get("kde_seconds") or {}
    iterations = p.iterations if p.method in DISTILL_METHODS else 0
    per_iteration = record.get("seconds_per_iteration")
    row.update({
        "num_eval": record["num_eval"],
        "seconds_per_iteration": per_iteration,
        "kde_one_off_seconds": sum(kde.values()) if kde else None,
        # The one-off encoder and density cost spread over the run's iterations.
        "seconds_per_iteration_amortised": (per_iteration + sum(kde.values()) / iterations
                                            if per_iteration is not None and kde and iterations else per_iteration),
        "distill_seconds": record.get("distill_seconds"),
        "evaluate_seconds": timings["evaluate"],
        "device": record["device"],
        "status": "done",
    })
    paper = reported(p)
    for key, value in (paper or {}).items():
        row[f"paper_{key}"] = value
    return row


def results_table(specs: list[RunSpec]) -> pd.DataFrame:
    """One row per spec from its stored record: metrics (percent, mean and std), timings, paper values.

    ``paper_*`` columns hold the papers' reported numbers for the same
    setting where one exists (labelled reference values, never ours).
    """
    from paperlib.experiments.runner import load_record

    return pd.DataFrame([_row(spec, load_record(spec.params)) for spec in specs])


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write ``table`` as CSV atomically (floats rounded to 4 decimals)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        table.round(4).to_csv(tmp, index=False, float_format="%.4f")
    return path


def format_mean_std(table: pd.DataFrame, keys: tuple[str, ...] = ("acc", "acc_aligned", "acc_conflicting",
                                                                   "deo_m", "deo_a")) -> pd.DataFrame:
    """A display copy: each metric as ``mean ± std`` text, other columns dropped."""
    out = table[["experiment", "run"]].copy()
    for key in keys:
        if key in table:
            out[key] = [("–" if mean is None or (isinstance(mean, float) and math.isnan(mean))
                         else f"{mean:.1f} ± {std:.1f}")
                        for mean, std in zip(table[key], table.get(f"{key}_std", table[key]))]
    return out


def markdown_table(table: pd.DataFrame) -> str:
    """The headline view of ``table`` as a Markdown table: ours (mean ± std) beside the papers'.

    Columns: comparison, run, acc, aligned, conflicting, DEO_M, DEO_A, seconds
    per distillation iteration (KDE: with its one-off cost amortised), and the
    paper's acc / DEO_M / DEO_A where reported.
    """
    shown = format_mean_std(table)

    def number(value: Any, digits: int = 2) -> str:
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    def paper(row: pd.Series) -> str:
        values = [number(row.get(f"paper_{k}"), 2) for k in ("acc", "deo_m", "deo_a")]
        return "–" if all(v == "–" for v in values) else " / ".join(values)

    header = ["comparison", "run", "acc", "aligned", "conflicting", "DEO_M", "DEO_A", "s / iteration",
              "paper acc / DEO_M / DEO_A"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in table.iterrows():
        if row["status"] != "done":
            cells = [row["experiment"], row["run"]] + ["not run"] + [""] * 6
        else:
            per_iteration = number(row.get("seconds_per_iteration_amortised"))
            cells = [row["experiment"], row["run"], *(shown.loc[i, k] for k in ("acc", "acc_aligned",
                     "acc_conflicting", "deo_m", "deo_a")), per_iteration, paper(row)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def overhead_table(table: pd.DataFrame) -> pd.DataFrame:
    """Seconds per distillation iteration of every distilled run, against vanilla in the same comparison.

    ``one_off_seconds`` is KDE's encoder and density cost; ``amortised`` adds it
    spread over the run's iterations; ``vs_vanilla`` divides ``amortised`` by the
    vanilla run of the same comparison and method.
    """
    done = table[(table["status"] == "done") & table["method"].isin(DISTILL_METHODS)].copy()
    if done.empty:
        return pd.DataFrame(columns=["experiment", "run", "seconds_per_iteration", "one_off_seconds",
                                     "amortised", "vs_vanilla"])
    done["one_off_seconds"] = done["kde_one_off_seconds"]
    done["amortised"] = done["seconds_per_iteration_amortised"]
    vanilla = done[(done["target"] == "vanilla") & (done["eval_trainer"] == "plain")]
    base = {(e, m): v for e, m, v in zip(vanilla["experiment"], vanilla["method"], vanilla["amortised"])}
    done["vs_vanilla"] = [a / base[(e, m)] if (e, m) in base else math.nan
                          for e, m, a in zip(done["experiment"], done["method"], done["amortised"])]
    keep = done[done["eval_trainer"] == "plain"]  # LfF reuses the vanilla distilled set
    return keep[["experiment", "run", "seconds_per_iteration", "one_off_seconds", "amortised",
                 "vs_vanilla"]].reset_index(drop=True)


def save_suite_figures(specs: list[RunSpec], table: pd.DataFrame, folder: str | Path, stem: str) -> list[Path]:
    """Write the figures of a suite's stored runs into ``folder``; returns the paths.

    ``<stem>_<metric>.png`` comparison bars (acc, conflicting acc, DEO_M);
    ``grids/<experiment>_<run>.png`` each distilled set;
    ``weights/<experiment>_<run>.png`` the KDE weight shares of each KDE run.
    """
    import shutil

    from paperlib.report.plots import plot_comparison, plot_weight_shares, save_figure
    from paperlib.experiments.runner import distilled_dir, load_record
    from paperlib.core.store import atomic_write

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
        grid = distilled_dir(spec.params) / "synthetic.png"
        if spec.params.method in DISTILL_METHODS and grid.is_file():
            with atomic_write(folder / "grids" / name) as tmp:
                shutil.copyfile(grid, tmp)
            written.append(folder / "grids" / name)
        if record.get("kde_diagnostics"):
            title = f"{spec.experiment} / {spec.label}: KDE weight on bias-conflicting samples"
            ax = plot_weight_shares(record["kde_diagnostics"], title=title)
            written.append(save_figure(ax, folder / "weights" / name))
    return written
