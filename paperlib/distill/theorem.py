"""An identity of the two group targets, measured: DM + FairDD against DM matching the barycenter
of the group means in each real batch (COBRA's target).

For DM, ``sum_a ||mu_a - s||^2`` (FairDD, one term per group present) has the
gradient ``|A_present| * grad ||mean_a mu_a - s||^2`` with respect to the
synthetic mean ``s``: FairDD heads for the barycenter's matching point with a step
``|A_present|`` times larger, a factor that changes with the class and the batch.
(Fixed group-balanced sample weights, ``weights=group_balanced``, give the
barycenter only on average over batches: in one batch a group weighs in
proportion to how many of its samples were drawn.)
"""

from __future__ import annotations

import torch

from paperlib.core.keys import derive_seed
from paperlib.core.params import Params
from paperlib.core.runtime import generator
from paperlib.data.container import BiasedDataset
from paperlib.distill.dm import dm_loss
from paperlib.distill.init import initial_images
from paperlib.distill.sampling import RealSampler
from paperlib.distill.targets import BarycenterTarget, GroupsTarget
from paperlib.train.models import init_parameters, model_from_params


def fairdd_vs_barycenter(dataset: BiasedDataset, params: Params, device: torch.device,
                         batches: int = 3) -> list[dict]:
    """Per real batch and class: groups present, gradient-norm ratio FairDD / barycenter, and their cosine.

    Uses ``params``' network, IPC, real batch size and seed, a real-initialised
    synthetic set and no augmentation (the theorem is about the loss, for any
    fixed embedding). Expect ``norm_ratio == groups_present`` and ``cosine == 1``.
    """
    gen = generator(derive_seed(params.seed, "theorem"))
    k, a = dataset.num_classes, dataset.info.num_attributes
    net = model_from_params(params, dataset.channels, k, dataset.image_size)
    net = init_parameters(net, gen).to(device)
    sampler = RealSampler(dataset.train.labels, dataset.train.attributes, k, a, params.batch_real)
    real_uint8 = dataset.train.images.to(device)  # batches are normalised as gathered: no float copy of the split
    syn0 = initial_images(dataset, params.ipc, "real", gen).to(device)
    rows = []
    for b in range(batches):
        batch = sampler.sample(gen)
        real = dataset.normalize_uint8(real_uint8[batch.index.flatten().to(device)])
        gradients = []
        for aggregation in (GroupsTarget(a).aggregation(batch), BarycenterTarget(a).aggregation(batch)):
            syn = syn0.clone().requires_grad_(True)
            dm_loss(net, real, aggregation.to(device), syn, params.ipc).backward()
            gradients.append(syn.grad.view(k, -1))
        fair, barycenter = gradients
        present = (torch.nn.functional.one_hot(batch.groups, a).sum(1) > 0).sum(1)
        cosine = torch.nn.functional.cosine_similarity(fair, barycenter, dim=1)
        ratio = fair.norm(dim=1) / barycenter.norm(dim=1)
        rows += [{"batch": b, "class": c, "groups_present": int(present[c]), "norm_ratio": float(ratio[c]),
                  "cosine": float(cosine[c])} for c in range(k)]
    return rows
