"""The experiment runner: build data, make a training set, evaluate, record.

``run(dataset="cmnist", method="dm")`` and ``python -m paperlib run --set
dataset=cmnist --set method=dm`` do the same thing. Each finished run is one
folder ``<cache>/records/<dataset>-<method>-<key>/`` holding ``record.json``
(parameters, metrics, timings). A distilled set lives apart, in
``<cache>/distilled/<dataset>-<method>-<key>/`` (``synthetic.pt``, a
``synthetic.png`` grid, ``facts.json``), keyed without the evaluation settings
so that several evaluations share one distillation. Keys are
:func:`paperlib.core.keys.cache_key` of the parameters; asking again returns the
stored record instantly unless ``force=true``; a run missing from the cache is looked up in the
results store shipped with the repository (:mod:`paperlib.core.results_store`). Files are written atomically
and the record last, so a run that fails leaves no record.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from paperlib.core.images import save_image_grid
from paperlib.core.keys import cache_key, relevant_fields
from paperlib.core.params import Params, field_tags, with_overrides
from paperlib.core.results_store import find, next_step_for
from paperlib.core.runtime import environment, resolve_device
from paperlib.core.errors import PaperlibError
from paperlib.core.store import (KEEP_AND_STOP, atomic_write, cache_root, entry_lock, load_json, load_tensors,
                                  refuse_folder, save_tensors, unreadable_message)
from paperlib.data.container import BiasedDataset
from paperlib.data.presets import build_dataset
from paperlib.distill.engine import distill
from paperlib.distill.init import class_major_labels
from paperlib.distill.methods import METHODS
from paperlib.distill.targets import make_target
from paperlib.train.evaluate import evaluate_set
from paperlib.train.metrics import METRIC_KEYS, summarize


# A target's cached pieces (KDE's), shared by every training set (distill_run) of a run and by runs that differ
# elsewhere, each with the settings group that only it and what reads it depend on
TARGET_PIECES = {"embeddings": "encoder", "weights": "kde"}


def target_pieces(params: Params) -> tuple[str, ...]:
    """The cached pieces the target of ``params`` reads: those whose own settings enter its distilled set's key
    (none for vanilla, FairDD or COBRA; KDE's embeddings and weights for ``weights=kde``)."""
    tags = field_tags()
    groups = {tags[name]["group"] for name in relevant_fields(params, "distilled")}
    return tuple(scope for scope, group in TARGET_PIECES.items() if group in groups)


@dataclass
class Recomputed:
    """The cache entries recomputed under ``force=true`` so far by one run or suite: a later training set or run
    that reads one of them takes it as it is. ``force`` recomputes each record and distilled set once, not once per
    run or training set that reads it (evaluations of one distilled set, the ``num_distill`` sets sharing one KDE);
    a target's pieces (:func:`target_pieces`) are recomputed together, unless every one was already (two KDE
    settings that share an encoder each retrain it)."""

    entries: set[str] = field(default_factory=set)

    def forces(self, params: Params, *scopes: str) -> bool:
        """Whether ``params`` recomputes what it stores for any of ``scopes``: under force, unless recomputed
        already."""
        return params.force and any(self._entry(params, scope) not in self.entries for scope in scopes)

    def add(self, params: Params, *scopes: str) -> None:
        """Note ``scopes``' entries of ``params`` as recomputed (when under force; otherwise nothing was)."""
        if params.force:
            self.entries.update(self._entry(params, scope) for scope in scopes)

    @staticmethod
    def _entry(params: Params, scope: str) -> str:
        return f"{scope}-{cache_key(params, scope)}"


def record_key(params: Params) -> str:
    """The cache key of a run (:func:`paperlib.core.keys.cache_key`)."""
    return cache_key(params, "record")


def record_name(params: Params) -> str:
    """The folder name of a run's record: ``<dataset>-<method>-<key>``."""
    return f"{params.dataset}-{params.method}-{record_key(params)}"


def record_folder(params: Params) -> str:
    """A run's record folder inside the cache (and the results store): ``records/<record_name>``."""
    return f"records/{record_name(params)}"


def find_record(params: Params) -> Path | None:
    """The stored ``record.json`` of ``params``: in the cache, else in the results store; ``None`` when neither
    has it."""
    return find(f"{record_folder(params)}/record.json", params.cache_dir)


def record_dir(params: Params) -> Path:
    """The cache folder where a run's ``record.json`` is written."""
    return cache_root(params.cache_dir) / record_folder(params)


# What a distilled set's folder holds (a checkpoint only while it is being distilled)
DISTILLED_ENTRIES = ("synthetic.pt", "synthetic.png", "facts.json", "checkpoint.pt")


def distilled_dir(params: Params) -> Path:
    """The folder holding a distilled set: ``synthetic.pt``, ``synthetic.png``, ``facts.json``.

    Keyed without the evaluation settings, so evaluating one distilled set in
    several ways (more models, LfF, other epochs) distils it once.
    """
    return cache_root(params.cache_dir) / distilled_folder(params)


def distilled_name(params: Params) -> str:
    """The folder name of a distilled set: ``<dataset>-<method>-<key without the evaluation settings>``."""
    return f"{params.dataset}-{params.method}-{cache_key(params, 'distilled')}"


def distilled_folder(params: Params) -> str:
    """A distilled set's folder inside the cache (and the results store): ``distilled/<distilled_name>``."""
    return f"distilled/{distilled_name(params)}"


def stored_grid(params: Params) -> Path | None:
    """The PNG grid of the distilled set of ``params`` (cache, else results store); ``None`` if there is none."""
    if not METHODS[params.method].distils:
        return None
    return find(f"{distilled_folder(params)}/synthetic.png", params.cache_dir)


def training_set(dataset: BiasedDataset, params: Params, device: torch.device,
                 recomputed: Recomputed | None = None) -> tuple[Tensor, Tensor, dict]:
    """The images an evaluation model learns from (normalised), their labels, and facts about them.

    A method that distils (:attr:`paperlib.distill.methods.Method.distils`) gives its distilled set
    (``recomputed``: see :func:`distilled_set`); the others the real images they select.
    """
    method = METHODS[params.method]
    if method.distils:
        return distilled_set(dataset, params, device, recomputed)
    index = method.select(dataset, params)
    train = dataset.train if index is None else dataset.train.subset(index)
    return dataset.normalized(train, device), train.labels, {}


def distilled_set(dataset: BiasedDataset, params: Params, device: torch.device,
                  recomputed: Recomputed | None = None) -> tuple[Tensor, Tensor, dict]:
    """The synthetic set of ``params`` (normalised images, labels) and facts about its making.

    Loaded from :func:`distilled_dir` when present; otherwise distilled (resuming
    from a checkpoint there if one exists) and stored with an image grid. Under ``force``, what ``recomputed``
    lists as recomputed already (the set, its target's KDE embeddings and weights) is read as it is, and what
    this call recomputes is added to it.
    """
    dataset.check_built_for(params, "distilled set")
    folder = distilled_dir(params)
    # Runs that differ only in their evaluation share this set: one distils it, the others wait and load it.
    with entry_lock(params.cache_dir, f"distilled-{folder.name}"):
        return _load_or_distil(dataset, params, device, folder, Recomputed() if recomputed is None else recomputed)


def _load_or_distil(dataset: BiasedDataset, params: Params, device: torch.device,
                    folder: Path, recomputed: Recomputed) -> tuple[Tensor, Tensor, dict]:
    for entry in DISTILLED_ENTRIES:
        refuse_folder(folder / entry)
    forced = recomputed.forces(params, "distilled")
    saved = None if forced else load_tensors(folder / "synthetic.pt", keys=("images", "labels"))
    if saved is not None:
        _check_synthetic(saved, dataset, params, folder / "synthetic.pt")
    facts = None if saved is None else load_json(folder / "facts.json")
    if facts is not None:
        return saved["images"].to(device), saved["labels"].to(device), {**facts, "distill_cached": True}
    pieces = target_pieces(params)
    fresh_target = not recomputed.forces(params, *pieces)
    target, facts = make_target(dataset, dataclasses.replace(params, force=False) if fresh_target else params, device)
    recomputed.add(params, *pieces)
    _check_storable(facts, params)
    checkpoint = folder / "checkpoint.pt"
    result = distill(dataset, dataclasses.replace(params, force=forced), target, device, checkpoint)
    facts.update({"losses": result.losses, "distill_seconds": result.seconds,
                  "seconds_per_iteration": result.seconds / max(1, params.iterations - result.resumed_from),
                  "resumed_from": result.resumed_from, "distilled": folder.name,
                  # a set is reused by any run of its key, on any device: the record says where it was made
                  "distilled_on": {"device": str(device), **environment(device)}})
    save_image_grid(dataset.denormalize(result.images), folder / "synthetic.png", per_row=params.ipc)
    save_tensors(folder / "synthetic.pt", {"images": result.images, "labels": result.labels})
    with atomic_write(folder / "facts.json") as tmp:
        tmp.write_text(json.dumps(_json_safe(facts), indent=1))
    checkpoint.unlink(missing_ok=True)  # only now: a kill before facts.json resumes from it
    recomputed.add(params, "distilled")
    return result.images.to(device), result.labels.to(device), {**facts, "distill_cached": False}


def _check_storable(facts: dict, params: Params) -> None:
    """A target's facts are stored as JSON with its set, and then in each record beside the record's own fields:
    one that cannot be stored, or that a record writes itself, is an error now, not after the whole
    distillation."""
    taken = sorted(set(facts) & set(OWN_FIELDS))
    if taken:
        raise PaperlibError(f"target {params.target!r} returned facts named {', '.join(taken)}, which a run's "
                            "record writes itself; give them other names (the target's name as a prefix, say)")
    try:
        json.dumps(_json_safe(facts))
    except (TypeError, ValueError) as err:
        raise PaperlibError(f"target {params.target!r} returned facts that cannot be stored as JSON ({err}); "
                            "make its for_run return numbers, strings, lists and dicts (float(t) for a tensor t)"
                            ) from None


def _check_synthetic(saved: dict[str, Any], dataset: BiasedDataset, params: Params, path: Path) -> None:
    """A stored synthetic set must be ``ipc`` images of the dataset's shape per class, labelled in class order
    as :func:`distill` writes them; anything else is an error naming the file, not a torch error in training."""
    images, labels = saved["images"], saved["labels"]
    count, shape = params.ipc * dataset.num_classes, (dataset.channels, dataset.image_size, dataset.image_size)
    expected = class_major_labels(dataset.num_classes, params.ipc)
    if not (isinstance(images, Tensor) and images.is_floating_point()):
        problem = f"images are {getattr(images, 'dtype', type(images).__name__)}, not a float tensor"
    elif tuple(images.shape) != (count, *shape):
        problem = f"images of shape {tuple(images.shape)}, not {(count, *shape)}"
    elif not bool(torch.isfinite(images).all()):  # a set that diverged is never stored: this one was damaged
        problem = "images with pixels that are not finite"
    elif not (isinstance(labels, Tensor) and labels.dtype == expected.dtype and labels.shape == expected.shape
              and torch.equal(labels.cpu(), expected)):
        problem = f"labels are not {params.ipc} per class in class order"
    else:
        return
    raise PaperlibError(unreadable_message(path, problem, KEEP_AND_STOP))


def _json_safe(value: Any) -> Any:
    """NaN -> None recursively, so records are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


# What every reader of a record uses, and the JSON types it needs: its top-level fields, then those of its
# nested mappings (a metric is None where it was undefined, e.g. a group absent from the test split).
_NUMBER = (int, float)
RECORD_FIELDS: dict[str, tuple[type, ...]] = {"params": (dict,), "metrics": (dict,), "runs": (list,),
                                              "timings": (dict,), "num_eval": (int,), "key": (str,),
                                              "device": (str,)}
RECORD_NESTED: dict[str, dict[str, tuple[type, ...]]] = {
    "timings": {"evaluate": _NUMBER, "total": _NUMBER},
    "metrics": {key: (*_NUMBER, type(None)) for key in METRIC_KEYS + tuple(f"{key}_std" for key in METRIC_KEYS)},
}
# Every field a record or a distilled set's facts write themselves (a target's facts join them, and may not
# overwrite one).
OWN_FIELDS = (*RECORD_FIELDS, "num_distill", "train_size", "environment", "cached", "losses", "distill_seconds",
              "seconds_per_iteration", "resumed_from", "distilled", "distilled_on", "distilled_on_devices",
              "distill_cached")
_JSON_NAMES = {dict: "a mapping", list: "a list", str: "text", int: "a whole number", float: "a number",
               type(None): "null", bool: "true/false"}


def load_record(params: Params) -> dict[str, Any] | None:
    """The stored record of ``params`` (cache, else results store), or ``None`` when it was never run (an
    unreadable or incomplete one, or one with a field of the wrong type, is an error)."""
    path = find_record(params)
    if path is None:
        return None
    next_step = next_step_for(path)
    record = load_json(path, next_step)
    problems = _record_problems(record)
    if problems:
        more = f" and {len(problems) - 4} more" if len(problems) > 4 else ""
        raise PaperlibError(unreadable_message(path, f"{', '.join(problems[:4])}{more}", next_step))
    return record


def _record_problems(record: dict[str, Any]) -> list[str]:
    """What keeps ``record`` from being read: a missing field ('no timings.total') or one of the wrong JSON
    type ('timings.total is null, not a number')."""
    problems = _field_problems(record, RECORD_FIELDS, "")
    for outer, fields in RECORD_NESTED.items():
        if isinstance(record.get(outer), dict):
            problems += _field_problems(record[outer], fields, f"{outer}.")
    return problems


def _field_problems(mapping: dict[str, Any], fields: dict[str, tuple[type, ...]], prefix: str) -> list[str]:
    problems = []
    for name, types in fields.items():
        if name not in mapping:
            problems.append(f"no {prefix}{name}")
        # bool is an int to Python, never a count or a time to a record
        elif isinstance(mapping[name], bool) or not isinstance(mapping[name], types):
            problems.append(f"{prefix}{name} is {_JSON_NAMES.get(type(mapping[name]), type(mapping[name]).__name__)},"
                            f" not {'a number' if float in types else _JSON_NAMES[types[0]]}")
        elif isinstance(mapping[name], float) and not math.isfinite(mapping[name]):  # written as null, never NaN
            problems.append(f"{prefix}{name} is {mapping[name]}")
    return problems


def run(params: Params | None = None, *, recomputed: Recomputed | None = None, **overrides: Any) -> dict[str, Any]:
    """Run one experiment and return its record (from the cache when present).

    Under ``force=true`` the run and every cached piece it reads are recomputed, but for those ``recomputed``
    lists (a suite's earlier runs recomputed them: :func:`paperlib.experiments.suite.run_suite`); what this run
    recomputes is added to it.

    The record holds ``params``, ``metrics`` (means and ``_std``), per-model
    ``runs``, ``timings`` in seconds, the ``device`` and the ``environment`` it was computed in (torch, CPU
    kernels, threads, GPU: what bit-identity needs beside the parameters), the training-set size, for
    distilled sets the loss curve, and ``cached``: whether it came from the cache.
    """
    params = with_overrides(params, overrides)
    recomputed = Recomputed() if recomputed is None else recomputed
    forced = recomputed.forces(params, "record")
    cached = None if forced else load_record(params)
    if cached is not None:
        return {**cached, "cached": True}
    # Another process computing the same run holds this lock: wait, then take its record.
    with entry_lock(params.cache_dir, record_dir(params).name):
        cached = None if forced else load_record(params)
        if cached is not None:
            return {**cached, "cached": True}
        record = _compute(params, recomputed)
    recomputed.add(params, "record")
    return record


def repeats(params: Params) -> int:
    """How many independent training sets the run makes and evaluates (``num_distill`` where the method draws
    one, else 1)."""
    return params.num_distill if "num_distill" in METHODS[params.method].uses else 1


def training_set_indices(params: Params) -> range:
    """The ``distill_run`` of each training set the run makes: ``repeats`` of them from ``distill_run`` (0 for
    a method that draws none, whose key leaves it out)."""
    first = params.distill_run if "distill_run" in METHODS[params.method].uses else 0
    return range(first, first + repeats(params))


def _compute(params: Params, recomputed: Recomputed) -> dict[str, Any]:
    """Compute the run of ``params`` and store its record: ``num_eval`` models on each of its training sets,
    the metrics summarised over all of them (under force, the sets share the KDE pieces the first recomputes)."""
    folder = record_dir(params)
    start = time.perf_counter()
    device = resolve_device(params.device)
    dataset = build_dataset(params)
    built = time.perf_counter()
    runs, made_seconds, facts, size, made_on = [], 0.0, {}, 0, []
    indices = training_set_indices(params)
    for index in indices:
        one = dataclasses.replace(params, distill_run=index)
        begin = time.perf_counter()
        images, labels, made = training_set(dataset, one, device, recomputed)
        made_seconds += time.perf_counter() - begin
        facts, size = facts or made, int(labels.shape[0])  # the first training set's facts (its loss curve)
        made_on += [made["distilled_on"]["device"]] if "distilled_on" in made else []
        # the first set's models draw as before repeats existed; the others from their own streams
        tag = "eval" if index == 0 else f"eval-{index}"
        runs += evaluate_set(images, labels, dataset, one, device, tag=tag)["runs"]
    done = time.perf_counter()
    record = _json_safe({
        "key": record_key(params),
        # where this machine keeps its cache and data is no fact of the run, and a published record must not
        # carry a path
        "params": {**dataclasses.asdict(params), "cache_dir": None, "data_dir": None},
        "metrics": summarize(runs),
        "runs": runs,
        "num_eval": params.num_eval,
        "num_distill": repeats(params),
        "train_size": size,
        "timings": {"data": built - start, "training_set": made_seconds,
                    "evaluate": done - built - made_seconds, "total": done - start},
        "device": str(device),
        "environment": environment(device),
        **facts,
        # where each training set was made (its facts, above, are the first set's alone)
        **({"distilled_on_devices": made_on} if made_on else {}),
    })
    with atomic_write(folder / "record.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return {**record, "cached": False}
