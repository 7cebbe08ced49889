"""Networks: the reference ConvNet of the DC/DSA/DM line of work, and the cross-architecture models.

``convnet`` is the reference ConvNet (its ``net_*`` parameters apply to it
only). The cross-architecture models follow the reference code's
``networks.py`` (DC/DSA/DM) in spirit: ``mlp`` (two hidden layers of 128),
``lenet`` (LeNet-5), ``alexnet`` (the reference's five-convolution
"AlexNet" for small images), ``resnet18`` (CIFAR-style ResNet-18, instance
norm as ``GroupNorm(C, C)``) and ``resnet18_bn`` (the same with batch norm).
Every model runs at 28, 32 and 64 px with 1 or 3 channels (28 px is treated
as 32 px by padding, as the reference does), and exposes ``embed(x)``, the
feature vector before its linear ``classifier`` (``forward`` is
``classifier(embed(x))``), and ``embed_dim``, so DM can use any of them. A
model with batch norm (``resnet18_bn``, or ``convnet`` with
``net_norm=batchnorm``) is not :func:`samples_independent`: DM then forwards
the whole real batch at once, as the reference does for its BN networks, on
every device (the papers use instance-norm networks for distillation and BN
networks only to evaluate).

Parameters are initialised from an explicit ``torch.Generator`` (the same
draws PyTorch's default initialisation makes, but reproducible), see
:func:`init_parameters`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paperlib.core.errors import PaperlibError
from paperlib.core.params import Params
from paperlib.core.registry import Registry
from paperlib.core.runtime import to_device


@dataclass(frozen=True)
class Norm:
    """A normalisation layer of the ConvNet (``net_norm``): ``make(channels)``; ``version`` as every registered
    entry's (:mod:`paperlib.core.registry`)."""

    make: Callable[[int], nn.Module]
    version: int = 0


# The layer choices of the ConvNet's ``net_norm``, ``net_act`` and ``net_pooling``.
NORMS: Registry[Norm] = Registry("net_norm", field="net_norm")
# Per-sample, per-channel normalisation with affine parameters, as the reference writes it; per-sample, so a
# batched forward over all classes equals per-class forwards exactly.
NORMS.register("instancenorm", Norm(lambda channels: nn.GroupNorm(channels, channels, affine=True)))
# version 1: DM embeds the real batch in one forward on every device (before: in chunks of 16 on the CPU)
NORMS.register("batchnorm", Norm(lambda channels: nn.BatchNorm2d(channels), version=1))
# The reference's layernorm is nn.LayerNorm([C, H, W]): the same statistics (per sample, over every channel and
# position) with an affine parameter per element; here one per channel. The two agree where the network is never
# trained (DM's embedding networks) and differ once it is (evaluation, gradient matching): not the reference's.
NORMS.register("layernorm", Norm(lambda channels: nn.GroupNorm(1, channels, affine=True)))
NORMS.register("groupnorm", Norm(lambda channels: nn.GroupNorm(4, channels, affine=True)))
NORMS.register("none", Norm(lambda channels: nn.Identity()))

ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("net_act", field="net_act")
ACTIVATIONS.register("relu", lambda: nn.ReLU(inplace=True))
ACTIVATIONS.register("leakyrelu", lambda: nn.LeakyReLU(0.01, inplace=True))
ACTIVATIONS.register("sigmoid", lambda: nn.Sigmoid())

POOLINGS: Registry[Callable[[], nn.Module]] = Registry("net_pooling", field="net_pooling")
POOLINGS.register("avgpooling", lambda: nn.AvgPool2d(2, 2))
POOLINGS.register("maxpooling", lambda: nn.MaxPool2d(2, 2))
POOLINGS.register("none", lambda: nn.Identity())


def _norm(kind: str, channels: int) -> nn.Module:
    return NORMS[kind].make(channels)


def _activation(kind: str) -> nn.Module:
    return ACTIVATIONS[kind]()


def _pooling(kind: str) -> nn.Module:
    return POOLINGS[kind]()


class PatchConv2d(nn.Conv2d):
    """A stride-1 convolution computed as one matrix product of the input's patches (im2col) with the weights.

    The same parameters and the same sums as :class:`torch.nn.Conv2d`, in another order (results agree to
    float reassociation). The ConvNet uses it for a single-channel first layer: there oneDNN's direct kernel
    works on a 9-long reduction and was slow and erratic on the CPU (a compiled 100-image training step of
    width 128: 152-176 ms with it, 109-116 ms with this; docs/performance.md), while a ``[N*H*W, 9] x [9, C]``
    product is not. The output is a channels-last view, the layout the product yields. On other devices it
    is :class:`torch.nn.Conv2d` itself: the reason is oneDNN's, and cuDNN has no such weak spot.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        n, c, h, w = x.shape
        (k, _), (pad, _) = self.kernel_size, self.padding
        out_h, out_w = h + 2 * pad - k + 1, w + 2 * pad - k + 1
        patches = F.pad(x, (pad, pad, pad, pad)).unfold(2, k, 1).unfold(3, k, 1)  # [N, C, H', W', k, k], a view
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(n * out_h * out_w, c * k * k)
        # A row-major ``[C*k*k, out]`` operand makes autograd compute the weight gradient as ``patches^T @ grad``:
        # for the transposed view it computes ``(grad^T @ patches)^T``, which MKL ran 4-5x slower on an AMD CPU.
        out = torch.addmm(self.bias, patches, self.weight.reshape(self.out_channels, -1).t().contiguous())
        return out.view(n, out_h, out_w, self.out_channels).permute(0, 3, 1, 2)


class ConvNet(nn.Module):
    """``depth`` x [3x3 conv, norm, activation, 2x2 pooling], then a linear classifier.

    28 px inputs are treated as 32 px: the first convolution pads by 3, so a depth-3 network embeds into
    128 x 4 x 4 = 2048 features for both MNIST-like and CIFAR-like images. The reference pads so one-channel
    inputs (MNIST's 28 px); padding every 28 px input generalises it to the companion's coloured 28 px presets, whose
    three channels the reference's classifier would not fit (paper B's presets are 32 px, padded as its code does).
    """

    def __init__(self, channels: int, num_classes: int, image_size: int, width: int = 128, depth: int = 3,
                 norm: str = "instancenorm", act: str = "relu", pooling: str = "avgpooling") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = _as_32(image_size)
        if pooling != "none" and size >> depth == 0:
            raise PaperlibError(f"net_depth={depth} pools a {image_size} px image to nothing; use net_depth at most "
                                f"{size.bit_length() - 1} for this dataset")
        in_channels = channels
        for d in range(depth):
            padding = 3 if d == 0 and image_size == 28 else 1
            conv = PatchConv2d if in_channels == 1 else nn.Conv2d  # one input channel: see PatchConv2d
            layers += [conv(in_channels, width, 3, padding=padding), _norm(norm, width), _activation(act)]
            if pooling != "none":
                layers.append(_pooling(pooling))
                size //= 2
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.embed_dim = width * size * size
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        """The flattened feature vector before the classifier (2048-d by default)."""
        return self.features(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


def _as_32(image_size: int) -> int:
    """The reference treats 28 px inputs as 32 px (by padding the first layer)."""
    return 32 if image_size == 28 else image_size


class MLP(nn.Module):
    """Flattened pixels -> 128 -> 128 (ReLU) -> classifier; the embedding is the second hidden layer."""

    def __init__(self, channels: int, num_classes: int, image_size: int, hidden: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size * image_size, hidden),
                                      nn.ReLU(inplace=True), nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.embed_dim = hidden
        self.classifier = nn.Linear(hidden, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


class LeNet(nn.Module):
    """LeNet-5: two 5x5 convolutions (6, 16) with ReLU and 2x2 max pooling, then 120 -> 84 -> classifier.

    The embedding is the 84-d layer. 28 px inputs are padded by 2 (as 32 px);
    16 x 5 x 5 features at 32 px, 16 x 13 x 13 at 64 px.
    """

    def __init__(self, channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        size = (((_as_32(image_size) - 4) // 2) - 4) // 2
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2 if image_size == 28 else 0), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * size * size, 120), nn.ReLU(inplace=True), nn.Linear(120, 84), nn.ReLU(inplace=True),
        )
        self.embed_dim = 84
        self.classifier = nn.Linear(84, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


class AlexNet(nn.Module):
    """The reference's AlexNet for small images: conv 5x5 128, 5x5 192, 3x3 256, 192, 192, three max pools.

    28 px inputs are padded by 4 (as 32 px). The embedding is the flattened
    192 x 4 x 4 = 3072 features at 28/32 px (192 x 8 x 8 at 64 px).
    """

    def __init__(self, channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        size = _as_32(image_size) // 8
        self.features = nn.Sequential(
            nn.Conv2d(channels, 128, 5, padding=4 if image_size == 28 else 2), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(128, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 192, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.embed_dim = 192 * size * size
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with norm, a projection shortcut when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.norm2 = _norm(norm, planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          _norm(norm, planes))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18: 3x3 stem (stride 1), four stages of two basic blocks (64-512), global average pool.

    ``norm`` is ``instancenorm`` (``GroupNorm(C, C)``, as the reference's
    ResNet18) or ``batchnorm`` (its ResNet18BN). The embedding is the 512-d
    pooled feature at every input size.
    """

    def __init__(self, channels: int, num_classes: int, image_size: int, norm: str = "instancenorm") -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False), _norm(norm, 64),
                                  nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        in_planes = 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(in_planes, planes, stride, norm), BasicBlock(planes, planes, 1, norm)]
            in_planes = planes
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embed_dim = 512
        self.classifier = nn.Linear(512, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.pool(self.layers(self.stem(x))).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


def samples_independent(model: nn.Module) -> bool:
    """Whether each sample's output depends on that sample alone: no batch statistics (batch norm), so a
    batch's gradient is the sum of its samples' and may be computed in parts."""
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


# name -> constructor (channels, classes, image size, ConvNet width, depth, norm, act, pooling); a constructor's
# ``version`` attribute, when it has one, enters the cache key like any entry's (bump it when the model changes).
MODELS: Registry[Callable[..., nn.Module]] = Registry("model", field="model")
MODELS.register("convnet", ConvNet)
MODELS.register("mlp", lambda c, k, size, *convnet: MLP(c, k, size))
MODELS.register("lenet", lambda c, k, size, *convnet: LeNet(c, k, size))
MODELS.register("alexnet", lambda c, k, size, *convnet: AlexNet(c, k, size))
MODELS.register("resnet18", lambda c, k, size, *convnet: ResNet18(c, k, size, "instancenorm"))
MODELS.register("resnet18_bn", lambda c, k, size, *convnet: ResNet18(c, k, size, "batchnorm"))


_CONSTRUCTION_SEED = 0  # the constructors' own draws, the same for every run (their parameters follow the run's seed)


def build_model(name: str, channels: int, num_classes: int, image_size: int, *, width: int = 128,
                depth: int = 3, norm: str = "instancenorm", act: str = "relu",
                pooling: str = "avgpooling") -> nn.Module:
    """A fresh model by name (see :data:`MODELS`); call :func:`init_parameters` next.

    ``width``, ``depth``, ``norm``, ``act`` and ``pooling`` shape the ConvNet only. A constructor's own draws
    (torch's default weights, which :func:`init_parameters` re-draws, or a registered model's random buffer,
    the same for every run) come from torch's global CPU generator reseeded at a fixed seed, its state restored
    after: building a model neither reads nor moves the caller's random state (within one thread)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(_CONSTRUCTION_SEED)
        return MODELS[name](channels, num_classes, image_size, width, depth, norm, act, pooling)


def model_from_params(params: Params, channels: int, num_classes: int, image_size: int,
                      name: str | None = None) -> nn.Module:
    """:func:`build_model` with the architecture of ``params`` (``name``: another registered model)."""
    return build_model(name or params.model, channels, num_classes, image_size, width=params.net_width,
                       depth=params.net_depth, norm=params.net_norm, act=params.net_act, pooling=params.net_pooling)


_DRAWN = (nn.Conv2d, nn.Linear, nn.GroupNorm, nn.BatchNorm2d)  # the layers init_parameters re-draws


def _require_drawable(model: nn.Module) -> None:
    drawn = {id(p) for m in model.modules() if isinstance(m, _DRAWN) for p in m.parameters(recurse=False)}
    other = [name for name, p in model.named_parameters() if id(p) not in drawn]
    if other:
        raise PaperlibError(f"{type(model).__name__} has parameters init_parameters cannot draw from the run's seed "
                            f"({', '.join(other[:3])}{', ...' if len(other) > 3 else ''}); build it from "
                            f"{', '.join(layer.__name__ for layer in _DRAWN)} layers")


@torch.no_grad()
def init_parameters(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every parameter in place with PyTorch's default scheme, from ``generator``.

    Conv/linear weights: Kaiming-uniform (a=sqrt(5)); biases: U(+-1/sqrt(fan_in));
    norm layers: weight 1, bias 0. Draws happen on the generator's device and are
    copied, so a CPU generator gives the same network on every device. A parameter of any other layer is a
    one-line error: it would keep a draw from torch's global generator, and the run would not follow its seed.
    """
    _require_drawable(model)
    gen_device = generator.device
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weight = torch.empty(module.weight.shape, device=gen_device)
            fan_in = weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_ with a=sqrt(5) gives this bound too
            module.weight.copy_(to_device(weight.uniform_(-bound, bound, generator=generator), module.weight.device))
            if module.bias is not None:
                bias = torch.empty(module.bias.shape, device=gen_device)
                module.bias.copy_(to_device(bias.uniform_(-bound, bound, generator=generator), module.bias.device))
        elif isinstance(module, (nn.GroupNorm, nn.BatchNorm2d)) and module.affine:
            module.weight.fill_(1.0)
            module.bias.fill_(0.0)
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
    return model

