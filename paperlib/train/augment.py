"""Differentiable Siamese Augmentation (DSA).

A vectorised, explicitly seeded re-implementation of the augmentation used by
Dataset Condensation with DSA (Zhao & Bilen, 2021) and Distribution Matching
(Zhao & Bilen, 2023): the reference ``DiffAugment`` / ``ParamDiffAug`` of the
public DatasetCondensation code, strategy
``"color_crop_cutout_flip_scale_rotate"`` in mode ``'S'`` (each call samples
one of the listed ops).

Differences from the reference, none of which changes the arithmetic of an op
for given parameter values:

* randomness comes only from an explicit :class:`torch.Generator` (a CPU one);
  parameters are drawn on the CPU and then moved to the images' device, so a
  seed gives the same parameters on every device;
* the siamese mode is expressed with *groups*: samples of one group share one
  op and one parameter set, different groups draw independently, so a single
  call can augment every class of a distillation step at once;
* thetas are built with :func:`torch.stack` and crop / cutout use one gather /
  one comparison mask, with no Python loop over samples or groups.

Scale and rotate resample with ``align_corners=True`` as DatasetCondensation's
code; FairDD's copy (paper B's numbers) leaves torch's default, ``False``. On a
square image, scaling and rotating about the centre map pixel centres alike
under both, so the two agree up to rounding (~1e-5, tested).

Each op is a plain function of the images and explicit parameter tensors
(:func:`_scale`, :func:`_rotate`, :func:`_flip`, :func:`_brightness`,
:func:`_saturation`, :func:`_contrast`, :func:`_crop`, :func:`_cutout`), so
its numbers can be pinned independently of the sampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from paperlib.core.errors import PaperlibError
from paperlib.core.params import DSA_STRATEGY
from paperlib.core.registry import Registry
from paperlib.core.runtime import to_device

__all__ = ["DSA", "OPS", "DSAParams"]


@dataclass(frozen=True)
class DSAParams:
    """Hyper-parameters of DSA; the defaults are the reference ``ParamDiffAug``.

    Attributes:
        strategy: ``'_'``-joined names of :data:`OPS` (default: all of them, as the
            reference); ``"none"`` (or ``""``) means the identity.
        scale: scale factors are drawn from ``U[1/scale, scale]`` (per axis).
        rotate: rotation angles are drawn from ``U[-rotate, rotate]`` degrees.
        crop_pad: maximal translation as a fraction of the image side.
        cutout: side of the cutout square as a fraction of the image side.
        brightness: brightness shift is ``(U[0,1) - 0.5) * brightness``.
        saturation: saturation factor is ``U[0,1) * saturation``.
        contrast: contrast factor is ``U[0,1) + contrast``.
        flip: probability of a horizontal flip.
    """

    strategy: str = DSA_STRATEGY
    scale: float = 1.2
    rotate: float = 15.0
    crop_pad: float = 0.125
    cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5
    flip: float = 0.5


# ---------------------------------------------------------------------------
# The ops, each a deterministic function of explicit parameters.
# Parameter tensors have one entry per sample ([N]); they may live on any
# device and are moved to ``x.device`` here.
# ---------------------------------------------------------------------------


def _per_sample(p: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample parameter [N] to [N,1,1,1] on x's device/dtype."""
    return to_device(p, x.device, x.dtype).view(-1, 1, 1, 1)


def _affine(x: Tensor, theta: Tensor) -> Tensor:
    """Resample x with affine thetas [N,2,3] (bilinear, zero padding, align_corners=True)."""
    theta = to_device(theta, x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def _scale_theta(sx: Tensor, sy: Tensor) -> Tensor:
    """Thetas ``[[sx,0,0],[0,sy,0]]`` of shape [N,2,3]."""
    z = torch.zeros_like(sx)
    return torch.stack([torch.stack([sx, z, z], dim=-1), torch.stack([z, sy, z], dim=-1)], dim=1)


def _rotate_theta(angle: Tensor) -> Tensor:
    """Thetas ``[[cos,-sin,0],[sin,cos,0]]`` of shape [N,2,3]; ``angle`` in radians."""
    c, s = torch.cos(angle), torch.sin(angle)
    z = torch.zeros_like(angle)
    return torch.stack([torch.stack([c, -s, z], dim=-1), torch.stack([s, c, z], dim=-1)], dim=1)


def _scale(x: Tensor, sx: Tensor, sy: Tensor) -> Tensor:
    """Reference ``rand_scale`` for given factors ``sx, sy`` (each [N]).

    The sampling grid is scaled: a factor below 1 enlarges the image.
    """
    return _affine(x, _scale_theta(sx, sy))


def _rotate(x: Tensor, angle: Tensor) -> Tensor:
    """Reference ``rand_rotate`` for given angles [N] in **radians**."""
    return _affine(x, _rotate_theta(angle))


def _flip(x: Tensor, do_flip: Tensor) -> Tensor:
    """Flip the width axis of the samples where the bool tensor ``do_flip`` [N] is set."""
    m = to_device(do_flip, x.device, torch.bool).view(-1, 1, 1, 1)
    return torch.where(m, x.flip(3), x)


def _brightness(x: Tensor, shift: Tensor) -> Tensor:
    """``x + shift`` per sample; the reference draws ``shift = (U - 0.5) * brightness``."""
    return x + _per_sample(shift, x)


def _saturation(x: Tensor, factor: Tensor) -> Tensor:
    """``(x - m) * factor + m`` with ``m`` the channel mean per pixel; reference ``factor = U * saturation``."""
    m = x.mean(dim=1, keepdim=True)
    return (x - m) * _per_sample(factor, x) + m


def _contrast(x: Tensor, factor: Tensor) -> Tensor:
    """``(x - m) * factor + m`` with ``m`` the mean of each image; reference ``factor = U + contrast``."""
    m = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - m) * _per_sample(factor, x) + m


def _crop(x: Tensor, tx: Tensor, ty: Tensor) -> Tensor:
    """Reference ``rand_crop`` for given integer translations (each [N], int64).

    ``out[n, :, i, j] = x[n, :, i + tx[n], j + ty[n]]`` where that index lies in
    the image and 0 elsewhere (``tx`` moves along the height axis, ``ty`` along
    the width axis).  Like the reference it pads one zero pixel and clamps the
    index into the padded image, done here with a single gather.
    """
    n, c, h, w = x.shape
    tx = to_device(tx, x.device, torch.long).view(-1, 1)
    ty = to_device(ty, x.device, torch.long).view(-1, 1)
    rows = (torch.arange(h, device=x.device).view(1, h) + tx + 1).clamp_(0, h + 1)  # [N,H]
    cols = (torch.arange(w, device=x.device).view(1, w) + ty + 1).clamp_(0, w + 1)  # [N,W]
    flat = (rows.unsqueeze(2) * (w + 2) + cols.unsqueeze(1)).view(n, 1, h * w)
    x_pad = F.pad(x, [1, 1, 1, 1])
    out = torch.gather(x_pad.reshape(n, c, (h + 2) * (w + 2)), 2, flat.expand(n, c, h * w))
    return out.view(n, c, h, w)


def _cutout_size(h: int, w: int, ratio: float) -> tuple[int, int]:
    """Side lengths of the cutout square as the reference rounds them."""
    return int(h * ratio + 0.5), int(w * ratio + 0.5)


def _cutout(x: Tensor, ox: Tensor, oy: Tensor, size_h: int, size_w: int) -> Tensor:
    """Reference ``rand_cutout`` for given offsets (each [N], int64) and square size.

    Zeroes rows ``clamp(ox - size_h//2 + i, 0, H-1)`` for ``i < size_h`` and the
    matching columns (with ``oy``, ``size_w``): a square clipped at the border,
    built here by comparisons instead of scattered indices.
    """
    n, _, h, w = x.shape
    if size_h <= 0 or size_w <= 0:
        return x * 1  # the reference's index grid is empty: nothing is cut
    ox = to_device(ox, x.device, torch.long).view(-1, 1)
    oy = to_device(oy, x.device, torch.long).view(-1, 1)
    r0 = (ox - size_h // 2).clamp(0, h - 1)
    r1 = (ox - size_h // 2 + size_h - 1).clamp(0, h - 1)
    c0 = (oy - size_w // 2).clamp(0, w - 1)
    c1 = (oy - size_w // 2 + size_w - 1).clamp(0, w - 1)
    r = torch.arange(h, device=x.device).view(1, h)
    cc = torch.arange(w, device=x.device).view(1, w)
    in_r = (r >= r0) & (r <= r1)  # [N,H]
    in_c = (cc >= c0) & (cc <= c1)  # [N,W]
    mask = ~(in_r.unsqueeze(2) & in_c.unsqueeze(1))  # [N,H,W]
    return x * mask.to(x.dtype).unsqueeze(1)


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One DSA op: ``sample(m, h, w, p, g)`` draws ``m`` parameter sets on the CPU (as the reference does),
    ``apply(x, q, p)`` applies them per sample."""

    sample: Callable[[int, int, int, DSAParams, torch.Generator], dict[str, Tensor]]
    apply: Callable[[Tensor, dict[str, Tensor], DSAParams], Tensor]


def _uniform(m: int, g: torch.Generator) -> Tensor:
    return torch.rand(m, generator=g, dtype=torch.float32)


def _sample_color(m: int, h: int, w: int, p: DSAParams, g: torch.Generator) -> dict[str, Tensor]:
    shift = (_uniform(m, g) - 0.5) * p.brightness
    sat = _uniform(m, g) * p.saturation
    return {"shift": shift, "sat": sat, "con": _uniform(m, g) + p.contrast}


def _sample_crop(m: int, h: int, w: int, p: DSAParams, g: torch.Generator) -> dict[str, Tensor]:
    sh, sw = int(h * p.crop_pad + 0.5), int(w * p.crop_pad + 0.5)
    tx = torch.randint(-sh, sh + 1, (m,), generator=g)
    return {"tx": tx, "ty": torch.randint(-sw, sw + 1, (m,), generator=g)}


def _sample_cutout(m: int, h: int, w: int, p: DSAParams, g: torch.Generator) -> dict[str, Tensor]:
    ch, cw = _cutout_size(h, w, p.cutout)
    ox = torch.randint(0, h + (1 - ch % 2), (m,), generator=g)
    return {"ox": ox, "oy": torch.randint(0, w + (1 - cw % 2), (m,), generator=g)}


def _sample_scale(m: int, h: int, w: int, p: DSAParams, g: torch.Generator) -> dict[str, Tensor]:
    lo = 1.0 / p.scale
    sx = _uniform(m, g) * (p.scale - lo) + lo
    return {"sx": sx, "sy": _uniform(m, g) * (p.scale - lo) + lo}


def _apply_color(x: Tensor, q: dict[str, Tensor], p: DSAParams) -> Tensor:
    return _contrast(_saturation(_brightness(x, q["shift"]), q["sat"]), q["con"])


def _apply_cutout(x: Tensor, q: dict[str, Tensor], p: DSAParams) -> Tensor:
    ch, cw = _cutout_size(x.shape[2], x.shape[3], p.cutout)
    return _cutout(x, q["ox"], q["oy"], ch, cw)


#: The ops a strategy may name (``dsa_strategy`` joins them with ``_``), in the reference's order.
OPS: Registry[Op] = Registry("DSA op", field="dsa_op", joined=True)
OPS.register("color", Op(_sample_color, _apply_color))
OPS.register("crop", Op(_sample_crop, lambda x, q, p: _crop(x, q["tx"], q["ty"])))
OPS.register("cutout", Op(_sample_cutout, _apply_cutout))
OPS.register("flip", Op(lambda m, h, w, p, g: {"flip": _uniform(m, g) < p.flip}, lambda x, q, p: _flip(x, q["flip"])))
OPS.register("scale", Op(_sample_scale, lambda x, q, p: _scale(x, q["sx"], q["sy"])))
OPS.register("rotate", Op(lambda m, h, w, p, g: {"angle": (_uniform(m, g) - 0.5) * 2 * p.rotate / 180 * float(math.pi)},
                          lambda x, q, p: _rotate(x, q["angle"])))


def _sample_op_params(op: str, m: int, h: int, w: int, p: DSAParams, g: torch.Generator) -> dict[str, Tensor]:
    """Draw ``m`` parameter sets of ``op``."""
    return OPS[op].sample(m, h, w, p, g)


def _apply_op(op: str, x: Tensor, q: dict[str, Tensor], p: DSAParams) -> Tensor:
    """Apply ``op`` with per-sample parameters ``q`` (each entry [len(x)])."""
    return OPS[op].apply(x, q, p)


class DSA:
    """Differentiable Siamese Augmentation, mode ``'S'`` (one op per call / per group).

    Example::

        dsa = DSA()
        g = torch.Generator().manual_seed(0)
        out = dsa(torch.cat([real, syn]), g, groups=torch.cat([y_real, y_syn]))
    """

    def __init__(self, params: DSAParams = DSAParams()) -> None:
        """Validate ``params.strategy`` and keep the parameters."""
        self.params = params
        self.ops: tuple[str, ...] = OPS.parse_joined(params.strategy, "DSA strategy")

    def __repr__(self) -> str:
        return f"DSA({self.params!r})"

    def __call__(self, x: Tensor, generator: torch.Generator, groups: Tensor | None = None) -> Tensor:
        """Augment a batch [N,C,H,W].

        groups=None: every sample draws its own parameters (evaluation-time
        training); one op is sampled for the whole call, as the reference mode
        'S' does.

        groups: int64 tensor [N] with values in 0..G-1 (G = max + 1): each group g
        draws ONE op and ONE parameter set, shared by all samples of that group.
        This is the siamese mode: put real and synthetic images of a class in
        the same group (e.g. concatenate them and pass class ids), and they get
        the identical transform. Different groups get independent draws, so one
        call augments all classes at once (a loop over the at most 6 ops, each
        applied to the subset of samples whose group chose it).

        All randomness comes from ``generator`` (a CPU generator); the output has
        the shape, dtype and device of ``x`` and is differentiable w.r.t. ``x``.
        """
        if x.dim() != 4:
            raise PaperlibError(f"DSA expects images [N,C,H,W], got shape {tuple(x.shape)}")
        if generator.device.type != "cpu":
            raise PaperlibError("DSA needs a CPU torch.Generator (parameters are drawn on the CPU)")
        if not self.ops or x.shape[0] == 0:
            return x
        n, _, h, w = x.shape
        p, ops = self.params, self.ops

        if groups is None:
            k = int(torch.randint(0, len(ops), (1,), generator=generator))
            q = _sample_op_params(ops[k], n, h, w, p, generator)
            return _apply_op(ops[k], x, q, p).contiguous()

        groups_cpu = groups.detach().to("cpu")
        if groups_cpu.shape != (n,) or groups_cpu.dtype.is_floating_point or groups_cpu.dtype == torch.bool:
            raise PaperlibError(f"groups must be an integer tensor of shape [{n}], got "
                                f"{groups_cpu.dtype} {tuple(groups_cpu.shape)}")
        groups_cpu = groups_cpu.long()
        if int(groups_cpu.min()) < 0:
            raise PaperlibError("groups must be non-negative group ids 0..G-1")
        n_groups = int(groups_cpu.max()) + 1

        op_of_group = torch.randint(0, len(ops), (n_groups,), generator=generator)
        # One parameter set per group for every op of the strategy, drawn in a
        # fixed order, so a group's transform depends only on (seed, G).
        params = {op: _sample_op_params(op, n_groups, h, w, p, generator) for op in dict.fromkeys(ops)}
        op_of_sample = op_of_group[groups_cpu]

        used = torch.unique(op_of_sample).tolist()
        if len(used) == 1:
            op = ops[used[0]]
            q = {key: v[groups_cpu] for key, v in params[op].items()}
            return _apply_op(op, x, q, p).contiguous()

        pieces, order = [], []
        for k in used:
            idx = torch.nonzero(op_of_sample == k).view(-1)
            op = ops[k]
            q = {key: v[groups_cpu[idx]] for key, v in params[op].items()}
            pieces.append(_apply_op(op, x.index_select(0, to_device(idx, x.device)), q, p))
            order.append(idx)
        perm = torch.cat(order)
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(n)
        return torch.cat(pieces).index_select(0, to_device(inverse, x.device)).contiguous()
