"""What a method's ``step`` may read and call: the distiller's state, as a protocol.

:class:`paperlib.distill.engine.Distiller` holds it; a method's ``step`` (``dm_step``, ``matching_step``, or one
registered from outside, :class:`paperlib.distill.methods.Method`) runs one iteration on it. Written down here so
that a new method needs no reading of the engine, and so that the steps do not import it (the engine imports
them).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from paperlib.core.params import Params
from paperlib.core.runtime import Compiled
from paperlib.distill.sampling import RealSampler
from paperlib.train.augment import DSA


@runtime_checkable
class DistillerState(Protocol):
    """One distillation's state. Every random draw of a step comes from ``gen``."""

    params: Params
    k: int  # classes
    ipc: int  # synthetic images per class
    gen: torch.Generator
    net: nn.Module  # the matching network: a step re-draws it (init_parameters(net, gen)) as it needs
    embed: Compiled  # net.embed, compiled when the run asks for it (DM's forward passes)
    forward: Compiled  # net itself, likewise (the network's trainings; gradient matching's real side)
    syn: Tensor  # the synthetic images, class-major [K * ipc, C, H, W], being learnt
    sampler: RealSampler  # draws the real batches (its ``batch``: B real images per class)
    dsa: DSA | None  # siamese augmentation, None when the method or the run turns it off
    real_classes: Tensor  # each real image's class in a batch from real_batch(), on the host
    syn_classes: Tensor  # each synthetic image's class, on the host
    autocast: torch.autocast  # the run's precision (bf16 or none) for the matching passes
    outer_loop: int  # gradient matching's loops (the IPC's default when the run leaves them at 0)
    inner_loop: int

    def real_batch(self) -> tuple[Tensor, Tensor]:
        """The next real batch, class-major ``[K * B, ...]`` on the device, and its target's ``[K, J, B]``
        aggregation matrix."""

    def update_images(self, loss: Tensor) -> None:
        """One optimiser step of ``syn`` on ``loss``."""

    def train_network(self, epochs: int, lr: float, batch: int, lr_name: str) -> None:
        """Train ``net`` on the current synthetic set (``lr_name``: the setting of ``lr``, named if it diverges)."""
