"""Tests of paperlib.train.augment (Differentiable Siamese Augmentation)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from paperlib.core.params import DSA_STRATEGY, Params, make_params
from paperlib.train.augment import (
    DSA,
    OPS,
    DSAParams,
    _affine,
    _apply_op,
    _brightness,
    _contrast,
    _crop,
    _cutout,
    _cutout_size,
    _flip,
    _rotate,
    _rotate_theta,
    _sample_op_params,
    _saturation,
    _scale,
    _scale_theta,
)
from paperlib.core.errors import PaperlibError
from paperlib.train.loop import TrainSettings


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 4, c: int = 3, s: int = 8, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(n, c, s, s, generator=gen(seed + 1000), dtype=dtype)


# --------------------------------------------------------------------------
# Loop-based reference implementations (mirror DatasetCondensation utils.py)
# --------------------------------------------------------------------------


def ref_crop(x: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """Pad one zero pixel, clamp the shifted index into the padded image; per-sample loop."""
    n, c, h, w = x.shape
    x_pad = F.pad(x, [1, 1, 1, 1])
    out = torch.empty_like(x)
    for k in range(n):
        for i in range(h):
            for j in range(w):
                ii = min(max(i + int(tx[k]) + 1, 0), h + 1)
                jj = min(max(j + int(ty[k]) + 1, 0), w + 1)
                out[k, :, i, j] = x_pad[k, :, ii, jj]
    return out


def ref_cutout(x: torch.Tensor, ox: torch.Tensor, oy: torch.Tensor, ch: int, cw: int) -> torch.Tensor:
    """Reference cutout: zero mask[clamp(ox - ch//2 + i), clamp(oy - cw//2 + j)]; per-sample loop."""
    n, c, h, w = x.shape
    mask = torch.ones(n, h, w, dtype=x.dtype)
    for k in range(n):
        for i in range(ch):
            for j in range(cw):
                ii = min(max(int(ox[k]) - ch // 2 + i, 0), h - 1)
                jj = min(max(int(oy[k]) - cw // 2 + j, 0), w - 1)
                mask[k, ii, jj] = 0
    return x * mask.unsqueeze(1)


def ref_affine(x: torch.Tensor, rows: list) -> torch.Tensor:
    theta = torch.tensor(rows, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


# --------------------------------------------------------------------------
# Ops against the reference, with pinned parameters
# --------------------------------------------------------------------------


@pytest.mark.parametrize("h,w", [(8, 8), (7, 9)])
def test_crop_matches_loop_reference(h: int, w: int) -> None:
    x = torch.randn(5, 2, h, w, generator=gen(1))
    tx = torch.tensor([-3, 0, 2, 7, -9])  # includes shifts beyond the image
    ty = torch.tensor([1, -2, 0, -7, 9])
    assert torch.equal(_crop(x, tx, ty), ref_crop(x, tx, ty))


def test_crop_is_translation_with_zero_fill() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4) + 1
    out = _crop(x, torch.tensor([1]), torch.tensor([-1]))
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, :3, 1:] = x[0, 0, 1:, :3]
    assert torch.equal(out, expected)


@pytest.mark.parametrize("s,ratio", [(8, 0.5), (7, 0.5), (28, 0.5), (9, 0.3)])
def test_cutout_matches_loop_reference(s: int, ratio: float) -> None:
    x = torch.randn(6, 1, s, s, generator=gen(2)) + 5
    ch, cw = _cutout_size(s, s, ratio)
    ox = torch.tensor([0, 1, s // 2, s - 1, s + (1 - ch % 2) - 1, 2])
    oy = torch.tensor([s - 1, 0, s // 2, 1, s + (1 - cw % 2) - 1, 3])
    out = _cutout(x, ox, oy, ch, cw)
    assert torch.equal(out, ref_cutout(x, ox, oy, ch, cw))
    # sample 2 is centred: a full ch x cw square is zeroed
    assert int((out[2] == 0).sum()) == ch * cw


def test_cutout_size_zero_is_identity() -> None:
    x = images()
    assert torch.equal(_cutout(x, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), 0, 0), x)


def test_flip() -> None:
    x = images()
    m = torch.tensor([True, False, True, False])
    out = _flip(x, m)
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[2], x[2].flip(-1))
    assert torch.equal(out[1], x[1]) and torch.equal(out[3], x[3])


def test_color_formulas() -> None:
    x = images()
    u = torch.tensor([0.1, 0.5, 0.9, 0.3])
    b = _brightness(x, (u - 0.5) * 1.0)
    assert torch.allclose(b, x + (u - 0.5).view(-1, 1, 1, 1))
    s = _saturation(x, u * 2.0)
    m = x.mean(dim=1, keepdim=True)
    assert torch.allclose(s, (x - m) * (u * 2.0).view(-1, 1, 1, 1) + m)
    c = _contrast(x, u + 0.5)
    m = x.mean(dim=[1, 2, 3], keepdim=True)
    assert torch.allclose(c, (x - m) * (u + 0.5).view(-1, 1, 1, 1) + m)


def test_scale_rotate_identity_and_reference_theta() -> None:
    x = images(3, 3, 8)
    one = torch.ones(3)
    assert torch.allclose(_scale(x, one, one), x, atol=1e-5)
    assert torch.allclose(_rotate(x, torch.zeros(3)), x, atol=1e-5)
    sx, sy = torch.tensor([0.9, 1.1, 1.2]), torch.tensor([1.0, 0.85, 1.15])
    rows = [[[float(sx[i]), 0, 0], [0, float(sy[i]), 0]] for i in range(3)]
    assert torch.allclose(_scale(x, sx, sy), ref_affine(x, rows), atol=1e-6)
    a = torch.tensor([0.1, -0.2, 0.25])
    rows = [[[math.cos(a[i]), -math.sin(a[i]), 0], [math.sin(a[i]), math.cos(a[i]), 0]] for i in range(3)]
    assert torch.allclose(_rotate(x, a), ref_affine(x, rows), atol=1e-5)
    # FairDD's copy of DSA resamples at torch's default (align_corners=False): on a square image, scaling and
    # rotating about the centre map pixel centres alike under both conventions, so only rounding differs
    for theta in (_scale_theta(sx, sy), _rotate_theta(a)):
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        assert torch.allclose(_affine(x, theta), F.grid_sample(x, grid, align_corners=False), atol=1e-4)
    # a quarter turn on a square image is an exact pixel permutation
    q = _rotate(x, torch.full((3,), math.pi / 2))
    assert torch.allclose(q, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)


def test_sampling_ranges() -> None:
    p = DSAParams()
    g = gen(3)
    m = 4000
    q = _sample_op_params("crop", m, 32, 28, p, g)
    assert q["tx"].min() == -4 and q["tx"].max() == 4
    assert q["ty"].min() == -4 and q["ty"].max() == 4  # int(28*0.125+0.5) = 4
    q = _sample_op_params("cutout", m, 32, 28, p, g)  # sizes 16 and 14, both even
    assert q["ox"].min() == 0 and q["ox"].max() == 32
    assert q["oy"].min() == 0 and q["oy"].max() == 28
    q = _sample_op_params("scale", m, 32, 32, p, g)
    for v in (q["sx"], q["sy"]):
        assert v.min() >= 1 / 1.2 and v.max() <= 1.2 and v.max() - v.min() > 0.3
    q = _sample_op_params("rotate", m, 32, 32, p, g)
    lim = 15 / 180 * math.pi
    assert q["angle"].abs().max() <= lim and q["angle"].abs().max() > 0.9 * lim
    q = _sample_op_params("flip", m, 32, 32, p, g)
    assert 0.4 < q["flip"].float().mean() < 0.6
    q = _sample_op_params("color", m, 32, 32, p, g)
    assert q["shift"].min() >= -0.5 and q["shift"].max() < 0.5
    assert q["sat"].min() >= 0 and q["sat"].max() < 2.0
    assert q["con"].min() >= 0.5 and q["con"].max() < 1.5


# --------------------------------------------------------------------------
# The DSA object
# --------------------------------------------------------------------------


def test_defaults_are_reference() -> None:
    p = DSAParams()
    assert p.strategy == "color_crop_cutout_flip_scale_rotate" == "_".join(OPS.names())  # every op, in its order
    # one default for the runs, their evaluations and DSA itself
    assert p.strategy == DSA_STRATEGY == Params().dsa_strategy == TrainSettings().dsa_strategy
    assert (p.scale, p.rotate, p.crop_pad, p.cutout) == (1.2, 15.0, 0.125, 0.5)
    assert (p.brightness, p.saturation, p.contrast, p.flip) == (1.0, 2.0, 0.5, 0.5)


@pytest.mark.parametrize("strategy", ["none", ""])
def test_none_is_identity(strategy: str) -> None:
    x = images()
    dsa = DSA(DSAParams(strategy=strategy))
    assert torch.equal(dsa(x, gen()), x)
    assert torch.equal(dsa(x, gen(), torch.zeros(4, dtype=torch.long)), x)


def test_the_parameters_read_a_joined_list_of_ops_because_the_registry_says_so(monkeypatch) -> None:
    """Params validation asks the registry (``joined``), not the name of the DSA ops' registry."""
    assert OPS.joined and make_params(dsa_strategy="crop_flip").dsa_strategy == "crop_flip"
    monkeypatch.setattr(OPS, "joined", False)  # as if each of its fields held one name
    with pytest.raises(PaperlibError, match=r"^unknown dsa_strategy 'crop_flip' \(did you mean 'flip'\?\); choose one"):
        make_params(dsa_strategy="crop_flip")


def test_bad_strategy_and_inputs() -> None:
    message = r"DSA strategy 'color_blur': unknown DSA op 'blur'; choose one of: color, .* \(joined by '_'\), or none$"
    with pytest.raises(PaperlibError, match="^" + message):
        DSA(DSAParams(strategy="color_blur"))
    with pytest.raises(PaperlibError, match="^" + message.replace("DSA strategy", "dsa_strategy")):
        make_params(dsa_strategy="color_blur")  # the parameters' check and DSA's own say the same
    dsa = DSA()
    with pytest.raises(PaperlibError, match=r"DSA expects images \[N,C,H,W\], got shape \(3, 8, 8\)"):
        dsa(torch.zeros(3, 8, 8), gen())
    with pytest.raises(PaperlibError, match=r"groups must be an integer tensor of shape \[4\]"):
        dsa(images(), gen(), torch.zeros(3, dtype=torch.long))
    with pytest.raises(PaperlibError, match="groups must be non-negative group ids"):
        dsa(images(), gen(), torch.tensor([0, -1, 0, 0]))


@pytest.mark.parametrize("c,s", [(1, 28), (3, 32)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grouped", [False, True])
def test_shape_dtype_device_preserved(c: int, s: int, dtype, grouped: bool) -> None:
    x = images(6, c, s, dtype=dtype)
    groups = torch.tensor([0, 1, 2, 0, 1, 2]) if grouped else None
    for seed in range(4):
        out = DSA()(x, gen(seed), groups)
        assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("grouped", [False, True])
def test_determinism(grouped: bool) -> None:
    x = images(12, 3, 16)
    groups = torch.arange(12) % 4 if grouped else None
    dsa = DSA()
    a = dsa(x, gen(7), groups)
    b = dsa(x, gen(7), groups)
    assert torch.equal(a, b)
    # different seeds give different outputs (checked over several seeds)
    others = [dsa(x, gen(s), groups) for s in range(8, 12)]
    assert any(not torch.allclose(a, o) for o in others)


def test_global_rng_untouched() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    DSA()(images(), gen(1))
    DSA()(images(), gen(1), torch.tensor([0, 0, 1, 1]))
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("seed", range(6))
def test_siamese_identical_batches(seed: int) -> None:
    a = images(5, 3, 16)
    out = DSA()(torch.cat([a, a.clone()]), gen(seed), torch.zeros(10, dtype=torch.long))  # one group
    assert torch.equal(out[:5], out[5:])
    # sharing images: b holds a[1:3]; outputs for the shared images coincide
    out = DSA()(torch.cat([a, a[1:3].clone()]), gen(seed), torch.zeros(7, dtype=torch.long))
    assert torch.equal(out[1:3], out[5:])


@pytest.mark.parametrize("seed", range(6))
def test_groups_share_transform_for_distinct_images(seed: int) -> None:
    """All ops but color are linear for a fixed transform: T(a + b) = T(a) + T(b) within a group."""
    dsa = DSA(DSAParams(strategy="crop_cutout_flip_scale_rotate"))
    a, b = images(3, 3, 16, seed=1), images(3, 3, 16, seed=2)
    x = torch.cat([a, b, a + b])
    groups = torch.arange(3).repeat(3)  # group k = (a[k], b[k], a[k]+b[k])
    out = dsa(x, gen(seed), groups)
    assert torch.allclose(out[6:], out[:3] + out[3:6], atol=1e-5)


def test_groups_identical_within_and_differ_across() -> None:
    n_groups, per = 24, 3
    img = images(1, 3, 16)
    x = img.expand(n_groups * per, -1, -1, -1).contiguous()
    groups = torch.arange(n_groups).repeat_interleave(per)
    out = DSA()(x, gen(5), groups)
    blocks = out.view(n_groups, per, 3, 16, 16)
    assert torch.equal(blocks[:, 1:], blocks[:, :1].expand(-1, per - 1, -1, -1, -1))
    distinct = {tuple(b.flatten().tolist()) for b in blocks[:, 0]}
    assert len(distinct) > n_groups // 2


def test_per_sample_mode_draws_per_sample() -> None:
    x = images(1, 3, 16).expand(16, -1, -1, -1).contiguous()
    for strategy in ["scale", "rotate", "crop", "cutout", "color"]:
        out = DSA(DSAParams(strategy=strategy))(x, gen(0))
        distinct = {tuple(o.flatten().tolist()) for o in out}
        assert len(distinct) > 8, strategy


def test_grouped_call_matches_per_group_application() -> None:
    """The subset/permutation bookkeeping reproduces each group's own op and parameters."""
    p = DSAParams()
    dsa = DSA(p)
    n_groups = 12
    x = images(36, 3, 16)
    groups = torch.randperm(36, generator=gen(9)) % n_groups
    out = dsa(x, gen(4), groups)
    # replay the draws in the documented order
    g = gen(4)
    ops = p.strategy.split("_")
    op_of_group = torch.randint(0, len(ops), (n_groups,), generator=g)
    params = {op: _sample_op_params(op, n_groups, 16, 16, p, g) for op in ops}
    assert len(set(op_of_group.tolist())) > 1  # the call really mixed ops
    for k in range(n_groups):
        sel = groups == k
        op = ops[int(op_of_group[k])]
        q = {key: v[k].repeat(int(sel.sum())) for key, v in params[op].items()}
        assert torch.allclose(out[sel], _apply_op(op, x[sel], q, p), atol=1e-6)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("grouped", [False, True])
def test_gradient_flows(op: str, grouped: bool) -> None:
    x = images(4, 3, 16).requires_grad_(True)
    groups = torch.tensor([0, 1, 0, 1]) if grouped else None
    out = DSA(DSAParams(strategy=op))(x, gen(1), groups)
    (out ** 2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_gradient_full_strategy_grouped() -> None:
    x = images(8, 3, 16).requires_grad_(True)
    out = DSA()(x, gen(2), torch.arange(8) % 4)
    out.sum().backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_result_on_cuda() -> None:
    x = images(10, 3, 16)
    groups = torch.arange(10) % 5
    for seed in range(4):
        cpu = DSA()(x, gen(seed), groups)
        cuda = DSA()(x.cuda(), gen(seed), groups.cuda())
        assert cuda.device.type == "cuda"
        assert torch.allclose(cpu, cuda.cpu(), atol=1e-4)
