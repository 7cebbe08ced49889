"""Vectorised, seeded building blocks for biased datasets.

Two steps make every spurious-correlation dataset here:
:func:`assign_attributes` decides each sample's attribute (exact ratios per
class), and a *renderer* paints grayscale images with that attribute
(foreground colour, background colour or texture). Renderers take float
grayscale images in [0, 1] of shape ``[N, 1, H, W]`` and return ``[N, 3, H, W]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from paperlib.data.container import rank_within_cells

# Learning-from-Failure's Colored MNIST mean colours, classes 0..9 (Nam et al., 2020).
LFF_COLOURS = (
    (0.984, 0.313, 0.169), (0.991, 0.916, 0.352), (0.673, 0.461, 0.580), (0.783, 0.832, 0.601),
    (0.088, 0.778, 0.982), (0.321, 0.961, 0.446), (0.025, 0.236, 0.759), (0.555, 0.102, 0.762),
    (0.208, 0.393, 0.019), (0.834, 0.202, 0.267),
)
# Colour-noise standard deviation for severity 1..5 (Learning from Failure).
LFF_SEVERITY_STD = (0.05, 0.02, 0.01, 0.005, 0.002)

# This companion's own colours (matplotlib's tab10 hues): ten well-separated colours for its clean
# construction of paper B's presets (protocol=companion) and for BG-FMNIST's textures. The official FairDD
# palette (ReBias's) is paperlib.data.protocols.FAIRDD_PALETTE.
DISTINCT_COLOURS = (
    (0.122, 0.467, 0.706), (1.000, 0.498, 0.055), (0.173, 0.627, 0.173), (0.839, 0.153, 0.157),
    (0.580, 0.404, 0.741), (0.549, 0.337, 0.294), (0.890, 0.467, 0.761), (0.498, 0.498, 0.498),
    (0.737, 0.741, 0.133), (0.090, 0.745, 0.812),
)

# Pixels >= 128 (of 255) are the digit, the rest background (FairDD's threshold).
FOREGROUND_THRESHOLD = 128 / 255


def assign_attributes(labels: Tensor, aligned_fraction: float, num_attributes: int,
                      generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Give each sample an attribute so that, within every class ``c``, exactly
    ``round(aligned_fraction * n_c)`` samples (chosen at random) get attribute
    ``c`` and the rest are spread evenly (counts differ by at most one) over the
    other attributes.

    ``aligned_fraction = 1 / num_attributes`` gives a balanced split: every
    (class, attribute) group holds the same number of samples, up to one.
    Returns ``(attributes, aligned)``.
    """
    n = labels.shape[0]
    num_classes = int(labels.max()) + 1 if n else 0
    by_class, rank = rank_within_cells(labels, generator)  # each class's samples in random order
    class_sizes = torch.bincount(labels, minlength=num_classes)
    sorted_labels = labels[by_class]
    n_aligned = torch.round(class_sizes.double() * aligned_fraction).long()
    is_aligned = rank < n_aligned[sorted_labels]
    others = num_attributes - 1
    conflict_rank = rank - n_aligned[sorted_labels]
    # Conflicting samples cycle over the other attributes c+1, c+2, ... (mod A).
    shifted = (sorted_labels + 1 + conflict_rank.remainder(max(others, 1))) % num_attributes
    sorted_attr = torch.where(is_aligned, sorted_labels % num_attributes, shifted)
    attributes = torch.empty(n, dtype=torch.long)
    attributes[by_class] = sorted_attr
    aligned = attributes == labels % num_attributes
    return attributes, aligned


def _palette(colours) -> Tensor:
    return torch.tensor(colours, dtype=torch.float32)


def colour_noise_digits(gray: Tensor, attributes: Tensor, severity: int,
                        generator: torch.Generator) -> Tensor:
    """Learning-from-Failure colouring: ``clamp(m_a + N(0,1) * s, 0, 1) * digit``.

    One colour draw per image; ``s`` is set by ``severity`` (1..5).
    """
    std = LFF_SEVERITY_STD[severity - 1]
    noise = torch.randn(attributes.shape[0], 3, generator=generator) * std
    colours = (_palette(LFF_COLOURS)[attributes] + noise).clamp(0.0, 1.0)
    return colours[:, :, None, None] * gray


def colour_foreground(gray: Tensor, attributes: Tensor, binarize: bool) -> Tensor:
    """FairDD FG: the object takes the colour. ``binarize``: pixels >= 128 take
    the full colour and the rest are black (C-MNIST); otherwise the colour is
    scaled by the pixel intensity (C-FMNIST)."""
    colours = _palette(DISTINCT_COLOURS)[attributes][:, :, None, None]
    shade = (gray >= FOREGROUND_THRESHOLD).float() if binarize else gray
    return colours * shade


def colour_background(gray: Tensor, attributes: Tensor) -> Tensor:
    """FairDD BG: the object (pixels >= 128) is black, the background coloured."""
    colours = _palette(DISTINCT_COLOURS)[attributes][:, :, None, None]
    return colours * (gray < FOREGROUND_THRESHOLD).float()


def textured_backgrounds(attributes: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """Ten coloured stripe textures, one per attribute, ``[N, 3, size, size]``.

    Background ``b`` is colour ``b`` of :data:`DISTINCT_COLOURS` modulated by a
    sinusoidal grating at angle ``18 * b`` degrees with 3 or 5 cycles per image
    (alternating); the phase is random per image, so the texture varies while
    its colour and orientation identify the background type.
    """
    n = attributes.shape[0]
    angle = attributes.double() * math.pi / 10
    cycles = torch.where(attributes % 2 == 0, 3.0, 5.0).double()
    phase = torch.rand(n, generator=generator, dtype=torch.float64) * 2 * math.pi
    coords = torch.arange(size, dtype=torch.float64) / size
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    along = u[None] * torch.cos(angle)[:, None, None] + v[None] * torch.sin(angle)[:, None, None]
    wave = torch.sin(2 * math.pi * cycles[:, None, None] * along + phase[:, None, None])
    shade = (0.6 + 0.4 * wave).float()[:, None]
    return _palette(DISTINCT_COLOURS)[attributes][:, :, None, None] * shade


def composite_on_background(gray: Tensor, background: Tensor) -> Tensor:
    """Paste a grayscale object over a background.

    Opacity ramps from 0 at intensity 0 to 1 at intensity >= 0.15, so the
    object's dark regions still hide the background behind it.
    """
    alpha = (gray / 0.15).clamp(0.0, 1.0)
    return alpha * gray + (1.0 - alpha) * background


def grayscale(images: Tensor) -> Tensor:
    """uint8 RGB ``[N, 3, H, W]`` to gray, repeated to three channels (FairDD's CIFAR10-S).

    ITU-R 601 luma ``0.299 R + 0.587 G + 0.114 B``, rounded: the weights of Pillow's
    ``convert("L")`` and torchvision's ``Grayscale``.
    """
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    luma = (images.float() * weights).sum(dim=1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    return luma.expand(-1, 3, -1, -1).contiguous()
