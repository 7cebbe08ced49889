"""How an evaluation model learns from a training set: the registry of ``eval_trainer`` values.

A trainer receives a factory of fresh, initialised models (each call draws the
next initialisation from the model's generator), the normalised images and
labels, the protocol's settings, the parameters and the generator, and returns
the model to test. ``plain`` is the papers' protocol; ``lff`` (Learning from
Failure, :mod:`paperlib.train.lff`) and ``selecmix`` (contradicting-pair mixup,
:mod:`paperlib.train.selecmix`) train a biased companion beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from paperlib.core.params import Params
from paperlib.core.registry import Registry
from paperlib.train.lff import train_lff
from paperlib.train.loop import TrainSettings, train_classifier
from paperlib.train.selecmix import train_selecmix

NewModel = Callable[[], nn.Module]


@dataclass(frozen=True)
class Trainer:
    """One evaluation trainer: ``train(new_model, images, labels, settings, params, gen, desc)``."""

    train: Callable[[NewModel, Tensor, Tensor, TrainSettings, Params, torch.Generator, str], nn.Module]
    uses: tuple[str, ...] = ()  # parameters that matter only with this trainer (they enter the cache key)
    version: int = 0  # bumped when the trainer's results change (it enters the cache key of its runs)


def _plain(new_model: NewModel, images: Tensor, labels: Tensor, settings: TrainSettings, params: Params,
           gen: torch.Generator, desc: str) -> nn.Module:
    return train_classifier(new_model(), images, labels, settings, gen, params.progress, desc)


def _lff(new_model: NewModel, images: Tensor, labels: Tensor, settings: TrainSettings, params: Params,
         gen: torch.Generator, desc: str) -> nn.Module:
    model = new_model()
    biased = new_model()  # LfF's biased companion: same architecture, drawn right after the tested model
    return train_lff(biased, model, images, labels, settings, params.lff_q, params.lff_ema, gen, params.progress,
                     desc)


def _selecmix(new_model: NewModel, images: Tensor, labels: Tensor, settings: TrainSettings, params: Params,
              gen: torch.Generator, desc: str) -> nn.Module:
    model = new_model()
    biased = new_model()  # SelecMix's GCE-trained auxiliary model, drawn right after the tested model
    return train_selecmix(biased, model, images, labels, settings, params.lff_q, gen, params.progress, desc)


TRAINERS: Registry[Trainer] = Registry("eval_trainer", field="eval_trainer")
TRAINERS.register("plain", Trainer(_plain))
TRAINERS.register("lff", Trainer(_lff, uses=("lff_q", "lff_ema")))
# version 1: the official mixing rule (one pair type per batch, the anchor at most half, the partner's label)
TRAINERS.register("selecmix", Trainer(_selecmix, uses=("lff_q",), version=1))
