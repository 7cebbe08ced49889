"""The experiment runner: build data, make a training set, evaluate, record.

``run(dataset="cmnist", method="dm")`` and ``python -m paperlib run --set
dataset=cmnist --set method=dm`` do the same thing. Each finished run is one
folder ``<cache>/results/<dataset>-<method>-<key>/`` holding ``record.json``
(parameters, metrics, timings). A distilled set lives apart, in
``<cache>/distilled/<dataset>-<method>-<key>/`` (``synthetic.pt``, a
``synthetic.png`` grid, ``facts.json``), keyed without the evaluation settings
so that several evaluations share one distillation. Keys hash the
result-defining parameters and :data:`CODE_VERSION`; asking again returns the
stored record instantly unless ``force=true``. Files are written atomically
and the record last, so a run that fails leaves no record.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from paperlib.config import EVAL_KEYS, Params, derive_seed, result_dict, stable_hash, with_overrides
from paperlib.data import BiasedDataset, build_dataset
from paperlib.data.container import sample_per_class
from paperlib.distill.engine import DISTILL_METHODS, distill
from paperlib.distill.targets import make_target
from paperlib.evaluate import evaluate_set
from paperlib.plots import save_image_grid
from paperlib.reweight import kde_weights, weight_diagnostics
from paperlib.runtime import generator, resolve_device
from paperlib.store import atomic_write, cache_root, exclusive, load_json, load_tensors, save_tensors

# Bump when a change in the code changes what a stored result means.
CODE_VERSION = 1


def record_key(params: Params) -> str:
    """The cache key of a run: hash of its result-defining parameters and the code version."""
    return stable_hash({**result_dict(params), "code_version": CODE_VERSION})


def record_dir(params: Params) -> Path:
    """The folder holding a run's ``record.json``."""
    return cache_root(params.cache_dir) / "results" / f"{params.dataset}-{params.method}-{record_key(params)}"


def distilled_dir(params: Params) -> Path:
    """The folder holding a distilled set: ``synthetic.pt``, ``synthetic.png``, ``facts.json``.

    Keyed without the evaluation settings, so evaluating one distilled set in
    several ways (more models, LfF, other epochs) distils it once.
    """
    values = {k: v for k, v in result_dict(params).items() if k not in EVAL_KEYS}
    key = stable_hash({**values, "code_version": CODE_VERSION})
    return cache_root(params.cache_dir) / "distilled" / f"{params.dataset}-{params.method}-{key}"


def sample_weights(dataset: BiasedDataset, params: Params, device: torch.device) -> tuple[Tensor, dict[str, Any]]:
    """Per-training-sample weights for ``target=weighted``, and facts about them.

    ``uniform``: all ones (equals ``vanilla``). ``group_balanced``:
    ``1 / n_(class, group)``, so every group of a class carries the same total
    weight. ``kde``: paper A's density-based weights (:mod:`paperlib.reweight`);
    the facts then hold their one-off cost and the per-class share of weight
    on bias-conflicting samples.
    """
    train = dataset.train
    if params.weights == "uniform":
        return torch.ones(len(train)), {}
    if params.weights == "kde":
        kde = kde_weights(dataset, params, device)
        diagnostics = weight_diagnostics(kde.weights, train.labels, train.aligned, dataset.num_classes)
        return kde.weights, {"kde_seconds": kde.seconds, "kde_diagnostics": diagnostics}
    a = dataset.info.num_attributes
    cells = train.labels * a + train.attributes
    return 1.0 / torch.bincount(cells, minlength=dataset.num_classes * a).float()[cells], {}


def training_set(dataset: BiasedDataset, params: Params, device: torch.device) -> tuple[Tensor, Tensor, dict]:
    """The images an evaluation model learns from (normalised), their labels, and facts about them.

    ``whole``: the entire biased training split. ``random``: ``ipc`` random real
    images per class. ``dm`` / ``dc`` / ``dsa``: a distilled set.
    """
    train = dataset.train
    if params.method in DISTILL_METHODS:
        return distilled_set(dataset, params, device)
    if params.method == "random":
        index = sample_per_class(train.labels, params.ipc, generator(derive_seed(params.seed, "random")))
        train = train.subset(index)
    return dataset.normalized(train, device), train.labels, {}


def distilled_set(dataset: BiasedDataset, params: Params, device: torch.device) -> tuple[Tensor, Tensor, dict]:
    """The synthetic set of ``params`` (normalised images, labels) and facts about its making.

    Loaded from :func:`distilled_dir` when present; otherwise distilled (resuming
    from a checkpoint there if one exists) and stored with an image grid.
    """
    folder = distilled_dir(params)
    saved = None if params.force else load_tensors(folder / "synthetic.pt")
    facts = None if saved is None else load_json(folder / "facts.json")
    if facts is not None:
        return saved["images"].to(device), saved["labels"].to(device), {**facts, "distill_cached": True}
    weights, facts = sample_weights(dataset, params, device) if params.target == "weighted" else (None, {})
    target = make_target(params.target, dataset.info.num_attributes, weights)
    result = distill(dataset, params, target, device, folder / "checkpoint.pt")
    facts.update({"losses": result.losses, "distill_seconds": result.seconds,
                  "seconds_per_iteration": result.seconds / max(1, params.iterations - result.resumed_from),
                  "resumed_from": result.resumed_from, "distilled": str(folder)})
    save_image_grid(dataset.denormalize(result.images), folder / "synthetic.png", per_row=params.ipc)
    save_tensors(folder / "synthetic.pt", {"images": result.images, "labels": result.labels})
    with atomic_write(folder / "facts.json") as tmp:
        tmp.write_text(json.dumps(_json_safe(facts), indent=1))
    return result.images.to(device), result.labels.to(device), {**facts, "distill_cached": False}


def _json_safe(value: Any) -> Any:
    """NaN -> None recursively, so records are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def load_record(params: Params) -> dict[str, Any] | None:
    """The stored record of ``params``, or ``None`` when it was never run (an unreadable one is an error)."""
    return load_json(record_dir(params) / "record.json")


def run(params: Params | None = None, **overrides: Any) -> dict[str, Any]:
    """Run one experiment and return its record (from the cache when present).

    The record holds ``params``, ``metrics`` (means and ``_std``), per-model
    ``runs``, ``timings`` in seconds, the ``device``, the training-set size,
    for distilled sets the loss curve, and whether it came from the ``cache``.
    """
    params = with_overrides(params, overrides)
    cached = None if params.force else load_record(params)
    if cached is not None:
        return {**cached, "cached": True}
    # Another process computing the same run holds this lock: wait, then take its record.
    with exclusive(cache_root(params.cache_dir) / "locks" / f"{record_dir(params).name}.lock"):
        cached = None if params.force else load_record(params)
        if cached is not None:
            return {**cached, "cached": True}
        return _compute(params)


def _compute(params: Params) -> dict[str, Any]:
    """Compute the run of ``params`` and store its record."""
    folder = record_dir(params)
    start = time.perf_counter()
    device = resolve_device(params.device)
    dataset = build_dataset(params)
    built = time.perf_counter()
    images, labels, facts = training_set(dataset, params, device)
    made = time.perf_counter()
    result = evaluate_set(images, labels, dataset, params, device)
    done = time.perf_counter()
    record = _json_safe({
        "key": record_key(params),
        "code_version": CODE_VERSION,
        "params": dataclasses.asdict(params),
        "metrics": {k: v for k, v in result.items() if k != "runs"},
        "runs": result["runs"],
        "num_eval": params.num_eval,
        "train_size": int(labels.shape[0]),
        "timings": {"data": built - start, "training_set": made - built, "evaluate": done - made,
                    "total": done - start},
        "device": str(device),
        **facts,
    })
    with atomic_write(folder / "record.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return {**record, "cached": False}
