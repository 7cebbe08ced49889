"""Learning from Failure (LfF; Nam et al., NeurIPS 2020) as an evaluation-time trainer.

LfF trains two networks side by side on the same batches:

* a *biased* network with the generalised cross-entropy (GCE), which, by
  up-weighting samples it already finds easy, latches on to the spurious cue
  even harder than plain training does;
* a *debiased* network with cross-entropy re-weighted per sample by the
  relative difficulty ``w = l_b / (l_b + l_d)``, where ``l_b`` and ``l_d`` are
  moving averages of each network's per-sample cross-entropy. Samples the
  biased network fails on (the bias-conflicting ones) get ``w`` near 1, the
  ones it gets right get ``w`` near 0.

The arithmetic follows the authors' code (github.com/alinlab/LfF): GCE in its
gradient form, per-class max-normalised loss averages, ``1e-8`` in the
denominator. Differences: the optimiser, learning-rate schedule, batching and
DSA are this package's evaluation protocol (:func:`paperlib.train.loop.run_epochs`),
so a run differs from a plain one only in the losses; ``eval_optimizer=adam`` (with
``eval_lr=0.001``) takes LfF's Colored-MNIST optimiser, Adam without weight decay, and
keeps the rest.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paperlib.train.loop import TrainSettings, make_optimizer, run_epochs, training_forward

__all__ = ["generalized_cross_entropy", "train_lff"]


def generalized_cross_entropy(logits: Tensor, labels: Tensor, q: float) -> Tensor:
    """Per-sample GCE loss of Zhang & Sabuncu (2018), in LfF's gradient form.

    GCE is ``(1 - p_y^q) / q``; its gradient is ``p_y^q`` times that of the
    cross-entropy ``-log p_y``. Like the LfF code, this returns
    ``CE * q * p_y^q`` with the factor detached: the same direction as the GCE
    gradient, scaled by ``q``, so its value is *not* ``(1 - p_y^q) / q`` but its
    gradient is ``q`` times GCE's. Shape ``[N]``.
    """
    log_p = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    # Detached: the weight only reshapes the CE gradient, it is not differentiated itself.
    weight = log_p.detach().mul(q).exp() * q  # p_y^q * q, computed in log space for stability
    return -log_p * weight


class _LossAverage:
    """Per-sample exponential moving average of a loss, on the loss's device.

    ``update`` sets ``l = ema * l + (1 - ema) * loss`` for the given indices,
    except at a sample's first visit, where ``l = loss``: the LfF code does the
    same (``1 - alpha * updated``), so averages are not biased towards the zero
    they start from and early normalisation by the class max is meaningful.
    """

    def __init__(self, labels: Tensor, num_classes: int, ema: float) -> None:
        self.labels = labels
        self.num_classes = num_classes
        self.ema = ema
        self.value = torch.zeros(labels.shape[0], device=labels.device)
        self.seen = torch.zeros(labels.shape[0], dtype=torch.bool, device=labels.device)

    def update(self, index: Tensor, loss: Tensor) -> None:
        keep = torch.where(self.seen[index], self.ema, 0.0)
        self.value[index] = keep * self.value[index] + (1.0 - keep) * loss
        self.seen[index] = True

    def normalised(self, index: Tensor) -> Tensor:
        """The averages of ``index``, each divided by the largest average of its class (whole set)."""
        class_max = torch.zeros(self.num_classes, device=self.value.device).scatter_reduce(
            0, self.labels, self.value, reduce="amax", include_self=False)
        # A class whose every average underflowed to 0 would give 0 / 0; its samples get 0 instead.
        return self.value[index] / class_max[self.labels[index]].clamp_min(torch.finfo(self.value.dtype).tiny)


def train_lff(biased: nn.Module, debiased: nn.Module, images: Tensor, labels: Tensor, settings: TrainSettings,
              q: float, ema: float, gen: torch.Generator, show_progress: bool = True,
              desc: str = "lff") -> nn.Module:
    """Train ``biased`` (GCE) and ``debiased`` (relative-difficulty weighted CE) together, in place.

    Both networks see the same shuffled, DSA-augmented batches, drawn from
    ``gen`` exactly as :func:`paperlib.train.loop.train_classifier` draws them, and
    share one optimiser (``settings.optimizer``) with the protocol's settings: the two losses touch
    disjoint parameters, so their sum is two independent updates. ``q`` is the
    GCE exponent, ``ema`` the per-sample loss averaging factor. ``labels`` are
    class indices. A non-finite loss stops training with an error naming the
    epoch. Returns ``debiased``, the model to evaluate.
    """
    num_classes = int(labels.max()) + 1
    average_b = _LossAverage(labels, num_classes, ema)
    average_d = _LossAverage(labels, num_classes, ema)
    optimizer = make_optimizer(itertools.chain(biased.parameters(), debiased.parameters()), settings)
    biased.train()
    debiased.train()
    forward_b, forward_d = training_forward(biased, images, settings), training_forward(debiased, images, settings)

    def batch_loss(index: Tensor, x: Tensor) -> Tensor:
        y = labels[index]
        logits_b, logits_d = forward_b(x), forward_d(x)
        ce_d = F.cross_entropy(logits_d, y, reduction="none")
        with torch.no_grad():  # weights only scale the debiased loss; no gradient through them
            average_b.update(index, F.cross_entropy(logits_b, y, reduction="none"))
            average_d.update(index, ce_d)
            l_b, l_d = average_b.normalised(index), average_d.normalised(index)
            weight = l_b / (l_b + l_d + 1e-8)
        loss_b = generalized_cross_entropy(logits_b, y, q).mean()
        # The sum is what run_epochs steps on and checks for non-finite values (either loss going bad shows).
        return loss_b + (ce_d * weight).mean()

    run_epochs(optimizer, images, settings, gen, batch_loss, show_progress, desc)
    return debiased
