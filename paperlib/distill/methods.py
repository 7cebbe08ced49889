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

from paperlib.core.errors import PaperlibError
from paperlib.core.keys import derive_seed
from paperlib.core.params import Params
from paperlib.core.registry import Registry
from paperlib.core.runtime import generator
from paperlib.data.container import BiasedDataset
from paperlib.distill.dc import matching_step
from paperlib.distill.dm import dm_step
from paperlib.distill.init import real_per_class
from paperlib.distill.state import DistillerState

# Parameters every distillation method reads (a method registered from outside starts its ``uses`` from one of
# these: they put its IPC, target and iterations in its sets' keys); DM adds the layout of its embedding passes
# (channels-last was measured faster there) and the optional warm start of its network, gradient matching its
# loops (it runs NCHW in small chunks, measured faster on the CPU: docs/performance.md).
DISTILL_USES = ("ipc", "num_distill", "distill_run", "target", "iterations", "batch_real", "lr_img", "momentum_img",
                "init", "sampling", "precision")
DM_USES = (*DISTILL_USES, "channels_last", "warm_start_epochs", "warm_start_lr", "warm_start_batch", "dm_distance")
MATCHING_USES = (*DISTILL_USES, "outer_loop", "inner_loop", "lr_net", "inner_batch")
# The batch of the networks trained on the synthetic set inside distillation; 0 takes eval_batch, as the official
# code's one batch_train does (written out, so the distilled set's key holds the value used).
_TRAINING_BATCHES = ("inner_batch", "warm_start_batch")


@dataclass(frozen=True)
class Method:
    """One way to make the training set.

    A distilling method has a ``step`` (one iteration of the engine), ``augment`` (siamese DSA inside
    matching), the papers' ``iterations`` and image learning rate ``lr_img(ipc)``; every method has the
    evaluation protocol of the official code (``eval_epochs``, ``eval_augment``); the others ``select``
    training-split indices (``None``: all of them) and are the baselines a distilled set is compared with,
    ``whole_data`` marking the one that trains on every image. ``display_name`` is how tables and figures name
    the set it makes (:func:`paperlib.report.styles.distilled_set_name`).
    """

    uses: tuple[str, ...]
    step: Callable[[DistillerState], Tensor] | None = None  # one iteration: reads and updates the state
    augment: bool = False
    iterations: int = 0
    lr_img: Callable[[int], float] | None = None
    select: Callable[[BiasedDataset, Params], Tensor | None] | None = None
    whole_data: bool = False
    eval_epochs: int = 1000
    eval_augment: str = "dsa"  # "none": evaluation models train without augmentation (DC's protocol)
    init: str = "real"  # how the official code starts the synthetic set (main_DM.py and FairDD's main_DC.py: real)
    display_name: str | None = None  # None: the registered name
    version: int = 0  # bump when its output changes: the cache then recomputes what was made with it
    needs_dsa: bool = False  # the method is named for DSA: with dsa=false it would be another method under its name

    def __post_init__(self) -> None:
        if self.step is None:
            return
        missing = [name for name in DISTILL_USES if name not in self.uses]
        if missing:  # runs at another IPC or target would share this method's cached sets
            raise PaperlibError(f"a distilling method's uses must hold every parameter the engine reads; "
                                f"{', '.join(missing)} missing: start from DM_USES, MATCHING_USES or DISTILL_USES "
                                "(paperlib.distill.methods)")
        if self.iterations < 1 or self.lr_img is None:
            raise PaperlibError(f"a distilling method needs its default iterations (>= 1, got {self.iterations}) "
                                "and lr_img, the default image learning rate as a function of ipc")

    @property
    def distils(self) -> bool:
        """Whether the method distils a synthetic set (it has an engine ``step``)."""
        return self.step is not None

    def check(self, params: Params) -> None:
        """Refuse a run that would not be the one it is named: a method named for DSA with ``dsa=false``."""
        if self.needs_dsa and not params.dsa:
            others = [name for name in METHODS.where(distils=True) if not METHODS[name].needs_dsa]
            raise PaperlibError(f"method {params.method!r} is named for DSA, which dsa=false turns off (the run would "
                                f"be another method under its name); set dsa=true, or choose {' or '.join(others)}")

    def defaults(self, params: Params) -> dict[str, Any]:
        """The official values for ``eval_epochs=0``, ``eval_augment=""``, ``iterations=0``, ``lr_img=0``,
        ``init=""`` and a training batch of 0."""
        changes: dict[str, Any] = {}
        if params.eval_epochs == 0:
            changes["eval_epochs"] = self.eval_epochs
        if not params.eval_augment:  # dsa=false turns augmentation off everywhere, so the evaluation too
            changes["eval_augment"] = self.eval_augment if params.dsa else "none"
        if not self.distils:
            return changes
        if params.iterations == 0:
            changes["iterations"] = self.iterations
        if params.lr_img == 0:
            changes["lr_img"] = self.lr_img(params.ipc)
        if not params.init:
            changes["init"] = self.init
        for name in _TRAINING_BATCHES:
            if name in self.uses and getattr(params, name) == 0:
                changes[name] = params.eval_batch
        return changes


def run_tags(params: Params) -> tuple[int, ...]:
    """The seed tags of a run's training set: none for the first of ``num_distill`` (as before runs were
    repeated), its index for the others."""
    return (params.distill_run,) if params.distill_run else ()


def _random_subset(dataset: BiasedDataset, params: Params) -> Tensor:
    gen = generator(derive_seed(params.seed, "random", *run_tags(params)))
    return real_per_class(dataset, params.ipc, gen)


METHODS: Registry[Method] = Registry("method", field="method")
METHODS.register("whole", Method(uses=(), select=lambda dataset, params: None, whole_data=True,
                                 display_name="whole data"))
METHODS.register("random", Method(uses=("ipc", "num_distill", "distill_run"), select=_random_subset,
                                  display_name="random real"))
METHODS.register("dm", Method(DM_USES, dm_step, augment=True, iterations=20000,
                              lr_img=lambda ipc: 10.0 if ipc >= 100 else 1.0, display_name="DM"))
# FairDD's main_DC.py (paper B's DC numbers; --method DC or DSA) starts from real images (its --init defaults to
# real and scripts/main_DC.sh passes none; DatasetCondensation's main.py defaults to noise, but no paper number
# came from it) and evaluates DC's sets for 300 epochs without augmentation (get_daparam: strategy 'none').
METHODS.register("dc", Method(MATCHING_USES, matching_step, iterations=1000, lr_img=lambda ipc: 0.1,
                              eval_epochs=300, eval_augment="none", display_name="DC"))
METHODS.register("dsa", Method(MATCHING_USES, matching_step, augment=True, iterations=1000, lr_img=lambda ipc: 0.1,
                               display_name="DSA", needs_dsa=True))


def distilling_methods() -> tuple[str, ...]:
    """The registered methods that run the distillation engine."""
    return METHODS.where(distils=True)
