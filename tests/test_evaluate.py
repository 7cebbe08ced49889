import copy
import math

import pytest
import torch

from paperlib.core.params import make_params
from paperlib.data import build_dataset
from paperlib.core.errors import PaperlibError
from paperlib.train.evaluate import evaluate_set
from paperlib.train.loop import (CPU_MICRO_BATCH, TrainSettings, make_optimizer, micro_batch_for, run_epochs,
                                 train_classifier)
from paperlib.train.models import ConvNet, init_parameters


def test_lr_drops_tenfold_for_the_second_half():
    s = TrainSettings(epochs=10, lr=0.01)
    assert [s.lr_at(e) for e in (0, 5, 6, 9)] == [0.01, 0.01, pytest.approx(0.001), pytest.approx(0.001)]


def test_the_official_schedule_runs_one_more_epoch_and_drops_after_the_middle_one():
    s = TrainSettings(epochs=10, lr=0.01, official_schedule=True)
    assert s.epochs_run == 11 and s.drop_epoch == 7  # range(E + 1); lr x0.1 after epoch E // 2 + 1 = 6
    assert [s.lr_at(e) for e in (0, 6, 7, 10)] == [0.01, 0.01, pytest.approx(0.001), pytest.approx(0.001)]
    assert TrainSettings.from_params(make_params()).official_schedule  # the default
    assert not TrainSettings.from_params(make_params(eval_official_schedule=False)).official_schedule


def _official_loop(net, images, labels, epochs, lr, batch, new_optimizer):
    """DatasetCondensation's evaluate_synset, written out: range(E + 1) epochs, and after epoch E // 2 + 1 a new
    optimiser (``new_optimizer(parameters, lr)``) at a tenth of the rate, its state lost."""
    optimizer = new_optimizer(net.parameters(), lr)
    order_gen = torch.Generator().manual_seed(1)
    for epoch in range(epochs + 1):
        order = torch.randperm(images.shape[0], generator=order_gen)
        for start in range(0, images.shape[0], batch):
            index = order[start:start + batch]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(images[index]), labels[index]).backward()
            optimizer.step()
        if epoch == epochs // 2 + 1:
            lr *= 0.1
            optimizer = new_optimizer(net.parameters(), lr)
    return net


def _run_epochs_of(net, images, labels, settings):
    """``net`` trained by :func:`run_epochs` with ``settings``' optimiser, shuffled by the official loop's seed."""
    run_epochs(make_optimizer(net.parameters(), settings), images, settings, torch.Generator().manual_seed(1),
               lambda index, x: torch.nn.functional.cross_entropy(net(x), labels[index]), show_progress=False)
    return net


def _small_problem():
    gen = torch.Generator().manual_seed(0)
    net = init_parameters(ConvNet(1, 4, 28, width=8), gen)
    return net, torch.randn(24, 1, 28, 28, generator=gen), torch.randint(0, 4, (24,), generator=gen)


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_the_official_schedule_is_the_official_loop_bit_for_bit():
    """The official loop with SGD (momentum 0.9, weight decay 5e-4): run_epochs must give the same weights exactly."""
    net, images, labels = _small_problem()
    sgd = lambda parameters, lr: torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=0.0005)  # noqa: E731
    official = _official_loop(copy.deepcopy(net), images, labels, 4, 0.05, 8, sgd)
    settings = TrainSettings(epochs=4, lr=0.05, batch=8, dsa_strategy=None, official_schedule=True)
    assert _same_weights(official, _run_epochs_of(copy.deepcopy(net), images, labels, settings))
    # the first schedule over as many epochs: other weights (so the test can fail)
    settings = TrainSettings(epochs=5, lr=0.05, batch=8, dsa_strategy=None)
    assert not _same_weights(official, _run_epochs_of(copy.deepcopy(net), images, labels, settings))


def test_eval_optimizer_adam_is_the_debiasing_codes_adam_on_the_protocols_schedule():
    """``eval_optimizer=adam``: Adam without weight decay at ``eval_lr`` (LfF's and SelecMix's official optimiser),
    a fresh one after the official schedule's drop, bit for bit against that loop written out; SGD otherwise."""
    assert TrainSettings.from_params(make_params()).optimizer == "sgd"
    net, images, labels = _small_problem()
    optimizer = make_optimizer(net.parameters(), TrainSettings.from_params(make_params(eval_optimizer="adam",
                                                                                        eval_lr=0.005)))
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["lr"] == 0.005 and optimizer.defaults["weight_decay"] == 0
    assert isinstance(make_optimizer(net.parameters(), TrainSettings()), torch.optim.SGD)
    with pytest.raises(PaperlibError, match="unknown optimizer 'adagrad'; choose one of: sgd, adam"):
        make_optimizer(net.parameters(), TrainSettings(optimizer="adagrad"))

    adam = lambda parameters, lr: torch.optim.Adam(parameters, lr=lr)  # noqa: E731
    official = _official_loop(copy.deepcopy(net), images, labels, 4, 0.005, 8, adam)
    settings = TrainSettings(epochs=4, lr=0.005, batch=8, dsa_strategy=None, official_schedule=True, optimizer="adam")
    assert _same_weights(official, _run_epochs_of(copy.deepcopy(net), images, labels, settings))
    settings = TrainSettings(epochs=4, lr=0.005, batch=8, dsa_strategy=None, official_schedule=True)  # SGD: differs
    assert not _same_weights(official, _run_epochs_of(copy.deepcopy(net), images, labels, settings))


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


@pytest.mark.parametrize(("fill", "lr", "advice"), [
    (0.5, 1e30, "epoch [12]; lower eval_lr"),  # data-like images: the evaluation's learning rate is to blame
    (1e20, 0.01, r"epoch 1; the training images are a distilled set that diverged \(\|x\| up to 1e\+20, whose "
                 r"squares overflow float32\): lower lr_img"),
    (1e10, 1e30, "epoch [12]; lower eval_lr"),  # large but computable images: the evaluation diverged
    (float("nan"), 0.01, r"epoch 1; the training images are a distilled set that diverged \(some pixels are not "
                         r"finite\): lower lr_img"),
])
def test_non_finite_loss_names_the_epoch_and_the_setting_to_lower(fill, lr, advice):
    net = init_parameters(ConvNet(1, 10, 28, width=8), torch.Generator().manual_seed(0))
    images = torch.full((8, 1, 28, 28), fill)
    with pytest.raises(PaperlibError, match=advice):
        train_classifier(net, images, torch.arange(8), TrainSettings(epochs=2, lr=lr),
                         torch.Generator().manual_seed(0), show_progress=False)


def test_a_training_with_a_device_flag_reads_nothing_on_the_host_and_clears_the_flag(monkeypatch):
    from paperlib.train import loop

    monkeypatch.setattr(loop, "read_on_host", lambda *a: pytest.fail("the host read a loss"))
    net = init_parameters(ConvNet(1, 10, 28, width=8), torch.Generator().manual_seed(0))
    labels = torch.zeros(8, dtype=torch.long)
    finite = torch.ones((), dtype=torch.bool)
    train_classifier(net, torch.zeros(8, 1, 28, 28), labels, TrainSettings(epochs=12), torch.Generator().manual_seed(0),
                     show_progress=False, finite=finite)
    assert bool(finite)
    train_classifier(net, torch.full((8, 1, 28, 28), float("nan")), labels, TrainSettings(epochs=12),
                     torch.Generator().manual_seed(0), show_progress=False, finite=finite)
    assert not bool(finite)


def _train_copy(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                micro_batch: int | None) -> tuple[torch.Tensor, list[int]]:
    """The trained parameters of a copy of ``net``, and the size of every piece its loss was called on."""
    net, sizes = copy.deepcopy(net), []
    settings = TrainSettings(epochs=3, batch=8, dsa_strategy="color_crop")
    optimizer = make_optimizer(net.parameters(), settings)

    def batch_loss(index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        sizes.append(index.shape[0])
        return torch.nn.functional.cross_entropy(net(x), labels[index])

    run_epochs(optimizer, images, settings, torch.Generator().manual_seed(0), batch_loss, show_progress=False,
               micro_batch=micro_batch)
    return torch.cat([p.detach().flatten() for p in net.parameters()]), sizes


def test_micro_batches_give_the_whole_batch_step_up_to_float_reassociation():
    gen = torch.Generator().manual_seed(0)
    net = init_parameters(ConvNet(3, 4, 28, width=8), gen)
    images, labels = torch.randn(20, 3, 28, 28, generator=gen), torch.randint(0, 4, (20,), generator=gen)
    whole, whole_sizes = _train_copy(net, images, labels, None)
    parts, part_sizes = _train_copy(net, images, labels, 3)
    # each epoch: batches of 8, 8 and 4, whole or in parts of 3
    assert whole_sizes == [8, 8, 4] * 3 and part_sizes == [3, 3, 2, 3, 3, 2, 3, 1] * 3
    torch.testing.assert_close(parts, whole, rtol=1e-4, atol=1e-5)


def test_only_models_with_independent_samples_train_in_micro_batches_and_only_on_the_cpu():
    cpu = torch.device("cpu")
    assert micro_batch_for(ConvNet(1, 10, 28, width=8), cpu) == CPU_MICRO_BATCH
    assert micro_batch_for(ConvNet(1, 10, 28, width=8, norm="batchnorm"), cpu) is None
    assert micro_batch_for(ConvNet(1, 10, 28, width=8), torch.device("cuda")) is None


@pytest.mark.parametrize("protocol, empty_cells", [("fairdd", 0.0), ("companion", None)])
def test_evaluation_scores_empty_test_cells_as_its_protocol_says(protocol, empty_cells, small_eval, monkeypatch):
    import paperlib.train.evaluate as evaluate

    given = []
    score = evaluate.classification_metrics
    monkeypatch.setattr(evaluate, "classification_metrics", lambda *args: given.append(args[-1]) or score(*args))
    params = make_params(dataset="cmnist_fg", protocol=protocol, method="random", ipc=2,
                         **{**small_eval, "eval_epochs": 1})
    dataset = build_dataset(params)
    evaluate_set(dataset.normalized("train")[:20], dataset.train.labels[:20], dataset, params, torch.device("cpu"))
    assert given == [empty_cells]  # FairDD's code counts an empty (class, group) cell as 0% right
