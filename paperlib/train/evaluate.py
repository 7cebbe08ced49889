"""The evaluation protocol: train a fresh network on an image set, test it unbiased.

Follows the official DC/DSA/DM code's protocol (``evaluate_synset``): SGD with momentum
0.9 and weight decay 5e-4 (``eval_optimizer=adam``: Adam without weight decay, as LfF's
and SelecMix's code), batches of ``eval_batch`` (256, the official size); DSA on every
training batch unless the evaluation's augmentation is ``none`` (DC's protocol, or
``dsa=false``); with ``eval_official_schedule=true`` (the default) the official
``evaluate_synset`` schedule, ``eval_epochs + 1`` epochs and a fresh optimiser at lr x0.1
after epoch ``eval_epochs // 2 + 1``; with ``false`` this companion's first schedule,
``eval_epochs`` epochs with the drop one epoch earlier and momentum kept
(:class:`paperlib.train.loop.TrainSettings`). Then accuracy and fairness metrics
on the dataset's balanced test split. The same path serves synthetic sets,
random real subsets and the whole training set.
"""

from __future__ import annotations

import torch
from torch import Tensor

from paperlib.core.keys import derive_seed
from paperlib.core.params import Params
from paperlib.core.runtime import generator
from paperlib.data.container import BiasedDataset
from paperlib.data.protocols import PROTOCOLS
from paperlib.train.loop import TrainSettings, predict
from paperlib.train.metrics import classification_metrics, summarize
from paperlib.train.models import init_parameters, model_from_params
from paperlib.train.trainers import TRAINERS


def evaluate_set(images: Tensor, labels: Tensor, dataset: BiasedDataset, params: Params,
                 device: torch.device, tag: str = "eval") -> dict:
    """Train ``params.num_eval`` fresh models on ``(images, labels)`` and test each.

    ``images`` are normalised (as :meth:`BiasedDataset.normalized` gives). Model
    ``k`` draws its initialisation, shuffling and augmentation from
    ``derive_seed(params.seed, tag, k)``. Each model is trained by the registered ``params.eval_trainer``
    (:mod:`paperlib.train.trainers`). The architecture is ``params.eval_model`` when set
    (cross-architecture evaluation), else ``params.model``. Returns the
    per-model metrics under ``"runs"`` and their mean / std (see
    :func:`paperlib.train.metrics.summarize`).
    """
    settings = TrainSettings.from_params(params)
    images, labels = images.to(device), labels.to(device)
    test_images = dataset.normalized("test", device)
    test = dataset.test

    trainer = TRAINERS[params.eval_trainer]
    empty_cells = PROTOCOLS[params.protocol].empty_cell_accuracy  # how the protocol scores an empty test cell
    runs = []
    for k in range(params.num_eval):
        gen = generator(derive_seed(params.seed, tag, k))

        def new_model(gen: torch.Generator = gen) -> torch.nn.Module:  # every model of run k draws from gen
            return init_parameters(model_from_params(params, dataset.channels, dataset.num_classes,
                                                     dataset.image_size, params.eval_model or None), gen).to(device)

        label = f"{tag} model {k + 1}/{params.num_eval}"
        model = trainer.train(new_model, images, labels, settings, params, gen, label)
        predictions = predict(model, test_images)
        runs.append(classification_metrics(predictions, test.labels, test.attributes, test.aligned,
                                           dataset.num_classes, dataset.info.num_attributes, empty_cells))
    return {"runs": runs, **summarize(runs)}
