"""Seconds per distillation iteration, excluding data loading and start-up."""

from __future__ import annotations

import time
from typing import Any

import torch

from paperlib.core.params import Params
from paperlib.data.presets import build_dataset
from paperlib.distill.engine import Distiller
from paperlib.distill.methods import METHODS
from paperlib.distill.targets import make_target
from paperlib.core.runtime import resolve_device


def bench(params: Params, warmup: int = 1) -> dict[str, Any]:
    """Time ``params.iterations`` steps of ``params.method`` after ``warmup`` untimed steps.

    The dataset is built (or loaded from the cache) and the distiller set up
    before the clock starts. ``torch_compile=auto`` decides as for a run of the papers' length (the steps
    timed belong to one), so the warm-up steps include any compilation; ``compiled`` says whether it ran.
    """
    device = resolve_device(params.device)
    dataset = build_dataset(params)
    target, facts = make_target(dataset, params, device)
    distiller = Distiller(dataset, params, target, device, run_iterations=METHODS[params.method].iterations)
    for _ in range(warmup):
        distiller.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(params.iterations):
        distiller.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "seconds_per_iteration": seconds / params.iterations,
        "iterations": params.iterations,
        "warmup": warmup,
        "method": params.method,
        "target": params.target,
        "sampling": params.sampling,
        "dataset": params.dataset,
        "source": params.source,
        "ipc": params.ipc,
        "batch_real": distiller.sampler.batch,
        "device": str(device),
        "compiled": distiller.compiled,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        **({"kde_seconds": facts["kde_seconds"]} if "kde_seconds" in facts else {}),
    }
