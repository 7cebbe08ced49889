"""The debiasing trainers' test task (LfF's and SelecMix's tests): a small colour-biased image task."""

import torch

from paperlib.train.loop import TrainSettings

CLASSES = 4
_BARS = torch.zeros(CLASSES, 1, 8, 8)
_BARS[0, :, 2, 1:7] = 1  # the weak, true cue: one bar per class (two rows, two columns)
_BARS[1, :, 5, 1:7] = 1
_BARS[2, :, 1:7, 2] = 1
_BARS[3, :, 1:7, 5] = 1
_COLOURS = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])  # the strong, spurious cue


def _colour_biased(n: int, aligned: float, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """3x8x8 images: a faint bar (amplitude 0.5) and a bright colour offset (2.0) in N(0, 1) noise.

    The colour is the label's with probability ``aligned``, another class's otherwise.
    """
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    conflicting = torch.rand(n, generator=gen) >= aligned
    a = torch.where(conflicting, (y + torch.randint(1, CLASSES, (n,), generator=gen)) % CLASSES, y)
    x = torch.randn(n, 3, 8, 8, generator=gen) + 0.5 * _BARS[y] + 2.0 * _COLOURS[a][:, :, None, None]
    return x, y, a


# Conflicting-test accuracy, plain vs LfF, measured with this set-up (40 epochs, lr 0.05, 2000 training
# images, 95% aligned) for seeds 0..7: plain 0.124 0.148 0.189 0.226 0.172 0.106 0.174 0.182,
# LfF 0.521 0.604 0.605 0.634 0.616 0.594 0.617 0.632: a gap of 0.40 to 0.46. The test asserts 0.2.
# (LfF pays on aligned samples, 0.52-0.70 against plain's 0.99; the biased companion follows the colour
# on every conflicting test sample.) About 1 s per seed on one CPU thread.
TOY_SETTINGS = TrainSettings(epochs=40, lr=0.05, batch=128, dsa_strategy=None)


def toy_task(seed: int) -> tuple[torch.Tensor, ...]:
    """The debiasing trainers' test task: 2000 training images 95% aligned, 2000 balanced test images
    ``(x_train, y_train, x_test, y_test, a_test)``."""
    data = torch.Generator().manual_seed(1000 + seed)
    x_train, y_train, _ = _colour_biased(2000, 0.95, data)
    return (x_train, y_train, *_colour_biased(2000, 1 / CLASSES, data))
