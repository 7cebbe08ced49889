"""Paper A's KDE reweighting: density, bandwidths, weights, encoders, and the run path."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

from paperlib.core.params import make_params, with_overrides
from paperlib.data import build_dataset
from paperlib.core.errors import PaperlibError
from paperlib.train.supcon import supcon_loss, train_supcon
from paperlib.distill.weights import sample_weights
from paperlib.distill.kde import (
    bandwidth,
    class_kde_weights,
    density_to_weights,
    kde_weights,
    log_density,
    weight_diagnostics,
)


def _brute_force_log_density(x: torch.Tensor, h: float) -> torch.Tensor:
    """Textbook Gaussian KDE, one pair at a time, in float64."""
    x = x.double()
    n, d = x.shape
    out = torch.empty(n, dtype=torch.float64)
    for i in range(n):
        total = 0.0
        for j in range(n):
            sq = float(((x[i] - x[j]) ** 2).sum())
            total += math.exp(-sq / (2 * h * h)) / ((2 * math.pi * h * h) ** (d / 2))
        out[i] = math.log(total / n)
    return out


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_log_density_matches_brute_force_in_any_chunking(chunk):
    x = torch.randn(23, 4, generator=torch.Generator().manual_seed(0))
    expected = _brute_force_log_density(x, 0.8)
    assert torch.allclose(log_density(x, 0.8, chunk=chunk).double(), expected, atol=1e-4)


def test_bandwidth_rules():
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(1)) * 2.0
    sigma = float(x.var(0).mean().sqrt())
    assert bandwidth(x, "scott") == pytest.approx(sigma * 500 ** (-1 / 7), rel=1e-5)
    assert bandwidth(x, "silverman") == pytest.approx(sigma * (4 / (500 * 5)) ** (1 / 7), rel=1e-5)
    assert bandwidth(x, "median") == pytest.approx(float(torch.pdist(x).median()), rel=1e-5)
    assert bandwidth(x, "fixed", 0.3) == 0.3
    with pytest.raises(PaperlibError, match="unknown kde_bandwidth"):
        bandwidth(x, "nope")


@pytest.mark.parametrize("n, kept", [(1999, 1999), (3999, 3999), (4000, 2000), (6999, 2333)])
def test_median_bandwidth_takes_every_n_over_2000th_point_up_to_3999(n, kept, monkeypatch):
    x = torch.randn(n, 1, generator=torch.Generator().manual_seed(n))
    cdist, sizes = torch.cdist, []
    monkeypatch.setattr(torch, "cdist", lambda x1, x2, **kw: sizes.append(x1.shape[0]) or cdist(x1, x2, **kw))
    h = bandwidth(x, "median")
    assert sizes == [kept]
    assert h == pytest.approx(float(torch.pdist(x[:: max(1, n // 2000)]).median()), rel=1e-5)


@pytest.mark.parametrize("weighting", ["power", "softmax"])
@pytest.mark.parametrize("clip", [0.0, 2.0])
def test_weights_sum_to_one_per_class_and_decrease_with_density(weighting, clip):
    gen = torch.Generator().manual_seed(2)
    embeddings = torch.randn(300, 5, generator=gen)
    labels = torch.arange(300) % 3
    weights, log_p, _ = class_kde_weights(embeddings, labels, 3, "median", weighting=weighting, clip=clip)
    sums = torch.zeros(3).index_add_(0, labels, weights)
    assert torch.allclose(sums, torch.ones(3), atol=1e-5)
    for c in range(3):
        w, lp = weights[labels == c], log_p[labels == c]
        order = torch.argsort(lp)
        assert bool((w[order][1:] <= w[order][:-1] + 1e-7).all())  # denser, never heavier
        if clip:
            assert float(w.max()) <= clip / w.numel() + 1e-6


@pytest.mark.parametrize("weights, clip, expected", [
    ([0.2, 0.7, 0.1], 1.5, [1 / 3, 0.5, 1 / 6]),  # one cap; its excess spread 2:1 over the others
    ([0.05, 0.6, 0.05, 0.3], 1.4, [0.15, 0.35, 0.15, 0.35]),  # capping the first pushes the second over
    ([0.5, 0.3, 0.2], 1.0, [1 / 3, 1 / 3, 1 / 3]),  # a cap at the uniform weight leaves it uniform
    ([0.3, 0.4, 0.3], 2.0, [0.3, 0.4, 0.3]),  # under the cap: unchanged
])
def test_clipping_caps_weights_and_scales_the_rest_alike(weights, clip, expected):
    log_p = -torch.tensor(weights).log()  # power 1: w ~ 1 / p
    clipped = density_to_weights(log_p, "power", alpha=1.0, clip=clip)
    assert torch.allclose(clipped, torch.tensor(expected), atol=1e-6)


def test_a_cap_the_weighting_leaves_no_room_for_is_a_one_line_error():
    """A weighting so steep that most weights underflow to 0 cannot be capped at 1.5x uniform."""
    log_p = torch.linspace(-20, 20, 100)
    with pytest.raises(PaperlibError, match=r"^kde_clip=1.5 cannot hold: the weighting leaves \d+ of 100 samples a "
                                            r"non-zero weight; .*raise kde_clip to at least \d+$"):
        density_to_weights(log_p, "power", alpha=100.0, clip=1.5)


def test_power_zero_is_uniform_and_power_one_is_inverse_density():
    log_p = torch.tensor([-1.0, -2.0, -3.0])
    assert torch.allclose(density_to_weights(log_p, "power", alpha=0.0), torch.full((3,), 1 / 3))
    inverse = torch.exp(-log_p)
    assert torch.allclose(density_to_weights(log_p, "power", alpha=1.0), inverse / inverse.sum())


def _toy_biased_embeddings(n_per_class: int = 400, conflict: float = 0.05):
    """Two classes; 95% of each sits in its own tight 'colour' cluster, 5% spread over other clusters."""
    gen = torch.Generator().manual_seed(3)
    centres = torch.randn(10, 8, generator=gen) * 5.0
    labels = torch.arange(2).repeat_interleave(n_per_class)
    attribute = labels.clone()
    n_conflict = int(conflict * n_per_class)
    for c in range(2):
        rows = torch.arange(c * n_per_class, c * n_per_class + n_conflict)
        attribute[rows] = 2 + torch.arange(n_conflict) % 8  # the other "colours"
    embeddings = centres[attribute] + 0.5 * torch.randn(2 * n_per_class, 8, generator=gen)
    return embeddings, labels, attribute == labels


def test_conflicting_samples_get_a_larger_share_of_weight_than_of_samples():
    embeddings, labels, aligned = _toy_biased_embeddings()
    weights, _, _ = class_kde_weights(embeddings, labels, 2, "median")
    for row in weight_diagnostics(weights, labels, aligned, 2):
        assert row["conflicting_sample_share"] == pytest.approx(0.05)
        assert row["conflicting_weight_share"] > 0.5  # measured ~0.97: 20x their share of the samples


def test_supcon_loss_is_lower_for_class_clustered_features():
    labels = torch.arange(4).repeat(8)
    gen = torch.Generator().manual_seed(4)
    clustered = torch.nn.functional.normalize(torch.eye(4)[labels] + 0.05 * torch.randn(32, 4, generator=gen), dim=1)
    scattered = torch.nn.functional.normalize(torch.randn(32, 4, generator=gen), dim=1)
    assert float(supcon_loss(clustered, labels, 0.1)) < float(supcon_loss(scattered, labels, 0.1))
    assert float(supcon_loss(clustered[:1], labels[:1], 0.1)) == 0.0  # nothing to contrast


def test_a_diverging_supcon_encoder_stops_with_the_step_it_diverged_at():
    # The losses are read on the host every few steps, not every step; the error still names the first bad one.
    params = make_params(dataset="cmnist", source="digits", conflict_ratio=0.1, method="dm", target="weighted",
                         weights="kde", supcon_epochs=3, supcon_lr=1e30, net_width=8, device="cpu", progress=False)
    with pytest.raises(PaperlibError, match=r"^SupCon loss became nan at step 2; lower supcon_lr \(now 1e\+30\)"):
        train_supcon(build_dataset(params), params, torch.device("cpu"))


def test_dsa_false_trains_the_supcon_encoder_on_the_images_themselves():
    """dsa=false turns augmentation off everywhere, SupCon's view included (dsa keys the embeddings)."""
    params = make_params(dataset="cmnist", source="digits", conflict_ratio=0.1, method="dm", target="weighted",
                         weights="kde", supcon_epochs=0.3, net_width=8, device="cpu", progress=False)
    dataset = build_dataset(params)

    def weights_of(p):
        return [w.detach().clone() for w in train_supcon(dataset, p, torch.device("cpu")).parameters()]

    plain = weights_of(with_overrides(params, {"dsa": False}))
    again = weights_of(with_overrides(params, {"dsa": False}))
    augmented = weights_of(params)
    assert all(torch.equal(a, b) for a, b in zip(plain, again))
    assert not all(torch.equal(a, b) for a, b in zip(plain, augmented))


def _supcon_loss_by_selection(features, labels, temperature):
    """The loss as first written: the anchors with a positive selected by a boolean index (a host wait)."""
    n = features.shape[0]
    logits = (features @ features.T / temperature).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~torch.eye(n, dtype=torch.bool)
    count = positives.sum(1)
    return -(torch.where(positives, log_prob, 0.0).sum(1)[count > 0] / count[count > 0]).mean()


@pytest.mark.parametrize("labels", [torch.arange(4).repeat(8), torch.arange(41) % 5,
                                    torch.tensor([0, 0, 1, 1, 2, 3, 4, 4])],
                         ids=["every anchor has a positive", "41 anchors (1/41 is inexact)", "two anchors without one"])
def test_supcon_loss_without_a_host_wait_matches_the_selection(labels):
    gen = torch.Generator().manual_seed(5)
    features = torch.nn.functional.normalize(torch.randn(labels.shape[0], 6, generator=gen), dim=1)
    values, gradients = [], []
    for loss in (supcon_loss, _supcon_loss_by_selection):
        x = features.clone().requires_grad_()
        value = loss(x, labels, 0.1)
        value.backward()
        values.append(value.detach())
        gradients.append(x.grad)
    if bool((torch.bincount(labels) > 1).all()):  # the same sums in the same order: bit-identical
        assert torch.equal(values[0], values[1]) and torch.equal(gradients[0], gradients[1])
    assert torch.allclose(values[0], values[1], rtol=1e-6) and torch.allclose(gradients[0], gradients[1], atol=1e-6)
    assert float(supcon_loss(features[:2], torch.tensor([0, 1]), 0.1)) == 0.0  # two classes, no pair


@pytest.mark.parametrize("encoder", ["pixels", "random", "supcon"])
def test_kde_weights_end_to_end_on_digits_are_cached_and_deterministic(encoder, tmp_path, monkeypatch):
    import paperlib.distill.kde as reweight

    computed = []
    original = reweight.compute_kde_weights
    monkeypatch.setattr(reweight, "compute_kde_weights", lambda *a: computed.append(1) or original(*a))
    params = make_params(dataset="cmnist", source="digits", conflict_ratio=0.1, method="dm", target="weighted",
                         weights="kde", kde_encoder=encoder, supcon_epochs=0.2, net_width=16, device="cpu",
                         cache_dir=str(tmp_path))
    dataset = build_dataset(params)
    first = kde_weights(dataset, params, torch.device("cpu"))
    assert set(first.seconds) == {"encoder", "density"}
    again = kde_weights(dataset, params, torch.device("cpu"))  # from the cache
    recomputed = kde_weights(dataset, make_params({**params.__dict__, "force": True}), torch.device("cpu"))
    assert torch.equal(first.weights, again.weights) and torch.equal(first.weights, recomputed.weights)
    assert len(computed) == 2  # the first and the forced call computed; the second loaded the cache entry
    train = dataset.train
    sums = torch.zeros(10).index_add_(0, train.labels, first.weights)
    assert torch.allclose(sums, torch.ones(10), atol=1e-4)


def test_two_processes_asking_for_the_same_weights_compute_them_once(tmp_path, monkeypatch):
    """The weights file is locked while it is computed: the second caller waits, then loads what the first
    stored (threads hold separate lock handles, as processes do)."""
    import threading
    import time

    from paperlib.distill import kde

    params = make_params(dataset="cmnist", source="digits", conflict_ratio=0.1, method="dm", target="weighted",
                         weights="kde", kde_encoder="pixels", device="cpu", cache_dir=str(tmp_path))
    dataset = build_dataset(params)
    computed = []
    compute = kde.compute_kde_weights

    def slow(*args):
        computed.append(1)
        time.sleep(0.3)  # long enough for the other thread to ask meanwhile
        return compute(*args)

    monkeypatch.setattr(kde, "compute_kde_weights", slow)
    results = []
    threads = [threading.Thread(target=lambda: results.append(kde_weights(dataset, params, torch.device("cpu"))))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(computed) == 1 and torch.equal(results[0].weights, results[1].weights)


def test_run_with_kde_weights_records_cost_and_diagnostics(small_eval, tmp_path):
    from paperlib.experiments.runner import run

    params = make_params(dataset="cmnist", conflict_ratio=0.1, method="dm", ipc=2, iterations=2, target="weighted",
                         weights="kde", kde_encoder="pixels", batch_real=64, cache_dir=str(tmp_path), **small_eval)
    record = run(params)
    assert set(record["kde_seconds"]) == {"encoder", "density"}
    samples = [row["conflicting_sample_share"] for row in record["kde_diagnostics"]]
    assert all(s == pytest.approx(0.1, abs=0.01) for s in samples)
    dataset = build_dataset(params)  # the record's diagnostics are those of the weights the run matched with
    train = dataset.train
    expected = weight_diagnostics(kde_weights(dataset, params, torch.device("cpu")).weights, train.labels,
                                  train.aligned, 10)
    assert record["kde_diagnostics"] == expected
    from paperlib.experiments.suite import RunSpec
    from paperlib.report.tables import first_kde_diagnostics

    plain = make_params(**{**dataclasses.asdict(params), "target": "vanilla", "weights": "uniform"})
    specs = [RunSpec("e", "vanilla", plain), RunSpec("e", "kde", params)]  # notebook 03 shows the first KDE run's
    assert first_kde_diagnostics(specs) == expected
    with pytest.raises(PaperlibError, match="no KDE run of this suite has a stored record; run the suite first"):
        first_kde_diagnostics(specs[:1])


def test_kde_parameters_are_validated_and_only_key_kde_runs():
    with pytest.raises(PaperlibError, match="kde_clip"):
        make_params(kde_clip=0.5)
    with pytest.raises(PaperlibError, match="unknown kde_encoder"):
        make_params(kde_encoder="resnet")
    with pytest.raises(PaperlibError, match="supcon_temperature must be positive"):
        make_params(supcon_temperature=0.0)
    from paperlib.core.keys import key_values

    vanilla = key_values(make_params(method="dm"))
    assert not any(k.startswith(("kde_", "supcon_")) for k in vanilla)
    pixels = key_values(make_params(method="dm", target="weighted", weights="kde", kde_encoder="pixels"))
    assert "kde_encoder" in pixels and "supcon_epochs" not in pixels


def test_weight_share_plot_draws_one_pair_of_bars_per_class(tmp_path):
    from paperlib.report.plots import plot_weight_shares, save_figure

    embeddings, labels, aligned = _toy_biased_embeddings()
    weights, _, _ = class_kde_weights(embeddings, labels, 2, "median")
    ax = plot_weight_shares(weight_diagnostics(weights, labels, aligned, 2))
    assert len(ax.patches) == 4
    pdf = save_figure(ax, tmp_path / "shares.pdf").read_bytes()
    assert pdf[:4] == b"%PDF" and b"/CreationDate" not in pdf  # a date would change the bytes of the same figure


def test_supcon_embeddings_are_cached_once_per_encoder_and_shared_by_kde_settings(tmp_path, monkeypatch):
    import paperlib.distill.kde as reweight
    from paperlib.core.keys import cache_key

    params = make_params(dataset="cmnist", source="digits", conflict_ratio=0.1, method="dm", target="weighted",
                         weights="kde", supcon_epochs=0.2, net_width=16, device="cpu", cache_dir=str(tmp_path))
    dataset = build_dataset(params)
    first = reweight.embed_training_set(dataset, params, torch.device("cpu"))

    def no_training(*args, **kwargs):
        raise AssertionError("the encoder was trained again")

    monkeypatch.setattr(reweight, "train_supcon", no_training)
    # nor is a float copy of the training split made to be thrown away (CelebA at 64 px: 8 GB on the device)
    monkeypatch.setattr(type(dataset), "normalized", lambda *a, **k: pytest.fail("the split was normalised"))
    scott = make_params({**params.__dict__, "kde_bandwidth": "scott"})  # another KDE setting, same encoder
    assert cache_key(scott, "embeddings") == cache_key(params, "embeddings")
    loaded = reweight.embed_training_set(dataset, scott, torch.device("cpu"))
    # the load reports what training the encoder cost, not what loading it did
    assert torch.equal(loaded.values, first.values) and loaded.seconds == first.seconds > 0
    warmer = make_params({**params.__dict__, "supcon_temperature": 0.5})  # another encoder: trains again
    assert cache_key(warmer, "embeddings") != cache_key(params, "embeddings")
    with pytest.raises(AssertionError, match="trained again"):
        reweight.embed_training_set(dataset, warmer, torch.device("cpu"))
    from paperlib.core.store import cache_root, save_tensors

    # an entry cached before the cost was stored: the cost is unknown, not the time the load took
    path = cache_root(str(tmp_path)) / "weights" / f"cmnist-embeddings-{cache_key(params, 'embeddings')}.pt"
    save_tensors(path, {"embeddings": first.values})
    assert reweight.embed_training_set(dataset, scott, torch.device("cpu")).seconds is None
    assert reweight.kde_weights(dataset, scott, torch.device("cpu")).seconds["encoder"] is None


@pytest.mark.parametrize(("encoder_seconds", "one_off", "amortised"), [(6.0, 8.0, 3.5), (None, None, None)])
def test_a_kde_runs_one_off_cost_is_spread_over_its_iterations_or_shown_unknown(encoder_seconds, one_off,
                                                                                 amortised):
    from paperlib.experiments.suite import RunSpec
    from paperlib.report.tables import _row
    from paperlib.train.metrics import METRIC_KEYS

    params = make_params(dataset="cmnist", conflict_ratio=0.05, method="dm", ipc=1, iterations=4,
                         target="weighted", weights="kde")
    record = {"metrics": {name: 0.5 for key in METRIC_KEYS for name in (key, f"{key}_std")},
              "timings": {"evaluate": 1.0}, "num_eval": 1, "device": "cpu", "seconds_per_iteration": 1.5,
              "kde_seconds": {"encoder": encoder_seconds, "density": 2.0}}
    row = _row(RunSpec("kde", "dm + kde", params), record)
    assert (row["kde_one_off_seconds"], row["seconds_per_iteration_amortised"]) == (one_off, amortised)


def test_kde_weights_that_overflow_are_a_one_line_error_and_nothing_is_stored(tmp_path):
    params = make_params(dataset="cmnist", source="digits", conflict_ratio=0.1, method="dm", target="weighted",
                         weights="kde", kde_encoder="pixels", kde_bandwidth="fixed", kde_bandwidth_value=1e-30,
                         device="cpu", cache_dir=str(tmp_path))
    with pytest.raises(PaperlibError, match=r"KDE weights are not finite in class \d \(bandwidth 1e-30\)"):
        kde_weights(build_dataset(params), params, torch.device("cpu"))
    assert not list((tmp_path / "weights").glob("*.pt"))


def test_weight_diagnostics_are_the_shares_and_kish_size_of_each_class():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    aligned = torch.tensor([1, 1, 1, 0, 1, 1])
    weights = torch.tensor([1.0, 1.0, 1.0, 3.0, 5.0, 5.0])  # class 0 normalised: 1/6, 1/6, 1/6, 1/2
    first, second = weight_diagnostics(weights, labels, aligned, num_classes=2)
    assert first["samples"] == 4 and math.isclose(first["conflicting_sample_share"], 0.25)
    assert math.isclose(first["conflicting_weight_share"], 0.5, rel_tol=1e-6)
    assert math.isclose(first["effective_samples"], 3.0, rel_tol=1e-6)  # 1 / (3/36 + 1/4)
    assert second["conflicting_weight_share"] == 0.0 and math.isclose(second["effective_samples"], 2.0, rel_tol=1e-6)


def test_group_balanced_weights_give_every_class_group_cell_the_same_total_weight():
    params = make_params(dataset="cmnist_fg", source="digits", majority_ratio=0.9, weights="group_balanced",
                         device="cpu")
    ds = build_dataset(params)
    weights, _ = sample_weights(ds, params, torch.device("cpu"))
    cells = ds.train.labels * ds.info.num_attributes + ds.train.attributes
    totals = torch.zeros(ds.num_classes * ds.info.num_attributes).index_add_(0, cells, weights)
    present = torch.bincount(cells, minlength=totals.numel()) > 0
    assert bool(present.sum() > ds.num_classes)  # minority cells exist, so the test can tell the weightings apart
    assert torch.allclose(totals[present], torch.ones(int(present.sum())))
    assert bool((totals[~present] == 0).all())


def test_encoders_normalise_the_split_a_batch_at_a_time_to_the_same_values():
    """Embedding batch by batch from the uint8 split (no float copy of it) gives the embeddings of the split
    normalised whole, bit for bit: normalisation is element-wise."""
    from paperlib.distill.kde import _embed_all
    from paperlib.train.models import ConvNet, init_parameters

    dataset = build_dataset(make_params(dataset="cmnist", source="digits", conflict_ratio=0.1))
    net = init_parameters(ConvNet(3, 10, dataset.image_size, width=8), torch.Generator().manual_seed(0))
    whole = dataset.normalized("train")
    with torch.inference_mode():
        expected = torch.cat([net.embed(x) for x in whole.split(100)])
        assert torch.equal(_embed_all(net.embed, dataset, torch.device("cpu"), False, batch=100), expected)


def test_supcon_embeddings_that_diverged_after_the_last_loss_read_are_an_error_and_not_cached(tmp_path):
    """A divergence on SupCon's last step shows in no loss it read: its embeddings were cached as NaN, and every
    KDE setting of that encoder then failed, blamed on the bandwidth."""
    params = make_params(dataset="cmnist", source="digits", conflict_ratio=0.1, method="dm", target="weighted",
                         weights="kde", supcon_epochs=0.05, supcon_lr=1e30, net_width=8, device="cpu",
                         progress=False, cache_dir=str(tmp_path))
    with pytest.raises(PaperlibError, match=r"^the SupCon encoder's embeddings are not finite: its training "
                                            r"diverged; lower supcon_lr \(now 1e\+30\)"):
        kde_weights(build_dataset(params), params, torch.device("cpu"))
    assert not list((tmp_path / "weights").glob("*.pt"))


@pytest.mark.parametrize("damage, entry, problem", [
    (lambda saved: {**saved, "weights": saved["weights"][:10]}, "weights",
     r"weights for 1433 training images expected, got torch.float32 \(10,\)"),
    (lambda saved: {**saved, "weights": -saved["weights"]}, "weights", "negative weights"),
    (lambda saved: {**saved, "weights": saved["weights"] * math.nan}, "weights", "weights that are not finite"),
    (lambda saved: {**saved, "embeddings": saved["embeddings"][:10]}, "embeddings",
     r"embeddings for 1433 training images expected, got torch.float32 \(10, \d+\)"),
    (lambda saved: {**saved, "seconds": "slow"}, "embeddings",
     r"seconds 'slow' is not a number"),
    (lambda saved: {**saved, "log_density": saved["log_density"][:10]}, "weights",
     "log_density for 1433 training images expected"),
    (lambda saved: {**saved, "bandwidth": saved["bandwidth"][:3]}, "weights",
     "a bandwidth for each of 10 classes expected"),
    (lambda saved: {**saved, "seconds": 3.0}, "weights", r"seconds 3.0 is not a mapping of costs"),
])
def test_a_damaged_kde_cache_entry_is_named_not_a_torch_error(damage, entry, problem, tmp_path):
    from paperlib.core.store import load_tensors, save_tensors

    params = make_params(dataset="cmnist", source="digits", conflict_ratio=0.1, method="dm", target="weighted",
                         weights="kde", supcon_epochs=0.05, net_width=8, device="cpu", progress=False,
                         cache_dir=str(tmp_path))
    dataset = build_dataset(params)
    kde_weights(dataset, params, torch.device("cpu"))
    weights_file, = (tmp_path / "weights").glob("cmnist-[!e]*.pt")
    path = next((tmp_path / "weights").glob("*embeddings*.pt")) if entry == "embeddings" else weights_file
    save_tensors(path, damage(load_tensors(path)))
    if entry == "embeddings":
        weights_file.unlink()  # so that the embeddings are read again
    path_re = re.escape(str(path))  # a temporary path may hold regex characters
    with pytest.raises(PaperlibError, match=rf"^cache entry {path_re} cannot be read \({problem}\); nothing was "
                                            "recomputed"):
        kde_weights(dataset, params, torch.device("cpu"))


def test_a_cache_entry_missing_a_key_says_which():
    from paperlib.core.store import unreadable_message

    assert unreadable_message("x.pt", KeyError("train"), "rebuilding it") == \
        "cache entry x.pt cannot be read (no 'train'); rebuilding it"


def test_force_trains_a_runs_kde_encoder_once_for_all_its_training_sets(tmp_path, monkeypatch):
    """Under force, each of num_distill training sets retrained the same SupCon encoder (the paper profile: 5)."""
    import paperlib.distill.kde as kde
    import paperlib.experiments.runner as runner

    trained, weighed, distilled = [], [], []
    train, weigh, distil = kde.train_supcon, kde.compute_kde_weights, runner.distill
    monkeypatch.setattr(kde, "train_supcon", lambda *args: trained.append(1) or train(*args))
    monkeypatch.setattr(kde, "compute_kde_weights", lambda *args: weighed.append(1) or weigh(*args))
    monkeypatch.setattr(runner, "distill", lambda *args: distilled.append(1) or distil(*args))
    params = make_params(dataset="cmnist", source="digits", conflict_ratio=0.1, method="dm", target="weighted",
                         weights="kde", supcon_epochs=0.05, net_width=8, batch_real=32, ipc=1, iterations=2,
                         num_distill=2, num_eval=1, eval_epochs=1, device="cpu", progress=False,
                         cache_dir=str(tmp_path))
    first = runner.run(params)
    assert (len(trained), len(weighed), len(distilled)) == (1, 1, 2) and first["num_distill"] == 2
    forced = runner.run(params, force=True)
    # the encoder and the weights recomputed once, read by the second training set; both sets distilled again
    assert (len(trained), len(weighed), len(distilled)) == (2, 2, 4) and not forced["cached"]
    assert forced["distilled_on_devices"] == ["cpu", "cpu"]  # where each of its two sets was made
