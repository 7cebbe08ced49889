"""The SupCon encoder of paper A's KDE weights: a ConvNet trained with a supervised contrastive loss.

The backbone is the run's model (``model``, ``net_*``) with a 2-layer projection head to L2-normalised
128-d features, trained on the biased training split with DSA (one view per image).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paperlib.core.errors import PaperlibError
from paperlib.core.keys import derive_seed
from paperlib.core.params import Params
from paperlib.core.runtime import HOST_READ_EVERY, generator, progress, read_on_host, to_device
from paperlib.data.container import BiasedDataset
from paperlib.train.augment import DSA, DSAParams
from paperlib.train.models import init_parameters, model_from_params

PROJECTION_DIM = 128
SUPCON_BATCH = 256


class ContrastiveEncoder(nn.Module):
    """A ConvNet backbone with a 2-layer projection head to L2-normalised 128-d features."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        dim = backbone.embed_dim
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, PROJECTION_DIM))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.head(self.backbone.embed(x)), dim=1)


def supcon_loss(features: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Supervised contrastive loss (Khosla et al., L_out) for one view of L2-normalised features.

    Each sample's positives are the other samples of its class in the batch;
    anchors without a positive are left out.
    """
    n = features.shape[0]
    if n < 2:
        return features.sum() * 0.0  # nothing to contrast (and a row of only -inf logits has no softmax)
    logits = features @ features.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=features.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    count = positives.sum(1)
    has_positive = count > 0
    mean_log_prob = torch.where(positives, log_prob, 0.0).sum(1) / count.clamp_min(1)
    # The mean over the anchors with a positive, without selecting them (a selection waits for the device):
    # when every anchor has one, the same sum divided by the same count as the selection's mean.
    return -torch.where(has_positive, mean_log_prob, 0.0).sum() / has_positive.sum().clamp_min(1)


def _backbone(dataset: BiasedDataset, params: Params) -> nn.Module:
    return model_from_params(params, dataset.channels, dataset.num_classes, dataset.image_size)


def _shuffled_batches(n: int, batch: int, steps: int, gen: torch.Generator) -> Iterator[Tensor]:
    """``steps`` batches of indices; a fresh permutation at every epoch start."""
    done = 0
    while done < steps:
        for index in torch.randperm(n, generator=gen).split(batch)[:steps - done]:
            yield index
            done += 1


def train_supcon(dataset: BiasedDataset, params: Params, device: torch.device) -> ContrastiveEncoder:
    """A SupCon encoder trained for ``supcon_epochs`` on the biased training split, counted as
    ``ceil(supcon_epochs * n / 256)`` steps: as many as full batches would take, while each pass over the split
    ends on a partial batch, so slightly fewer passes are made (9.3 of 10 on the digits' 1,433 images).

    SGD (momentum 0.9, weight decay 5e-4, constant ``supcon_lr``), batch 256,
    one DSA-augmented view per image (with ~25 same-class images per batch, a
    second view is not needed for positives; ``dsa=false``: the image itself); every draw comes from a
    generator seeded by ``params.seed``.
    """
    gen = generator(derive_seed(params.seed, "supcon"))
    encoder = ContrastiveEncoder(_backbone(dataset, params))
    init_parameters(encoder, gen)
    encoder = encoder.to(device).train()
    optimizer = torch.optim.SGD(encoder.parameters(), lr=params.supcon_lr, momentum=0.9, weight_decay=5e-4)
    dsa = DSA(DSAParams(strategy=params.dsa_strategy)) if params.dsa else None
    images = dataset.train.images.to(device)  # uint8, each batch normalised when drawn: no float copy of the split
    labels = dataset.train.labels.to(device)
    n = images.shape[0]
    steps = max(1, math.ceil(params.supcon_epochs * n / SUPCON_BATCH))
    bar = progress(_shuffled_batches(n, SUPCON_BATCH, steps, gen), total=steps, desc="supcon encoder",
                   enabled=params.progress)
    pending: list[Tensor] = []  # losses not yet read on the host (one read per HOST_READ_EVERY steps)
    for step, index in enumerate(bar):
        index = to_device(index, device)
        batch = dataset.normalize_uint8(images[index])
        view = batch if dsa is None else dsa(batch, gen)
        loss = supcon_loss(encoder(view), labels[index], params.supcon_temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        pending.append(loss.detach())
        if len(pending) == HOST_READ_EVERY or step + 1 == steps:
            _check_losses(pending, step + 2 - len(pending), params, bar)
            pending = []
    return encoder.eval()


def _check_losses(pending: list[Tensor], first_step: int, params: Params, bar: Any) -> None:
    """Raise on the first non-finite loss (steps count from ``first_step``, 1-based); show the last."""
    values, bad = read_on_host(pending)
    if bad is not None:
        raise PaperlibError(f"SupCon loss became {values[bad]} at step {first_step + bad}; lower supcon_lr "
                            f"(now {params.supcon_lr}) or raise supcon_temperature")
    bar.set_postfix(loss=f"{values[-1]:.3f}", refresh=False)
