"""Profiles: one definition of every experiment, read at one scale.

``params/experiments/NN_*.yaml`` defines what a notebook computes, once, for every profile: its ``suite`` (see
:mod:`paperlib.experiments.suite`), its ``claims`` and its own settings. Two marks choose what a profile
sees (:func:`for_profile`):

* ``profiles: [quick, paper]`` in a mapping (an experiment, a run, a claim, a list item) keeps it in those
  profiles only;
* ``{per_profile: {smoke: 2, quick: 10}}`` as a value takes the profile's entry; a profile it does not name
  leaves the key out.

``params/<profile>/defaults.yaml`` is the profile's scale: the run defaults every notebook of the profile
shares, with a ``methods`` block per method and IPC. Sharing them is what lets notebooks reuse each other's
stored runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from paperlib.core.errors import PaperlibError
from paperlib.core.params import Params, make_params
from paperlib.core.yamlio import load_yaml
from paperlib.core.paths import params_dir, repo_root
from paperlib.data.presets import build_dataset, dataset_present, say_absent
from paperlib.experiments.suite import RunSpec, load_suite, mapping, scaled

PROFILES = ("smoke", "quick", "paper")
PROFILE_DEFAULTS = "defaults.yaml"
EXPERIMENTS = "experiments"  # params/experiments/: every experiment, defined once


def check_profile(profile: str) -> str:
    """``profile`` if it is one of :data:`PROFILES`, else the one-line error."""
    if profile not in PROFILES:
        raise PaperlibError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    return profile


def profile_defaults(profile: str | Path) -> dict[str, Any]:
    """The run defaults every notebook of a profile shares (``params/<profile>/defaults.yaml``), with the
    profile's per-method scale block ``methods`` (see :func:`paperlib.experiments.suite.scaled`).

    ``profile`` is a profile name (looked up under :func:`paperlib.core.paths.params_dir`)
    or a profile folder as a :class:`~pathlib.Path`. Sharing them is what lets notebooks reuse each other's cached runs.
    """
    folder = profile if isinstance(profile, Path) else params_dir() / profile
    path = folder / PROFILE_DEFAULTS
    if not path.is_file():
        raise PaperlibError(f"profile {str(profile)!r} has no {path}; profiles: {', '.join(PROFILES)}")
    return mapping(load_yaml(path), str(path))


def _marked(where: str, profile: str | None) -> None:
    if profile is None:
        raise PaperlibError(f"{where} differs by profile (profiles / per_profile); name a profile: "
                            f"{' | '.join(PROFILES)}")


def _profile_names(value: Any, where: str) -> list[str]:
    names = value if isinstance(value, list) else [value]
    for name in names:
        if name not in PROFILES:
            raise PaperlibError(f"{where}: unknown profile {name!r}; choose among: {', '.join(PROFILES)}")
    return names


_LEFT_OUT = object()  # what a profile does not see


def _select(value: Any, profile: str | None, where: str) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {"per_profile"}:  # the names first: a misspelt one is the error to fix, with a profile too
            choices = mapping(value["per_profile"], f"{where}.per_profile")
            _profile_names(list(choices), f"{where}.per_profile")
            _marked(where, profile)
            return _select(choices[profile], profile, where) if profile in choices else _LEFT_OUT
        if "profiles" in value:
            names = _profile_names(value["profiles"], f"{where}.profiles")
            _marked(where, profile)
            if profile not in names:
                return _LEFT_OUT
        items = [(k, _select(v, profile, f"{where}.{k}")) for k, v in value.items() if k != "profiles"]
        kept = {k: v for k, v in items if v is not _LEFT_OUT}
        return kept if kept or not items else _LEFT_OUT  # emptied by the selection: left out too
    if isinstance(value, list):
        items = [_select(v, profile, f"{where}[{i}]") for i, v in enumerate(value)]
        kept = [v for v in items if v is not _LEFT_OUT]
        return kept if kept or not items else _LEFT_OUT
    return value


def for_profile(value: Any, profile: str | None, where: str = "parameters") -> Any:
    """What ``profile`` sees of ``value`` (a loaded experiment file), with the marks resolved (module docstring).

    An entry the selection leaves empty (a claims list with no claim for this profile) is left out too.
    ``profile=None`` returns ``value`` unchanged if it has no marks, else the one-line error naming where.
    """
    if profile is not None:
        check_profile(profile)
    kept = _select(value, profile, where)
    return {} if kept is _LEFT_OUT and isinstance(value, Mapping) else kept


def experiment_file(notebook: str) -> Path:
    """``params/experiments/<notebook>.yaml``: what the notebook computes, for every profile."""
    path = params_dir() / EXPERIMENTS / f"{notebook}.yaml"
    if not path.is_file():
        raise PaperlibError(f"no experiment file {path}; every notebook needs one (params/{EXPERIMENTS}/NN_name.yaml)")
    return path


def notebook_parameters(profile: str, notebook: str) -> dict[str, Any]:
    """The parameters of ``notebook`` under ``profile``: ``profile`` and its experiment file as the profile sees it
    (what ``make reproduce`` hands to papermill)."""
    return {"profile": profile, **_as_profile_sees(load_yaml(experiment_file(notebook)), profile, notebook)}


def _as_profile_sees(written: Any, profile: str, notebook: str) -> dict[str, Any]:
    """An experiment file's loaded content as ``profile`` sees it; a key the notebook has no parameter for (a
    misspelt ``claim:``) is a one-line error, or the notebook would run without it and its checks pass empty."""
    where = str(experiment_file(notebook))
    expected = notebook_parameter_names(notebook) - {"profile"}  # the profile is the caller's, never the file's
    unknown = [key for key in mapping(written, where) if key not in expected]
    if expected and unknown:
        raise PaperlibError(f"{where} has unknown key {unknown[0]!r}; notebook {notebook} reads: "
                            f"{', '.join(sorted(expected))}")
    return mapping(for_profile(written, profile, notebook), where)


_PARAMETERS_CELL = re.compile(r'^# %% tags=\["parameters"\]\n(.*?)(?=^# %%|\Z)', re.MULTILINE | re.DOTALL)


def notebook_parameter_names(notebook: str) -> set[str]:
    """The names the parameters cell of ``notebooks/<notebook>.py`` assigns (empty where there is no such
    notebook: a suite file that is not a notebook's)."""
    source = repo_root() / "notebooks" / f"{notebook}.py"
    cell = _PARAMETERS_CELL.search(source.read_text(encoding="utf-8")) if source.is_file() else None
    return set(re.findall(r"^(\w+)\s*=", cell.group(1), re.MULTILINE)) if cell else set()


def parameters_or_file(profile: str, notebook: str, **given: Any) -> Any:
    """Each of ``given`` (a notebook's papermill parameters, by name) as given or, where ``None``, as the notebook's
    experiment file sets it for ``profile`` (a list or mapping whose every entry is for other profiles: empty):
    the one value, or a tuple of them in the order given."""
    file_values: dict[str, Any] | None = None
    values = []
    for name, value in given.items():
        if value is None:
            if file_values is None:
                written = load_yaml(experiment_file(notebook))
                emptied = {key: type(v)() for key, v in written.items() if isinstance(v, (list, dict))}
                file_values = {**emptied, **_as_profile_sees(written, profile, notebook)}
            if file_values.get(name) is None:
                raise PaperlibError(f"{experiment_file(notebook)} has no {name!r} for profile {profile!r}; add it "
                                    f"there or pass {name} as a notebook parameter")
            value = file_values[name]
        values.append(value)
    return values[0] if len(values) == 1 else tuple(values)


def suite_specs(profile: str, suite: Mapping[str, Any] | None, notebook: str) -> list[RunSpec]:
    """The runs of a notebook: ``suite`` as given (papermill), else its experiment file's, on the profile's defaults."""
    return load_suite(parameters_or_file(profile, notebook, suite=suite), base=profile_defaults(profile))


def suite_from_file(path: str | Path, profile: str | None = None, overrides: Mapping[str, Any] | None = None,
                    only: str | None = None) -> list[RunSpec]:
    """The runs of a suite file (``python -m paperlib suite``) as ``profile`` sees it.

    A notebook's experiment file nests its runs under ``suite`` and runs them on the profile's defaults; a
    standalone suite file (``defaults`` + ``experiments``) brings its own defaults. A file that differs by
    profile needs ``profile``.
    """
    written = load_yaml(path)
    if not written:
        raise PaperlibError(f"{path} is empty; a suite file holds 'experiments' (and optional 'defaults')")
    data = mapping(for_profile(written, profile, str(path)), str(path))
    if not data:
        raise PaperlibError(f"{path} defines no runs for profile {profile!r}; see its 'profiles' entries")
    if "suite" not in data and "experiments" not in data:  # e.g. 06_explore.yaml: the explorer's settings only
        raise PaperlibError(f"{path} holds no runs: a notebook's experiment file nests them under 'suite', a "
                            f"suite file under 'experiments'; it has {', '.join(map(repr, data))}")
    if "suite" not in data:
        return load_suite(data, overrides, only)
    if profile is None:
        raise PaperlibError(f"{path} is a notebook's experiment file: its runs take a profile's defaults; "
                            f"name a profile: {' | '.join(PROFILES)}")
    return load_suite(mapping(data["suite"], f"{path}: suite"), overrides, only, base=profile_defaults(profile))


def present_only(experiments: list[Mapping[str, Any]], profile: str, build: bool = True) -> list[RunSpec]:
    """The runs of ``experiments`` whose dataset files are on this machine; one printed note names the others
    (without this machine's paths: the note may end up in a committed notebook).

    A dataset's files are looked for (:func:`paperlib.data.dataset_present`), never downloaded: a notebook
    computes runs only for the data a reader has put there (``describe`` fetches what can be downloaded).
    ``build``: each present dataset is then built (and cached) as its runs will need it, so that a corrupt file
    stops here with its own error; without, nothing is built, for a plan that computes nothing."""
    specs, skipped, defaults = [], [], profile_defaults(profile)
    for experiment in experiments or []:
        found = load_suite({"experiments": [experiment]}, base=defaults)
        if not _present(found[0].params, build):
            skipped.append(found[0].params.dataset)
            continue
        specs += found
    if skipped:
        say_absent(skipped, "skipped")
    return specs


def _present(params: Params, build: bool) -> bool:
    if not dataset_present(params):
        return False
    if build:
        build_dataset(params)  # a corrupt or misnamed file stops with its own error, not as "absent"
    return True


def profile_runs(profile: str, notebooks: list[str], build: bool = True) -> list[RunSpec]:
    """Every run the ``notebooks``' suites ask for under ``profile`` (an optional dataset's runs only where its
    data is on this machine; ``build``: as :func:`present_only`): what an executor computes before the notebooks
    render."""
    specs: list[RunSpec] = []
    for notebook in notebooks:
        values = notebook_parameters(profile, notebook)
        if "suite" in values:
            specs += suite_specs(profile, values["suite"], notebook)
        specs += present_only(values.get("optional_datasets") or [], profile, build)
    return specs


def profile_params(settings: Mapping[str, Any], profile: str) -> Params:
    """Validated parameters: the profile's run defaults updated by ``settings``."""
    return make_params(scaled(profile_defaults(profile), settings))
