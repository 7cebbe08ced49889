"""The same work on another device as on the CPU: a GPU's first check (skipped on a machine without one).

The other device is CUDA when present, or ``$PAPERLIB_TEST_DEVICE`` (a ``device`` parameter's value:
``PAPERLIB_TEST_DEVICE=cpu`` runs these tests CPU against CPU, to check the tests themselves on a machine
without a GPU). Every random draw comes from a CPU generator, so both devices see the same batches,
initialisations and augmentations; they differ by rounding only, hence tolerances, not bit-identity
(docs/reproducibility.md). On an NVIDIA GPU from Ampere on, torch's default computes float32 convolutions in
TF32 (10 mantissa bits), which paperlib keeps, as the official code does: the distillation comparison runs with
TF32 off (the code's agreement) and at the default (a looser bound, provisional: no GPU run has measured it).
Nothing here compiles (``torch_compile=never``): compiled code rounds differently, and compiling costs time.
"""

import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from paperlib.core.params import make_params
from paperlib.core.yamlio import load_yaml
from paperlib.data import build_dataset
from paperlib.distill.engine import Distiller
from paperlib.distill.kde import kde_weights
from paperlib.distill.targets import make_target
from paperlib.experiments.bench import bench
from paperlib.train.evaluate import evaluate_set
from paperlib.train.trainers import TRAINERS

OTHER = os.environ.get("PAPERLIB_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not OTHER, reason="needs CUDA (or PAPERLIB_TEST_DEVICE=<device>)")]

CPU = torch.device("cpu")
SMALL = dict(source="digits", net_width=16, batch_real=32, ipc=2, progress=False, lr_img=1.0, outer_loop=2,
             inner_loop=2, torch_compile="never")
TINY = dict(SMALL, dataset="cmnist_fg", majority_ratio=0.9)
# The smoke profile's stated tolerance across machines, in accuracy points (found from this file: collection
# runs before conftest's chdir to the repository).
REFERENCES = Path(__file__).resolve().parents[1] / "params" / "smoke" / "references.yaml"
ACC_TOLERANCE = load_yaml(REFERENCES)["tolerance"]["acc"]
TRAIN_IMAGES, EVAL_EPOCHS = 400, 10  # well above chance (48-65% on the CPU) in a few seconds


def _steps(params, device: torch.device, steps: int = 2) -> tuple[list[float], torch.Tensor, torch.Tensor]:
    """The losses of ``steps`` distillation steps on ``device``, the synthetic images after them and before."""
    dataset = build_dataset(params)
    target, _ = make_target(dataset, params, device)
    distiller = Distiller(dataset, params, target, device)
    initial = distiller.syn.detach().cpu().clone()
    losses = [float(distiller.step()) for _ in range(steps)]
    return losses, distiller.syn.detach().cpu(), initial


@pytest.fixture(params=[False, True], ids=["tf32_off", "tf32_default"])
def tf32(request) -> Iterator[bool]:
    """Whether float32 convolutions and matrix products may use TF32 on CUDA (torch's default: convolutions do);
    the settings are restored after the test."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if not request.param:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield request.param
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize("method, target", [("dm", "vanilla"), ("dm", "groups"), ("dc", "vanilla"), ("dc", "groups")])
def test_distillation_steps_agree_with_the_cpus(method, target, tf32):
    params = make_params(**TINY, method=method, target=target)
    cpu_losses, cpu_images, initial = _steps(params, CPU)
    losses, images, _ = _steps(params, torch.device(OTHER))
    assert all(math.isfinite(v) for v in losses)
    bound = 0.1 if tf32 else 0.02
    assert losses == pytest.approx(cpu_losses, rel=bound)
    moved = (cpu_images - initial).abs().max().item()
    assert moved > 0.05  # the steps moved the images far more than the tolerance below
    assert (images - cpu_images).abs().max().item() <= bound * moved


@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_every_evaluation_trainer_runs_and_agrees_with_the_cpu(trainer):
    # plain digits: learnt in a few epochs
    params = make_params(**SMALL, dataset="mnist", method="random", eval_trainer=trainer, num_eval=1,
                         eval_epochs=EVAL_EPOCHS)
    dataset = build_dataset(params)
    images, labels = dataset.normalized("train")[:TRAIN_IMAGES], dataset.train.labels[:TRAIN_IMAGES]
    on_cpu = evaluate_set(images, labels, dataset, params, CPU)["runs"][0]
    there = evaluate_set(images, labels, dataset, params, torch.device(OTHER))["runs"][0]
    assert on_cpu["acc"] > 30  # trained well above chance (10%): agreeing by both guessing would prove nothing
    assert abs(there["acc"] - on_cpu["acc"]) <= ACC_TOLERANCE, (there["acc"], on_cpu["acc"])


def test_kde_weights_agree_with_the_cpus(tmp_path):
    settings = dict(SMALL, dataset="cmnist", conflict_ratio=0.1, kde_encoder="pixels")
    dataset = build_dataset(make_params(**settings))
    # one cache per device: the second call must compute its weights, not load the first's
    on_cpu = kde_weights(dataset, make_params(**settings, cache_dir=str(tmp_path / "cpu")), CPU)
    there = kde_weights(dataset, make_params(**settings, cache_dir=str(tmp_path / "other")), torch.device(OTHER))
    assert there.weights.device.type == "cpu"  # kde_weights hands its weights back on the host
    assert torch.allclose(there.weights, on_cpu.weights, rtol=1e-3, atol=1e-7)
    assert not torch.allclose(on_cpu.weights, torch.full_like(on_cpu.weights, on_cpu.weights.mean()))


def test_a_run_on_the_device_records_where_its_set_was_made(tmp_path):
    from paperlib.experiments.runner import run

    record = run(make_params(**TINY, method="dm", iterations=2, num_eval=1, eval_epochs=1, device=OTHER,
                             cache_dir=str(tmp_path)))
    assert record["device"] == record["distilled_on"]["device"] and record["device"].startswith(OTHER)
    if torch.device(OTHER).type == "cuda":
        gpu = torch.cuda.get_device_name(torch.device(OTHER))
        assert record["environment"]["gpu"] == record["distilled_on"]["gpu"] == gpu


@pytest.mark.skipif(not OTHER or torch.device(OTHER).type != "cuda", reason="the host-sync check needs CUDA")
@pytest.mark.parametrize("method, target", [("dm", "vanilla"), ("dm", "groups"), ("dc", "groups")])
def test_a_distillation_step_never_makes_the_host_wait(method, target):
    params = make_params(**TINY, method=method, target=target, iterations=2, device=OTHER)
    found = bench(params, warmup=1, sync_check=2)
    assert found["host_syncs_per_step"] == 0, found["host_sync_sites"]


def test_to_device_gives_the_same_values_on_the_other_device():
    """On CUDA the copy is staged through pinned memory and not waited for: the values must arrive whole."""
    from paperlib.core.runtime import to_device

    drawn = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    moved = to_device(drawn, OTHER, torch.float32)
    assert moved.device.type == torch.device(OTHER).type and torch.equal(moved.cpu(), drawn.float())
