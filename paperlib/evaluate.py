"""The evaluation protocol: train a fresh network on an image set, test it unbiased.

Follows the shared DC/DSA/DM protocol (PAPERS.md): SGD with momentum 0.9 and
weight decay 5e-4, batch 256, learning rate x0.1 for the second half of
training, DSA on every training batch, then accuracy and fairness metrics on
the dataset's balanced test split. The same path serves synthetic sets, random
real subsets and the whole training set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paperlib.augment import DSA, DSAParams
from paperlib.config import Params, derive_seed
from paperlib.data.container import BiasedDataset
from paperlib.errors import PaperlibError
from paperlib.metrics import classification_metrics, summarize
from paperlib.models import build_model, init_parameters
from paperlib.runtime import generator, progress


@dataclass(frozen=True)
class TrainSettings:
    """How an evaluation network is trained (defaults: the papers' protocol)."""

    epochs: int = 1000
    lr: float = 0.01
    batch: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dsa_strategy: str | None = "color_crop_cutout_flip_scale_rotate"  # None: no augmentation
    lr_drop: bool = True  # False: constant lr (the gradient-matching inner loop)

    @classmethod
    def from_params(cls, params: Params) -> TrainSettings:
        return cls(epochs=params.eval_epochs, lr=params.eval_lr, batch=params.eval_batch,
                   dsa_strategy=params.dsa_strategy if params.dsa else None)

    def lr_at(self, epoch: int) -> float:
        """Learning rate for 0-based ``epoch``: x0.1 from epoch ``epochs // 2 + 1`` on, as the reference."""
        return self.lr * (0.1 if self.lr_drop and epoch >= self.epochs // 2 + 1 else 1.0)


def train_classifier(model: nn.Module, images: Tensor, labels: Tensor, settings: TrainSettings,
                     gen: torch.Generator, show_progress: bool = True, desc: str = "train") -> nn.Module:
    """Train ``model`` in place on normalised ``images`` (on the model's device).

    Shuffling and augmentation draw from ``gen`` only. A non-finite loss stops
    training with an error naming the epoch.
    """
    dsa = DSA(DSAParams(strategy=settings.dsa_strategy)) if settings.dsa_strategy else None
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    n = images.shape[0]
    model.train()
    bar = progress(range(settings.epochs), desc=desc, enabled=show_progress)
    for epoch in bar:
        for group in optimizer.param_groups:
            group["lr"] = settings.lr_at(epoch)
        order = torch.randperm(n, generator=gen).to(images.device)
        total = 0.0
        for start in range(0, n, settings.batch):
            index = order[start:start + settings.batch]
            x = images[index]
            if dsa is not None:
                x = dsa(x, gen)
            loss = F.cross_entropy(model(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * index.shape[0]
        mean_loss = total / n
        if not math.isfinite(mean_loss):
            raise PaperlibError(f"training loss became {mean_loss} at epoch {epoch + 1}; lower eval_lr")
        bar.set_postfix(loss=f"{mean_loss:.3f}", refresh=False)
    return model


@torch.inference_mode()
def predict(model: nn.Module, images: Tensor, batch: int = 2048) -> Tensor:
    """Predicted class of every image (evaluation mode, no gradients)."""
    model.eval()
    return torch.cat([model(images[i:i + batch]).argmax(1) for i in range(0, images.shape[0], batch)])


def evaluate_set(images: Tensor, labels: Tensor, dataset: BiasedDataset, params: Params,
                 device: torch.device, tag: str = "eval") -> dict:
    """Train ``params.num_eval`` fresh models on ``(images, labels)`` and test each.

    ``images`` are normalised (as :meth:`BiasedDataset.normalized` gives). Model
    ``k`` draws its initialisation, shuffling and augmentation from
    ``derive_seed(params.seed, tag, k)``. Returns the per-model metrics under
    ``"runs"`` and their mean / std (see :func:`paperlib.metrics.summarize`).
    """
    settings = TrainSettings.from_params(params)
    images, labels = images.to(device), labels.to(device)
    test_images = dataset.normalized("test", device)
    test = dataset.test
    runs = []
    for k in range(params.num_eval):
        gen = generator(derive_seed(params.seed, tag, k))
        model = build_model(params.model, dataset.channels, dataset.num_classes, dataset.image_size,
                            width=params.net_width, depth=params.net_depth, norm=params.net_norm,
                            act=params.net_act, pooling=params.net_pooling)
        model = init_parameters(model, gen).to(device)
        desc = f"{tag} model {k + 1}/{params.num_eval}"
        train_classifier(model, images, labels, settings, gen, params.progress, desc)
        predictions = predict(model, test_images)
        runs.append(classification_metrics(predictions, test.labels, test.attributes, test.aligned,
                                           dataset.num_classes, dataset.info.num_attributes))
    return {"runs": runs, **summarize(runs)}
