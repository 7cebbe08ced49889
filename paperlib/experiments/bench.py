"""Seconds per distillation iteration, excluding data loading and start-up."""

from __future__ import annotations

import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from paperlib.core.errors import PaperlibError
from paperlib.core.params import Params
from paperlib.data.presets import build_dataset
from paperlib.distill.engine import Distiller
from paperlib.distill.methods import METHODS
from paperlib.distill.targets import make_target
from paperlib.core.runtime import environment, resolve_device, wait_for


def bench(params: Params, warmup: int = 1, sync_check: int = 0) -> dict[str, Any]:
    """Time ``params.iterations`` steps of ``params.method`` after ``warmup`` untimed steps.

    The dataset is built (or loaded from the cache) and the distiller set up
    before the clock starts. ``torch_compile=auto`` decides as for a run of the papers' length (the steps
    timed belong to one), so the warm-up steps include any compilation; ``compiled`` says whether it ran.
    The result also names the setting timed and where it ran (:func:`paperlib.core.runtime.environment`: torch,
    threads, the CPU kernels ATen chose, the GPU). With ``sync_check`` on CUDA, that many more steps run after
    the timed ones under PyTorch's synchronisation debug mode: ``host_syncs_per_step`` counts the times the
    host waited for the device, and ``host_sync_sites`` says where (the hot loops should wait nowhere; the
    loss is read every ``HOST_READ_EVERY`` steps).
    """
    for name, value in (("warmup", warmup), ("sync_check", sync_check)):
        if value < 0:
            raise PaperlibError(f"{name} must not be negative, got {value}")
    device = resolve_device(params.device)
    dataset = build_dataset(params)
    target, facts = make_target(dataset, params, device)
    distiller = Distiller(dataset, params, target, device, run_iterations=METHODS[params.method].iterations)
    for _ in range(warmup):
        distiller.step()
    wait_for(device)
    start = time.perf_counter()
    for _ in range(params.iterations):
        distiller.step()
    wait_for(device)
    seconds = time.perf_counter() - start
    syncs = {}
    if sync_check:
        syncs = (_count_host_syncs(distiller, sync_check) if device.type == "cuda"
                 else {"host_sync_check": f"skipped: needs CUDA, this run is on {device}"})
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
        **environment(device),
        **({"kde_seconds": facts["kde_seconds"]} if "kde_seconds" in facts else {}),
        **syncs,
    }


def _count_host_syncs(distiller: Distiller, steps: int) -> dict[str, Any]:
    """``steps`` more steps under ``torch.cuda.set_sync_debug_mode("warn")``: each wait of the host for the
    device is a warning, counted, and located by the Python line that made the call (a paperlib line, or torch's
    own Python wrapper when the op went through one)."""
    torch.cuda.synchronize()
    before = torch.cuda.get_sync_debug_mode()  # restored after: the caller's own setting
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                distiller.step()
        finally:
            torch.cuda.set_sync_debug_mode(before)
    sites = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message))
    return {"host_syncs_per_step": sum(sites.values()) / steps, "host_sync_sites": dict(sites.most_common())}
