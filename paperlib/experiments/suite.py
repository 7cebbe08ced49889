"""Experiment suites: named comparisons from one YAML file, run and tabulated.

A suite (``params/experiments/kde_fairdd.yaml``, or the ``suite`` of a notebook's experiment file) holds::

    defaults:          # every run
      net_width: 64
    experiments:
      - name: cmnist_ipc10
        settings: {dataset: cmnist, ipc: 10}   # every run of this comparison
        runs:
          dm: {method: dm}
          dm_kde: {method: dm, target: weighted, weights: kde}

Each run's parameters are ``defaults``, then ``settings``, then its own
values; ``overrides`` (e.g. from ``--set``) win over all. A run's own value that the run does not read
(``{method: whole, target: groups}``) is an error; ``defaults`` and ``settings`` may hold values some of their
runs do not read.
:func:`paperlib.report.tables.results_table` reads the stored records only, so a
table (and its CSV) is always what the runs computed.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paperlib.core.errors import PaperlibError
from paperlib.core.keys import SCOPES, unread_reason
from paperlib.core.params import Params, default_of, field_tags, make_params, read_as_param
from paperlib.core.yamlio import load_yaml
from paperlib.core.runtime import progress
from paperlib.distill.methods import METHODS
from paperlib.experiments.runner import Recomputed, run


# Blocks of a profile's defaults.yaml that are not run parameters: the per-method scale (:func:`scaled`) and
# the executor settings (:mod:`paperlib.experiments.jobs`).
PROFILE_BLOCKS = ("methods", "executor")


@dataclass(frozen=True)
class RunSpec:
    """One run of a suite: which comparison, which row, which parameters."""

    experiment: str
    label: str
    params: Params


def mapping(value: Any, where: str) -> dict:
    """``value`` of a YAML file as a dict (``None``: empty); anything else is a one-line error naming ``where``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PaperlibError(f"{where} must be a mapping of name: value, got {value!r}")
    return dict(value)


def scaled(base: Mapping[str, Any], *layers: Mapping[str, Any]) -> dict[str, Any]:
    """The values of one run: ``base`` (a profile's defaults), its ``methods`` block for the run's method (and
    that block's ``by_ipc`` entry for the run's IPC; a method or IPC without one takes the values around it),
    then ``layers`` (suite defaults, experiment settings, the run's own values, overrides), each above the one
    before.

    A profile states its scale once this way, e.g. ``methods: {dc: {iterations: 5}, dm: {by_ipc: {50:
    {lr_img: 100}}}}``, and every suite, notebook and the explorer read it the same way.
    """
    flat = {k: v for k, v in base.items() if k not in PROFILE_BLOCKS}
    on_top: dict[str, Any] = {}
    for layer in layers:
        on_top.update(layer)
    merged = {**flat, **on_top}
    blocks = mapping(base.get("methods"), "methods")
    for name in blocks:
        METHODS[name]  # an unknown method in a profile's methods block is the one-line error
    block = mapping(_entry_for(blocks, merged.get("method", default_of("method"))), "methods block")
    by_ipc = mapping(block.pop("by_ipc", None), "by_ipc")
    for ipc in by_ipc:
        if isinstance(ipc, bool) or not isinstance(ipc, int):  # '10' would never match a run's IPC
            raise PaperlibError(f"by_ipc key {ipc!r} is not an IPC; write it as a whole number, e.g. 50:")
    # the IPC as the run will hold it: written as text ("50"), it would miss its entry and run at another scale
    ipc = merged.get("ipc", default_of("ipc"))
    by_this_ipc = mapping(_entry_for(by_ipc, read_as_param("ipc", ipc)), "by_ipc entry")
    return {**flat, **block, **by_this_ipc, **on_top}


def _entry_for(block: Mapping[Any, Any], value: Any) -> Any:
    """``block``'s entry for a run's ``value``; none for a value that cannot be a key (a list, a mapping), which
    the parameters' own check then reports."""
    return block.get(value) if isinstance(value, Hashable) else None


def _known_keys(data: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    """A misspelt key would be ignored and another experiment computed: a one-line error instead."""
    unknown = [str(key) for key in data if key not in known]
    if unknown:
        raise PaperlibError(f"{where} has unknown key {unknown[0]!r}; its keys are: {', '.join(known)}")


def refuse_unread(settings: Mapping[str, Any], runs: list[Params], written: str = "{name}: {value}",
                  scope: str = "record") -> None:
    """A one-line error for a setting of ``settings`` that what ``scope`` computes reads for no run of ``runs``
    (``{method: whole, target: groups}``): it would be dropped without a word and the row read as what it is not.
    ``written`` shows the setting as the user wrote it (``--set {name}={value}``, with the text as typed)."""
    for name, value in settings.items():
        reasons = [unread_reason(params, name, scope) for params in runs]
        if runs and all(reasons):
            unread = f"{name} is not read" if len(runs) == 1 else f"none of the {len(runs)} runs reads {name}"
            why = "; ".join(dict.fromkeys(reasons))  # each distinct reason once, in run order
            # a choice (a method, a target) that would read it, unless no choice of this command's result does
            other = ", or choose a setting that uses it" if field_tags()[name]["group"] in SCOPES[scope] else ""
            raise PaperlibError(f"{written.format(name=name, value=value)} changes nothing: {unread} ({why}); drop "
                                f"it{other}")


def load_suite(source: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None,
               only: str | None = None, base: Mapping[str, Any] | None = None) -> list[RunSpec]:
    """The runs a suite file (or an already-loaded mapping) describes, validated.

    ``base`` holds defaults below the suite's own ``defaults``, with an optional
    ``methods`` block (see :func:`scaled`): a notebook's suite takes its profile's
    ``defaults.yaml`` there (:mod:`paperlib.experiments.profiles`).
    ``only`` keeps the experiments whose name contains it. Bad parameters are
    reported with the experiment and run they belong to.
    """
    data = mapping(load_yaml(source) if isinstance(source, (str, Path)) else source, "a suite")
    _known_keys(data, ("defaults", "experiments"), "a suite")
    defaults = mapping(data.get("defaults"), "defaults")
    experiments = data.get("experiments")
    if not isinstance(experiments, list) or not experiments:
        raise PaperlibError("a suite needs a non-empty list under 'experiments'")
    specs, names = [], set()
    for experiment in experiments:
        name = experiment.get("name") if isinstance(experiment, Mapping) else None
        if name is None or name == "":
            raise PaperlibError(f"every experiment needs a name, got {experiment!r}")
        if isinstance(name, (list, dict)):
            raise PaperlibError(f"an experiment's name is text, got {name!r}")
        name = str(name)  # as a run's label: YAML reads `name: 2024` as a number
        if name in names:
            raise PaperlibError(f"two experiments are named {name!r}; rename one (runs are labelled by it)")
        names.add(name)
        _known_keys(experiment, ("name", "settings", "runs"), f"experiment {name!r}")
        if only and only not in name:
            continue
        settings = mapping(experiment.get("settings"), f"{name}.settings")
        runs = mapping(experiment.get("runs"), f"{name}.runs")
        if not runs:
            raise PaperlibError(f"experiment {name!r} has no runs")
        for label, values in runs.items():
            try:
                own = mapping(values, f"{name}.{label}")
                params = make_params(scaled(base or {}, defaults, settings, own, overrides or {}))
                # shared settings may be unread by some runs, a run's own may not (a --set over it is checked as one)
                refuse_unread({k: v for k, v in own.items() if k not in (overrides or {})}, [params])
                specs.append(RunSpec(name, str(label), params))
            except PaperlibError as err:
                raise PaperlibError(f"{name}.{label}: {err}") from None
    if not specs:
        raise PaperlibError(f"no experiment name contains {only!r}")
    return specs


def run_suite(specs: list[RunSpec]) -> list[dict[str, Any]]:
    """Run every spec under one progress bar (stored runs load at once); return their records in spec order
    (:func:`paperlib.experiments.runner.run`'s, with ``cached`` saying which were stored). Under ``force=true``
    a piece the runs share (a distilled set evaluated in several ways, KDE weights) is recomputed once."""
    recomputed = Recomputed()
    return [run(spec.params, recomputed=recomputed)
            for spec in progress(specs, total=len(specs), desc="runs", leave=True)]
