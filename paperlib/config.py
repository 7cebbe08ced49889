"""Experiment parameters: defaults, validation, YAML / ``--set`` parsing, hashing.

One flat set of plain-word parameters serves the command line, the Python API
and papermill, so a parameter file works unchanged in all three places.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from paperlib.errors import PaperlibError

METHODS = ("whole", "random", "dm", "dc", "dsa")
DISTILL_METHODS = ("dm", "dc", "dsa")
TARGETS = ("vanilla", "weighted", "groups")
WEIGHTS = ("uniform", "group_balanced", "kde")
KDE_ENCODERS = ("supcon", "random", "pixels")
BANDWIDTHS = ("scott", "silverman", "median", "fixed")
WEIGHTINGS = ("power", "softmax")
EVAL_TRAINERS = ("plain", "lff")
INITS = ("real", "noise", "balanced")
SAMPLINGS = ("uniform", "stratified")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class Params:
    """Every setting of an experiment, with the papers' defaults.

    Build one with :func:`make_params`, which validates; the constructor alone
    does not.
    """

    # --- dataset ---
    dataset: str = "cmnist"
    source: str | None = None  # None: the preset's own source (mnist, fashion_mnist, ...)
    conflict_ratio: float = 0.05  # share of bias-conflicting training samples (cmnist, bg_fmnist)
    majority_ratio: float = 0.9  # share of the majority group per class (FairDD presets)
    severity: int = 4  # 1..5: colour-noise severity (cmnist), corruption strength (corrupted_cifar10)
    data_dir: str | None = None  # None: $PAPERLIB_DATA, else data/ at the repository root
    # --- what to train on ---
    method: str = "whole"  # whole | random | dm | dc | dsa (dc with augmentation)
    ipc: int = 10  # images per class (random real subset, distilled sets)
    # --- distillation (dm, dc, dsa) ---
    target: str = "vanilla"  # vanilla | weighted | groups (FairDD)
    weights: str = "uniform"  # per-sample weights for target=weighted: uniform | group_balanced | kde
    iterations: int = 0  # 0: the papers' value (DM 20000, DC/DSA 1000)
    batch_real: int = 256  # real images per class and step
    lr_img: float = 0.0  # 0: the papers' value (DM 1, or 10 at IPC >= 100; DC/DSA 0.1)
    momentum_img: float = 0.5
    init: str = "real"  # real | noise | balanced (real, evenly over groups)
    sampling: str = "uniform"  # uniform (reference) | stratified (every group in every batch)
    stratified_min: int = 16  # stratified: at least this many images per present group
    outer_loop: int = 0  # gradient matching; 0: by IPC, as the reference table
    inner_loop: int = 0
    lr_net: float = 0.01  # gradient matching: network updates between outer loops
    checkpoint_every: int = 100  # iterations between checkpoints (0: none)
    precision: str = "fp32"  # fp32 | bf16 (autocast for the matching forward passes; changes the maths)
    channels_last: bool = True  # NHWC layout for distillation (same fp32 maths, faster convolutions on CPU)
    # --- KDE sample weights (paper A; weights=kde) ---
    kde_encoder: str = "supcon"  # supcon | random (fresh ConvNet) | pixels
    supcon_epochs: float = 10.0  # encoder training epochs over the biased training split (fractions allowed)
    supcon_temperature: float = 0.1
    supcon_lr: float = 0.05
    kde_bandwidth: str = "median"  # median (pairwise-distance heuristic) | scott | silverman | fixed
    kde_bandwidth_value: float = 1.0  # the bandwidth for kde_bandwidth=fixed
    kde_weighting: str = "power"  # power: w ~ p^-alpha | softmax: softmax(-z / tau), z = standardised log p
    kde_alpha: float = 1.0
    kde_tau: float = 1.0
    kde_clip: float = 0.0  # 0: none; else no weight above kde_clip x the class's uniform weight
    # --- model ---
    model: str = "convnet"
    net_width: int = 128
    net_depth: int = 3
    net_norm: str = "instancenorm"
    net_act: str = "relu"
    net_pooling: str = "avgpooling"
    # --- evaluation protocol ---
    eval_epochs: int = 1000
    eval_lr: float = 0.01
    eval_batch: int = 256
    num_eval: int = 5
    dsa: bool = True  # DSA augmentation while training evaluation models
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    eval_trainer: str = "plain"  # plain | lff (Learning from Failure, a debiasing baseline)
    lff_q: float = 0.7  # generalised cross-entropy exponent of LfF's biased model
    lff_ema: float = 0.7  # LfF's per-sample loss moving average
    eval_model: str = ""  # architecture of the evaluation models; "" = model (cross-architecture evaluation)
    # --- execution ---
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    cache_dir: str | None = None  # None: $PAPERLIB_CACHE, else cache/ at the repository root
    force: bool = False  # recompute even when a cached result exists


# Parameters that change where files are or how work is shown, never a result.
NON_RESULT_KEYS = frozenset({"data_dir", "device", "progress", "cache_dir", "force", "checkpoint_every"})
_DATASET_KEYS = ("dataset", "source", "conflict_ratio", "majority_ratio", "severity")

_RATIOS = ("conflict_ratio", "majority_ratio")
_POSITIVE_INTS = ("ipc", "eval_epochs", "eval_batch", "num_eval", "net_width", "net_depth", "batch_real",
                  "stratified_min")
_NON_NEGATIVE = ("iterations", "outer_loop", "inner_loop", "checkpoint_every", "lr_img", "momentum_img")
_CHOICES = {"method": METHODS, "target": TARGETS, "weights": WEIGHTS, "init": INITS, "sampling": SAMPLINGS,
            "precision": ("fp32", "bf16"), "kde_encoder": KDE_ENCODERS, "kde_bandwidth": BANDWIDTHS,
            "kde_weighting": WEIGHTINGS, "eval_trainer": EVAL_TRAINERS}
_POSITIVE_FLOATS = ("supcon_temperature", "supcon_lr", "kde_bandwidth_value", "kde_alpha", "kde_tau", "eval_lr")
_KDE_KEYS = ("kde_encoder", "supcon_epochs", "supcon_temperature", "supcon_lr", "kde_bandwidth",
             "kde_bandwidth_value", "kde_weighting", "kde_alpha", "kde_tau", "kde_clip")
_SUPCON_KEYS = ("supcon_epochs", "supcon_temperature", "supcon_lr")
# Parameters added after results were first stored: left out of the cache key
# while at their default, so adding a parameter keeps every stored result valid.
# (Changing any default, here or above, needs a CODE_VERSION bump in runner.py.)
KEYED_ONLY_WHEN_SET: tuple[str, ...] = ("eval_model",)
# Keys of the evaluation protocol only: a distilled set does not depend on them.
EVAL_KEYS = ("eval_epochs", "eval_lr", "eval_batch", "num_eval", "eval_trainer", "lff_q", "lff_ema", "eval_model")
# Keys that only matter for distillation, or only for one target.
_DISTILL_KEYS = ("target", "weights", "iterations", "batch_real", "lr_img", "momentum_img", "init", "sampling",
                 "stratified_min", "outer_loop", "inner_loop", "lr_net", "precision", "channels_last")


def param_names() -> list[str]:
    """All accepted parameter names, in declaration order."""
    return [f.name for f in fields(Params)]


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Convert a YAML/Python value to the type of the field's default, or raise."""
    kind = type(default)
    if value is None:
        if default is None:
            return None
        raise PaperlibError(f"parameter {name!r} must not be empty; give a value like {default!r}")
    if default is None or kind is str:
        if not isinstance(value, str):
            raise PaperlibError(f"parameter {name!r} must be a string, got {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise PaperlibError(f"parameter {name!r} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise PaperlibError(f"parameter {name!r} must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PaperlibError(f"parameter {name!r} must be a number, got {value!r}")
        return float(value)
    raise AssertionError(f"unhandled parameter type for {name}")  # programming error


def _check_name(name: str) -> None:
    names = param_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise PaperlibError(
            f"unknown parameter {name!r}; {hint}valid parameters: {', '.join(names)}"
        )


def validate(params: Params) -> Params:
    """Check ranges and choices; raise :class:`PaperlibError` with a fix on failure."""
    from paperlib.data.presets import PRESETS, check_source
    from paperlib.models import MODELS

    if params.dataset not in PRESETS:
        raise PaperlibError(
            f"unknown dataset {params.dataset!r}; choose one of: {', '.join(PRESETS)}"
        )
    check_source(params.dataset, params.source)
    for name in _RATIOS:
        value = getattr(params, name)
        if not 0.0 <= value <= 1.0:
            raise PaperlibError(f"{name} must be in [0, 1], got {value}; e.g. {name}=0.05")
    if params.ipc < 1:
        raise PaperlibError(f"ipc must be at least 1 image per class, got {params.ipc}")
    for name in _POSITIVE_INTS:
        if getattr(params, name) < 1:
            raise PaperlibError(f"{name} must be at least 1, got {getattr(params, name)}")
    for name in _NON_NEGATIVE:
        if getattr(params, name) < 0:
            raise PaperlibError(f"{name} must not be negative, got {getattr(params, name)}")
    if not 1 <= params.severity <= 5:
        raise PaperlibError(f"severity must be 1..5, got {params.severity}")
    for name, choices in _CHOICES.items():
        if getattr(params, name) not in choices:
            raise PaperlibError(f"unknown {name} {getattr(params, name)!r}; choose one of: {', '.join(choices)}")
    if params.model not in MODELS:
        raise PaperlibError(f"unknown model {params.model!r}; choose one of: {', '.join(MODELS)}")
    if params.eval_model and params.eval_model not in MODELS:
        raise PaperlibError(f"unknown eval_model {params.eval_model!r}; choose one of: {', '.join(MODELS)} "
                            f"(or leave it empty to evaluate with model)")
    for name in _POSITIVE_FLOATS:
        if not getattr(params, name) > 0:
            raise PaperlibError(f"{name} must be positive, got {getattr(params, name)}")
    if params.kde_clip != 0 and params.kde_clip < 1:
        raise PaperlibError(f"kde_clip must be 0 (no clipping) or at least 1 (x the uniform weight), "
                            f"got {params.kde_clip}")
    if params.supcon_epochs <= 0:
        raise PaperlibError(f"supcon_epochs must be positive, got {params.supcon_epochs}")
    for name in ("lff_q", "lff_ema"):
        if not 0 < getattr(params, name) < 1:
            raise PaperlibError(f"{name} must be in (0, 1), got {getattr(params, name)}; the paper uses 0.7")
    if params.device.split(":")[0] not in DEVICES:
        raise PaperlibError(f"unknown device {params.device!r}; use auto, cpu, cuda or cuda:N")
    return params


def resolve_defaults(params: Params) -> Params:
    """Replace the 0 = "the papers' value" placeholders by the values for the method."""
    changes: dict[str, Any] = {}
    if params.iterations == 0:
        changes["iterations"] = 20000 if params.method == "dm" else 1000
    if params.lr_img == 0:
        if params.method == "dm":
            changes["lr_img"] = 10.0 if params.ipc >= 100 else 1.0
        else:
            changes["lr_img"] = 0.1
    return dataclasses.replace(params, **changes)


def make_params(overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> Params:
    """Validated :class:`Params` from defaults updated by ``overrides`` and ``kwargs``.

    Unknown names, wrong types and out-of-range values raise
    :class:`PaperlibError`.
    """
    values: dict[str, Any] = {}
    defaults = Params()
    for name, value in {**(overrides or {}), **kwargs}.items():
        _check_name(name)
        values[name] = _coerce(name, value, getattr(defaults, name))
    return resolve_defaults(validate(Params(**values)))


def with_overrides(params: Params | None, overrides: Mapping[str, Any]) -> Params:
    """``params`` (defaults when ``None``) updated by ``overrides``, validated."""
    if params is not None and not overrides:
        return params
    base = {} if params is None else dataclasses.asdict(params)
    return make_params({**base, **overrides})


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a flat YAML mapping of parameters (a papermill parameter file)."""
    path = Path(path)
    if not path.is_file():
        raise PaperlibError(f"parameter file {path} does not exist; check the path")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise PaperlibError(f"parameter file {path} is not valid YAML: {err}".replace("\n", " "))
    if not isinstance(data, dict):
        raise PaperlibError(f"parameter file {path} must hold a mapping of name: value")
    return data


def parse_set(assignments: list[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings; values are YAML scalars (``0.05``, ``true``, ``cmnist``)."""
    result: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PaperlibError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            result[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            result[key.strip()] = raw
    return result


def result_dict(params: Params) -> dict[str, Any]:
    """The parameters that determine a result: location, display and unused settings removed.

    Two parameter sets that must give the same numbers map to the same dict,
    so they share one cache entry.
    """
    from paperlib.data.presets import dataset_key

    values = {k: v for k, v in dataclasses.asdict(params).items() if k not in NON_RESULT_KEYS}
    # The dataset enters through its own normalised key (a preset's unused ratios drop out).
    unused: set[str] = set(_DATASET_KEYS)
    values["data"] = dataset_key(params)
    if params.method not in DISTILL_METHODS:
        unused.update(_DISTILL_KEYS)
    if params.method == "whole":
        unused.add("ipc")
    if params.target != "weighted" or "weights" in unused:
        unused.add("weights")
    if "weights" in unused or params.weights != "kde":
        unused.update(_KDE_KEYS)
    elif params.kde_encoder != "supcon":
        unused.update(_SUPCON_KEYS)
    if params.kde_bandwidth != "fixed":
        unused.add("kde_bandwidth_value")
    unused.add("kde_tau" if params.kde_weighting == "power" else "kde_alpha")
    if params.eval_trainer != "lff":
        unused.update(("lff_q", "lff_ema"))
    if params.eval_model == params.model:
        unused.add("eval_model")  # the same as leaving it empty
    if params.method == "dm":
        unused.update(("outer_loop", "inner_loop", "lr_net"))
    defaults = Params()
    unused.update(k for k in KEYED_ONLY_WHEN_SET if getattr(params, k) == getattr(defaults, k))
    return {k: v for k, v in values.items() if k not in unused}


def stable_hash(data: Mapping[str, Any], length: int = 16) -> str:
    """Short sha256 of a JSON-serialisable mapping, independent of key order."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def derive_seed(seed: int, *tags: Any) -> int:
    """A 63-bit seed derived from ``seed`` and tags, e.g. ``derive_seed(0, "eval", 3)``.

    Independent streams for independent purposes, with no clock involved.
    """
    text = json.dumps([seed, *tags], default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


__all__ = [
    "Params",
    "derive_seed",
    "load_yaml",
    "make_params",
    "param_names",
    "parse_set",
    "resolve_defaults",
    "result_dict",
    "stable_hash",
    "validate",
]
