"""The bias explorer of notebook 06: pick a dataset, bias ratio, IPC, method and target; see the data,
the distilled images and the metrics.

A point is answered from the stored run at the profile's settings when there
is one (well under a second). Otherwise the reader can compute it live at a
small scale (the ``live`` overrides of ``params/experiments/06_explore.yaml``);
that run is stored too, so it answers at once the next time.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from paperlib.core.errors import PaperlibError
from paperlib.core.params import Params, cache_key, make_params
from paperlib.data.presets import bias_ratio_name, build_dataset
from paperlib.distill.methods import METHODS
from paperlib.experiments.runner import distilled_dir, load_record, run
from paperlib.experiments.suite import scaled
from paperlib.report.plots import sample_grid_png
from paperlib.report.reference import reported


# The approaches the papers compare, offered as the explorer's "target" choices: each is a set of parameter values
# (a registered target and, for KDE, its sample weights).
APPROACHES = {"vanilla": {"target": "vanilla"},
              "KDE reweighting (paper A)": {"target": "weighted", "weights": "kde"},
              "FairDD (paper B)": {"target": "groups"}}
SHOWN_METRICS = {"acc": "accuracy", "acc_aligned": "bias-aligned", "acc_conflicting": "bias-conflicting",
                 "deo_m": "DEO_M", "deo_a": "DEO_A"}


@dataclass(frozen=True)
class Point:
    """One choice of the explorer's controls."""

    dataset: str  # a label of the explorer's ``datasets`` setting
    ratio: float  # share of bias-conflicting (minority-group) training images
    ipc: int
    method: str  # random | dm | dc
    target: str  # a key of APPROACHES


class ExplorerModel:
    """The explorer without widgets: which parameters a point means, and its stored or live result.

    ``defaults`` are the profile's run defaults with their ``methods`` scale block (the same values the
    notebooks' suites use, so a point at the profile's settings is one of their runs); ``settings`` is the
    ``explorer`` block of ``params/experiments/06_explore.yaml``: ``datasets`` (label -> dataset settings),
    ``ratios``, ``ipcs``, ``methods`` and ``live`` (overrides for points computed on demand, with an
    optional ``methods`` block of their own).
    """

    def __init__(self, defaults: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
        for key in ("datasets", "ratios", "ipcs", "methods", "live"):
            if key not in settings:
                raise PaperlibError(f"the explorer settings need {key!r}")
        self.defaults, self.settings = dict(defaults), settings
        self._datasets: dict[str, Any] = {}

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
        target = APPROACHES[point.target] if METHODS[point.method].distils else {}
        return make_params(scaled(self.defaults, data, chosen, target, self.live(point.method) if live else {}))

    def live(self, method: str) -> dict[str, Any]:
        """The overrides of a live run of ``method``: ``live``, with its own ``methods`` block for ``method``."""
        values = scaled(self.settings["live"], {"method": method})
        values.pop("method")
        return values

    def dataset(self, point: Point):
        """The biased dataset of ``point`` (kept in memory: switching back is instant)."""
        params = self.params(point)
        key = cache_key(params, "dataset")
        if key not in self._datasets:
            self._datasets[key] = build_dataset(params)
        return self._datasets[key]

    def stored(self, point: Point) -> tuple[dict | None, str]:
        """The stored record of ``point`` and which scale it came from (``profile``, ``live`` or ``none``)."""
        for scale, live in (("profile", False), ("live", True)):
            record = load_record(self.params(point, live))
            if record is not None:
                return record, scale
        return None, "none"

    def compute(self, point: Point) -> dict:
        """Run ``point`` at the live scale (stored afterwards) and return its record."""
        return run(self.params(point, live=True))


def explorer_coverage(model: ExplorerModel) -> pd.DataFrame:
    """For every (dataset, ratio, IPC, method, target) of an explorer: ``profile``, ``live`` or ``none`` stored."""
    settings = model.settings
    rows = []
    for dataset in settings["datasets"]:
        for method in settings["methods"]:
            for target in (["vanilla"] if not METHODS[method].distils else list(APPROACHES)):
                row = {"dataset": dataset, "method": method, "target": target}
                for ratio in settings["ratios"]:
                    for ipc in settings["ipcs"]:
                        row[f"{ratio:g} / {ipc}"] = model.stored(Point(dataset, ratio, ipc, method, target))[1]
                rows.append(row)
    frame = pd.DataFrame(rows)
    frame.columns.name = "ratio / IPC"
    return frame


def metrics_html(record: dict, scale: str, live: Mapping[str, Any], paper: dict | None) -> str:
    """A small HTML table of the record's metrics, saying where they come from (and the paper's, labelled)."""
    metrics = record["metrics"]
    header = "<tr><th></th><th>this companion</th>" + ("<th>paper</th>" if paper else "") + "</tr>"
    rows = []
    for key, label in SHOWN_METRICS.items():
        ours = f"{metrics[key]:.1f}" + (f" ± {metrics[key + '_std']:.1f}" if record["num_eval"] > 1 else "")
        theirs = f"<td>{paper[key]:.1f}</td>" if paper and key in paper else ("<td>–</td>" if paper else "")
        rows.append(f"<tr><td>{label}</td><td>{ours}</td>{theirs}</tr>")
    where = ("stored run at this profile's settings" if scale == "profile" else
             "computed live at a small scale: " + ", ".join(f"{k}={v}" for k, v in live.items()))
    note = f"<p><small>{html.escape(where)}; {record['num_eval']} evaluation model(s)"
    if paper:
        note += f"; paper: {html.escape(paper['source'])} (its own, longer setting)"
    return f"<table>{header}{''.join(rows)}</table>{note}</small></p>"


class Explorer:
    """The ipywidgets front end of :class:`ExplorerModel`; ``display(Explorer(...).widget)`` in a notebook."""

    def __init__(self, defaults: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
        import ipywidgets as w

        self.model = ExplorerModel(defaults, settings)
        s = settings
        self.dataset = w.Dropdown(options=list(s["datasets"]), description="dataset")
        ratios, ipcs = [float(r) for r in s["ratios"]], [int(i) for i in s["ipcs"]]
        self.ratio = w.SelectionSlider(options=ratios, value=ratios[len(ratios) // 2], description="conflict ratio",
                                       continuous_update=False,
                                       style={"description_width": "initial"})
        self.ipc = w.SelectionSlider(options=ipcs, value=ipcs[min(1, len(ipcs) - 1)], description="IPC",
                                     continuous_update=False)
        self.method = w.Dropdown(options=list(s["methods"]), value="dm" if "dm" in s["methods"] else s["methods"][0],
                                 description="method")
        self.target = w.Dropdown(options=list(APPROACHES), description="target")
        self.compute_button = w.Button(description="compute live", icon="play", disabled=True)
        self.status = w.HTML()
        self.data_image = w.Image(format="png")
        self.distilled_image = w.Image(format="png")
        self.metrics = w.HTML()
        self.progress = w.Output()
        for control in (self.dataset, self.ratio, self.ipc, self.method, self.target):
            control.observe(lambda _: self.refresh(), names="value")
        self.compute_button.on_click(lambda _: self.compute())
        images = w.HBox([w.VBox([w.HTML("<b>biased training data</b> (red frame: bias-conflicting)"),
                                 self.data_image]),
                         w.VBox([w.HTML("<b>training set of the model</b>"), self.distilled_image])])
        self.widget = w.VBox([w.HBox([self.dataset, self.method, self.target]), w.HBox([self.ratio, self.ipc]),
                              w.HBox([self.compute_button, self.status]), self.progress, images, self.metrics])
        self.refresh()

    def snapshot_html(self) -> str:
        """The current view as static HTML (images inlined), for stored notebooks where widgets do not render."""
        def image(data: bytes) -> str:
            if not data:
                return "<i>no synthetic images (random real subset or whole data)</i>"
            return f'<img src="data:image/png;base64,{base64.b64encode(bytes(data)).decode()}"/>'

        point = self.point()
        title = html.escape(f"{point.dataset}, ratio {point.ratio:g}, IPC {point.ipc}, {point.method}, {point.target}")
        return (f"<p><b>{title}</b></p><table><tr><th>biased training data</th><th>training set of the model</th>"
                f"</tr><tr><td>{image(self.data_image.value)}</td><td>{image(self.distilled_image.value)}</td>"
                f"</tr></table>{self.metrics.value or self.status.value}")

    def point(self) -> Point:
        """The point the controls show."""
        return Point(self.dataset.value, float(self.ratio.value), int(self.ipc.value), self.method.value,
                     self.target.value)

    def refresh(self) -> None:
        """Show the current point: data grid always, result when stored, else offer to compute it."""
        point = self.point()
        self.target.disabled = not METHODS[point.method].distils
        self.data_image.value = sample_grid_png(self.model.dataset(point), per_class=8)
        record, scale = self.model.stored(point)
        if record is None:
            self.status.value = "<i>not computed yet at this point</i>"
            self.compute_button.disabled = False
            self.distilled_image.value = b""
            self.metrics.value = ""
            return
        self.compute_button.disabled = True
        self.status.value = f"<i>{'stored run' if scale == 'profile' else 'stored live run'}</i>"
        self._show(point, record, scale)

    def compute(self) -> None:
        """Compute the current point at the live scale, with progress bars, then show it."""
        point = self.point()
        self.compute_button.disabled = True
        self.status.value = "<i>computing…</i>"
        self.progress.clear_output()
        with self.progress:
            record = self.model.compute(point)
        self.progress.clear_output()
        self.status.value = "<i>computed live</i>"
        self._show(point, record, "live")

    def _show(self, point: Point, record: dict, scale: str) -> None:
        params = self.model.params(point, live=scale == "live")
        grid = distilled_dir(params) / "synthetic.png"
        if METHODS[params.method].distils and grid.is_file():
            self.distilled_image.value = grid.read_bytes()
        else:  # random real subset or whole data: no synthetic images
            self.distilled_image.value = b""
        paper = reported(params)
        self.metrics.value = metrics_html(record, scale, self.model.live(point.method), paper)
