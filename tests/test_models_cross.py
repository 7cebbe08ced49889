"""Cross-architecture models: every model at every image size, seeded initialisation, eval_model."""

import math

import pytest
import torch

from paperlib.core.runtime import generator as seeded  # explicit seeds: inputs independent of test order
from paperlib.core.keys import key_values
from paperlib.core.params import make_params
from paperlib.data import build_dataset
from paperlib.distill.engine import Distiller, distill
from paperlib.distill.targets import VanillaTarget
from paperlib.distill.dm import dm_loss
from paperlib.core.errors import PaperlibError
from paperlib.train.evaluate import evaluate_set
from paperlib.train.models import MODELS, ConvNet, build_model, init_parameters
from paperlib.experiments.runner import distilled_dir, record_key


NEW_MODELS = [name for name in MODELS if name != "convnet"]
CPU = torch.device("cpu")


def _model(name, channels=3, size=32, classes=10, seed=0):
    net = build_model(name, channels, classes, size, width=16)
    return init_parameters(net, torch.Generator().manual_seed(seed))


def test_models_are_registered():
    assert set(NEW_MODELS) == {"mlp", "lenet", "alexnet", "resnet18", "resnet18_bn"}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_embed_at_every_size(name, size, channels):
    torch.manual_seed(0)
    net = _model(name, channels, size).train()
    x = torch.randn(2, channels, size, size)
    out = net(x)
    assert out.shape == (2, 10)
    assert net.embed(x).shape == (2, net.embed_dim)
    assert torch.equal(net.classifier(net.embed(x)), out)  # the interface SelecMix's single pass relies on
    out.square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


@pytest.mark.parametrize("name", NEW_MODELS)
def test_init_parameters_is_deterministic_and_seed_dependent(name):
    def flat(seed):
        net = _model(name, 3, 32, seed=seed)
        return torch.cat([t.flatten() for t in net.state_dict().values() if t.is_floating_point()])

    assert torch.equal(flat(1), flat(1))
    assert not torch.equal(flat(1), flat(2))


def test_batch_norm_is_reset_by_init_parameters():
    net = _model("resnet18_bn", 3, 32).train()
    net(torch.randn(4, 3, 32, 32, generator=seeded(591)) * 5 + 3)  # moves the running statistics
    init_parameters(net, torch.Generator().manual_seed(0))
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(float(m.running_mean.abs().sum()) == 0 and m.weight.eq(1).all() for m in norms)


def test_convnet_draws_are_unchanged():
    # The first values drawn for the reference ConvNet: stored results depend on them.
    net = init_parameters(ConvNet(3, 10, 28, width=8), torch.Generator().manual_seed(0))
    first = net.features[0].weight.flatten()[:3]
    generator = torch.Generator().manual_seed(0)
    bound = 1 / (3 * 9) ** 0.5
    expected = torch.empty(8, 3, 3, 3).uniform_(-bound, bound, generator=generator).flatten()[:3]
    assert torch.equal(first, expected)


@pytest.mark.parametrize("name, norm", [("resnet18_bn", "instancenorm"), ("convnet", "batchnorm")])
def test_dm_loss_uses_whole_batch_statistics_for_batch_norm_models(name, norm):
    """Chunks of 4 asked for, the whole batch used: the loss does not depend on the device's chunk size."""
    net = init_parameters(build_model(name, 3, 2, 28, width=16, norm=norm), torch.Generator().manual_seed(0))
    real = torch.randn(2 * 8, 3, 28, 28, generator=seeded(791))
    syn = torch.randn(2 * 2, 3, 28, 28, generator=seeded(792))
    aggregation = torch.full((2, 1, 8), 1 / 8)
    with torch.no_grad():
        loss = dm_loss(net, real, aggregation, syn, 2, chunk=4)
        expected = ((net.embed(real).view(2, 8, -1).mean(1) - net.embed(syn).view(2, 2, -1).mean(1)) ** 2).sum()
    assert torch.allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize("model", ["mlp", "resnet18_bn"])
def test_dm_distils_with_another_architecture(model):
    params = make_params(dataset="cmnist", source="digits", method="dm", model=model, ipc=1, batch_real=8,
                         iterations=2, progress=False, device="cpu")
    ds = build_dataset(params)
    result = distill(ds, params, VanillaTarget(), CPU, None)
    assert result.images.shape == (10, 3, 28, 28) and all(math.isfinite(loss) for loss in result.losses)
    # the network it matched with is the one asked for, not the default ConvNet
    assert type(Distiller(ds, params, VanillaTarget(), CPU).net).__name__ == {"mlp": "MLP",
                                                                            "resnet18_bn": "ResNet18"}[model]


def test_a_batch_norm_convnet_keys_apart_from_its_results_before_it_used_whole_batches():
    assert key_values(make_params(net_norm="batchnorm"))["net_norm_version"] == 1
    assert "net_norm_version" not in key_values(make_params())  # instance norm's keys are unchanged


def test_eval_model_is_validated_and_keyed_only_as_an_evaluation_setting():
    with pytest.raises(PaperlibError, match="unknown eval_model 'vgg'"):
        make_params(eval_model="vgg")
    base = make_params(dataset="cmnist", method="dm", iterations=10)
    assert key_values(base)["eval_model"] == ""
    same = make_params(dataset="cmnist", method="dm", iterations=10, eval_model="convnet")
    assert record_key(same) == record_key(base)
    cross = make_params(dataset="cmnist", method="dm", iterations=10, eval_model="resnet18")
    assert record_key(cross) != record_key(base)
    assert distilled_dir(cross) == distilled_dir(base)  # one distilled set, several evaluation architectures


def test_evaluate_set_trains_the_eval_model(small_eval, monkeypatch):
    from paperlib.train import evaluate

    built = []
    real_build = evaluate.model_from_params

    def recording_build(params, *args):
        model = real_build(params, *args)
        built.append(type(model).__name__)  # what was built, not the name asked for
        return model

    monkeypatch.setattr(evaluate, "model_from_params", recording_build)
    ds = build_dataset(dataset="mnist", source="digits")
    images, labels = ds.normalized("train")[:200], ds.train.labels[:200]
    default = evaluate_set(images, labels, ds, make_params(dataset="mnist", **small_eval), CPU)["runs"]
    params = make_params(dataset="mnist", eval_model="lenet", **small_eval)
    cross = evaluate_set(images, labels, ds, params, CPU)["runs"]
    assert built == ["ConvNet", "LeNet"]
    assert cross != default
