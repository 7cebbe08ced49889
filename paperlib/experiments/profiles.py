"""Profiles (``params/<profile>/``): the run defaults every notebook of a profile shares, each notebook's
parameter file, and the runs a notebook's suite describes.

A notebook's parameter file ``params/<profile>/NN_*.yaml`` holds ``profile``, a ``suite`` (see
:mod:`paperlib.experiments.suite`) and the notebook's own settings; its runs take ``defaults.yaml`` of the
profile underneath, which is what lets notebooks reuse each other's stored runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from paperlib.core.errors import PaperlibError
from paperlib.core.params import Params, load_yaml, make_params
from paperlib.core.paths import params_dir
from paperlib.data.presets import build_dataset
from paperlib.experiments.suite import RunSpec, load_suite, mapping, scaled

PROFILES = ("smoke", "quick", "paper")
PROFILE_DEFAULTS = "defaults.yaml"


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
        raise PaperlibError(f"profile {str(profile)!r} has no {path}; profiles: "
                            f"{', '.join(sorted(p.name for p in params_dir().iterdir() if p.is_dir()))}")
    return mapping(load_yaml(path), str(path))


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


def present_only(experiments: list[Mapping[str, Any]], profile: str) -> list[RunSpec]:
    """The runs of ``experiments`` whose dataset files are on this machine; a printed note for the others."""
    specs, defaults = [], profile_defaults(profile)
    for experiment in experiments or []:
        found = load_suite({"experiments": [experiment]}, base=defaults)
        try:
            build_dataset(found[0].params)
        except PaperlibError as err:
            print(f"{experiment['name']}: skipped, its data is not on this machine. {err}")
            continue
        specs += found
    return specs


def profile_params(settings: Mapping[str, Any], profile: str) -> Params:
    """Validated parameters: the profile's run defaults updated by ``settings``."""
    return make_params(scaled(profile_defaults(profile), settings))
