"""Notebook 01's tables: every preset built, with its split sizes and bias, and a preset swept over its bias
ratio."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from paperlib.core.errors import DataNotFound, PaperlibError
from paperlib.data.presets import PRESETS, build_dataset, say_absent
from paperlib.data.sources import resolve_data_root
from paperlib.report.formatting import MISSING, percent


def build_datasets(settings: Mapping[str, Mapping[str, Any]]) -> tuple[dict, pd.DataFrame]:
    """Build each named dataset; return those built and an overview table.

    A dataset whose files are absent gets a row saying so, and one printed line names every such dataset and
    the command that says where to get its files (no path of this machine: the note may end up in a committed
    notebook); one that cannot be built for another reason gets a row and its whole error, printed.
    """
    built, rows, absent = {}, [], []
    for name, values in settings.items():
        try:
            dataset = build_dataset(**values)
        except DataNotFound:
            absent.append(name if name == values.get("dataset") else f"{name} (preset {values.get('dataset')})")
            rows.append({"name": name, "preset": values.get("dataset"), "status": "data absent"})
            continue
        except PaperlibError as err:
            print(f"{name}: {str(err).replace(str(resolve_data_root(values.get('data_dir'))), '<data root>')}")
            rows.append({"name": name, "preset": values.get("dataset"), "status": "cannot be built (see above)"})
            continue
        built[name] = dataset
        summary = dataset.summary()
        rows.append({"name": name, "preset": dataset.info.preset,
                     "source": dataset.info.params.get("source") or "",
                     "protocol": dataset.info.params.get("protocol") or PRESETS[dataset.info.preset].protocols[0],
                     "bias": dataset.info.attribute_kind,
                     "image": f"{dataset.channels}x{dataset.image_size}x{dataset.image_size}",
                     "train": summary["train"]["n"], "test": summary["test"]["n"],
                     "groups": dataset.info.num_attributes,
                     "train aligned %": round(100 * summary["train"]["aligned_fraction"], 2),
                     "test aligned %": round(100 * summary["test"]["aligned_fraction"], 2), "status": "built"})
    if absent:
        say_absent(absent, "not built")
    overview = pd.DataFrame(rows)
    # a dataset not built has no count or share: shown as missing; the counts of the others as integers
    for column in ("train", "test", "groups"):
        if column in overview:
            overview[column] = [MISSING if pd.isna(v) else int(v) for v in overview[column]]
    for column in ("train aligned %", "test aligned %"):
        if column in overview:
            overview[column] = [MISSING if pd.isna(v) else v for v in overview[column]]
    return built, overview.fillna({"source": "", "protocol": "", "bias": "", "image": ""})


def ratio_sweep(sweeps: list[Mapping[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build a dataset at each value of its bias ratio; return per-class counts and a summary per value.

    Each sweep is ``{dataset, ratio: conflict_ratio | majority_ratio, values: [...], **other settings}``.
    The per-class frame has one row per (dataset, value, class) with the number of
    bias-conflicting (minority-group) training images; the summary writes each value as a percentage. A sweep
    whose files are absent is left out, with one printed line, as :func:`build_datasets` does.
    """
    per_class, summary, absent = [], [], []
    for sweep in sweeps:
        sweep = dict(sweep)
        name, values = sweep.pop("ratio"), sweep.pop("values")
        for value in values:
            try:
                dataset = build_dataset(**sweep, **{name: value})
            except DataNotFound:
                absent.append(sweep["dataset"])
                break
            train = dataset.train
            conflicting = (~train.aligned.bool()).long()
            counts = train.labels.new_zeros(dataset.num_classes).index_add_(0, train.labels, conflicting)
            per_class += [{"dataset": sweep["dataset"], "ratio": name, "value": value, "class": c,
                           "conflicting": int(counts[c])} for c in range(dataset.num_classes)]
            summary.append({"dataset": sweep["dataset"], "ratio": name, "value": percent(value),
                            "train images": len(train),
                            "conflicting %": round(100 * float(conflicting.float().mean()), 2),
                            "fewest conflicting per class": int(counts.min()),
                            "most conflicting per class": int(counts.max()),
                            "test aligned %": round(100 * float(dataset.test.aligned.float().mean()), 2)})
    if absent:
        say_absent(absent, "not built")
    # the columns stated, for a sweep with nothing built (notebook 01 plots and shows them all the same)
    return (pd.DataFrame(per_class, columns=["dataset", "ratio", "value", "class", "conflicting"]),
            pd.DataFrame(summary, columns=["dataset", "ratio", "value", "train images", "conflicting %",
                                           "fewest conflicting per class", "most conflicting per class",
                                           "test aligned %"]))
