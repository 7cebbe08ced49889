"""The training loop every network of this package is trained with (evaluation models under every trainer: plain, LfF,
SelecMix; gradient matching's inner loop and DM's warm start). Evaluation models: SGD with momentum 0.9 and weight
decay 5e-4 (or, with ``eval_optimizer=adam``, Adam without weight decay: LfF's and SelecMix's own), batches of
``eval_batch`` (256); DSA on every batch unless the evaluation's augmentation is ``none`` (DC's protocol, or
``dsa=false``); with ``official_schedule`` (``eval_official_schedule=true``, the default) the official
``evaluate_synset`` schedule, E + 1 epochs and a fresh optimiser at lr x0.1 after epoch E // 2 + 1, otherwise this
companion's first schedule, E epochs with lr x0.1 one epoch earlier and momentum kept. The inner loop and the warm
start train at a constant lr without momentum or weight decay."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paperlib.core.errors import PaperlibError
from paperlib.core.params import DSA_STRATEGY, Params
from paperlib.core.runtime import HOST_READ_EVERY, Compiled, compile_wanted, progress, read_on_host, \
    diverged_pixels, to_device
from paperlib.train.augment import DSA, DSAParams
from paperlib.train.models import samples_independent


@dataclass(frozen=True)
class TrainSettings:
    """How a network is trained. The defaults are the evaluation's numbers (1,000 epochs, lr 0.01, batch 256,
    momentum 0.9, weight decay 5e-4, DSA) on the first schedule: ``official_schedule`` is False here, and
    :meth:`from_params` sets it from ``eval_official_schedule`` (true by default). ``optimizer="adam"`` trains with
    Adam at ``lr`` instead (its own betas; ``momentum`` and ``weight_decay`` are then unused)."""

    epochs: int = 1000
    lr: float = 0.01
    batch: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dsa_strategy: str | None = DSA_STRATEGY  # None: no augmentation
    lr_drop: bool = True  # False: constant lr (the gradient-matching inner loop)
    # The official evaluate_synset's loop: epochs + 1 epochs, lr x0.1 after epoch epochs // 2 + 1 with a fresh
    # optimiser (its momentum dropped); False (the dataclass default; from_params takes eval_official_schedule):
    # epochs epochs, the drop one epoch earlier, momentum kept
    official_schedule: bool = False
    # one of paperlib.core.runtime.COMPILE_SETTINGS: the forward passes through torch.compile (compile_wanted)
    torch_compile: str = "never"
    optimizer: str = "sgd"  # sgd | adam (eval_optimizer); the schedule above applies to either

    @classmethod
    def from_params(cls, params: Params) -> TrainSettings:
        """The evaluation's training settings of a run (``eval_*``; DSA unless ``eval_augment=none`` or ``dsa=false``;
        the schedule from ``eval_official_schedule``, the optimiser from ``eval_optimizer``)."""
        augment = params.dsa and params.eval_augment != "none"
        return cls(epochs=params.eval_epochs, lr=params.eval_lr, batch=params.eval_batch,
                   dsa_strategy=params.dsa_strategy if augment else None, torch_compile=params.torch_compile,
                   official_schedule=params.eval_official_schedule, optimizer=params.eval_optimizer or "sgd")

    @property
    def epochs_run(self) -> int:
        """How many epochs the loop runs: ``epochs``, and one more on the official schedule (``range(E + 1)``)."""
        return self.epochs + self.official_schedule

    @property
    def drop_epoch(self) -> int | None:
        """The 0-based epoch from which the learning rate is x0.1 (``None``: never): ``epochs // 2 + 2`` on the
        official schedule, whose drop follows epoch ``epochs // 2 + 1``; ``epochs // 2 + 1`` otherwise."""
        return self.epochs // 2 + 1 + self.official_schedule if self.lr_drop else None

    def lr_at(self, epoch: int) -> float:
        """Learning rate for 0-based ``epoch``: x0.1 from :attr:`drop_epoch` on."""
        return self.lr * (0.1 if self.drop_epoch is not None and epoch >= self.drop_epoch else 1.0)


def make_optimizer(parameters: Iterable[Tensor], settings: TrainSettings) -> torch.optim.Optimizer:
    """The optimiser of ``settings`` (the learning rate is then set per epoch by :func:`run_epochs`): the
    protocol's SGD, or Adam without weight decay, as LfF's and SelecMix's official code train (their Colored-MNIST
    learning rates: 1e-3 and 5e-3)."""
    if settings.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=settings.lr)
    if settings.optimizer != "sgd":
        raise PaperlibError(f"unknown optimizer {settings.optimizer!r}; choose one of: sgd, adam")
    return torch.optim.SGD(parameters, lr=settings.lr, momentum=settings.momentum,
                           weight_decay=settings.weight_decay)


# Images per forward / backward on the CPU when samples are independent (no batch statistics): a micro-batch's
# activations then stay in the CPU cache. Measured on a 2-core CPU, one training step of 256 images, ConvNet:
# width 128 877 -> 587 ms, width 64 357 -> 252 ms (docs/performance.md). Accelerators take the whole batch.
CPU_MICRO_BATCH = 16


def micro_batch_for(model: nn.Module, device: torch.device) -> int | None:
    """:data:`CPU_MICRO_BATCH` for a model whose samples are independent, on the CPU; ``None`` (whole batches)
    otherwise."""
    return CPU_MICRO_BATCH if device.type == "cpu" and samples_independent(model) else None


def run_epochs(optimizer: torch.optim.Optimizer, images: Tensor, settings: TrainSettings, gen: torch.Generator,
               batch_loss: Callable[[Tensor, Tensor], Tensor], show_progress: bool = True,
               desc: str = "train", micro_batch: int | None = None, finite: Tensor | None = None) -> None:
    """The training loop shared by every evaluation trainer.

    Each epoch sets the learning rate from :meth:`TrainSettings.lr_at`, draws one
    permutation of ``images`` from ``gen`` and, for every batch, applies DSA
    (parameters from ``gen``, when ``settings.dsa_strategy`` is set), then calls
    ``batch_loss(index, x)`` with the batch's sample indices and augmented images
    and takes one ``optimizer`` step on the scalar it returns. Keeping the random
    draws here, in this order, is what makes every trainer consume ``gen`` the
    same way. With ``micro_batch``, ``batch_loss`` (a mean over independent samples)
    is called on slices of that many images and their gradients are accumulated:
    the same step up to float reassociation. The mean loss is read every
    :data:`~paperlib.core.runtime.HOST_READ_EVERY` epochs and at the end; a non-finite one stops training
    with an error naming the epoch. With ``finite`` (a boolean scalar on the device) the host reads nothing:
    ``finite`` is and-ed in place with every epoch's loss being finite, for the caller to read with its own
    values (distillation trains its network many times per iteration and must not wait for each).
    """
    dsa = DSA(DSAParams(strategy=settings.dsa_strategy)) if settings.dsa_strategy else None
    n = images.shape[0]
    bar = progress(range(settings.epochs_run), desc=desc, enabled=show_progress)
    losses: list[Tensor] = []  # the mean losses of the epochs not yet read on the host
    for epoch in bar:
        if settings.official_schedule and epoch == settings.drop_epoch:
            optimizer.state.clear()  # the official code makes a new optimiser here: no momentum carried over
        for group in optimizer.param_groups:
            group["lr"] = settings.lr_at(epoch)
        order = to_device(torch.randperm(n, generator=gen), images.device)
        total = images.new_zeros((), dtype=torch.float32)
        for start in range(0, n, settings.batch):
            index = order[start:start + settings.batch]
            x = images[index]
            if dsa is not None:
                x = dsa(x, gen)
            optimizer.zero_grad(set_to_none=True)
            total = total + _backward(batch_loss, index, x, micro_batch) * index.shape[0]
            optimizer.step()
        if finite is not None:
            finite.logical_and_(torch.isfinite(total))
            continue
        losses.append(total)
        if len(losses) == HOST_READ_EVERY or epoch + 1 == settings.epochs_run:
            _check_epochs(losses, images, epoch + 2 - len(losses), bar)
            losses = []


def _check_epochs(totals: list[Tensor], images: Tensor, first_epoch: int, bar: Any) -> None:
    """Raise on the first non-finite mean loss (``totals`` are per-epoch sums over ``images``; epochs count
    from ``first_epoch``, 1-based); show the last."""
    n = images.shape[0]
    values, bad = read_on_host(totals)
    if bad is not None:
        # No evaluation learning rate mends images that diverged while they were distilled.
        why = diverged_pixels(images)  # read once, on the way to the error
        cause = "lower eval_lr" if why is None else \
            f"the training images are a distilled set that diverged ({why}): lower lr_img and distil it again"
        raise PaperlibError(f"training loss became {values[bad] / n} at epoch {first_epoch + bad}; {cause}")
    bar.set_postfix(loss=f"{values[-1] / n:.3f}", refresh=False)


def _backward(batch_loss: Callable[[Tensor, Tensor], Tensor], index: Tensor, x: Tensor,
              micro_batch: int | None) -> Tensor:
    """Backward pass of one batch's mean loss, in micro-batches when asked; returns the loss, detached."""
    if micro_batch is None or index.shape[0] <= micro_batch:
        loss = batch_loss(index, x)
        loss.backward()
        return loss.detach()
    total = x.new_zeros((), dtype=torch.float32)
    for part_index, part in zip(index.split(micro_batch), x.split(micro_batch)):
        loss = batch_loss(part_index, part) * (part_index.shape[0] / index.shape[0])
        loss.backward()
        total = total + loss.detach()
    return total


def training_forward(fn: Callable[[Tensor], Any], images: Tensor, settings: TrainSettings) -> Compiled:
    """``fn`` (a model, or a function of a batch through it, such as SelecMix's features and logits) for a
    training of ``settings`` on ``images``: compiled when ``settings.torch_compile`` asks for it (``auto``: long
    enough work on the CPU, :func:`~paperlib.core.runtime.compile_wanted`). Every trainer's networks go through
    it."""
    steps = settings.epochs * -(-images.shape[0] // settings.batch)
    return Compiled(fn, compile_wanted(settings.torch_compile, images.device, steps))


def train_classifier(model: nn.Module, images: Tensor, labels: Tensor, settings: TrainSettings,
                     gen: torch.Generator, show_progress: bool = True, desc: str = "train",
                     forward: Callable[[Tensor], Tensor] | None = None, finite: Tensor | None = None) -> nn.Module:
    """Train ``model`` in place with cross-entropy on normalised ``images`` (on the model's device).

    Shuffling and augmentation draw from ``gen`` only. A non-finite loss stops
    training with an error naming the epoch, or, with ``finite``, clears that device flag instead
    (:func:`run_epochs`). ``forward`` (default: :func:`training_forward`, which follows
    ``settings.torch_compile``) computes ``model``'s outputs: a caller that trains the same model many times
    passes the one it holds.
    """
    optimizer = make_optimizer(model.parameters(), settings)
    model.train()
    if forward is None:
        forward = training_forward(model, images, settings)

    def batch_loss(index: Tensor, x: Tensor) -> Tensor:
        return F.cross_entropy(forward(x), labels[index])

    run_epochs(optimizer, images, settings, gen, batch_loss, show_progress, desc,
               micro_batch_for(model, images.device), finite)
    return model


@torch.inference_mode()
def predict(model: nn.Module, images: Tensor, batch: int = 2048) -> Tensor:
    """Predicted class of every image (evaluation mode, no gradients)."""
    model.eval()
    return torch.cat([model(images[i:i + batch]).argmax(1) for i in range(0, images.shape[0], batch)])
