"""Per-row real gradients from one backward pass equal the reference's one backward pass per row."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from paperlib.core.runtime import Compiled
from paperlib.distill.dc import dc_class_loss, gradient_distance
from paperlib.distill.real_gradients import _piece_sizes, matched_weights, per_sample_layers, row_gradients
from paperlib.distill.sampling import RealBatch
from paperlib.distill.targets import BarycenterTarget
from paperlib.train.models import build_model, init_parameters


def _reference(net: torch.nn.Module, real: torch.Tensor, label: int, rows: torch.Tensor) -> list[torch.Tensor]:
    """One forward and one backward pass per row, as the reference code computes them."""
    weights = matched_weights(net)
    labels = torch.full((real.shape[0],), label)
    grads = []
    for row in rows:
        loss = (row * F.cross_entropy(net(real), labels, reduction="none")).sum()
        grads.append(torch.autograd.grad(loss, weights))
    return [torch.stack([g[i] for g in grads]) for i in range(len(weights))]


def _assert_rows_close(found: list[torch.Tensor], expected: list[torch.Tensor], net: torch.nn.Module,
                       **tolerance: float) -> None:
    """One ``[J, *weight.shape]`` gradient per matched weight, each close to the reference's (not a zip, which
    would pass on a shorter list)."""
    assert len(found) == len(expected) == len(matched_weights(net))
    torch.testing.assert_close(found, expected, **tolerance)


def _rows(kind: str, b: int, gen: torch.Generator) -> torch.Tensor:
    if kind == "vanilla":
        return torch.full((1, b), 1.0 / b)
    if kind == "weighted":
        w = torch.rand(b, generator=gen)
        return (w / w.sum())[None]
    if kind == "some_unweighted":  # samples with weight 0 in every row
        w = torch.rand(b, generator=gen) * (torch.arange(b) % 3 > 0)
        return (w / w.sum())[None]
    if kind == "barycenter":  # COBRA's target: one row, the uniform mean of the group means present
        groups = torch.randint(0, 3, (1, b), generator=gen)
        return BarycenterTarget(4).aggregation(RealBatch(torch.zeros(1, b, dtype=torch.long), groups,
                                                         torch.full((1, b), 1.0 / b)))[0]
    if kind == "overlapping":  # the class mean and one group's mean: rows share samples
        first = (torch.arange(b) < b // 3).float()
        return torch.stack([torch.full((b,), 1.0 / b), first / first.sum()])
    groups = torch.randint(0, 3, (b,), generator=gen)  # four rows, the last group absent
    onehot = F.one_hot(groups, 4).T.float()
    return onehot / onehot.sum(-1, keepdim=True).clamp_min(1)


def _net(name: str, channels: int, size: int, norm: str = "instancenorm") -> torch.nn.Module:
    net = build_model(name, channels, 10, size, width=8, norm=norm)
    return init_parameters(net, torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", ["vanilla", "weighted", "some_unweighted", "groups", "barycenter", "overlapping"])
@pytest.mark.parametrize("channels,size,chunk", [(1, 28, 64), (3, 32, 64), (3, 32, 5)])
def test_rows_from_one_backward_equal_one_backward_per_row(kind: str, channels: int, size: int, chunk: int) -> None:
    gen = torch.Generator().manual_seed(0)
    net = _net("convnet", channels, size)
    assert per_sample_layers(net) is not None
    real = torch.randn(12, channels, size, size, generator=gen)
    rows = _rows(kind, 12, gen)
    fast, reference = row_gradients(net, real, 3, rows, chunk), _reference(net, real, 3, rows)
    assert [f.shape for f in fast] == [r.shape for r in reference]
    _assert_rows_close(fast, reference, net, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["vanilla", "some_unweighted", "barycenter", "groups"])
def test_a_compiled_forward_gives_each_row_from_its_own_samples_in_pieces(kind: str) -> None:
    """The compiled route sums piece gradients through the forward it is given (here an eager stand-in that
    counts its calls, so this test needs no compiler; tests/test_compile.py compares compiled and eager)."""
    gen = torch.Generator().manual_seed(0)
    net = _net("convnet", 3, 32)
    real = torch.randn(12, 3, 32, 32, generator=gen)
    rows = _rows(kind, 12, gen)
    calls = []

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return net(x)

    forward = Compiled(net, enabled=False)
    forward.compiled = counting  # stands in for compiled code
    assert forward.active
    fast = row_gradients(net, real, 3, rows, 5, forward=forward)
    members = (rows > 0).sum(-1).tolist()  # each row's samples: full chunks of 5, then powers of two
    assert calls == [size for n in members for size in _piece_sizes(n, 5)] and sum(calls) == sum(members)
    _assert_rows_close(fast, _reference(net, real, 3, rows), net, rtol=1e-4, atol=1e-6)


def test_an_in_place_activation_after_a_layer_does_not_change_its_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    net = _net("mlp", 1, 28)  # Linear -> ReLU(inplace=True)
    assert per_sample_layers(net) is not None
    real, rows = torch.randn(10, 1, 28, 28, generator=gen), _rows("groups", 10, gen)
    _assert_rows_close(row_gradients(net, real, 0, rows), _reference(net, real, 0, rows), net, rtol=1e-4, atol=1e-6)


def test_batch_statistics_take_the_one_backward_per_row_path_and_stay_exact() -> None:
    gen = torch.Generator().manual_seed(0)
    net = _net("convnet", 1, 28, norm="batchnorm")
    assert per_sample_layers(net) is None  # a sample's loss depends on the others' through the batch mean
    real, rows = torch.randn(12, 1, 28, 28, generator=gen), _rows("groups", 12, gen)
    _assert_rows_close(row_gradients(net, real, 2, rows), _reference(net, real, 2, rows), net, rtol=1e-5, atol=1e-7)


def test_class_loss_sums_the_distance_of_every_present_row_only() -> None:
    gen = torch.Generator().manual_seed(0)
    net = _net("convnet", 1, 28)
    real, rows = torch.randn(12, 1, 28, 28, generator=gen), _rows("groups", 12, gen)
    syn = torch.randn(3, 1, 28, 28, generator=gen, requires_grad=True)
    loss = dc_class_loss(net, real, rows, syn, 5)
    syn_grad = torch.autograd.grad(F.cross_entropy(net(syn), torch.full((3,), 5)), matched_weights(net),
                                   create_graph=True)
    reference = _reference(net, real, 5, rows)
    expected = sum(gradient_distance([g[j] for g in reference], list(syn_grad)) for j in range(3))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    assert torch.autograd.grad(loss, syn)[0].abs().sum() > 0  # the image update still sees the loss


def test_piece_sizes_are_full_chunks_then_powers_of_two() -> None:
    assert _piece_sizes(38, 16) == [16, 16, 4, 2] and _piece_sizes(32, 16) == [16, 16]
    assert _piece_sizes(7, 16) == [4, 2, 1] and _piece_sizes(0, 16) == []


def test_an_uncompiled_forward_keeps_the_per_sample_route() -> None:
    gen = torch.Generator().manual_seed(0)
    net = _net("convnet", 3, 32)
    real, rows = torch.randn(12, 3, 32, 32, generator=gen), _rows("groups", 12, gen)
    eager = Compiled(net, enabled=False)
    assert not eager.active
    compiled_route = row_gradients(net, real, 3, rows, 5, forward=eager)
    per_sample = row_gradients(net, real, 3, rows, 5)
    assert len(compiled_route) == len(per_sample) == len(matched_weights(net))
    assert all(map(torch.equal, compiled_route, per_sample))
