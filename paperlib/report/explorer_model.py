"""The bias explorer without widgets (notebook 06): which run parameters a point of the explorer's controls means,
and its stored or live result. :mod:`paperlib.report.explore` is its ipywidgets front end.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from paperlib.core.errors import PaperlibError
from paperlib.core.keys import cache_key, relevant_fields
from paperlib.core.params import Params, make_params
from paperlib.core.results_store import find_or_make
from paperlib.data.presets import BIAS_RATIO_NAMES, bias_ratio_name, build_dataset
from paperlib.distill.methods import METHODS
from paperlib.experiments.runner import load_record, repeats, run, stored_grid
from paperlib.experiments.suite import mapping, scaled
from paperlib.report.plots import sample_grid_png
from paperlib.report.formatting import percent


# What the slider sets, per bias parameter of the preset.
RATIO_LABELS = {"conflict_ratio": "conflict ratio", "majority_ratio": "minority share"}
# The stored data views are named by it: bump it when the drawing of plots.framed_sample_grid changes.
DATA_VIEW_VERSION = 2


# What the dataset, ratio, IPC and method controls set: an approach (a target's values) must leave them alone.
WIDGET_FIELDS = ("dataset", "method", "ipc", *BIAS_RATIO_NAMES)


@dataclass(frozen=True)
class Point:
    """One choice of the explorer's controls."""

    dataset: str  # a label of the explorer's ``datasets`` setting
    ratio: float  # share of bias-conflicting (minority-group) training images
    ipc: int
    method: str  # one of the explorer's ``methods`` setting (names of paperlib.distill.methods.METHODS)
    target: str  # a label of the explorer's ``approaches`` setting


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ExplorerModel:
    """The explorer without widgets: which parameters a point means, and its stored or live result.

    ``defaults`` are the profile's run defaults with their ``methods`` scale block (the same values the
    notebooks' suites use, so a point at the profile's settings is one of their runs); ``settings`` is the
    ``explorer`` block of ``params/experiments/06_explore.yaml``: ``datasets`` (label -> dataset settings),
    ``approaches`` (label -> the parameter values of a target; the first is the plain one), ``ratios``, ``ipcs``,
    ``methods`` and ``live`` (overrides for points computed on demand, with an optional ``methods`` block of
    their own), and optionally ``start`` (where it opens when stored: a point of that grid). Malformed
    ``approaches``, ``ratios``, ``ipcs``, ``methods`` or ``start`` are one-line errors here, not later.
    """

    def __init__(self, defaults: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
        for key in ("datasets", "approaches", "ratios", "ipcs", "methods", "live"):
            if key not in settings:
                raise PaperlibError(f"the explorer settings need {key!r}")
        approaches = mapping(settings["approaches"], "explorer.approaches")
        if not approaches:
            raise PaperlibError("explorer.approaches is empty; list at least one, e.g. vanilla: {target: vanilla}")
        for label, values in approaches.items():
            clash = [name for name in mapping(values, f"explorer.approaches.{label}") if name in WIDGET_FIELDS]
            if clash:
                raise PaperlibError(f"explorer.approaches.{label} sets {', '.join(clash)}, which the explorer's "
                                    f"other controls choose; give an approach only its target's values")
        lists = {"ratios": (lambda v: _is_number(v) and 0 <= v <= 1, "numbers in [0, 1], e.g. [0.05, 0.2]"),
                 "ipcs": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                          "whole numbers of at least 1, e.g. [1, 10]"),
                 "methods": (lambda v: isinstance(v, str), "method names, e.g. [random, dm]")}
        for key, (ok, what) in lists.items():
            values = settings[key]
            if not isinstance(values, (list, tuple)) or not values or not all(ok(v) for v in values):
                raise PaperlibError(f"explorer.{key} must be a non-empty list of {what}; got {values!r}")
        for method in settings["methods"]:
            if method not in METHODS:
                raise PaperlibError(f"explorer.methods: {METHODS.unknown(method)}")
        self.defaults, self.settings = dict(defaults), settings
        start = settings.get("start")
        if start is not None:
            fields = [f.name for f in dataclasses.fields(Point)]
            given = mapping(start, "explorer.start")
            if set(given) != set(fields):
                raise PaperlibError(f"explorer.start names a point by {', '.join(fields)}; it has "
                                    f"{', '.join(map(str, given)) or 'nothing'}")
            if Point(**given) not in set(self.points()):
                raise PaperlibError(f"explorer.start {given} is not a point of the explorer's datasets, methods, "
                                    f"approaches, ratios and ipcs (a method that distils nothing takes the first "
                                    f"approach, {self.plain!r})")

    def params(self, point: Point, live: bool = False) -> Params:
        """The run parameters of ``point`` at the profile's scale, or at the live scale."""
        if point.dataset not in self.settings["datasets"]:
            raise PaperlibError(f"unknown explorer dataset {point.dataset!r}; "
                                f"choose one of: {', '.join(self.settings['datasets'])}")
        if not 0.0 <= point.ratio <= 1.0:
            raise PaperlibError(f"ratio must be in [0, 1], got {point.ratio}")
        data = dict(self.settings["datasets"][point.dataset])
        ratio_name = bias_ratio_name(data["dataset"])
        if ratio_name == "conflict_ratio":
            data["conflict_ratio"] = point.ratio
        elif ratio_name == "majority_ratio":
            data["majority_ratio"] = round(1.0 - point.ratio, 6)
        chosen = {"method": point.method, "ipc": point.ipc}
        if point.target not in self.settings["approaches"]:
            raise PaperlibError(f"unknown explorer target {point.target!r}; "
                                f"choose one of: {', '.join(self.settings['approaches'])}")
        target = self.settings["approaches"][point.target] if METHODS[point.method].distils else {}
        overrides = self.live(point.method, point.ipc) if live else {}
        return make_params(scaled(self.defaults, data, chosen, target, overrides))

    def live(self, method: str, ipc: int) -> dict[str, Any]:
        """The overrides of a live run of ``method`` at ``ipc``: ``live``, with its own ``methods`` block for
        ``method`` (and that block's ``by_ipc`` entry for ``ipc``)."""
        values = scaled(self.settings["live"], {"method": method, "ipc": ipc})
        del values["method"], values["ipc"]
        return values

    def points(self) -> Iterator[Point]:
        """Every point of the explorer's grid, in the order of its settings."""
        s = self.settings
        for dataset in s["datasets"]:
            for method in s["methods"]:
                for target in (list(s["approaches"]) if METHODS[method].distils else [self.plain]):
                    for ratio in s["ratios"]:
                        for ipc in s["ipcs"]:
                            yield Point(dataset, float(ratio), int(ipc), method, target)

    def start_point(self) -> Point:
        """Where the explorer opens: the settings' ``start`` point when it is stored, else the first stored point
        (distilling methods first), else the middle of the grid."""
        s = self.settings
        start = s.get("start")
        if start is not None and self.stored(Point(**start))[0] is not None:
            return Point(**start)
        ordered = sorted(self.points(), key=lambda p: not METHODS[p.method].distils)
        stored = next((p for p in ordered if self.stored(p)[0] is not None), None)
        if stored is not None:
            return stored
        ratios, ipcs = s["ratios"], s["ipcs"]
        method = next((m for m in s["methods"] if METHODS[m].distils), s["methods"][0])
        return Point(next(iter(s["datasets"])), float(ratios[len(ratios) // 2]), int(ipcs[min(1, len(ipcs) - 1)]),
                     method, self.plain)

    @property
    def plain(self) -> str:
        """The first approach: the plain target, shown (greyed out) for a method that distils nothing."""
        return next(iter(self.settings["approaches"]))

    def ratio_label(self, dataset: str) -> str:
        """What the slider means for ``dataset``: the conflict ratio, or the minority share (1 - majority ratio)."""
        name = bias_ratio_name(self.settings["datasets"][dataset]["dataset"])
        return RATIO_LABELS.get(name, "bias ratio")

    def data_grid(self, point: Point) -> bytes:
        """A PNG of 8 training images per class of ``point``'s biased data (framed: bias-conflicting):
        stored (cache, else results store), else drawn from the dataset and stored."""
        params = self.params(point)
        relative = f"data/{params.dataset}-{cache_key(params, 'dataset')}-v{DATA_VIEW_VERSION}.png"
        return find_or_make(relative, params.cache_dir,
                            lambda: sample_grid_png(build_dataset(params), per_class=8)).read_bytes()

    def training_grid(self, point: Point, scale: str) -> bytes | None:
        """The PNG of the distilled set of ``point`` at ``scale`` (``profile`` or ``live``), if stored."""
        grid = stored_grid(self.params(point, live=scale == "live"))
        return None if grid is None else grid.read_bytes()

    def live_settings(self, point: Point) -> dict[str, Any]:
        """The live overrides that apply to ``point`` (a random subset has no distillation settings)."""
        relevant = set(relevant_fields(self.params(point, live=True)))
        return {k: v for k, v in self.live(point.method, point.ipc).items() if k in relevant}

    def estimate_seconds(self, point: Point) -> float | None:
        """About how long a live run of ``point`` takes, from the stored runs of the same method: their data time,
        seconds per distillation iteration and per evaluation epoch, scaled to the live settings (median over
        the readable runs; ``None`` without any). A KDE target's first run per dataset also trains its encoder."""
        live = self.params(point, live=True)
        estimates = []
        for other in self.points():
            if other.method != point.method:
                continue
            try:
                record, _ = self.stored(other)
            except PaperlibError:  # a damaged record elsewhere on the grid: showing its own point says why
                continue
            if record is None:
                continue
            p = record["params"]
            t = record["timings"]
            # num_distill and the data time: not in every record (load_record guarantees only RECORD_FIELDS and
            # RECORD_NESTED); a record without them made one training set, its data time unknown
            epochs = p["eval_epochs"] * record["num_eval"] * record.get("num_distill", 1) * (p["ipc"] or 1)
            per_epoch = t["evaluate"] / max(1, epochs)
            sets = repeats(live)  # the live run's training sets, each distilled and evaluated
            seconds = t.get("data", 0.0) + per_epoch * live.eval_epochs * live.num_eval * sets * live.ipc
            if METHODS[point.method].distils and record.get("seconds_per_iteration"):
                seconds += record["seconds_per_iteration"] * live.iterations * sets * live.batch_real / p["batch_real"]
            estimates.append(seconds)
        return statistics.median(estimates) if estimates else None

    def stored(self, point: Point) -> tuple[dict | None, str]:
        """The stored record of ``point`` and which scale it came from (``profile``, ``live`` or ``none``)."""
        for scale, live in (("profile", False), ("live", True)):
            record = load_record(self.params(point, live))
            if record is not None:
                return record, scale
        return None, "none"

    def stored_along(self, point: Point, stored_here: bool | None = None) -> tuple[list[float], list[int]]:
        """Where the sliders answer at once from ``point``: the ratios (at its IPC) and the IPCs (at its ratio)
        with a stored, readable run, the rest of ``point`` kept (a damaged neighbour is not listed: showing it
        says why). ``stored_here``: whether ``point`` itself has one, when the caller has just looked (it is on
        both sliders; else it is looked up once)."""
        def answers(other: Point) -> bool:
            if other == point and stored_here is not None:  # the point itself is on both lines: looked up once
                return stored_here
            try:
                return self.stored(other)[0] is not None
            except PaperlibError:
                return False

        stored_here = answers(point)
        ratios = [float(r) for r in self.settings["ratios"] if answers(dataclasses.replace(point, ratio=float(r)))]
        ipcs = [int(i) for i in self.settings["ipcs"] if answers(dataclasses.replace(point, ipc=int(i)))]
        return ratios, ipcs

    def compute(self, point: Point) -> dict:
        """Run ``point`` at the live scale (stored afterwards) and return its record."""
        return run(self.params(point, live=True))


NOT_STORED = "·"  # how the coverage table marks a point without a stored run


def explorer_coverage(model: ExplorerModel, views: bool = False, stored_only: bool = False) -> pd.DataFrame:
    """For every (dataset, ratio, IPC, method, target) of an explorer: ``profile`` or ``live`` where a run is
    stored, ``·`` where none is (so the stored points stand out of a mostly empty grid).

    With ``views``, the data view of every stored point is made (and stored) and its distilled grid read, so that
    the results store collected by ``make reproduce`` answers each stored point without the data. With
    ``stored_only``, the rows and columns without a stored point are left out, and a printed line counts them.
    """
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for point in model.points():
        record, scale = model.stored(point)
        row = rows.setdefault((point.dataset, point.method, point.target),
                              {"dataset": point.dataset, "method": point.method, "target": point.target})
        row[f"{percent(point.ratio)} / {point.ipc}"] = scale if record is not None else NOT_STORED
        if views and record is not None:
            model.data_grid(point)
            model.training_grid(point, scale)
    frame = pd.DataFrame(list(rows.values()))
    if stored_only:
        stored = frame != NOT_STORED
        keys = ["dataset", "method", "target"]
        rows_kept = stored.drop(columns=keys).any(axis=1)
        columns_kept = [c for c in frame.columns if c in keys or bool(stored.loc[rows_kept, c].any())]
        print(f"not shown, without a stored point: {int((~rows_kept).sum())} of {len(frame)} (dataset, method, "
              f"target) rows and {len(frame.columns) - len(columns_kept)} of {len(frame.columns) - len(keys)} "
              "ratio / IPC columns")
        frame = frame.loc[rows_kept, columns_kept].reset_index(drop=True)
    frame.columns.name = "ratio / IPC"
    return frame
