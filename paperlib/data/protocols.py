"""Protocols: how paper B's colour presets (``cmnist_fg/bg``, ``cfmnist_fg/bg``) are built and scored.

``protocol=fairdd`` (their default) is the official FairDD code's construction, reproduced exactly: ReBias's
Biased-MNIST palette; every 28 px image zero-padded to 32 px (4 px on top and on the left) *before* colouring,
so in BG the border is coloured too; per class the first ``int(n * rho)`` shuffled images take the class's
colour and the rest are cut into chunks of ``ceil(rest / 9)`` given the 9 other colours in a shuffled order;
FG / BG rules on the uint8 pixels, including C-FMNIST (BG) *as coded*: its start colour is not divided by 255,
so every pixel but pure black wraps around in the uint8 cast and the object is garbled (paper B's C-FMNIST (BG)
numbers come from those images); normalisation mean 0.5 / std 0.5; an empty (class, group) test cell counts as
accuracy 0 in DEO; UTKFace tested on 100 images per (age bin, race) cell, trained on the rest.

``protocol=companion`` is this companion's own, cleaner construction: ten well-separated colours at 28 px, exact
ratios per class, the training split's channel statistics, C-FMNIST (BG) built as C-MNIST (BG) (the garment's
pixels >= 128 black, every other pixel coloured: a silhouette, without the uint8 wrap-around), empty cells
left out of DEO. Every table names the protocol of its rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from paperlib.core.registry import Registry
from paperlib.data import bias
from paperlib.data.container import channel_stats, rank_within_cells

# ReBias's Biased-MNIST colours (FairDD's COLOUR_MAP), RGB 0-255, attribute 0-9.
FAIRDD_PALETTE = ((255, 0, 0), (255, 128, 0), (255, 255, 0), (255, 255, 128), (0, 255, 0), (0, 255, 255),
                  (0, 0, 255), (128, 0, 255), (255, 0, 255), (255, 255, 255))
FAIRDD_PAD = 4  # px of zeros added on top and on the left (28 -> 32 px), before colouring
THRESHOLD = 128  # uint8: pixels >= 128 are the object (C-MNIST FG / BG)

# uint8 gray [N, 1, H, W] and attributes [N] -> uint8 RGB [N, 3, H, W]
Rule = Callable[[Tensor, Tensor], Tensor]


def fairdd_assign(labels: Tensor, rho: float, num_attributes: int,
                  generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """FairDD's split, vectorised: in each class (in random order) the first ``int(n * rho)`` images get the
    class's attribute, the rest chunks of ``ceil((n - int(n * rho)) / (A - 1))`` images, one chunk per other
    attribute in a random order (the last chunk is smaller; with few images some attributes get none).
    Returns ``(attributes, aligned)``."""
    order, rank = rank_within_cells(labels, generator)
    num_classes = int(labels.max()) + 1
    sizes = torch.bincount(labels, minlength=num_classes)
    correlated = torch.floor(sizes.double() * rho).long()  # Python's int(n * rho), in float64 as there
    others = num_attributes - 1
    chunk = torch.div(sizes - correlated + others - 1, others, rounding_mode="floor").clamp_min(1)
    shuffled = torch.rand(num_classes, others, generator=generator).argsort(dim=1)  # the other colours' order
    other_attributes = (torch.arange(num_classes)[:, None] + 1 + shuffled) % num_attributes
    cls = labels[order]
    is_aligned = rank < correlated[cls]
    which = torch.div(rank - correlated[cls], chunk[cls], rounding_mode="floor").clamp(0, others - 1)
    attributes = torch.empty_like(labels)
    attributes[order] = torch.where(is_aligned, cls % num_attributes, other_attributes[cls, which])
    return attributes, attributes == labels % num_attributes


def _uint8_cast(values: Tensor) -> Tensor:
    """NumPy / torch's float -> uint8 cast on x86 as FairDD ran it: truncate, then keep the low byte (wraps)."""
    return values.to(torch.int64).remainder(256).to(torch.uint8)


def _fairdd_colours(attributes: Tensor) -> Tensor:
    """Each image's colour, float32 RGB 0-255 ``[N, 3, 1, 1]``."""
    return torch.tensor(FAIRDD_PALETTE, dtype=torch.float32)[attributes][:, :, None, None]


def fairdd_fg_binary(gray: Tensor, attributes: Tensor) -> Tensor:
    """C-MNIST (FG): pixels >= 128 take the colour, the rest are black."""
    return ((gray >= THRESHOLD) * _fairdd_colours(attributes)).to(torch.uint8)


def fairdd_bg_binary(gray: Tensor, attributes: Tensor) -> Tensor:
    """C-MNIST (BG): pixels < 128 (the padded border included) take the colour, the digit is black."""
    return ((gray < THRESHOLD) * _fairdd_colours(attributes)).to(torch.uint8)


def fairdd_fg_shaded(gray: Tensor, attributes: Tensor) -> Tensor:
    """C-FMNIST (FG): ``x / 255 * colour`` in float32, truncated to uint8."""
    end = _fairdd_colours(attributes) / 255.0
    return _uint8_cast((gray.float() / 255.0 * end) * 255)


def fairdd_bg_shaded_as_coded(gray: Tensor, attributes: Tensor) -> Tensor:
    """C-FMNIST (BG) as FairDD codes it: ``255 + d * (colour / 255 - 255)`` with ``d = (255 - x) / 255``, times
    255, cast to uint8 (float32 throughout). Pure black (x = 0) gets the colour; every other pixel wraps around,
    e.g. red at x = 200 -> (111, 56, 56)."""
    end = _fairdd_colours(attributes) / 255.0
    d = (255.0 - gray.float()) / 255.0
    return _uint8_cast((255.0 + d * (end - 255.0)) * 255)


def _companion(render: Callable[[Tensor, Tensor], Tensor]) -> Rule:
    """One of :mod:`paperlib.data.bias`'s renderers (float images in [0, 1]), rounded to uint8."""
    def rule(gray: Tensor, attributes: Tensor) -> Tensor:
        return render(gray.float().div_(255.0), attributes).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return rule


@dataclass(frozen=True)
class Protocol:
    """How a colour preset is built (``assign``, ``pad``, ``rules``, ``palette``), normalised (``normalization``:
    ``None`` for the training split's statistics) and scored (``empty_cell_accuracy``: what an empty
    (class, group) test cell counts as in DEO; ``None`` leaves it out)."""

    palette: tuple[tuple[float, float, float], ...]  # RGB in [0, 1] per attribute, as figures show it
    assign: Callable[[Tensor, float, int, torch.Generator], tuple[Tensor, Tensor]]
    rules: Mapping[str, Rule]  # ColourPreset.rule -> its renderer (each protocol renders every preset's rule)
    pad: int = 0
    normalization: tuple[float, float] | None = None
    empty_cell_accuracy: float | None = None
    test_per_cell: int | None = None  # UTKFace (no test split of its own): test images per (class, group) cell
    version: int = 1

    def render(self, rule: str, gray: Tensor, attributes: Tensor) -> Tensor:
        """uint8 gray ``[N, 1, 28, 28]`` -> uint8 RGB ``[N, 3, 28 + pad, 28 + pad]`` with rule ``rule``."""
        padded = F.pad(gray, (self.pad, 0, self.pad, 0)) if self.pad else gray
        return self.rules[rule](padded, attributes)

    def channel_stats(self, images: Tensor) -> tuple[list[float], list[float]]:
        """Per-channel mean and std the models normalise with."""
        if self.normalization is None:
            return channel_stats(images)
        mean, std = self.normalization
        return [mean] * images.shape[1], [std] * images.shape[1]


PROTOCOLS: Registry[Protocol] = Registry("protocol", field="protocol")
PROTOCOLS.register("fairdd", Protocol(
    palette=tuple(tuple(c / 255 for c in colour) for colour in FAIRDD_PALETTE), assign=fairdd_assign, pad=FAIRDD_PAD,
    normalization=(0.5, 0.5), empty_cell_accuracy=0.0, test_per_cell=100,
    rules={"fg_binary": fairdd_fg_binary, "bg_binary": fairdd_bg_binary, "fg_shaded": fairdd_fg_shaded,
           "bg_shaded": fairdd_bg_shaded_as_coded}))
PROTOCOLS.register("companion", Protocol(
    palette=bias.DISTINCT_COLOURS, assign=bias.assign_attributes,
    rules={"fg_binary": _companion(partial(bias.colour_foreground, binarize=True)),
           "bg_binary": _companion(bias.colour_background),
           "fg_shaded": _companion(partial(bias.colour_foreground, binarize=False)),
           "bg_shaded": _companion(bias.colour_background)}))
