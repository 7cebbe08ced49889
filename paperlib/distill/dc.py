"""Gradient matching (DC; DSA when augmentation is on), Zhao et al.

Per outer loop and class: the gradient of the target's weighted real
cross-entropy(s) and of the synthetic cross-entropy w.r.t. the network
weights; the distance is the sum over layers and output channels of
``1 - cosine`` (biases and norm parameters contribute 0, as in the
reference). Between outer loops the network trains on the synthetic set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paperlib.core.runtime import Compiled, to_device
from paperlib.distill.dm import augment_siamese
from paperlib.distill.real_gradients import matched_weights, row_gradients
from paperlib.distill.state import DistillerState
from paperlib.train.models import init_parameters

# (outer_loop, inner_loop) by IPC, following the reference table
# {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)};
# other IPCs take the next listed row, and IPC > 50 uses (100, 10).
_LOOPS = ((1, 1, 1), (10, 10, 50), (20, 20, 25), (30, 30, 20), (40, 40, 15), (50, 50, 10))


def default_loops(ipc: int) -> tuple[int, int]:
    """The (outer, inner) loop counts for ``ipc``; defined for every IPC >= 1."""
    for up_to, outer, inner in _LOOPS:
        if ipc <= up_to:
            return outer, inner
    return 100, 10


def gradient_distance(real: list[Tensor], syn: list[Tensor]) -> Tensor:
    """Sum over weight tensors of ``sum_out (1 - cos(real[out], syn[out]))``; 1-d tensors give 0.

    A ``real`` tensor may carry one leading row dimension (``[J, *shape]``, :func:`row_gradients`); the
    result then has one distance per row.
    """
    total = syn[0].new_zeros(())
    for gr, gs in zip(real, syn):
        if gs.dim() == 1:
            continue
        rows = gr.dim() - gs.dim()
        gr, gs = gr.flatten(rows + 1), gs.flatten(1)
        cos = (gr * gs).sum(-1) / (gr.norm(dim=-1) * gs.norm(dim=-1) + 1e-6)
        total = total + (1 - cos).sum(-1)
    return total


def dc_class_loss(net: nn.Module, real: Tensor, weights: Tensor, syn: Tensor, label: int,
                  forward: Compiled | None = None) -> Tensor:
    """Matching loss of one class: ``weights`` is its ``[J, B]`` target rows (on the host, where their
    structure is read without waiting for the device, or on the device).

    Every row's real gradient (:func:`row_gradients`: about one backward pass for all rows) is matched to the
    synthetic gradient (with graph, for the image update); all-zero rows (absent groups) add nothing.
    ``forward`` (``net`` through :class:`~paperlib.core.runtime.Compiled`) serves the real side when it runs
    compiled (:func:`row_gradients`); the synthetic gradient needs a double backward, which compiled graphs do
    not support.
    """
    real_rows = row_gradients(net, real, label, weights, forward=forward)
    labels_syn = torch.full((syn.shape[0],), label, device=syn.device)
    syn_grad = torch.autograd.grad(F.cross_entropy(net(syn), labels_syn), matched_weights(net), create_graph=True)
    present = to_device(weights.sum(-1) > 0, syn_grad[0].device, syn_grad[0].dtype)
    return (gradient_distance(real_rows, list(syn_grad)) * present).sum()


def matching_step(distiller: DistillerState) -> Tensor:
    """One gradient-matching iteration of ``distiller`` (:class:`~paperlib.distill.state.DistillerState`):
    a fresh network; ``outer_loop`` times one image update on every class, then ``inner_loop`` epochs of
    the network on the synthetic set (the reference's order). Returns the mean loss over outer loops, on the
    device (reading it would wait for the device)."""
    net, ipc, b = distiller.net, distiller.ipc, distiller.sampler.batch
    for p in net.parameters():
        p.requires_grad_(True)
    init_parameters(net, distiller.gen)
    net.train()
    total = distiller.syn.new_zeros((), dtype=torch.float32)
    for outer in range(distiller.outer_loop):
        real, aggregation = distiller.real_batch()
        real, syn = augment_siamese(distiller.dsa, real, distiller.syn, distiller.real_classes,
                                    distiller.syn_classes, distiller.gen)
        loss = distiller.syn.new_zeros((), dtype=torch.float32)
        with distiller.autocast:
            for c in range(distiller.k):
                loss = loss + dc_class_loss(net, real[c * b:(c + 1) * b], aggregation[c],
                                            syn[c * ipc:(c + 1) * ipc], c, distiller.forward).float()
        distiller.update_images(loss)
        total = total + loss.detach()
        if outer < distiller.outer_loop - 1:  # the reference's inner loop: the network learns the synthetic set
            distiller.train_network(distiller.inner_loop, distiller.params.lr_net, distiller.params.inner_batch,
                                    "lr_net")
    return total / distiller.outer_loop
