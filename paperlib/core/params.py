"""Experiment parameters: one frozen record, read and validated (YAML files and ``--set`` are read by
:mod:`paperlib.core.yamlio`; the cache key derived from its tags is :mod:`paperlib.core.keys`).

One flat set of plain-word parameters serves the command line, the Python API
and papermill, so a parameter file works unchanged in all three places.

Every field is tagged with the *group* it belongs to (``dataset``, ``method``,
``distill``, ``encoder``, ``kde``, ``model``, ``augment``, ``eval``, ``seed``;
``execution`` for fields that never change a result) and, where it matters only
for some choices, ``by`` the field that selects it: ``lff_q`` matters only when
the registered ``eval_trainer`` lists it in its ``uses``. :func:`paperlib.core.keys.cache_key` is
derived from these tags alone, so no module builds a key by hand.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import Field, dataclass, field, fields
from typing import Any

from paperlib.core.errors import PaperlibError
from paperlib.core.registry import registry_for
from paperlib.core.runtime import COMPILE_SETTINGS, FLOAT32

GROUPS = ("dataset", "seed", "method", "distill", "encoder", "kde", "model", "augment", "eval", "execution")
# The DSA strategy of the official code, dsa_strategy's default: every op of paperlib.train.augment.OPS, '_'-joined
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"


def _p(default: Any, group: str, by: str | None = None, names: str | None = None,
       choices: tuple[str, ...] = (), when: str | None = None) -> Any:
    """A field with its tags: ``group``; ``by`` the selecting field; ``names`` the field whose registry lists
    this field's valid names (a field with its own registry names itself); or fixed ``choices``; ``when`` a
    field that switches this one on: it is relevant only while that field is non-zero (an option added later
    leaves the keys of the runs without it unchanged)."""
    return field(default=default, metadata={"group": group, "by": by, "names": names, "choices": choices,
                                            "when": when})


@dataclass(frozen=True)
class Params:
    """Every setting of an experiment, with the papers' defaults for one run; how many runs a row averages is
    smaller (``num_distill`` 1 x ``num_eval`` 5, against paper B's 5 x 10, which ``params/paper`` sets).

    Build one with :func:`make_params`, which validates; the constructor alone
    does not. Fields are declared so that a selecting field precedes the fields it selects.
    """

    # --- dataset ---
    dataset: str = _p("cmnist", "dataset", names="dataset")  # the biased dataset: a name of data.presets.PRESETS
    source: str | None = _p(None, "dataset")  # None: the preset's own source (the preset checks it)
    conflict_ratio: float = _p(0.05, "dataset", by="dataset")  # share of bias-conflicting training samples
    majority_ratio: float = _p(0.9, "dataset", by="dataset")  # share of the majority group per class (FairDD)
    severity: int = _p(4, "dataset", by="dataset")  # the bias's strength, 1..5: colour noise (cmnist), corruption
    # a name of paperlib.data.protocols.PROTOCOLS; "": the preset's own (the first it accepts)
    protocol: str = _p("", "dataset", by="dataset", names="protocol")
    data_dir: str | None = _p(None, "execution")  # None: $PAPERLIB_DATA, else data/ at the repository root
    # --- what to train on ---
    method: str = _p("whole", "method", names="method")  # a name of paperlib.distill.methods.METHODS
    ipc: int = _p(10, "method", by="method")  # images per class (random real subset, distilled sets)
    num_distill: int = _p(1, "eval", by="method")  # independent training sets (distillations, random draws) per run
    # the index of the first of the num_distill training sets (0 draws as runs did before they were repeated)
    distill_run: int = _p(0, "method", by="method")
    # --- distillation ---
    # what the distillation matches on the real side: a name of paperlib.distill.targets.TARGETS
    target: str = _p("vanilla", "distill", by="method", names="target")
    weights: str = _p("uniform", "distill", by="target", names="weights")  # per-sample weights of target=weighted
    iterations: int = _p(0, "distill", by="method")  # distillation steps; 0: the papers' (DM 20000, DC/DSA 1000)
    batch_real: int = _p(256, "distill", by="method")  # real images per class and step
    # the synthetic images' learning rate; 0: the papers' value (DM 1, or 10 at IPC >= 100; DC 0.1)
    lr_img: float = _p(0.0, "distill", by="method")
    momentum_img: float = _p(0.5, "distill", by="method")  # SGD momentum of the synthetic images' updates
    # a name of paperlib.distill.init.INITS; "": the method's own
    init: str = _p("", "distill", by="method", names="init")
    # how real batches are drawn: a name of paperlib.distill.sampling.SAMPLINGS
    sampling: str = _p("uniform", "distill", by="method", names="sampling")
    stratified_min: int = _p(16, "distill", by="sampling")  # stratified: at least this many images per group
    outer_loop: int = _p(0, "distill", by="method")  # gradient matching; 0: by IPC, as the reference table
    inner_loop: int = _p(0, "distill", by="method")  # epochs of the network on the synthetic set per outer loop
    # gradient matching: the learning rate of the network's updates between outer loops
    lr_net: float = _p(0.01, "distill", by="method")
    # gradient matching: the batch of those updates; 0: eval_batch (the official code's one batch_train)
    inner_batch: int = _p(0, "distill", by="method")
    # DM: epochs of training the fresh embedding network on the current synthetic set before each matching step
    # (COBRA's warm start; 0: off)
    warm_start_epochs: int = _p(0, "distill", by="method", when="warm_start_epochs")
    warm_start_lr: float = _p(0.01, "distill", by="method", when="warm_start_epochs")  # the warm start's learning rate
    # the warm start's batch; 0: eval_batch
    warm_start_batch: int = _p(0, "distill", by="method", when="warm_start_epochs")
    # DM's distance between each real statistic and the synthetic mean embedding: "" (or squared_l2, written as "")
    # the squared Euclidean distance of DM's and FairDD's code; l1 the absolute distance COBRA's train_dm.py matches
    # its barycenter with (keyed only when set, so the runs before this option keep their keys)
    dm_distance: str = _p("", "distill", by="method", choices=("", "squared_l2", "l1"), when="dm_distance")
    # group targets (FairDD, COBRA): share of training samples whose group label is hidden
    # (paperlib.distill.group_labels)
    hidden_groups: float = _p(0.0, "distill", by="target", when="hidden_groups")
    # what the group targets do with the hidden samples: drop them from every group, or impute each one's group
    # (the nearest known centroid of its class)
    hidden_groups_fill: str = _p("drop", "distill", by="target", choices=("drop", "impute"), when="hidden_groups")
    checkpoint_every: int = _p(100, "execution")  # iterations between checkpoints (0: none)
    # bf16: distillation's forward passes (matching and the network trainings between matching steps) under
    # bfloat16 autocast; changes the maths, so it is a named deviation (evaluation always trains in fp32)
    precision: str = _p("fp32", "distill", by="method", choices=("fp32", "bf16"))
    channels_last: bool = _p(True, "distill", by="method")  # DM: NHWC layout (same fp32 maths, faster on CPU)
    # --- KDE sample weights (paper A; weights=kde) ---
    # the KDE's feature space: a name of paperlib.distill.kde.ENCODERS
    kde_encoder: str = _p("supcon", "encoder", by="weights", names="kde_encoder")
    # the KDE's SupCon encoder: its epochs over the biased training split (fractions ok)
    supcon_epochs: float = _p(10.0, "encoder", by="kde_encoder")
    supcon_temperature: float = _p(0.1, "encoder", by="kde_encoder")  # the KDE's SupCon encoder: its loss's temperature
    supcon_lr: float = _p(0.05, "encoder", by="kde_encoder")  # the KDE's SupCon encoder: its learning rate
    # the density's bandwidth rule: a name of paperlib.distill.kde.BANDWIDTHS
    kde_bandwidth: str = _p("median", "kde", by="weights", names="kde_bandwidth")
    kde_bandwidth_value: float = _p(1.0, "kde", by="kde_bandwidth")  # the bandwidth of kde_bandwidth=fixed
    # how a density becomes a weight: a name of paperlib.distill.kde.WEIGHTINGS
    kde_weighting: str = _p("power", "kde", by="weights", names="kde_weighting")
    kde_alpha: float = _p(1.0, "kde", by="kde_weighting")  # power: weight ∝ density ** -kde_alpha (sum 1 per class)
    kde_tau: float = _p(1.0, "kde", by="kde_weighting")  # softmax: the temperature over standardised log-densities
    kde_clip: float = _p(0.0, "kde", by="weights")  # the largest KDE weight, x the uniform weight; 0: no clip
    # --- model ---
    # the network that distils (and evaluates, unless eval_model is set): a name of paperlib.train.models.MODELS
    model: str = _p("convnet", "model", names="model")
    net_width: int = _p(128, "model")  # channels of each convolution (ConvNet; the papers' 128)
    net_depth: int = _p(3, "model")  # ConvNet blocks of convolution, norm, activation, pooling (the papers' 3)
    net_norm: str = _p("instancenorm", "model", names="net_norm")  # the ConvNet's normalisation (models.NORMS)
    net_act: str = _p("relu", "model", names="net_act")  # the ConvNet's activation (models.ACTIVATIONS)
    net_pooling: str = _p("avgpooling", "model", names="net_pooling")  # the ConvNet's pooling (models.POOLINGS)
    # --- evaluation protocol ---
    eval_epochs: int = _p(0, "eval")  # each evaluation model's epochs; 0: the method's (DC 300, the others 1000)
    eval_lr: float = _p(0.01, "eval")  # the evaluation models' learning rate (named lr_net in the official code)
    eval_batch: int = _p(256, "eval")  # the evaluation models' batch (batch_train in the official code)
    num_eval: int = _p(5, "eval")  # evaluation models per training set (paper B's scripts: 10; params/paper)
    dsa: bool = _p(True, "augment")  # DSA in DM / DSA matching and in evaluations that augment; false: nowhere
    # "": the method's protocol (DC none, others dsa; none when dsa=false)
    eval_augment: str = _p("", "eval", choices=("", "dsa", "none"))
    # The official evaluate_synset's schedule: eval_epochs + 1 epochs, lr x0.1 after epoch eval_epochs // 2 + 1 with
    # a fresh optimiser; false: this companion's first schedule (eval_epochs epochs, the drop one epoch earlier,
    # momentum kept), which the shipped quick results were computed with (keyed only when true)
    eval_official_schedule: bool = _p(True, "eval", when="eval_official_schedule")
    # DSA's ops, _-joined (train.augment.OPS); none is applied, nor keyed, with dsa=false
    dsa_strategy: str = _p(DSA_STRATEGY, "augment", names="dsa_op", when="dsa")
    eval_trainer: str = _p("plain", "eval", names="eval_trainer")  # a name of paperlib.train.trainers.TRAINERS
    # The evaluation's optimiser: "" (or sgd, written as "") the protocol's SGD (momentum 0.9, weight decay 5e-4);
    # adam: Adam at eval_lr without weight decay, the optimiser of LfF's and SelecMix's official code (keyed only
    # when set, so the runs before this option keep their keys)
    eval_optimizer: str = _p("", "eval", choices=("", "sgd", "adam"), when="eval_optimizer")
    lff_q: float = _p(0.7, "eval", by="eval_trainer")  # GCE exponent of the biased companion (LfF, SelecMix)
    lff_ema: float = _p(0.7, "eval", by="eval_trainer")  # LfF's per-sample loss moving average
    eval_model: str = _p("", "eval", names="model")  # "" = model (cross-architecture evaluation otherwise)
    # --- execution ---
    seed: int = _p(0, "seed")  # every random draw of a run derives from it (paperlib.core.keys.derive_seed)
    device: str = _p("auto", "execution", choices=("auto", "cpu", "cuda", "mps"))  # auto: CUDA when present, else CPU
    # auto: torch.compile long trainings and distillations on the CPU (same maths up to float reassociation)
    torch_compile: str = _p("auto", "execution", choices=COMPILE_SETTINGS)
    progress: bool = _p(True, "execution")  # progress bars on stderr
    cache_dir: str | None = _p(None, "execution")  # None: $PAPERLIB_CACHE, else cache/ at the repository root
    # recompute the run and every cached piece it reads (the dataset aside); a suite recomputes a shared set once
    force: bool = _p(False, "execution")


def check_selectors_precede(declared: Sequence[Field]) -> None:
    """Raise unless each field's selector (its ``by`` tag) is declared before it:
    :func:`paperlib.core.keys.relevant_fields` reads the fields in order, so a field above its selector would
    never enter a cache key (and a run differing only in it would be served another's result)."""
    seen: set[str] = set()
    for one in declared:
        by = one.metadata["by"]
        if by is not None and by not in seen:
            raise AssertionError(f"Params: {one.name} is selected by {by}, which must be declared above it")
        seen.add(one.name)


check_selectors_precede(fields(Params))  # at import: a misplaced new field stops everything, not one cache key

_RATIOS = ("conflict_ratio", "majority_ratio", "hidden_groups")
_POSITIVE_INTS = ("num_distill", "eval_batch", "num_eval", "net_width", "net_depth", "batch_real",
                  "stratified_min")
_NON_NEGATIVE = ("eval_epochs", "distill_run", "iterations", "outer_loop", "inner_loop", "inner_batch",
                 "checkpoint_every", "lr_img", "momentum_img", "warm_start_epochs", "warm_start_batch")
_POSITIVE_FLOATS = ("supcon_epochs", "supcon_temperature", "supcon_lr", "kde_bandwidth_value", "kde_alpha",
                    "kde_tau", "eval_lr", "lr_net", "warm_start_lr")
# inf and nan too: they are numbers, and validation then says they must be finite
_NUMBER = re.compile(r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)


def param_names() -> list[str]:
    """All accepted parameter names, in declaration order."""
    return [f.name for f in fields(Params)]


_FIELD_LINE = re.compile(r"^    (\w+): [^=]+= _p\(.*?\)(?:\s+#\s*(.*))?$")


def field_meanings() -> dict[str, str]:
    """What each parameter means, read from the comments of :class:`Params`' declaration (the one place they are
    written): the comment lines right above a field, then its own comment on its line (a comment line under a
    field belongs to the next one)."""
    import inspect

    meanings: dict[str, str] = {}
    block: list[str] = []
    for line in inspect.getsource(Params).splitlines():
        text = line.strip()
        field_line = _FIELD_LINE.match(line)
        if field_line:
            meanings[field_line[1]] = "; ".join(filter(None, [" ".join(block), field_line[2]]))
            block = []
        elif text.startswith("#") and not text.startswith("# ---"):
            block.append(text.lstrip("# "))
        else:  # a blank line, a section header, the docstring
            block = []
    return meanings


def default_of(name: str) -> Any:
    """The default value of the parameter ``name`` (a :class:`Params` field)."""
    try:
        return Params.__dataclass_fields__[name].default
    except KeyError:
        check_param_name(name)  # the one-line error, with the closest name
        raise


def field_tags() -> dict[str, dict[str, Any]]:
    """Each field's tags: ``group``, ``by``, ``names``, ``choices``, ``when`` (see :func:`_p`)."""
    return {f.name: dict(f.metadata) for f in fields(Params)}


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Convert a YAML/Python value to the type of the field's default, or raise.

    Numbers written as text (``1e-3``, which YAML 1.1 reads as a string) are read as numbers.
    """
    kind = type(default)
    if value is None:
        if default is None or default == "":  # `--set eval_model=` means the empty default: "the method's own"
            return default
        raise PaperlibError(f"parameter {name!r} must not be empty; give a value like {default!r}")
    if default is None and value == "":  # written empty in a file (`cache_dir: ""`): unset, as `--set cache_dir=`
        return None
    if default is None or kind is str:
        if not isinstance(value, str):
            raise PaperlibError(f"parameter {name!r} must be a string, got {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise PaperlibError(f"parameter {name!r} must be true or false, got {value!r}")
        return value
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        value = float(value)
    # numbers.Integral / Real: Python's numbers and numpy's scalars (a value read off an array) alike
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PaperlibError(f"parameter {name!r} must be {'an integer' if kind is int else 'a number'}, "
                            f"got {value!r}")
    if kind is int:
        if isinstance(value, numbers.Integral):
            return int(value)
        if math.isfinite(value) and float(value).is_integer():
            return int(value)
        raise PaperlibError(f"parameter {name!r} must be an integer, got {value!r}")
    if kind is float:
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range: 10**400
            raise PaperlibError(f"{name} must be a finite number, got an integer of {len(str(value))} digits") \
                from None
    raise AssertionError(f"unhandled parameter type for {name}")  # programming error


def read_as_param(name: str, value: Any) -> Any:
    """``value`` as the parameters will hold it (``"50"`` as 50 for ``ipc``), or the one-line error they give."""
    return _coerce(name, value, default_of(name))


def check_param_name(name: str) -> None:
    """A one-line error unless ``name`` is a parameter (with the closest one when it looks like a typo)."""
    names = param_names()
    if not isinstance(name, str):  # e.g. a YAML key written as a number
        raise PaperlibError(f"parameter names are text, got {name!r}; e.g. ipc: 10")
    if name not in names:  # the ~100 names would make a line of 1,700 characters: point at the listing instead
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise PaperlibError(f"unknown parameter {name!r}; {hint}`python -m paperlib params` lists every parameter "
                            "with its meaning")


def selected_entry(params: Params, name: str) -> Any:
    """The registered entry a registry-backed field of ``params`` selects."""
    return registry_for(name)[getattr(params, name)]


def _is_choice(value: str, choices: tuple[str, ...]) -> bool:
    """``value`` is one of ``choices``; a device choice ``cuda`` also admits ``cuda:<index>``."""
    return value in choices or ("cuda" in choices and re.fullmatch(r"cuda:\d+", value) is not None)


def _check_names(params: Params) -> None:
    """Every registry-backed or fixed-choice field holds a known name; registered checks run."""
    for name, tags in field_tags().items():
        value = getattr(params, name)
        if tags["choices"] and not _is_choice(value, tags["choices"]):
            names = ", ".join(repr(c) if not c else c for c in tags["choices"])  # '' shows as ''
            raise PaperlibError(f"unknown {name} {value!r}; choose one of: {names}"
                                + (" (or cuda:<index>)" if "cuda" in tags["choices"] else ""))
        if tags["names"] is None or value in (None, ""):  # "": eval_model = model
            continue
        registry = registry_for(tags["names"])
        if registry is None:  # programming error: the owning module was not imported (paperlib/__init__ does)
            raise AssertionError(f"no registry for {tags['names']!r}; import paperlib first")
        if registry.joined:  # a '_'-joined list of names (DSA's ops), or none
            registry.parse_joined(value, name)
        elif value not in registry:
            raise PaperlibError(registry.unknown(value, name))
    for name, tags in field_tags().items():
        if tags["names"] == name and getattr(params, name):  # "": a placeholder the preset fills
            check = getattr(selected_entry(params, name), "check", None)
            if check is not None:
                check(params)


def validate(params: Params) -> Params:
    """Check names, ranges and choices; raise :class:`PaperlibError` with a fix on failure."""
    for f in fields(Params):  # NaN passes every comparison below, and inf is no usable setting
        value = getattr(params, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise PaperlibError(f"{f.name} must be a finite number, got {value}")
        if isinstance(value, float) and value != 0 and not FLOAT32.tiny <= abs(value) <= FLOAT32.max:
            raise PaperlibError(f"{f.name}={value} cannot be computed with: the tensors are float32, whose "
                                f"magnitudes run from {FLOAT32.tiny:.3g} to {FLOAT32.max:.3g} (or 0); give a "
                                f"value in that range")
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
    for name in _POSITIVE_FLOATS:
        if not getattr(params, name) > 0:
            raise PaperlibError(f"{name} must be positive, got {getattr(params, name)}")
    if params.momentum_img >= 1:
        raise PaperlibError(f"momentum_img must be below 1 (momentum of 1 or more diverges), "
                            f"got {params.momentum_img}; the papers use 0.5")
    if params.kde_clip != 0 and params.kde_clip < 1:
        raise PaperlibError(f"kde_clip must be 0 (no clipping) or at least 1 (x the uniform weight), "
                            f"got {params.kde_clip}")
    if params.eval_augment == "dsa" and not params.dsa:
        raise PaperlibError("eval_augment=dsa needs dsa=true (dsa=false turns augmentation off everywhere); "
                            "drop eval_augment or set dsa=true")
    for name in ("lff_q", "lff_ema"):
        if not 0 < getattr(params, name) < 1:
            raise PaperlibError(f"{name} must be in (0, 1), got {getattr(params, name)}; the paper uses 0.7")
    _check_names(params)
    return params


def resolve_defaults(params: Params) -> Params:
    """Fill the placeholders (``source=None``, ``iterations=0``, ...) with what the selected entries say,
    and write an ``eval_model`` equal to ``model`` and an ``eval_optimizer`` of ``sgd`` as empty (the same
    evaluation, so one cache key)."""
    changes: dict[str, Any] = {}
    for name, tags in field_tags().items():
        if tags["names"] == name and getattr(params, name):
            defaults = getattr(selected_entry(params, name), "defaults", None)
            if defaults is not None:
                changes.update(defaults(params))
    if params.eval_model == params.model:
        changes["eval_model"] = ""
    if params.eval_optimizer == "sgd":
        changes["eval_optimizer"] = ""
    if params.dm_distance == "squared_l2":
        changes["dm_distance"] = ""
    return dataclasses.replace(params, **changes)


def make_params(overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> Params:
    """Validated :class:`Params` from defaults updated by ``overrides`` and ``kwargs``.

    Unknown names, wrong types, unknown choices and out-of-range values raise
    :class:`PaperlibError`.
    """
    if overrides is not None and not isinstance(overrides, Mapping):
        raise PaperlibError(f"parameters are a mapping of name: value, got {type(overrides).__name__} "
                            f"{overrides!r:.80}; e.g. make_params({{'ipc': 10}}) or make_params(ipc=10)")
    values: dict[str, Any] = {}
    defaults = Params()
    for name, value in {**(overrides or {}), **kwargs}.items():
        check_param_name(name)
        values[name] = _coerce(name, value, getattr(defaults, name))
    return resolve_defaults(validate(Params(**values)))


def with_overrides(params: Params | None, overrides: Mapping[str, Any]) -> Params:
    """``params`` (defaults when ``None``) updated by ``overrides``, validated.

    A value :func:`resolve_defaults` filled in (``iterations`` from the method, ``inner_batch`` from
    ``eval_batch``, ...) is filled in again from the new values, as if ``params`` had been made with the
    overrides: ``with_overrides(make_params(method="dm"), {"method": "dc"})`` has DC's iterations, not DM's.
    A value set by hand to exactly what would be filled in counts as filled in (the two cannot be told apart);
    to keep such a value, pass it again among the overrides.
    """
    if params is not None and not isinstance(params, Params):
        raise PaperlibError(f"expected Params (from make_params) or None, got {type(params).__name__} "
                            f"{params!r:.80}; e.g. make_params({{'dataset': 'cmnist'}})")
    if not isinstance(overrides, Mapping):
        raise PaperlibError(f"overrides are a mapping of name: value, got {type(overrides).__name__} "
                            f"{overrides!r:.80}")
    if params is not None and not overrides:
        return make_params(dataclasses.asdict(params))  # validated and filled in, even if built by hand
    base = {} if params is None else {name: value for name, value in dataclasses.asdict(params).items()
                                      if name in overrides or not _filled_in(params, name)}
    return make_params({**base, **overrides})


def _filled_in(params: Params, name: str) -> bool:
    """Whether ``params.name`` is what resolving its placeholder (the field's empty default) gives: a value
    :func:`resolve_defaults` filled in, or one set by hand to the same."""
    placeholder = default_of(name)
    if placeholder not in (0, "", None) or getattr(params, name) == placeholder:
        return False
    return getattr(resolve_defaults(dataclasses.replace(params, **{name: placeholder})), name) == getattr(params, name)


__all__ = [
    "Params",
    "check_param_name",
    "default_of",
    "field_tags",
    "make_params",
    "param_names",
    "read_as_param",
    "resolve_defaults",
    "selected_entry",
    "validate",
    "with_overrides",
]
