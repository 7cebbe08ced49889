import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paperlib.core.params import make_params
from paperlib.data import build_dataset
from paperlib.train.lff import generalized_cross_entropy, train_lff
from paperlib.core.errors import PaperlibError
from paperlib.train.evaluate import evaluate_set
from paperlib.train.loop import TrainSettings, predict, train_classifier
from paperlib.train.metrics import METRIC_KEYS
from paperlib.train.models import init_parameters
from paperlib.experiments.runner import training_set
from toy_debias import CLASSES, TOY_SETTINGS, toy_task  # a small colour-biased task (SelecMix's test uses it too)


def test_gce_value_is_lffs_gradient_form_on_a_hand_example():
    # p_y = 1/2 for sample 0, e^2 / (e^2 + 1) for sample 1 (label 0 of logits [2, 0]).
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    labels = torch.tensor([1, 0])
    p = torch.tensor([0.5, math.e ** 2 / (math.e ** 2 + 1)])
    q = 0.7
    expected = -torch.log(p) * q * p ** q  # CE x q p_y^q, the LfF code's form
    torch.testing.assert_close(generalized_cross_entropy(logits, labels, q), expected)


def test_gce_gradient_is_q_times_that_of_zhang_and_sabuncus_formula():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.tensor([0, 1, 2, 1, 0])
    q = 0.7
    ours, = torch.autograd.grad(generalized_cross_entropy(logits, labels, q).sum(), logits)
    p_y = F.softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)
    reference, = torch.autograd.grad(((1 - p_y ** q) / q).sum(), logits)
    torch.testing.assert_close(ours, q * reference)


def test_gce_gradient_favours_confident_samples_more_than_ce():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 1.0, 1.0]], requires_grad=True)  # easy, hard (label 0)
    labels = torch.tensor([0, 0])
    q = 0.7
    g_gce, = torch.autograd.grad(generalized_cross_entropy(logits, labels, q).sum(), logits)
    g_ce, = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), logits)
    easy_over_hard_gce = g_gce[0].norm() / g_gce[1].norm()
    easy_over_hard_ce = g_ce[0].norm() / g_ce[1].norm()
    p = F.softmax(logits.detach(), 1)[:, 0]
    # The GCE weight p_y^q multiplies the CE ratio by (p_easy / p_hard)^q > 1.
    torch.testing.assert_close(easy_over_hard_gce / easy_over_hard_ce, (p[0] / p[1]) ** q)
    assert easy_over_hard_gce > 2 * easy_over_hard_ce


# --- a small colour-biased task (tests/toy_debias.py) ---------------------------------------------
def _mlp(gen: torch.Generator) -> nn.Module:
    return init_parameters(nn.Sequential(nn.Flatten(), nn.Linear(192, 64), nn.ReLU(), nn.Linear(64, CLASSES)), gen)


@pytest.mark.parametrize("seed", [0, 1])
def test_lff_beats_plain_training_on_bias_conflicting_samples(seed, one_thread):
    x_train, y_train, x_test, y_test, a_test = toy_task(seed)
    conflicting = a_test != y_test
    settings = TOY_SETTINGS

    gen = torch.Generator().manual_seed(seed)
    plain = train_classifier(_mlp(gen), x_train, y_train, settings, gen, show_progress=False)
    gen = torch.Generator().manual_seed(seed)
    debiased, biased = _mlp(gen), _mlp(gen)
    train_lff(biased, debiased, x_train, y_train, settings, q=0.7, ema=0.7, gen=gen, show_progress=False)

    def conflicting_acc(model):
        return (predict(model, x_test) == y_test)[conflicting].float().mean().item()

    plain_acc, lff_acc = conflicting_acc(plain), conflicting_acc(debiased)
    assert plain_acc < 0.3  # the task is biased: plain training mostly follows the colour
    assert lff_acc > plain_acc + 0.2, (plain_acc, lff_acc)
    # The biased companion did follow the colour: it predicts the colour's class on conflicting samples.
    assert (predict(biased, x_test) == a_test)[conflicting].float().mean() > 0.8


def test_lff_draws_the_same_randomness_as_plain_training(one_thread):
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.randn(40, 3, 8, 8, generator=gen), torch.arange(40) % CLASSES
    settings = TrainSettings(epochs=2, batch=16, dsa_strategy="color_crop_cutout_flip_scale_rotate")
    plain_gen, lff_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    train_classifier(_mlp(gen), images, labels, settings, plain_gen, show_progress=False)
    train_lff(_mlp(gen), _mlp(gen), images, labels, settings, 0.7, 0.7, lff_gen, show_progress=False)
    assert torch.equal(plain_gen.get_state(), lff_gen.get_state())


def test_lff_non_finite_loss_names_the_epoch():
    gen = torch.Generator().manual_seed(0)
    images = torch.full((8, 3, 8, 8), float("nan"))
    diverged = r"epoch 1; the training images are a distilled set that diverged \(some pixels are not finite\)"
    with pytest.raises(PaperlibError, match=diverged):
        train_lff(_mlp(gen), _mlp(gen), images, torch.zeros(8, dtype=torch.long), TrainSettings(epochs=2),
                  0.7, 0.7, gen, show_progress=False)


def test_evaluate_set_with_lff_runs_end_to_end_on_digits(monkeypatch):
    import paperlib.train.trainers as trainers

    calls = []
    original = trainers.train_lff
    monkeypatch.setattr(trainers, "train_lff", lambda *a, **k: calls.append(1) or original(*a, **k))
    params = make_params(dataset="cmnist", source="digits", method="random", ipc=5, eval_epochs=2, num_eval=1,
                         net_width=16, device="cpu", eval_trainer="lff")
    ds = build_dataset(params)
    images, labels, _ = training_set(ds, params, torch.device("cpu"))  # 5 random real images per class
    assert images.shape[0] == 5 * ds.num_classes
    result = evaluate_set(images, labels, ds, params, torch.device("cpu"))
    assert len(result["runs"]) == 1 and calls == [1]  # the model was trained by LfF, not plainly
    assert set(result) == {"runs", *METRIC_KEYS, *(f"{k}_std" for k in METRIC_KEYS)}
    for key in METRIC_KEYS:
        assert 0 <= result[key] <= 100, key
