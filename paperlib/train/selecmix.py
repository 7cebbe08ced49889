"""SelecMix (Hwang et al., NeurIPS 2022) as an evaluation-time trainer, with the official code's mixing rule.

Paper A's 53.7% debiasing baseline applied SelecMix to the distilled set (per the reviews of its ICLR-2024
version). SelecMix is mixup with *contradicting pairs*, chosen by an auxiliary biased model:

* the biased model is trained beside the tested one with the generalised cross-entropy (GCE, exponent
  ``lff_q``), so its features encode the shortcut;
* for each image of a batch (the anchor) a partner is chosen in the same batch from the biased model's
  normalised embedding: for the whole batch, with probability 1/2, a *contradicting positive* (same label, the
  least similar bias feature) and otherwise a *contradicting negative* (another label, the most similar bias
  feature);
* the tested model is trained with cross-entropy on ``lam * anchor + (1 - lam) * partner`` against the
  *partner's* label, ``lam ~ U(0, 1/2)`` per image, so the partner dominates the mixed image.

The mixing rule is the official code's (iwhwang/SelecMix, ``configs/v_ours.cfg``: ``--rand --ours``, ``a=1, b=0``: one
pair type per batch, ``lam = Beta(1, 1) / 2``, the loss on the partner's label alone, no loss on the unmixed batch).
Mixing an aligned anchor with a same-class image of another bias, or with an other-class image of the same bias,
cancels the shortcut in the mixed sample. Deviations: the optimiser, schedule, batching and DSA are this package's
evaluation protocol (:func:`paperlib.train.loop.run_epochs`), as for LfF (the official code: Adam without weight
decay, lr 0.005 on CMNIST, which ``eval_optimizer=adam eval_lr=0.005`` takes); the partners come from the GCE-trained
biased classifier's embedding, where the official code trains a separate encoder with a generalised supervised
contrastive loss.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paperlib.core.runtime import to_device
from paperlib.train.lff import generalized_cross_entropy
from paperlib.train.loop import TrainSettings, make_optimizer, run_epochs, training_forward

__all__ = ["contradicting_partners", "mix_with_partners", "mixing_draws", "train_selecmix"]


def contradicting_partners(features: Tensor, labels: Tensor, positive: Tensor) -> Tensor:
    """For each row, the index of its partner in the batch: where ``positive``, the same-label row whose
    normalised feature is least similar (itself if it is alone in its class); otherwise the other-label row
    whose feature is most similar (itself if every row shares its label)."""
    z = F.normalize(features.flatten(1), dim=1)
    similarity = z @ z.T
    same = labels[:, None] == labels[None, :]
    own = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    least_alike = torch.where(same & ~own, similarity, torch.inf).argmin(dim=1)
    most_alike = torch.where(~same, similarity, -torch.inf).argmax(dim=1)
    alone = ~(same & ~own).any(dim=1)
    uniform = same.all(dim=1)
    self_index = torch.arange(labels.shape[0], device=labels.device)
    least_alike = torch.where(alone, self_index, least_alike)
    most_alike = torch.where(uniform, self_index, most_alike)
    return torch.where(positive, least_alike, most_alike)


def mixing_draws(n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """The official code's draws for a batch of ``n``: the pair type (``True``: contradicting positives), one
    for the whole batch, and each anchor's share ``lam ~ U(0, 1/2)`` (``Beta(1, 1) / 2``)."""
    positive = (torch.rand(1, generator=gen) > 0.5).expand(n)
    return positive, 0.5 * torch.rand(n, generator=gen)


def mix_with_partners(x: Tensor, labels: Tensor, partner: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
    """``lam * anchor + (1 - lam) * partner`` per image, and the label it is trained on: the partner's."""
    weight = lam.view(-1, *([1] * (x.dim() - 1)))
    return weight * x + (1 - weight) * x[partner], labels[partner]


def train_selecmix(biased: nn.Module, model: nn.Module, images: Tensor, labels: Tensor, settings: TrainSettings,
                   q: float, gen: torch.Generator, show_progress: bool = True, desc: str = "selecmix") -> nn.Module:
    """Train ``biased`` (GCE) and ``model`` (cross-entropy on contradicting-pair mixup) together, in place.

    Both networks see the same shuffled, DSA-augmented batches of :func:`paperlib.train.loop.run_epochs` and
    share one optimiser (``settings.optimizer``; their losses touch disjoint parameters). The batch's pair type
    and the mixing weights are drawn from ``gen`` after the batch. Returns ``model``, the one to test.
    """
    optimizer = make_optimizer(itertools.chain(biased.parameters(), model.parameters()), settings)
    biased.train()
    model.train()

    def features_and_logits(x: Tensor) -> tuple[Tensor, Tensor]:
        # one pass of the biased model serves its GCE loss and the partner choice
        features = biased.embed(x)
        return features, biased.classifier(features)

    forward_b, forward = (training_forward(fn, images, settings) for fn in (features_and_logits, model))

    def batch_loss(index: Tensor, x: Tensor) -> Tensor:
        y = labels[index]
        n = y.shape[0]
        positive, lam = (to_device(t, x.device) for t in mixing_draws(n, gen))  # no wait for the device
        features, logits = forward_b(x)
        loss_b = generalized_cross_entropy(logits, y, q).mean()
        with torch.no_grad():  # the biased model only chooses the partners
            partner = contradicting_partners(features, y, positive)
        mixed, target = mix_with_partners(x, y, partner, lam)
        return loss_b + F.cross_entropy(forward(mixed), target)

    run_epochs(optimizer, images, settings, gen, batch_loss, show_progress, desc)
    return model
