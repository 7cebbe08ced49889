"""Tables of results: one row per run from its stored record, and the views the notebooks show.

Every number comes from a stored record; ``paper_*`` columns hold the papers' reported numbers for the same
setting (labelled reference values, never ours).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd

from paperlib.core.errors import PaperlibError
from paperlib.core.keys import relevant_fields
from paperlib.core.params import default_of
from paperlib.core.store import atomic_write
from paperlib.data.presets import bias_ratio_name
from paperlib.distill.kde import summarize_diagnostics
from paperlib.distill.methods import METHODS, distilling_methods
from paperlib.experiments.runner import load_record
from paperlib.experiments.suite import RunSpec
from paperlib.report.formatting import (MISSING, PERCENT_COLUMNS, as_published, mean_std, number, percent, rounded,
                                        rounded_value)
from paperlib.report.reference import bias_ratio, reported
from paperlib.report.metric_names import HEADLINE_METRICS, PAPER_METRICS, short_name
from paperlib.report.styles import distilled_set_name
from paperlib.train.metrics import METRIC_KEYS


def _row(spec: RunSpec, record: dict | None) -> dict[str, Any]:
    p = spec.params
    read = relevant_fields(p)  # a setting the run does not read shows as empty, not as its unused default
    row: dict[str, Any] = {"experiment": spec.experiment, "run": spec.label, "dataset": p.dataset,
                           "method": p.method, "target": p.target if METHODS[p.method].distils else "",
                           "ipc": p.ipc if "ipc" in METHODS[p.method].uses else None,
                           "source": p.source or "", "protocol": p.protocol, "ratio": bias_ratio(p),
                           "weights": p.weights if "weights" in read else "",
                           "distilled_set": distilled_set_name(p.method, p.target, p.weights),
                           "sampling": p.sampling if "sampling" in read else "",
                           "init": p.init if "init" in read else "", "eval_model": p.eval_model or p.model,
                           "eval_trainer": p.eval_trainer, "eval_epochs": p.eval_epochs,
                           # "first": this companion's first schedule (the quick profile's shipped runs)
                           "eval_schedule": "official" if p.eval_official_schedule else "first",
                           "eval_augment": p.eval_augment, "eval_optimizer": p.eval_optimizer or "sgd",
                           "eval_lr": p.eval_lr,
                           "hidden_groups": p.hidden_groups if "hidden_groups" in read else None,
                           "hidden_groups_fill": p.hidden_groups_fill if "hidden_groups" in read else "",
                           "warm_start_epochs": p.warm_start_epochs if "warm_start_epochs" in read else 0}
    if record is None:
        return {**row, "status": "not run"}
    metrics = record["metrics"]
    for key in METRIC_KEYS:
        row[key] = metrics[key]
        row[f"{key}_std"] = metrics[f"{key}_std"]
    timings = record["timings"]
    made_on = _made_on(record)
    kde = record.get("kde_seconds") or {}
    # An encoder cost not known (embeddings cached before it was stored) leaves the one-off cost unknown.
    one_off = sum(kde.values()) if kde and None not in kde.values() else None
    # the run's iterations: each of its num_distill sets distils p.iterations, and they share one KDE
    iterations = p.iterations * record.get("num_distill", 1) if METHODS[p.method].distils else 0
    per_iteration = record.get("seconds_per_iteration")
    amortised = per_iteration  # the one-off encoder and density cost spread over the run's iterations
    if per_iteration is not None and kde and iterations:
        amortised = per_iteration + one_off / iterations if one_off is not None else None
    row.update({
        "num_eval": record["num_eval"],
        "num_distill": record.get("num_distill", 1),  # independent training sets, each with num_eval models
        "seconds_per_iteration": per_iteration,
        "kde_one_off_seconds": one_off,
        "seconds_per_iteration_amortised": amortised,
        "distill_seconds": record.get("distill_seconds"),
        "evaluate_seconds": timings["evaluate"],
        "imputed_right": record.get("imputed_right"),  # hidden group labels imputed: the share imputed right
        "device": record["device"],  # where its models were evaluated
        # where its distilled sets were made (a set is reused on any device); None for a method that distils none,
        # or a record from before sets said where they were made
        "distilled_on": ", ".join(sorted(set(made_on))) or None,
        "status": "done",
    })
    paper = reported(p)
    for key, value in (paper or {}).items():
        row[f"paper_{key}"] = value
    return row


def _made_on(record: dict[str, Any]) -> list[str]:
    """The devices a run's training sets were distilled on, as its record says (every set's, or the first's in a
    record from before it listed them all); none for a method that distils none, or a record older still."""
    first = (record.get("distilled_on") or {}).get("device")
    return record.get("distilled_on_devices") or ([first] if first else [])


def results_table(specs: list[RunSpec]) -> pd.DataFrame:
    """One row per spec from its stored record: metrics (percent, mean and std), timings, paper values.

    ``paper_*`` columns hold the papers' reported numbers for the same
    setting where one exists (labelled reference values, never ours).
    """
    return pd.DataFrame([_row(spec, load_record(spec.params)) for spec in specs])


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write ``table`` as CSV atomically (floats rounded to 4 decimals)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        table.round(4).to_csv(tmp, index=False, float_format="%.4f")
    return path


def models_per_run(table: pd.DataFrame) -> pd.Series:
    """How many evaluation models each row's metrics pool: ``num_eval`` x ``num_distill`` (a record without
    ``num_distill`` made one training set); NaN where the table does not say (no ``num_eval``, a run not run)."""
    if "num_eval" not in table:
        return pd.Series(float("nan"), index=table.index)
    sets = table["num_distill"].fillna(1) if "num_distill" in table else 1
    return table["num_eval"] * sets


def format_mean_std(table: pd.DataFrame, keys: tuple[str, ...] = HEADLINE_METRICS) -> pd.DataFrame:
    """A display copy: each metric as ``mean ± std`` text (the mean alone for a run of one model, whose spread
    does not exist), other columns dropped."""
    out = table[["experiment", "run"]].copy()
    one_model = models_per_run(table) == 1
    for key in keys:
        if key in table:
            stds = table[f"{key}_std"].mask(one_model) if f"{key}_std" in table else [None] * len(table)
            out[key] = [mean_std(mean, std) for mean, std in zip(table[key], stds)]
    return out


def markdown_table(table: pd.DataFrame) -> str:
    """The headline view of ``table`` as a Markdown table: ours (mean ± std) beside the papers'.

    Columns: comparison, run, acc, aligned, conflicting, DEO_M, DEO_A, seconds
    per distillation iteration (KDE: with its one-off cost amortised), and the
    paper's acc / DEO_M / DEO_A where reported.
    """
    shown = format_mean_std(table)

    def paper(row: pd.Series) -> str:
        values = [as_published(row.get(f"paper_{k}")) for k in PAPER_METRICS]
        return MISSING if all(v == MISSING for v in values) else " / ".join(values)

    header = ["comparison", "run", *map(short_name, HEADLINE_METRICS), "s / iteration",
              "paper " + " / ".join(map(short_name, PAPER_METRICS))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in table.iterrows():
        if row["status"] != "done":
            cells = [row["experiment"], row["run"], "not run"] + [""] * (len(header) - 3)
        else:
            per_iteration = number(row.get("seconds_per_iteration_amortised"), 2)
            cells = [row["experiment"], row["run"], *(shown.loc[i, k] for k in HEADLINE_METRICS), per_iteration,
                     paper(row)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


# The settings of a plain run: the default target (the reference's plain average) and evaluation trainer
_PLAIN_RUN = {name: default_of(name) for name in ("target", "eval_trainer")}


def _plain(table: pd.DataFrame) -> pd.Series:
    """Which rows of ``table`` distil with the default target and evaluate with the default trainer."""
    return (table["target"] == _PLAIN_RUN["target"]) & (table["eval_trainer"] == _PLAIN_RUN["eval_trainer"])


def overhead_table(table: pd.DataFrame) -> pd.DataFrame:
    """Seconds per distillation iteration of every distilled run, against vanilla in the same comparison.

    ``per_iteration_vs_vanilla`` divides the iteration time by the vanilla run's of the same comparison, method,
    IPC and evaluation model; ``one_off_seconds`` is KDE's encoder and density cost; ``amortised`` adds it
    spread over the run's iterations (of all its ``num_distill`` sets, which share it), and ``vs_vanilla``
    divides ``amortised`` by vanilla's.
    """
    columns = ["experiment", "run", "seconds_per_iteration", "per_iteration_vs_vanilla", "one_off_seconds",
               "amortised", "vs_vanilla"]
    done = table[(table["status"] == "done") & table["method"].isin(distilling_methods())].copy()
    if done.empty:
        return pd.DataFrame(columns=columns)
    done["one_off_seconds"] = done["kde_one_off_seconds"]
    done["amortised"] = done["seconds_per_iteration_amortised"]
    same = ["experiment", "method", "ipc", "eval_model"]  # one vanilla baseline per setting of a comparison
    vanilla = done[_plain(done)]
    for time, ratio in (("seconds_per_iteration", "per_iteration_vs_vanilla"), ("amortised", "vs_vanilla")):
        base = {tuple(row[same]): row[time] for _, row in vanilla.iterrows()}
        done[ratio] = [row[time] / base[tuple(row[same])] if tuple(row[same]) in base else math.nan
                       for _, row in done.iterrows()]
    keep = done[done["eval_trainer"] == _PLAIN_RUN["eval_trainer"]]  # LfF reuses the vanilla distilled set
    return keep[columns].reset_index(drop=True)


def overhead_view(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`overhead_table` as the notebooks show it: readable headers, 2 decimals, :data:`MISSING` where a
    run has no one-off cost or no vanilla run to compare with."""
    overhead = overhead_table(table)
    view = overhead[["experiment", "run"]].copy()
    for column, header in (("seconds_per_iteration", "s / iteration"), ("per_iteration_vs_vanilla", "× vanilla"),
                           ("one_off_seconds", "one-off s"), ("amortised", "s / iteration, one-off spread"),
                           ("vs_vanilla", "× vanilla, one-off spread")):
        view[header] = overhead[column].map(lambda value: number(value, 2))
    return view


def metrics_view(table: pd.DataFrame, keys: tuple[str, ...] = ("acc", "acc_aligned", "acc_conflicting"),
                 extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Display copy of a results table: comparison, run, ``extra`` columns (headed by their names in words,
    ``eval_model`` as "eval model", "–" where a run has no value), then metrics in % (1 decimal).

    With more than one evaluation model each metric gets a ``± std`` column (over every model of every training
    set); with more than one training set per run (``num_distill``) a ``sets × models`` column says how many.
    """
    done = table[table["status"] == "done"]
    view = done[["experiment", "run", *extra]].copy()
    for column in PERCENT_COLUMNS:
        if column in view:
            view[column] = view[column].map(percent)
    if "ipc" in view:
        view["ipc"] = view["ipc"].map(lambda ipc: "whole data" if pd.isna(ipc) else int(ipc))
    for column in extra:  # a setting a run does not have reads as the other missing values do
        view[column] = view[column].map(lambda value: MISSING if _blank(value) else value)
    view = view.rename(columns={column: column.replace("_", " ") for column in extra})
    sets = done["num_distill"] if "num_distill" in done else pd.Series(1, index=done.index)
    models = models_per_run(done)
    several = bool((models > 1).any())
    if bool((sets > 1).any()):
        view["sets × models"] = [f"{int(s)} × {int(m)}" for s, m in zip(sets, done["num_eval"])]
    for key in keys:
        view[short_name(key)] = rounded(done[key])
        if several:
            view[f"± {short_name(key)}"] = rounded(done[f"{key}_std"].mask(models == 1))  # one model: no spread
    missing = table[table["status"] != "done"]
    if len(missing):
        print(f"not run: {', '.join(missing['experiment'] + '/' + missing['run'])}")
    return view.reset_index(drop=True)


def _setting(row: pd.Series, said: Collection[str] = ()) -> str:
    """The setting of a row as the paper-vs-companion table names it: dataset, protocol, bias ratio and IPC,
    then what differs from the official code beside the scale (:func:`_deviations`), but for the differences
    in ``said`` (named once above the table)."""
    ipc = "whole data" if pd.isna(row.get("ipc")) else f"IPC {int(row['ipc'])}"
    name = bias_ratio_name(row["dataset"])  # the conflict ratio, or paper B's majority ratio
    ratio = ("bias fixed by the data" if name is None or pd.isna(row.get("ratio"))
             else f"{name.replace('_', ' ')} {percent(row['ratio'])}")
    notes = "".join(f"; {note}" for note in _deviations(row) if note not in said)
    return f"{row['dataset']} ({row['protocol']} protocol), {ratio}, {ipc}{notes}"


def _deviations(row: pd.Series) -> list[str]:
    """What a row's run does differently from the official code, beside the scale: a start other than the
    method's official one, this companion's first schedule, an evaluation optimiser other than the protocol's
    SGD."""
    notes = []
    method, init = row.get("method"), row.get("init")
    if _text(init) and method in METHODS and init != METHODS[method].init:
        notes.append(f"init {init} (official: {METHODS[method].init})")
    if row.get("eval_schedule") == "first":
        notes.append("first evaluation schedule")
    if _text(row.get("eval_optimizer")) and row["eval_optimizer"] != "sgd":
        notes.append(f"evaluation optimiser {row['eval_optimizer']}, lr {row['eval_lr']:g}")
    return notes


def _blank(value: Any) -> bool:
    """No value: ``None``, NaN or an empty string."""
    return value is None or (isinstance(value, str) and not value) or (pd.api.types.is_scalar(value)
                                                                      and bool(pd.isna(value)))


def _text(value: Any) -> bool:
    """A non-empty string (a missing CSV cell reads as NaN)."""
    return isinstance(value, str) and bool(value)


def paper_vs_companion(table: pd.DataFrame, profile: str) -> pd.DataFrame | None:
    """Rows where a paper reports the same setting: the paper's numbers beside ours, each labelled.

    ``setting`` names the dataset, ratio and IPC, and what the run does differently from the official code
    (one printed line names a difference every row shares); the column groups say which numbers are the
    paper's (and which paper) and which this companion measured under ``profile``'s settings. A metric the
    paper does not give shows as :data:`MISSING`; the paper's numbers as published (text: 99.96 stays
    99.96 under the notebooks' one-decimal display), ours to one decimal.
    ``None`` (and a printed note) when no row has a paper's number.
    """
    done = table[(table["status"] == "done") & table.get("paper_acc", pd.Series(dtype=float)).notna()]
    rows = []
    has_notes = "paper_note" in done and bool(done["paper_note"].map(_text).any())
    deviations = [_deviations(row) for _, row in done.iterrows()]
    shared = [note for note in (deviations[0] if deviations else []) if all(note in d for d in deviations)]
    if shared:  # said once above the table, not on every row
        print(f"every row of this table: {'; '.join(shared)} (each differs, beside the scale, from the protocol of "
              f"the official DM / DC and FairDD code; paper A published none)")
    for _, row in done.iterrows():
        entry = {("", "setting"): _setting(row, shared), ("", "run"): row["run"],
                 ("", "paper source"): _paper_source(row.get("paper_source", ""), row.get("paper_table"))}
        for key in PAPER_METRICS:
            entry[("paper", short_name(key))] = as_published(row.get(f"paper_{key}"))
            entry[(f"this companion ({profile})", short_name(key))] = rounded_value(row[key])
        if has_notes:
            entry[("paper", "note")] = row.get("paper_note") if _text(row.get("paper_note")) else ""
        rows.append(entry)
    if not rows:  # nothing to show: the note alone, not an empty frame's repr
        print("no run of this table has a number reported by the papers for the same setting")
        return None
    return pd.DataFrame(rows).set_axis(pd.MultiIndex.from_tuples(rows[0].keys()), axis=1)


AMPLIFIED_GAP = 10.0  # conflicting-accuracy points below whole data that we read as amplification


SHORTCUT_LEVEL = 25.0  # whole-data conflicting accuracy below this: the whole-data model follows the bias too


def bias_effect(table: pd.DataFrame) -> pd.DataFrame:
    """Each distilled run of a comparison against its whole-data run and the random real subset of its own IPC
    (accuracy points; :data:`MISSING` where the comparison has no subset of that size).

    ``reading`` is *amplified* when the distilled model's bias-conflicting
    accuracy is more than :data:`AMPLIFIED_GAP` points below the whole-data
    model's; *whole data biased too* when the whole-data model itself stays
    below :data:`SHORTCUT_LEVEL` on conflicting images (nothing left to
    amplify); else *not amplified* (distillation loses little or helps: paper A's "suppressed", which this
    comparison alone cannot tell from a bias both models share).
    """
    done = table[table["status"] == "done"]
    # a metric no run defines is a column of None (object dtype): numbers, NaN where undefined
    done = done.assign(**{key: pd.to_numeric(done[key]) for key in ("acc", "acc_conflicting")})
    whole_data = METHODS.where(whole_data=True)
    subsets = [m for m in METHODS.where(distils=False) if m not in whole_data]
    rows = []
    for experiment, group in done.groupby("experiment", sort=False):
        wholes = {m: group[group["method"] == m].iloc[0] for m in whole_data if (group["method"] == m).any()}
        present = [m for m in subsets if (group["method"] == m).any()]
        # the plain distilled set, trained plainly: a debiasing trainer on it (LfF, SelecMix) is another question
        for _, run in group[group["method"].isin(distilling_methods()) & _plain(group)].iterrows():
            row = {"comparison": experiment, "run": run["run"], "ipc": int(run["ipc"]), "acc": round(run["acc"], 1),
                   "conflicting": round(run["acc_conflicting"], 1)}
            for name in present:  # a subset of another size is no baseline for this run
                same_size = group[(group["method"] == name) & (group["ipc"] == run["ipc"])]
                row[f"acc vs {name}"] = round(run["acc"] - same_size.iloc[0]["acc"], 1) if len(same_size) else MISSING
            for name, baseline in wholes.items():
                row[f"acc vs {name}"] = round(run["acc"] - baseline["acc"], 1)
                gap = run["acc_conflicting"] - baseline["acc_conflicting"]
                row[f"conflicting vs {name}"] = round(gap, 1)
                # no conflicting test sample (an undefined gap) reads as nothing, not as "not amplified"
                row["reading"] = (MISSING if pd.isna(gap) else "amplified" if gap < -AMPLIFIED_GAP
                                  else "whole data biased too" if baseline["acc_conflicting"] < SHORTCUT_LEVEL
                                  else "not amplified")
            rows.append(row)
    # a comparison without a random subset or whole data at all, an undefined conflicting accuracy: shown missing
    # (column by column: a column of numbers becomes text only where it lacks one)
    return pd.DataFrame(rows).apply(lambda column: column.astype(object).where(column.notna(), MISSING)
                                    if column.isna().any() else column)


def _kde_records(specs: list[RunSpec]) -> list[tuple[RunSpec, dict]]:
    found = []
    for spec in specs:
        record = load_record(spec.params)
        if record and record.get("kde_diagnostics"):
            found.append((spec, record))
    return found


def _paper_source(source: str, table_name: Any) -> str:
    """``source (table)``, the table without the paper's name the source already gives: "paper A (Cui et al.,
    ICML 2024) (headline)", not "... (paper A, headline)"."""
    if not _text(table_name):
        return source
    paper, _, rest = str(table_name).partition(", ")
    return f"{source} ({rest if rest and source.startswith(paper) else table_name})"


def weight_shares(specs: list[RunSpec]) -> pd.DataFrame:
    """Per KDE run: the bias-conflicting share of the samples and of the weight (mean and lowest class, %)."""
    rows = [{"comparison": spec.experiment, "run": spec.label, **summarize_diagnostics(record["kde_diagnostics"])}
            for spec, record in _kde_records(specs)]
    table = rounded(pd.DataFrame(rows))
    if len(table):
        table["effective samples per class"] = table["effective samples per class"].round().astype(int)
    return table


def first_kde_diagnostics(specs: list[RunSpec]) -> list[dict]:
    """The per-class KDE diagnostics of the first KDE run with a stored record."""
    found = _kde_records(specs)
    if not found:
        raise PaperlibError("no KDE run of this suite has a stored record; run the suite first")
    return found[0][1]["kde_diagnostics"]


def theorem_summary(gradients: pd.DataFrame) -> pd.DataFrame:
    """:func:`paperlib.experiments.studies.theorem_check`'s rows grouped by the number of groups present in a
    class's real batch: how many (class, batch) pairs had that many, their mean FairDD / barycenter gradient-norm
    ratio (the identity says: that number) and their lowest cosine (the identity says: 1)."""
    summary = gradients.groupby("groups_present").agg(pairs=("class", "size"), norm_ratio=("norm_ratio", "mean"),
                                                      cosine_min=("cosine", "min"))
    names = {"pairs": "class × batch pairs", "norm_ratio": "gradient norm ratio (FairDD / barycenter)",
             "cosine_min": "lowest cosine"}
    return summary.rename(columns=names).rename_axis("groups in the batch").round(3)
