"""Image grids: tile a batch of images into one picture, and write it as a PNG (atomically)."""

from __future__ import annotations

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
