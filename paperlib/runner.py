"""The experiment runner: build data, make a training set, evaluate, record.

``run(dataset="cmnist", method="whole")`` and ``python -m paperlib run --set
dataset=cmnist --set method=whole`` do the same thing. Each finished run is
stored as one JSON record under ``<cache>/results/<key>.json``, keyed by a hash
of the result-defining parameters and :data:`CODE_VERSION`; asking again
returns the stored record instantly unless ``force=true``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from paperlib.config import Params, derive_seed, make_params, result_dict, stable_hash
from paperlib.data import BiasedDataset, build_dataset
from paperlib.data.container import sample_per_class
from paperlib.evaluate import evaluate_set
from paperlib.runtime import generator, resolve_device
from paperlib.store import atomic_write, cache_root

# Bump when a change in the code changes what a stored result means.
CODE_VERSION = 1


def record_key(params: Params) -> str:
    """The cache key of a run: hash of its result-defining parameters and the code version."""
    return stable_hash({**result_dict(params), "code_version": CODE_VERSION})


def record_path(params: Params) -> Path:
    return cache_root(params.cache_dir) / "results" / f"{params.dataset}-{params.method}-{record_key(params)}.json"


def training_set(dataset: BiasedDataset, params: Params, device: torch.device) -> tuple[Tensor, Tensor]:
    """The images an evaluation model learns from, normalised, for ``params.method``.

    ``whole``: the entire biased training split. ``random``: ``ipc`` random real
    images per class, drawn from ``derive_seed(seed, "random")``.
    """
    train = dataset.train
    if params.method == "random":
        index = sample_per_class(train.labels, params.ipc, generator(derive_seed(params.seed, "random")))
        train = train.subset(index)
    return dataset.normalized(train, device), train.labels


def _json_safe(value: Any) -> Any:
    """NaN -> None recursively, so records are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def run(params: Params | None = None, **overrides: Any) -> dict[str, Any]:
    """Run one experiment and return its record (from the cache when present).

    The record holds ``params``, ``metrics`` (means and ``_std``), per-model
    ``runs``, ``timings`` in seconds, the ``device`` and whether it came from the
    ``cache``.
    """
    if params is None or overrides:
        base = {} if params is None else {k: getattr(params, k) for k in params.__dataclass_fields__}
        params = make_params({**base, **overrides})
    path = record_path(params)
    if path.is_file() and not params.force:
        record = json.loads(path.read_text())
        record["cached"] = True
        return record

    start = time.perf_counter()
    device = resolve_device(params.device)
    dataset = build_dataset(params)
    built = time.perf_counter()
    images, labels = training_set(dataset, params, device)
    result = evaluate_set(images, labels, dataset, params, device)
    done = time.perf_counter()
    record = _json_safe({
        "key": record_key(params),
        "code_version": CODE_VERSION,
        "params": result_dict(params),
        "metrics": {k: v for k, v in result.items() if k != "runs"},
        "runs": result["runs"],
        "num_eval": params.num_eval,
        "train_size": int(labels.shape[0]),
        "timings": {"data": built - start, "evaluate": done - built, "total": done - start},
        "device": str(device),
    })
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    record["cached"] = False
    return record
