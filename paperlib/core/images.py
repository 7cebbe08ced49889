"""Image grids: tile a batch of images into one picture, write it as a PNG (atomically), and shrink a PNG
for display."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from paperlib.core.store import atomic_write


def image_grid(images01: Tensor, per_row: int, pad: int = 2) -> np.ndarray:
    """Tile ``[N, C, H, W]`` images in [0, 1] into one ``[rows*(H+pad), per_row*(W+pad), 3]`` uint8 array.

    Grayscale images are shown in gray; the background between tiles is white.
    """
    x = images01.detach().cpu().float().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    n, _, h, w = x.shape
    rows = math.ceil(n / per_row)
    canvas = torch.ones(rows * per_row, 3, h + pad, w + pad)
    canvas[:n, :, :h, :w] = x
    tiles = canvas.view(rows, per_row, 3, h + pad, w + pad).permute(0, 3, 1, 4, 2)
    return (tiles.reshape(rows * (h + pad), per_row * (w + pad), 3) * 255).round().byte().numpy()


def save_image_grid(images01: Tensor, path: str | Path, per_row: int, scale: int = 2) -> Path:
    """Write :func:`image_grid` as a PNG (nearest-neighbour upscaled by ``scale``), atomically."""
    grid = Image.fromarray(image_grid(images01, per_row))
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    with atomic_write(path) as tmp:
        grid.save(tmp, format="PNG")
    return Path(path)


def fit_width(png: bytes, max_width: int) -> bytes:
    """``png`` shrunk by the smallest whole factor that makes it at most ``max_width`` pixels wide, each new pixel
    the mean of its block (a grid written with :func:`save_image_grid`'s ``scale`` and shrunk by that factor comes
    back pixel for pixel; by a larger one, averaged rather than aliased); unchanged when it is narrow enough. A
    browser scales a wide image down anyway: shrinking it first keeps the stored notebook and the widget's
    messages small."""
    if max_width < 1:
        raise ValueError(f"max_width must be at least 1 pixel, got {max_width}")
    image = Image.open(io.BytesIO(png))
    factor = math.ceil(image.width / max_width)
    if factor <= 1:
        return png
    image = image.resize((math.ceil(image.width / factor), math.ceil(image.height / factor)), Image.BOX)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
