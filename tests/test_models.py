import pytest
import torch

import torch.nn.functional as F

from paperlib.core.runtime import generator as seeded  # explicit seeds: inputs independent of test order
from paperlib.core.errors import PaperlibError
from paperlib.train.models import ACTIVATIONS, NORMS, POOLINGS, ConvNet, PatchConv2d, build_model, init_parameters


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 28), (3, 32)])
def test_convnet_embeds_28_px_as_32_px(channels, size):
    net = ConvNet(channels, 10, size)
    x = torch.randn(2, channels, size, size)
    assert net.embed(x).shape == (2, 2048)
    assert net(x).shape == (2, 10)


def test_a_depth_that_pools_the_image_to_nothing_is_a_one_line_error():
    assert ConvNet(1, 10, 28, width=4, depth=5).embed(torch.randn(1, 1, 28, 28)).shape == (1, 4)  # 32 px -> 1 px
    with pytest.raises(PaperlibError, match="net_depth=6 pools a 28 px image to nothing; use net_depth at most 5"):
        ConvNet(1, 10, 28, width=4, depth=6)
    assert ConvNet(1, 10, 28, width=4, depth=6, pooling="none").embed_dim == 4 * 32 * 32  # no pooling, no limit


def test_reference_defaults_and_instance_norm():
    net = ConvNet(3, 10, 32)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 3 and all(m.num_groups == m.num_channels == 128 and m.affine for m in norms)
    assert sum(isinstance(m, torch.nn.AvgPool2d) for m in net.modules()) == 3


def test_instance_norm_makes_batched_forward_equal_per_sample():
    net = init_parameters(ConvNet(3, 10, 28, width=16), torch.Generator().manual_seed(0))
    x = torch.randn(6, 3, 28, 28, generator=seeded(341))
    assert torch.allclose(net.embed(x), torch.cat([net.embed(x[:3]), net.embed(x[3:])]), atol=1e-6)


def _layer(module: torch.nn.Module) -> tuple:
    return type(module), getattr(module, "num_groups", None), getattr(module, "negative_slope", None)


@pytest.mark.parametrize("norm", list(NORMS))
@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("pooling", list(POOLINGS))
def test_every_layer_choice_builds_its_own_layer_and_no_other_choices(norm, act, pooling):
    net = build_model("convnet", 1, 10, 28, width=8, depth=2, norm=norm, act=act, pooling=pooling)
    layers = {_layer(m) for m in net.modules()}
    for registry, chosen, make in ((NORMS, norm, lambda entry: entry.make(8)), (ACTIVATIONS, act, lambda e: e()),
                                   (POOLINGS, pooling, lambda e: e())):
        made = {name: _layer(make(registry[name])) for name in registry}
        assert made[chosen] in layers or made[chosen] == _layer(torch.nn.Identity())  # "none" may add no layer
        others = {layer for name, layer in made.items() if name != chosen} - {made[chosen], _layer(torch.nn.Identity())}
        assert not others & layers, f"{chosen} built another choice's layer"
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_init_from_generator_is_deterministic_and_seed_dependent():
    def weights(seed):
        net = init_parameters(ConvNet(3, 10, 28, width=8), torch.Generator().manual_seed(seed))
        return torch.cat([p.flatten() for p in net.parameters()])

    assert torch.equal(weights(1), weights(1))
    assert not torch.equal(weights(1), weights(2))


def test_init_matches_pytorch_default_bounds():
    net = init_parameters(ConvNet(3, 10, 32, width=8), torch.Generator().manual_seed(0))
    largest = float(net.features[0].weight.detach().abs().max())
    bound = 1 / (3 * 9) ** 0.5
    assert 0.9 * bound < largest <= bound


@pytest.mark.parametrize("channels, padding", [(1, 3), (1, 1), (3, 1)])
def test_patch_convolution_equals_conv2d_with_gradients_and_double_backward(channels, padding):
    torch.manual_seed(0)
    patch = PatchConv2d(channels, 8, 3, padding=padding).double()
    x = torch.randn(4, channels, 10, 10, dtype=torch.float64, requires_grad=True, generator=seeded(651))
    ref = F.conv2d(x, patch.weight, patch.bias, padding=padding)
    out = patch(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    # first and second derivatives, as gradient matching's synthetic side takes them
    def derivatives(y):
        gx, gw = torch.autograd.grad(y.square().sum(), (x, patch.weight), create_graph=True)
        return gx, gw, torch.autograd.grad(gw.square().sum(), x)[0]

    for expected, got in zip(derivatives(ref), derivatives(out)):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_patch_convolution_is_a_cpu_route_and_plain_conv2d_elsewhere():
    # the matrix product's channels-last view on the CPU; on any other device (here: meta) nn.Conv2d's own output
    cpu_out = PatchConv2d(1, 8, 3, padding=3)(torch.zeros(2, 1, 28, 28))
    meta_out = PatchConv2d(1, 8, 3, padding=3).to("meta")(torch.zeros(2, 1, 28, 28, device="meta"))
    assert cpu_out.shape == meta_out.shape == (2, 8, 32, 32)
    assert cpu_out.is_contiguous(memory_format=torch.channels_last) and not cpu_out.is_contiguous()
    assert meta_out.is_contiguous()


def test_convnet_uses_the_patch_convolution_for_one_input_channel_only():
    assert type(ConvNet(1, 10, 28).features[0]) is PatchConv2d
    assert type(ConvNet(3, 10, 32).features[0]) is torch.nn.Conv2d
    assert all(type(m) is not PatchConv2d for m in list(ConvNet(1, 10, 28).features)[1:])


def test_init_parameters_refuses_a_parameter_it_cannot_draw_from_the_seed():
    """A Conv1d's or a bare parameter's values came from torch's global generator: two runs of one seed differed."""
    class WithScale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)
            self.scale = torch.nn.Parameter(torch.ones(2))

    with pytest.raises(PaperlibError, match=r"WithScale has parameters init_parameters cannot draw from the run's "
                                            r"seed \(scale\); build it from Conv2d, Linear, GroupNorm, BatchNorm2d"):
        init_parameters(WithScale(), torch.Generator().manual_seed(0))
    init_parameters(torch.nn.Sequential(torch.nn.Linear(4, 2)), torch.Generator().manual_seed(0))  # drawable


def test_building_a_model_neither_reads_nor_moves_the_global_random_state():
    """A constructor drew torch's default weights from the global generator: building a model moved a caller's
    random state, and a registered model's random buffer followed whatever that state was."""
    from paperlib.train.models import MODELS

    class WithProjection(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)
            self.register_buffer("projection", torch.randn(4, 4))  # drawn at construction, not by init_parameters

    MODELS.register("toy_projection", lambda c, k, size, *convnet: WithProjection())
    try:
        torch.manual_seed(123)
        before = torch.get_rng_state()
        build_model("convnet", 3, 10, 32, width=8)
        assert torch.equal(torch.get_rng_state(), before)
        buffers = []
        for global_seed in (1, 2):
            torch.manual_seed(global_seed)
            buffers.append(build_model("toy_projection", 3, 2, 28).projection)
        assert torch.equal(*buffers)
    finally:
        MODELS.unregister("toy_projection")
