"""The real side of gradient matching: one gradient per target row, for about the cost of one backward pass.

A target row ``M[k, j]`` (:mod:`paperlib.distill.targets`) asks for the gradient of
``sum_b M[k, j, b] * CE_b`` with respect to the network's weights. The reference computes each with its own
backward pass, so FairDD, with one row per group present, pays one backward pass per group.

When each sample's loss depends on that sample alone (per-sample normalisation, no batch statistics), the
gradient of a layer's weight ``W`` (``y = W x``, or the convolution) is ``sum_b (dCE_b/dy_b) x_b^T``. One
backward pass to the layer outputs gives every ``dCE_b/dy_b`` at once, and every row is a weighted sum of
the per-sample products:

* one row (vanilla, weighted): the weights go into the product directly, one weight gradient;
* several rows (FairDD): the per-sample products are formed once (the multiply-adds of one weight
  gradient) and each row sums them with its own weights.

Networks with batch statistics, and layers other than ``Conv2d`` / ``Linear`` owning a matched weight, take
the reference's path: one backward pass per non-empty row, exact for any network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LAYERS = (nn.Conv2d, nn.Linear)


def matched_weights(net: nn.Module) -> list[Tensor]:
    """The parameters gradient matching compares: every tensor of two or more dimensions, in parameter order
    (biases and normalisation parameters are skipped, as the reference's distance gives them 0)."""
    return [p for p in net.parameters() if p.requires_grad and p.dim() > 1]


def per_sample_layers(net: nn.Module) -> list[nn.Module] | None:
    """The layers owning the matched weights, in the same order, when the per-sample route is exact for
    ``net``; ``None`` when it is not (batch statistics, or a weight not owned by a plain convolution or
    linear layer)."""
    if getattr(net, "batch_statistics", False) or any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                                       for m in net.modules()):
        return None
    owner = {id(m.weight): m for m in net.modules() if isinstance(m, _LAYERS)}
    layers = [owner.get(id(w)) for w in matched_weights(net)]
    if any(m is None or (isinstance(m, nn.Conv2d) and (m.groups != 1 or isinstance(m.padding, str)
                                                         or m.padding_mode != "zeros")) for m in layers):
        return None
    return layers


def row_gradients(net: nn.Module, real: Tensor, label: int, rows: Tensor, chunk: int = 64) -> list[Tensor]:
    """Gradients of ``sum_b rows[j, b] * CE(net(real)_b, label)`` w.r.t. :func:`matched_weights`, each
    ``[J, *weight.shape]``; an all-zero row gives zeros. ``real`` is one class's batch ``[B, ...]``.

    On the per-sample route the batch goes through the network ``chunk`` images at a time (the first
    block's activations then stay in the CPU cache, as in DM) and the chunks' contributions are summed.
    """
    layers = per_sample_layers(net)
    if layers is None:
        return _one_backward_per_row(net, real, label, rows)
    parts = [_chunk_rows(net, layers, x, label, r) for x, r in zip(real.split(chunk), rows.split(chunk, dim=1))]
    return [torch.stack(per_layer).sum(0) if len(parts) > 1 else per_layer[0] for per_layer in zip(*parts)]


def _chunk_rows(net: nn.Module, layers: list[nn.Module], real: Tensor, label: int, rows: Tensor) -> list[Tensor]:
    """One forward and one backward pass to the layer outputs, then every row's weight gradients."""
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
    outputs = [seen[m][1] for m in layers]
    output_grads = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), outputs)
    rows = rows.to(output_grads[0].dtype)
    return [_layer_rows(m, seen[m][0], g.detach(), rows) for m, g in zip(layers, output_grads)]


def _layer_rows(layer: nn.Module, x: Tensor, g: Tensor, rows: Tensor) -> Tensor:
    """``sum_b rows[j, b] * dW_b`` for one layer's input ``x`` and output gradient ``g`` (per sample)."""
    j = rows.shape[0]
    if isinstance(layer, nn.Linear):
        return torch.einsum("jb,bo,bi->joi", rows, g, x)
    shape = layer.weight.shape
    if j == 1:
        weighted = g * rows[0].view(-1, *([1] * (g.dim() - 1)))
        return torch.nn.grad.conv2d_weight(x, shape, weighted, layer.stride, layer.padding, layer.dilation)[None]
    columns = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)  # [B, C*k*k, P]
    per_sample = torch.bmm(g.flatten(2), columns.transpose(1, 2))  # [B, out, C*k*k]
    return (rows @ per_sample.flatten(1)).view(j, *shape)


def _one_backward_per_row(net: nn.Module, real: Tensor, label: int, rows: Tensor) -> list[Tensor]:
    """The reference's way: one forward, then one backward pass per non-empty row."""
    weights = matched_weights(net)
    labels = torch.full((real.shape[0],), label, device=real.device)
    per_sample = F.cross_entropy(net(real), labels, reduction="none")
    present = [j for j in range(rows.shape[0]) if float(rows[j].sum()) > 0]
    result = [w.new_zeros(rows.shape[0], *w.shape) for w in weights]
    for n, j in enumerate(present):
        grads = torch.autograd.grad((rows[j] * per_sample).sum(), weights, retain_graph=n < len(present) - 1)
        for out, grad in zip(result, grads):
            out[j] = grad
    return result
