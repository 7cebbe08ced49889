"""Networks: the reference ConvNet of the DC/DSA/DM line of work.

Parameters are initialised from an explicit ``torch.Generator`` (the same
draws PyTorch's default initialisation makes, but reproducible), see
:func:`init_parameters`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
ACTIVATIONS = ("relu", "leakyrelu", "sigmoid")
POOLINGS = ("avgpooling", "maxpooling", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instancenorm":
        # Per-sample, per-channel normalisation with affine parameters, as the
        # reference writes it; per-sample so a batched forward over all classes
        # equals per-class forwards exactly.
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "layernorm":
        return nn.GroupNorm(1, channels, affine=True)
    if kind == "groupnorm":
        return nn.GroupNorm(4, channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


def _activation(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leakyrelu":
        return nn.LeakyReLU(0.01, inplace=True)
    if kind == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"unknown activation {kind!r}; choose one of {ACTIVATIONS}")


def _pooling(kind: str) -> nn.Module:
    if kind == "avgpooling":
        return nn.AvgPool2d(2, 2)
    if kind == "maxpooling":
        return nn.MaxPool2d(2, 2)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown pooling {kind!r}; choose one of {POOLINGS}")


class ConvNet(nn.Module):
    """``depth`` x [3x3 conv, norm, activation, 2x2 pooling], then a linear classifier.

    Like the reference, 28 px inputs are treated as 32 px: the first
    convolution pads by 3, so a depth-3 network embeds into 128 x 4 x 4 = 2048
    features for both MNIST-like and CIFAR-like images.
    """

    def __init__(self, channels: int, num_classes: int, image_size: int, width: int = 128, depth: int = 3,
                 norm: str = "instancenorm", act: str = "relu", pooling: str = "avgpooling") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = 32 if image_size == 28 else image_size
        in_channels = channels
        for d in range(depth):
            padding = 3 if d == 0 and image_size == 28 else 1
            layers += [nn.Conv2d(in_channels, width, 3, padding=padding), _norm(norm, width), _activation(act)]
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


MODELS = ("convnet",)


def build_model(name: str, channels: int, num_classes: int, image_size: int, *, width: int = 128,
                depth: int = 3, norm: str = "instancenorm", act: str = "relu",
                pooling: str = "avgpooling") -> nn.Module:
    """A fresh model by name (see :data:`MODELS`); call :func:`init_parameters` next."""
    if name == "convnet":
        return ConvNet(channels, num_classes, image_size, width, depth, norm, act, pooling)
    raise ValueError(f"unknown model {name!r}; choose one of {MODELS}")


@torch.no_grad()
def init_parameters(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every parameter in place with PyTorch's default scheme, from ``generator``.

    Conv/linear weights: Kaiming-uniform (a=sqrt(5)); biases: U(+-1/sqrt(fan_in));
    norm layers: weight 1, bias 0. Draws happen on the generator's device and are
    copied, so a CPU generator gives the same network on every device.
    """
    gen_device = generator.device
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weight = torch.empty(module.weight.shape, device=gen_device)
            fan_in = weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_ with a=sqrt(5) gives this bound too
            module.weight.copy_(weight.uniform_(-bound, bound, generator=generator))
            if module.bias is not None:
                bias = torch.empty(module.bias.shape, device=gen_device)
                module.bias.copy_(bias.uniform_(-bound, bound, generator=generator))
        elif isinstance(module, (nn.GroupNorm, nn.BatchNorm2d)) and module.affine:
            module.weight.fill_(1.0)
            module.bias.fill_(0.0)
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
    return model
