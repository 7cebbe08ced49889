"""The real side of gradient matching: one gradient per target row, for about the cost of one backward pass.

A target row ``M[k, j]`` (:mod:`paperlib.distill.targets`) asks for the gradient of
``sum_b M[k, j, b] * CE_b`` with respect to the network's weights. The reference computes each with its own
backward pass, so FairDD, with one row per group present, pays one backward pass per group.

When each sample's loss depends on that sample alone (per-sample normalisation, no batch statistics), the
gradient of a layer's weight is a sum over samples of ``(dCE_b / d output_b) x input_b``. One backward pass
to the layer outputs gives every ``dCE_b / d output_b`` at once. When the rows have disjoint supports (one
row: vanilla, weighted; FairDD's groups), the samples are sorted by their row, and each row's weight gradient
is one weight-gradient computation over its own samples, scaled by their weights: together, the work of a
single backward pass.

Networks with batch statistics, layers other than ``Conv2d`` / ``Linear`` owning a matched weight, and rows
that share samples take the reference's path: one backward pass per non-empty row, exact for any network.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paperlib.core.runtime import Compiled, chunk_size, to_device
from paperlib.train.models import samples_independent

_LAYERS = (nn.Conv2d, nn.Linear)


def matched_weights(net: nn.Module) -> list[Tensor]:
    """The parameters gradient matching compares: every tensor of two or more dimensions, in parameter order
    (biases and normalisation parameters are skipped, as the reference's distance gives them 0)."""
    return [p for p in net.parameters() if p.requires_grad and p.dim() > 1]


def per_sample_layers(net: nn.Module) -> list[nn.Module] | None:
    """The layers owning the matched weights, in the same order, when each sample's loss depends on that
    sample alone; ``None`` when it does not (batch statistics) or when a matched weight is not owned by a
    plain convolution or linear layer."""
    if not samples_independent(net):
        return None
    owner = {id(m.weight): m for m in net.modules() if isinstance(m, _LAYERS)}
    layers = [owner.get(id(w)) for w in matched_weights(net)]
    if any(m is None or (isinstance(m, nn.Conv2d) and (m.groups != 1 or isinstance(m.padding, str)
                                                         or m.padding_mode != "zeros")) for m in layers):
        return None
    return layers


def row_gradients(net: nn.Module, real: Tensor, label: int, rows: Tensor, chunk: int | None = None,
                  forward: Compiled | None = None) -> list[Tensor]:
    """Gradients of ``sum_b rows[j, b] * CE(net(real)_b, label)`` w.r.t. :func:`matched_weights`, each
    ``[J, *weight.shape]``; an all-zero row gives zeros. ``real`` is one class's batch ``[B, ...]``.

    With ``forward`` (``net`` through :class:`~paperlib.core.runtime.Compiled`) running compiled and disjoint
    rows, each row's gradient is plain backward passes through it over the row's own samples, in pieces of
    ``chunk`` and then of powers of two (few input shapes, so few compilations): the same sums, with the
    element-wise layers fused (the per-sample route reads layer inputs through hooks, which compiled code does
    not run).

    On the per-sample route the batch goes through the network ``chunk`` images at a time (default: 16 on the
    CPU, the whole batch on an accelerator; on the CPU the first block's activations then stay in the CPU
    cache; 256 images, width 128, NCHW: one batch 872 ms, chunks of 64 776 ms, of 16 582 ms on a 2-core CPU),
    sorted by row so that a chunk holds few rows.
    """
    layers = per_sample_layers(net)
    j = rows.shape[0]
    rows = rows.cpu()  # the structure is read on the host (no wait when the caller keeps ``rows`` there)
    if layers is None or (j > 1 and bool(((rows > 0).sum(0) > 1).any())):
        return _one_backward_per_row(net, real, label, rows)
    chunk = chunk or chunk_size(real, 16)
    if forward is not None and forward.active:
        return _rows_in_pieces(forward, net, real, label, rows, chunk)
    owner = rows.argmax(0)  # each sample's row; a sample in no row has weight 0 wherever it is put
    order = torch.argsort(owner, stable=True)
    weight = to_device(rows.amax(0)[order], real.device, real.dtype)
    real, owner = real[to_device(order, real.device)], owner[order]
    result = [w.new_zeros(j, *w.shape) for w in matched_weights(net)]
    for x, rows_of, w in zip(real.split(chunk), owner.split(chunk), weight.split(chunk)):
        inputs, grads = _inputs_and_output_grads(net, layers, x, label)
        counts = [x.shape[0]] if j == 1 else torch.bincount(rows_of, minlength=j).tolist()
        for out, layer, x_in, g in zip(result, layers, inputs, grads):
            g = g * w.view(-1, *([1] * (g.dim() - 1))).to(g.dtype)
            for row, (x_row, g_row) in enumerate(zip(x_in.split(counts), g.split(counts))):
                if x_row.shape[0]:
                    out[row] += _weight_gradient(layer, x_row, g_row)
    return result


def _rows_in_pieces(forward: Callable[[Tensor], Tensor], net: nn.Module, real: Tensor, label: int, rows: Tensor,
                    chunk: int) -> list[Tensor]:
    """Each disjoint row's gradient as the sum of its pieces' gradients (exact when samples are independent);
    samples of weight 0 in every row are skipped."""
    weights = matched_weights(net)
    result = [w.new_zeros(rows.shape[0], *w.shape) for w in weights]
    for j, row in enumerate(rows):
        members = torch.nonzero(row > 0).flatten()
        start = 0
        for size in _piece_sizes(members.numel(), chunk):
            index = members[start:start + size]
            start += size
            x = real[to_device(index, real.device)]
            labels = torch.full((size,), label, device=x.device)
            per_sample = F.cross_entropy(forward(x), labels, reduction="none")
            loss = (to_device(row[index], x.device, x.dtype) * per_sample).sum()
            for out, grad in zip(result, torch.autograd.grad(loss, weights)):
                out[j] += grad
    return result


def _piece_sizes(n: int, chunk: int) -> list[int]:
    """``n`` as full chunks, then the remainder's powers of two, largest first: 38, 16 -> 16, 16, 4, 2."""
    rest = n % chunk
    return [chunk] * (n // chunk) + [1 << bit for bit in reversed(range(rest.bit_length())) if rest >> bit & 1]


def _inputs_and_output_grads(net: nn.Module, layers: list[nn.Module], real: Tensor,
                             label: int) -> tuple[list[Tensor], list[Tensor]]:
    """One forward pass keeping every layer's input, one backward pass to every layer's output."""
    seen: dict[nn.Module, tuple[Tensor, Tensor]] = {}

    def keep(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        seen[module] = (args[0].detach(), output)
        return output.clone()  # an in-place activation after the layer must not overwrite ``output``

    handles = [m.register_forward_hook(keep) for m in layers]
    try:
        logits = net(real)
    finally:
        for handle in handles:
            handle.remove()
    labels = torch.full((real.shape[0],), label, device=real.device)
    grads = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), [seen[m][1] for m in layers])
    return [seen[m][0] for m in layers], [g.detach() for g in grads]


def _weight_gradient(layer: nn.Module, x: Tensor, g: Tensor) -> Tensor:
    """The gradient of ``layer``'s weight for input ``x`` and output gradient ``g``, summed over samples."""
    if isinstance(layer, nn.Linear):
        return g.T @ x
    # under bf16 autocast ``g`` is bf16 while ``x`` may be fp32, and this backward op does not autocast
    return torch.nn.grad.conv2d_weight(x.to(g.dtype), layer.weight.shape, g, layer.stride, layer.padding,
                                       layer.dilation)


def _one_backward_per_row(net: nn.Module, real: Tensor, label: int, rows: Tensor) -> list[Tensor]:
    """The reference's way: one forward, then one backward pass per non-empty row."""
    weights = matched_weights(net)
    labels = torch.full((real.shape[0],), label, device=real.device)
    per_sample = F.cross_entropy(net(real), labels, reduction="none")
    present = [j for j in range(rows.shape[0]) if float(rows[j].sum()) > 0]
    rows = to_device(rows, real.device)
    result = [w.new_zeros(rows.shape[0], *w.shape) for w in weights]
    for n, j in enumerate(present):
        grads = torch.autograd.grad((rows[j] * per_sample).sum(), weights, retain_graph=n < len(present) - 1)
        for out, grad in zip(result, grads):
            out[j] = grad
    return result
