"""The promise of the README, both halves: bit-identical on the same machine and thread count, within the
stated tolerance across thread counts (and, by the same token, across CPUs and GPUs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from paperlib.report.checks import load_references
from paperlib.core.params import make_params
from paperlib.data import build_dataset
from paperlib.distill.engine import distill
from paperlib.distill.targets import make_target
from paperlib.train.evaluate import evaluate_set

# A smoke-profile run (params/smoke/defaults.yaml), KDE target included, shortened to keep the test quick.
SMOKE_RUN = dict(dataset="cmnist", source="digits", method="dm", ipc=10, iterations=20, batch_real=32, lr_img=20,
                 net_width=16, num_eval=1, eval_epochs=20, eval_batch=64, progress=False, device="cpu")


def _distil_and_evaluate(**settings):
    params = make_params(**settings)
    dataset = build_dataset(params)
    target, _ = make_target(dataset, params, torch.device("cpu"))
    result = distill(dataset, params, target, torch.device("cpu"))
    metrics = evaluate_set(result.images, result.labels, dataset, params, torch.device("cpu"))
    return result, metrics


@pytest.mark.parametrize("method", ["dm", "dc"])
def test_the_same_run_twice_gives_identical_tensors_and_numbers(method):
    settings = {**SMOKE_RUN, "method": method, "iterations": 5, "eval_epochs": 5}
    if method == "dc":
        settings.update(iterations=2, outer_loop=2, inner_loop=2)
    first, first_metrics = _distil_and_evaluate(**settings)
    second, second_metrics = _distil_and_evaluate(**settings)
    assert torch.equal(first.images, second.images) and first.losses == second.losses
    assert first_metrics == second_metrics


_CHILD = """
import json, sys, torch
sys.path.insert(0, sys.argv[2])
from test_reproducibility import _distil_and_evaluate
result, metrics = _distil_and_evaluate(**json.loads(sys.argv[1]))
print(json.dumps({"threads": torch.get_num_threads(), **{k: v for k, v in metrics.items() if k != "runs"}}))
"""


def test_one_and_two_threads_give_numbers_within_the_stated_tolerance():
    """Another thread count changes the order of float sums, as another CPU or a GPU does."""
    tolerance = load_references("smoke")["tolerance"]
    results = {}
    for threads in (1, 2):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(SMOKE_RUN), os.path.dirname(__file__)], env=env, capture_output=True, text=True,
                             timeout=600, check=True)
        results[threads] = json.loads(out.stdout.splitlines()[-1])
        assert results[threads]["threads"] == threads
    for metric, bound in tolerance.items():
        assert abs(results[1][metric] - results[2][metric]) <= bound, (metric, results)
