"""What an evaluation model is trained on: the registry of ``method`` values.

``whole`` (the entire biased training split) and ``random`` (``ipc`` random real images per class) need no
distillation; ``dm`` (Distribution Matching), ``dc`` (gradient matching) and ``dsa`` (gradient matching with
siamese augmentation) run the engine (:mod:`paperlib.distill.engine`) with their ``step``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from paperlib.core.params import Params, derive_seed
from paperlib.core.registry import Registry
from paperlib.core.runtime import generator
from paperlib.data.container import BiasedDataset, sample_per_class
from paperlib.distill.dc import matching_step
from paperlib.distill.dm import dm_step

# Parameters every distillation method reads; gradient matching adds its loops.
_DISTILL_USES = ("ipc", "target", "iterations", "batch_real", "lr_img", "momentum_img", "init", "sampling",
                 "precision", "channels_last")
_MATCHING_USES = (*_DISTILL_USES, "outer_loop", "inner_loop", "lr_net")


@dataclass(frozen=True)
class Method:
    """One way to make the training set.

    A distilling method has a ``step`` (one iteration of the engine), ``augment`` (siamese DSA inside
    matching), the papers' ``iterations`` and image learning rate ``lr_img(ipc)``; the others ``select``
    training-split indices (``None``: all of them) and are the baselines a distilled set is compared with,
    ``whole_data`` marking the one that trains on every image.
    """

    uses: tuple[str, ...]
    step: Callable[[Any], float] | None = None
    augment: bool = False
    iterations: int = 0
    lr_img: Callable[[int], float] | None = None
    select: Callable[[BiasedDataset, Params], Tensor | None] | None = None
    whole_data: bool = False

    @property
    def distils(self) -> bool:
        return self.step is not None

    def defaults(self, params: Params) -> dict[str, Any]:
        """The papers' values for ``iterations=0`` and ``lr_img=0``."""
        if not self.distils:
            return {}
        changes: dict[str, Any] = {}
        if params.iterations == 0:
            changes["iterations"] = self.iterations
        if params.lr_img == 0:
            changes["lr_img"] = self.lr_img(params.ipc)
        return changes


def _random_subset(dataset: BiasedDataset, params: Params) -> Tensor:
    return sample_per_class(dataset.train.labels, params.ipc, generator(derive_seed(params.seed, "random")))


METHODS: Registry[Method] = Registry("method", field="method")
METHODS.register("whole", Method(uses=(), select=lambda dataset, params: None, whole_data=True))
METHODS.register("random", Method(uses=("ipc",), select=_random_subset))
METHODS.register("dm", Method(_DISTILL_USES, dm_step, augment=True, iterations=20000,
                              lr_img=lambda ipc: 10.0 if ipc >= 100 else 1.0))
METHODS.register("dc", Method(_MATCHING_USES, matching_step, iterations=1000, lr_img=lambda ipc: 0.1))
METHODS.register("dsa", Method(_MATCHING_USES, matching_step, augment=True, iterations=1000, lr_img=lambda ipc: 0.1))


def distilling_methods() -> tuple[str, ...]:
    """The registered methods that run the distillation engine."""
    return METHODS.where(distils=True)
