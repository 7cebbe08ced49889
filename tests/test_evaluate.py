import math

import pytest
import torch

from paperlib.core.params import make_params
from paperlib.data import build_dataset
from paperlib.core.errors import PaperlibError
from paperlib.train.evaluate import evaluate_set
from paperlib.train.loop import TrainSettings, train_classifier
from paperlib.train.models import ConvNet, init_parameters


def test_lr_drops_tenfold_for_the_second_half():
    s = TrainSettings(epochs=10, lr=0.01)
    assert [s.lr_at(e) for e in (0, 5, 6, 9)] == [0.01, 0.01, pytest.approx(0.001), pytest.approx(0.001)]


def test_training_learns_the_plain_digits(small_eval):
    params = make_params(dataset="mnist", method="whole", **{**small_eval, "eval_epochs": 3})
    ds = build_dataset(params)
    result = evaluate_set(ds.normalized("train"), ds.train.labels, ds, params, torch.device("cpu"))
    assert result["acc"] > 60  # 3 epochs on 1433 digits; chance is 10
    assert math.isnan(result["acc_conflicting"]) and result["deo_m"] == 0


def test_same_seed_same_metrics_and_different_seed_differs(small_eval):
    ds = build_dataset(dataset="cmnist", source="digits")
    images, labels = ds.normalized("train")[:200], ds.train.labels[:200]

    def metrics(seed):
        params = make_params(dataset="cmnist", seed=seed, **small_eval)
        return evaluate_set(images, labels, ds, params, torch.device("cpu"))["runs"]

    assert metrics(0) == metrics(0)
    assert metrics(0) != metrics(1)


def test_non_finite_loss_names_the_epoch():
    net = init_parameters(ConvNet(1, 10, 28, width=8), torch.Generator().manual_seed(0))
    images = torch.full((8, 1, 28, 28), float("nan"))
    with pytest.raises(PaperlibError, match="epoch 1; lower eval_lr"):
        train_classifier(net, images, torch.zeros(8, dtype=torch.long), TrainSettings(epochs=2),
                         torch.Generator().manual_seed(0), show_progress=False)
