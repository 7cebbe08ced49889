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
    """Sum over weight tensors of ``sum_out (1 - cos(real[out], syn[out]))``; 1-d tensors give 0."""
    total = syn[0].new_zeros(())
    for gr, gs in zip(real, syn):
        if gr.dim() == 1:
            continue
        gr, gs = gr.flatten(1), gs.flatten(1)
        cos = (gr * gs).sum(-1) / (gr.norm(dim=-1) * gs.norm(dim=-1) + 1e-6)
        total = total + (1 - cos).sum()
    return total


def dc_class_loss(net: nn.Module, real: Tensor, weights: Tensor, syn: Tensor, label: int) -> Tensor:
    """Matching loss of one class: ``weights`` is its ``[J, B]`` target rows.

    One forward of the real batch; one real gradient per non-empty row; the
    synthetic gradient (with graph, for the image update) is matched to each.
    """
    params = [p for p in net.parameters() if p.requires_grad]
    labels_real = torch.full((real.shape[0],), label, device=real.device)
    per_sample = F.cross_entropy(net(real), labels_real, reduction="none")
    rows = [j for j in range(weights.shape[0]) if float(weights[j].sum()) > 0]
    labels_syn = torch.full((syn.shape[0],), label, device=syn.device)
    syn_grad = torch.autograd.grad(F.cross_entropy(net(syn), labels_syn), params, create_graph=True)
    loss = syn.new_zeros(())
    for n, j in enumerate(rows):
        real_grad = torch.autograd.grad((weights[j] * per_sample).sum(), params, retain_graph=n < len(rows) - 1)
        loss = loss + gradient_distance([g.detach() for g in real_grad], list(syn_grad))
    return loss
