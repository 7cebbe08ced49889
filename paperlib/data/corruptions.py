"""Image corruptions for paper A's corruption bias (Corrupted CIFAR-10), in plain torch.

Every corruption takes a float batch ``[N, 3, H, W]`` in [0, 1], a severity 1..5 and an
explicit ``torch.Generator`` (all random draws come from it, on the CPU), and returns a new
batch of the same shape in [0, 1]. Nothing calls ImageMagick, Wand, OpenCV or reads image
files: fog and frost are generated procedurally, and JPEG is the lossy part of
baseline JPEG written with tensors.

The types follow Hendrycks & Dietterich's ImageNet-C / CIFAR-10-C families (noise, blur,
weather, digital). Their constants were chosen for 224 px and 32 px photographs; ours are
re-calibrated so that (a) severity 1 is already visible on 28-32 px images and (b) a higher
severity changes the image more (the mean absolute difference to the clean image grows
strictly with severity; ``tests/test_corruptions.py`` checks it). Spatial constants are in
pixels of a 32 px image and scale with the image size. Random patterns are drawn the same
way at every severity, so with the same generator seed a higher severity is the same
pattern, stronger.

:data:`CORRUPTIONS` is the palette of the corruption-bias presets (class ``i`` is tied to
corruption ``i``). ``saturate`` is deliberately absent: it leaves gray images unchanged, and
the presets also run on grayscale sources (MNIST, Fashion-MNIST).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from paperlib.core.errors import PaperlibError

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
# Kinds whose output depends on the generator (the others are deterministic filters).
RANDOM_CORRUPTIONS: frozenset[str] = frozenset(
    {"gaussian_noise", "impulse_noise", "motion_blur", "fog", "frost"}
)

# --- severity tables, index = severity - 1 -------------------------------------------------
GAUSSIAN_NOISE_STD = (0.04, 0.07, 0.10, 0.14, 0.20)  # added N(0, std^2) per pixel and channel
IMPULSE_NOISE_AMOUNT = (0.01, 0.02, 0.04, 0.07, 0.11)  # share of values set to 0 or 1
DEFOCUS_BLUR_RADIUS = (0.75, 1.0, 1.5, 2.0, 2.75)  # disk radius, px at 32 px
MOTION_BLUR_LENGTH = (3.0, 4.5, 6.0, 8.0, 10.0)  # streak length, px at 32 px; angle in [-45, 45] deg
FOG_STRENGTH = (0.3, 0.55, 0.8, 1.1, 1.5)  # (x + s * fog) / (1 + s)
FOG_DECAY = (2.2, 2.1, 2.0, 1.85, 1.7)  # amplitude ratio between octaves: lower = patchier fog
FROST_OPACITY = (0.3, 0.4, 0.5, 0.6, 0.75)  # blend towards the ice layer (on the veins)
BRIGHTNESS_SHIFT = (0.1, 0.2, 0.3, 0.4, 0.5)  # added to the HSV value channel
CONTRAST_FACTOR = (0.75, 0.5, 0.4, 0.3, 0.15)  # (x - mean) * factor + mean
PIXELATE_BLOCK = (2, 3, 4, 5, 6)  # side of the square blocks, px at 28-32 px (x2 at 64 px, ...)
JPEG_QUALITY = (40, 25, 15, 10, 6)  # IJG quality 1..100

_REFERENCE_SIZE = 32  # the spatial constants above are in pixels of a 32 px image
_ICE = (0.86, 0.93, 1.0)  # frost tint: bluish white

# The standard JPEG quantisation tables (ITU-T T.81, Annex K), row-major 8x8.
_JPEG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
_JPEG_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *(99,) * 32,
)


# --------------------------------------------------------------------------- helpers


def _rand(shape: Sequence[int], gen: torch.Generator, like: Tensor) -> Tensor:
    # Draw on the CPU (where the generator lives), then move: the same numbers on any device.
    return torch.rand(*shape, generator=gen).to(device=like.device, dtype=like.dtype)


def _randn(shape: Sequence[int], gen: torch.Generator, like: Tensor) -> Tensor:
    return torch.randn(*shape, generator=gen).to(device=like.device, dtype=like.dtype)


def _pixels(x: Tensor, length: float) -> float:
    """A length given in pixels of a 32 px image, in pixels of ``x``."""
    return length * min(x.shape[-2:]) / _REFERENCE_SIZE


def _filter(x: Tensor, kernels: Tensor) -> Tensor:
    """Convolve each image with its own 2-d kernel (``[N, k, k]``, or ``[k, k]`` for all).

    One grouped convolution over all images and channels; edges are replicated so that a
    blur does not darken the border.
    """
    n, c, h, w = x.shape
    if kernels.dim() == 2:
        kernels = kernels.expand(n, -1, -1)
    k = kernels.shape[-1]
    weight = kernels.to(x).repeat_interleave(c, dim=0).unsqueeze(1)  # [N*C, 1, k, k]
    padded = F.pad(x.reshape(1, n * c, h, w), (k // 2,) * 4, mode="replicate")
    return F.conv2d(padded, weight, groups=n * c).view(n, c, h, w)


def _smooth_noise(n: int, h: int, w: int, gen: torch.Generator, like: Tensor, decay: float) -> Tensor:
    """Multi-octave value noise ``[N, 1, H, W]`` in [0, 1] (a stand-in for the plasma fractal).

    Octave grids of 2, 4, 8, ... cells up to the image size, each bilinearly upsampled;
    octave ``o`` has amplitude ``decay^-o`` (a lower decay gives a rougher field). The random
    draws do not depend on ``decay``.
    """
    total = torch.zeros(n, 1, h, w, device=like.device, dtype=like.dtype)
    cells, amplitude = 2, 1.0
    while cells <= max(h, w):
        grid = _rand((n, 1, cells + 1, cells + 1), gen, like)
        total += amplitude * F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=True)
        cells, amplitude = cells * 2, amplitude / decay
    low = total.amin(dim=(2, 3), keepdim=True)
    high = total.amax(dim=(2, 3), keepdim=True)
    return (total - low) / (high - low).clamp_min(1e-6)


def _colour(rgb: tuple[float, float, float], like: Tensor) -> Tensor:
    return torch.tensor(rgb, device=like.device, dtype=like.dtype).view(1, 3, 1, 1)


# --------------------------------------------------------------------------- noise


def gaussian_noise(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    """Additive Gaussian noise, independent per pixel and channel."""
    return x + GAUSSIAN_NOISE_STD[severity - 1] * _randn(x.shape, gen, x)


def impulse_noise(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    """Salt and pepper: a share of the values becomes 0 or 1 (half each).

    One uniform draw per value; a higher severity widens both tails, so the corrupted
    values of severity ``s`` are a subset of those of ``s + 1``.
    """
    half = IMPULSE_NOISE_AMOUNT[severity - 1] / 2
    u = _rand(x.shape, gen, x)
    return torch.where(u < half, torch.ones_like(x), torch.where(u > 1 - half, torch.zeros_like(x), x))


# --------------------------------------------------------------------------- blur


def defocus_blur(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    """An out-of-focus lens: convolution with an anti-aliased disk."""
    radius = _pixels(x, DEFOCUS_BLUR_RADIUS[severity - 1])
    reach = math.ceil(radius + 0.5)
    t = torch.arange(-reach, reach + 1, dtype=torch.float64)
    distance = torch.sqrt(t[:, None] ** 2 + t[None, :] ** 2)
    disk = (radius + 0.5 - distance).clamp(0, 1)  # partial weight for pixels the rim crosses
    return _filter(x, (disk / disk.sum()).float())


def motion_blur(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    """Camera shake: a straight streak of the given length, at a random angle per image."""
    length = _pixels(x, MOTION_BLUR_LENGTH[severity - 1])
    angle = (torch.rand(x.shape[0], generator=gen, dtype=torch.float64) - 0.5) * (math.pi / 2)
    reach = math.ceil(length / 2)
    t = torch.arange(-reach, reach + 1, dtype=torch.float64)
    dy, dx = torch.meshgrid(t, t, indexing="ij")
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    along = dx * cos + dy * sin
    across = -dx * sin + dy * cos
    # A one-pixel-wide line segment, anti-aliased across and at both ends.
    kernel = (1 - across.abs()).clamp(0, 1) * (length / 2 + 0.5 - along.abs()).clamp(0, 1)
    return _filter(x, (kernel / kernel.sum(dim=(1, 2), keepdim=True)).float())


# --------------------------------------------------------------------------- weather


def fog(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    """Patchy gray haze over the image (ImageNet-C's formula, with multi-octave noise)."""
    strength = FOG_STRENGTH[severity - 1]
    n, _, h, w = x.shape
    haze = _smooth_noise(n, h, w, gen, x, FOG_DECAY[severity - 1])
    # Renormalise so the result stays in [0, 1] while contrast drops as the fog thickens.
    return (x + strength * haze) / (1 + strength)


def frost(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    """Ice on the lens: a bluish-white layer of thin crystal veins over a light frosting.

    The veins are the level set ``noise = 1/2`` of rough multi-octave noise, sharpened
    (``(1 - |2 noise - 1|)^6``); they are opaque, the frosting between them is a third as
    opaque. The severity sets the overall opacity.
    """
    n, _, h, w = x.shape
    veins = (1 - (2 * _smooth_noise(n, h, w, gen, x, decay=1.3) - 1).abs()) ** 6
    opacity = FROST_OPACITY[severity - 1] * (0.35 + 0.65 * veins)
    return x + opacity * (_colour(_ICE, x) - x)


def brightness(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    """Brighter: the HSV value channel is raised, hue and saturation kept."""
    value = x.amax(dim=1, keepdim=True)
    brighter = (value + BRIGHTNESS_SHIFT[severity - 1]).clamp(0, 1)
    # Scaling RGB by V'/V keeps hue and saturation; a black pixel (V = 0) becomes gray V'.
    return torch.where(value > 0, x * brighter / value.clamp_min(1e-6), brighter.expand_as(x))


def contrast(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    """Lower contrast: every value is pulled towards the image's mean."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * CONTRAST_FACTOR[severity - 1] + mean


def pixelate(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    """Square blocks: each block of ``b x b`` pixels takes its mean colour.

    Whole blocks on a grid from the top-left corner (a resize by a non-integer factor would
    give uneven blocks, and a milder severity could then change the image more).
    """
    h, w = x.shape[-2:]
    block = PIXELATE_BLOCK[severity - 1] * max(1, round(min(h, w) / _REFERENCE_SIZE))
    padded = F.pad(x, (0, -w % block, 0, -h % block), mode="replicate")  # the last block may be partial
    means = F.avg_pool2d(padded, block)
    return means.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)[..., :h, :w]


def jpeg(x: Tensor, severity: int, gen: torch.Generator) -> Tensor:
    """JPEG compression artefacts: the lossy steps of baseline JPEG, batched.

    RGB -> YCbCr (JFIF), chroma subsampled 2x2 (4:2:0), 8x8 block DCT, quantisation with the
    standard tables scaled for the IJG quality, then the inverse. Entropy coding is lossless
    and therefore left out; the result matches an encoder up to its rounding and chroma
    upsampling details.
    """
    quality = JPEG_QUALITY[severity - 1]
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    h, w = x.shape[-2:]
    rgb = x.double() * 255
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    y = _jpeg_plane(y, _jpeg_table(_JPEG_LUMA, scale, x))
    chroma = F.avg_pool2d(F.pad(torch.cat([cb, cr], 1), (0, w % 2, 0, h % 2), mode="replicate"), 2)
    chroma = _jpeg_plane(chroma, _jpeg_table(_JPEG_CHROMA, scale, x))
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)[..., :h, :w]
    cb, cr = chroma[:, 0:1] - 128, chroma[:, 1:2] - 128
    out = torch.cat([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return (out.round().clamp(0, 255) / 255).to(x.dtype)  # a decoder writes 8-bit pixels


def _jpeg_table(base: tuple[int, ...], scale: float, like: Tensor) -> Tensor:
    table = torch.tensor(base, dtype=torch.float64, device=like.device).view(8, 8)
    return ((table * scale + 50) // 100).clamp(1, 255)


def _dct_matrix(device: torch.device) -> Tensor:
    k = torch.arange(8, dtype=torch.float64, device=device)
    m = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m  # orthonormal DCT-II: coefficients = M @ block @ M.T


def _jpeg_plane(plane: Tensor, table: Tensor) -> Tensor:
    """Quantise ``[N, C, H, W]`` planes (values 0..255) in 8x8 DCT blocks; same shape back."""
    n, c, h, w = plane.shape
    padded = F.pad(plane - 128, (0, -w % 8, 0, -h % 8), mode="replicate")  # encoders repeat the edge
    hb, wb = padded.shape[-2] // 8, padded.shape[-1] // 8
    blocks = padded.view(n, c, hb, 8, wb, 8).transpose(3, 4)  # [..., hb, wb, 8, 8]
    m = _dct_matrix(plane.device)
    coefficients = m @ blocks @ m.T
    quantised = torch.round(coefficients / table) * table
    restored = (m.T @ quantised @ m).transpose(3, 4).reshape(n, c, hb * 8, wb * 8)
    return restored[..., :h, :w] + 128


# --------------------------------------------------------------------------- public API

# The presets' palette, in a fixed order: class i <-> CORRUPTIONS[i].
_FUNCTIONS: dict[str, Callable[[Tensor, int, torch.Generator], Tensor]] = {
    "gaussian_noise": gaussian_noise, "impulse_noise": impulse_noise, "defocus_blur": defocus_blur,
    "motion_blur": motion_blur, "fog": fog, "frost": frost,
    "brightness": brightness, "contrast": contrast, "pixelate": pixelate, "jpeg": jpeg,
}
CORRUPTIONS: tuple[str, ...] = tuple(_FUNCTIONS)


def corrupt(images01: Tensor, kind: str, severity: int, generator: torch.Generator) -> Tensor:
    """Apply corruption ``kind`` at ``severity`` (1..5) to a batch of images in [0, 1].

    ``images01`` is float ``[N, 3, H, W]`` (``[N, 1, H, W]`` is repeated to three channels
    first); the result is a new float tensor ``[N, 3, H, W]`` in [0, 1] on the same device.
    All randomness comes from ``generator`` (a CPU generator), so the same seed gives the
    same output.
    """
    if kind not in _FUNCTIONS:
        raise PaperlibError(f"unknown corruption {kind!r}; choose one of: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise PaperlibError(f"corruption severity must be 1..5, got {severity!r}")
    if images01.dim() != 4 or images01.shape[1] not in (1, 3) or not images01.is_floating_point():
        raise PaperlibError(
            f"corrupt expects float images [N, 3, H, W] in [0, 1], got {images01.dtype} {tuple(images01.shape)}"
        )
    x = images01.expand(-1, 3, -1, -1) if images01.shape[1] == 1 else images01
    return _FUNCTIONS[kind](x, severity, generator).clamp(0, 1)


def corrupt_by_attribute(images01: Tensor, attributes: Tensor, severity: int, generator: torch.Generator,
                         kinds: Sequence[str] = CORRUPTIONS, chunk: int = 4096) -> Tensor:
    """Corrupt each image with ``kinds[attribute]``: the renderer of the corruption-bias presets.

    Images are processed kind by kind (in the order of ``kinds``) and in chunks of ``chunk``
    images to bound memory; for a given generator seed the result is fixed.
    """
    n, _, h, w = images01.shape
    out = torch.empty(n, 3, h, w, dtype=images01.dtype, device=images01.device)
    for a, kind in enumerate(kinds):
        index = torch.nonzero(attributes == a).flatten()
        for start in range(0, index.numel(), chunk):
            part = index[start:start + chunk]
            out[part] = corrupt(images01[part], kind, severity, generator)
    return out
