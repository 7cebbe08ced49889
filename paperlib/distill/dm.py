"""Distribution Matching (Zhao & Bilen): match mean embeddings under random networks.

One step: a freshly initialised, frozen ConvNet; siamese DSA on the real batch
and the synthetic set (one transform per class, shared by both); the squared
distance between each real statistic of the target and the synthetic mean
embedding (COBRA's code: the absolute distance, ``dm_distance=l1``), summed over statistics and classes. The
real images of all classes go through the network together: in chunks of 16 on the CPU (exact, because
instance norm is per sample), all at once on an accelerator; a network with
batch statistics (batch norm) takes the whole real batch in one forward on
every device. The synthetic set goes through in one forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from torch import Tensor, nn

from paperlib.core.runtime import chunk_size, to_device
from paperlib.distill.state import DistillerState
from paperlib.train.augment import DSA
from paperlib.train.models import init_parameters, samples_independent


def augment_siamese(dsa: DSA | None, real: Tensor, syn: Tensor, real_classes: Tensor, syn_classes: Tensor,
                    gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """The same per-class transform on ``real`` (no gradient) and ``syn``.

    DSA draws a class's transform from the generator state and the number of
    classes only, so replaying the state gives the synthetic images exactly the
    real images' transform without building a graph through the real branch.
    """
    if dsa is None:
        return real, syn
    state = gen.get_state()
    with torch.no_grad():
        real = dsa(real, gen, real_classes)
    gen.set_state(state)
    return real, dsa(syn, gen, syn_classes)


# How far a real statistic is from the synthetic mean embedding, per (class, statistic): ``dm_distance``'s choices
# ("": DM's squared Euclidean distance)
def _squared_l2(diff: Tensor) -> Tensor:
    return (diff ** 2).sum(-1)


DISTANCES: dict[str, Callable[[Tensor], Tensor]] = {"": _squared_l2, "squared_l2": _squared_l2,
                                                     "l1": lambda diff: diff.abs().sum(-1)}


def dm_loss(net: nn.Module, real: Tensor, aggregation: Tensor, syn: Tensor, ipc: int,
            chunk: int | None = None, embed: Callable[[Tensor], Tensor] | None = None,
            distance: str = "") -> Tensor:
    """DM matching loss for augmented, class-major ``real`` ``[K*B, ...]`` and ``syn`` ``[K*ipc, ...]``, under
    the :data:`DISTANCES` entry ``distance``.

    ``aggregation`` is the target's ``[K, J, B]`` matrix (on any device); all-zero rows
    (absent groups) contribute nothing. The real images go through the network
    ``chunk`` at a time (default: 16 on the CPU, all at once on an accelerator):
    the first block's activations (128 x 32 x 32 per image) then stay in the CPU
    cache; 2560 images, channels-last, 2-core Intel CPU: chunks of 64 2.4 s, of 16
    1.6 s (the embeddings are bit-identical: instance norm is per sample). A
    network with batch statistics (not :func:`~paperlib.train.models.samples_independent`: ``resnet18_bn``,
    a batch-norm ConvNet) gets the whole real batch in one forward instead, on every device, and the synthetic
    set in another, as the reference does for batch-norm networks. ``embed`` replaces ``net.embed`` (the
    distiller's compiled one).
    """
    k, _, b = aggregation.shape
    embed = embed or net.embed
    chunk = chunk or chunk_size(real, 16)
    # Standard strides whatever layout the target built: with AVX-512, a matmul's rounding follows the stride
    # of a size-1 dimension, and equal aggregations must give equal synthetic sets.
    aggregation = to_device(aggregation, real.device).clone(memory_format=torch.contiguous_format)
    if not samples_independent(net):
        chunk = real.shape[0]  # batch norm: statistics over the whole real batch, as the reference's BN branch
    with torch.no_grad():
        real_embed = torch.cat([embed(part) for part in real.split(chunk)]).view(k, b, -1)
        statistics = torch.bmm(aggregation, real_embed)  # [K, J, D]
    syn_mean = embed(syn).view(k, ipc, -1).mean(1)  # [K, D]
    present = (aggregation.sum(-1) > 0).to(syn_mean.dtype)  # [K, J]
    distances = DISTANCES[distance](statistics - syn_mean[:, None, :])
    return (distances * present).sum()


def dm_step(distiller: DistillerState) -> Tensor:
    """One DM iteration of ``distiller`` (:class:`~paperlib.distill.state.DistillerState`): a fresh network
    (warm-started on the synthetic set for ``warm_start_epochs``, COBRA's option), frozen; one real batch, one
    image update; returns the loss, on the device."""
    net, params = distiller.net, distiller.params
    for p in net.parameters():
        p.requires_grad_(False)
    init_parameters(net, distiller.gen)
    if params.warm_start_epochs:
        for p in net.parameters():
            p.requires_grad_(True)
        distiller.train_network(params.warm_start_epochs, params.warm_start_lr, params.warm_start_batch,
                                "warm_start_lr")
        for p in net.parameters():
            p.requires_grad_(False)
    real, aggregation = distiller.real_batch()
    real, syn = augment_siamese(distiller.dsa, real, distiller.syn, distiller.real_classes, distiller.syn_classes,
                                distiller.gen)
    with distiller.autocast:
        loss = dm_loss(net, real, aggregation, syn, distiller.ipc, embed=distiller.embed, distance=params.dm_distance)
    loss = loss.float()
    distiller.update_images(loss)
    return loss.detach()
