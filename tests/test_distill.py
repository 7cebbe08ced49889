"""The distillation engine: DM and gradient matching around one real-data target."""

import dataclasses
import itertools
import platform

import pytest
import torch

from paperlib.core.runtime import environment, generator as seeded
from paperlib.core.keys import key_values
from paperlib.core.params import make_params
from paperlib.data import build_dataset
from paperlib.distill.engine import distill
from paperlib.distill.group_labels import _nearest_centroid
from paperlib.distill.targets import TARGETS, BarycenterTarget, GroupsTarget, WeightedTarget, make_target
from paperlib.distill.dc import default_loops, gradient_distance
from paperlib.distill.dm import dm_loss
from paperlib.distill.engine import Distiller
from paperlib.distill.init import INITS, balanced_quota, initial_images
from paperlib.distill.methods import METHODS
from paperlib.distill.sampling import RealBatch, RealSampler, stratified_quota
from paperlib.core.errors import PaperlibError
from paperlib.train.models import ConvNet, init_parameters


CPU = torch.device("cpu")
TINY = dict(source="digits", net_width=8, batch_real=16, ipc=1, progress=False, device="cpu")


def _params(**kw):
    return make_params(**{**TINY, **kw})


def _distill(params, target_name=None, weights=None, checkpoint=None):
    ds = build_dataset(params)
    name = target_name or params.target
    target = WeightedTarget(weights) if name == "weighted" else TARGETS[name].for_run(ds, params, CPU)[0]
    return distill(ds, params, target, CPU, checkpoint)


def test_dm_reduces_its_loss_on_digits():
    params = _params(dataset="mnist", method="dm", init="noise", iterations=40, lr_img=1.0)
    losses = _distill(params).losses
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


def test_dc_reduces_its_loss_on_digits():
    params = _params(dataset="mnist", method="dc", init="noise", iterations=30, lr_img=1.0)
    losses = _distill(params).losses
    assert sum(losses[-5:]) < 0.75 * sum(losses[:5])  # 0.54-0.57 measured over seeds 0-2


@pytest.mark.parametrize("method", ["dm", "dsa"])
def test_weighted_with_uniform_weights_equals_vanilla_exactly(method):
    params = _params(dataset="cmnist", method=method, iterations=2)
    n = len(build_dataset(params).train)
    vanilla = _distill(params, "vanilla").images
    weighted = _distill(params, "weighted", torch.ones(n)).images
    assert torch.equal(vanilla, weighted)


@pytest.mark.parametrize("method", ["dm", "dsa"])
def test_groups_with_a_single_group_equals_vanilla(method):
    params = _params(dataset="mnist", method=method, iterations=2)  # plain preset: one group
    assert torch.equal(_distill(params, "vanilla").images, _distill(params, "groups").images)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])  # DM runs channels-last
def test_dm_loss_is_bit_identical_whether_real_images_pass_16_at_a_time_or_whole(layout):
    """docs/reproducibility.md: instance norm is per sample, so the CPU's chunks change no embedding bit (held
    with x86-64's AVX-512, AVX2 and pre-AVX kernels, 1 and 2 threads, and with AVX-512 at 3, 8 and 16); an
    accelerator takes the batch whole. Other CPUs' kernels (ARM) may sum in another order for another batch
    size, and were never measured: there the two agree within float32 rounding."""
    net = init_parameters(ConvNet(3, 10, 28, width=16), torch.Generator().manual_seed(0)).to(memory_format=layout)
    gen = torch.Generator().manual_seed(1)
    real, syn = (torch.randn(n, 3, 28, 28, generator=gen).contiguous(memory_format=layout) for n in (10 * 40, 10 * 2))
    aggregation = torch.full((10, 1, 40), 1 / 40)
    same = torch.equal if platform.machine().lower() in ("x86_64", "amd64") else _within_rounding
    assert same(dm_loss(net, real, aggregation, syn, 2, chunk=16),
                dm_loss(net, real, aggregation, syn, 2, chunk=real.shape[0]))  # None is 16 on the CPU
    with torch.no_grad():
        assert same(torch.cat([net.embed(x) for x in real.split(16)]), net.embed(real))


def _within_rounding(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["dm", "dc"])
def test_the_engine_matches_the_target_it_is_given(method):
    """The equalities above hold if the engine ignored its target and always averaged uniformly: every target
    must give its own set on a biased dataset."""
    params = _params(dataset="cmnist", method=method, iterations=2)
    n = len(build_dataset(params).train)
    sets = {name: _distill(params, name).images for name in ("vanilla", "groups", "barycenter")}
    sets["weighted"] = _distill(params, "weighted", torch.rand(n, generator=seeded(5)) + 0.1).images
    for (a, x), (b, y) in itertools.combinations(sets.items(), 2):
        assert not torch.equal(x, y), f"{a} and {b} gave the same set"


def _two_classes_three_groups():
    """A small ConvNet, 6 real images in each of 2 classes (groups 0/1/2 in class 0, 1/0 in class 1), 2 synthetic
    images per class, the batch, and the embeddings: the real ones ``[2, 6, D]``, the synthetic means ``[2, D]``."""
    net = init_parameters(ConvNet(3, 2, 28, width=8), torch.Generator().manual_seed(0))
    real = torch.randn(2 * 6, 3, 28, 28, generator=seeded(791))
    syn = torch.randn(2 * 2, 3, 28, 28, generator=seeded(801))
    groups = torch.tensor([[0, 0, 1, 1, 1, 2], [1, 1, 1, 1, 0, 0]])
    batch = RealBatch(torch.zeros(2, 6, dtype=torch.long), groups, torch.full((2, 6), 1 / 6))
    with torch.no_grad():
        embed_real, embed_syn = net.embed(real).view(2, 6, -1), net.embed(syn).view(2, 2, -1).mean(1)
    return net, real, syn, groups, batch, embed_real, embed_syn


def test_groups_dm_loss_is_the_sum_of_per_group_squared_distances():
    net, real, syn, groups, batch, embed_real, embed_syn = _two_classes_three_groups()
    loss = dm_loss(net, real, GroupsTarget(3).aggregation(batch), syn, ipc=2)
    expected = sum(((embed_real[k][groups[k] == g].mean(0) - embed_syn[k]) ** 2).sum()
                   for k in range(2) for g in groups[k].unique())
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_cobras_l1_distance_sums_the_absolute_differences_to_the_barycenter():
    """dm_distance=l1: COBRA's train_dm.py matches sum |barycenter - synthetic mean| per class."""
    net, real, syn, groups, batch, embed_real, embed_syn = _two_classes_three_groups()
    rows = BarycenterTarget(3).aggregation(batch)
    barycenters = [torch.stack([embed_real[k][groups[k] == g].mean(0) for g in groups[k].unique()]).mean(0)
                   for k in range(2)]
    expected = sum((barycenters[k] - embed_syn[k]).abs().sum() for k in range(2))
    loss = dm_loss(net, real, rows, syn, ipc=2, distance="l1")
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    squared = sum(((barycenters[k] - embed_syn[k]) ** 2).sum() for k in range(2))
    assert float(dm_loss(net, real, rows, syn, ipc=2).detach()) == pytest.approx(float(squared), rel=1e-5)


def test_barycenter_target_is_the_mean_of_the_present_group_rows():
    groups = torch.tensor([[0, 0, 1, 1, 1, 2], [1, 1, 1, 1, 0, 0]])
    batch = RealBatch(torch.zeros(2, 6, dtype=torch.long), groups, torch.full((2, 6), 1 / 6))
    rows = BarycenterTarget(3).aggregation(batch)
    assert rows.shape == (2, 1, 6) and torch.allclose(rows.sum(-1), torch.ones(2, 1))
    # class 0: groups of 2, 3 and 1 images, each group 1/3 of the weight; class 1: two groups, 1/2 each
    expected = torch.tensor([[1 / 6, 1 / 6, 1 / 9, 1 / 9, 1 / 9, 1 / 3], [1 / 8, 1 / 8, 1 / 8, 1 / 8, 1 / 4, 1 / 4]])
    assert torch.allclose(rows[:, 0], expected)


def test_fairdd_dm_gradient_is_the_groups_present_times_the_barycenters_and_the_group_balanced_weights():
    """The identity: for DM, sum_a |mu_a - s|^2 has the gradient |A| * that of |mean_a mu_a - s|^2, and the mean of
    the group means is the group-balanced weighted mean: COBRA's target (warm start off) and group-balanced
    weights give the same gradient, FairDD's divided by the groups present."""
    net = init_parameters(ConvNet(3, 2, 28, width=8), torch.Generator().manual_seed(1))
    real = torch.randn(2 * 6, 3, 28, 28, generator=seeded(2371))
    groups = torch.tensor([[0, 0, 1, 1, 1, 2], [1, 1, 1, 1, 0, 0]])  # 3 groups present in class 0, 2 in class 1
    batch = RealBatch(torch.zeros(2, 6, dtype=torch.long), groups, torch.full((2, 6), 1 / 6))
    # group-balanced weights within the batch: 1 / (count of the sample's group)
    counts = torch.stack([torch.bincount(g, minlength=3)[g] for g in groups]).float()
    balanced = WeightedTarget((1.0 / counts).flatten()).aggregation(
        RealBatch(torch.arange(12).view(2, 6), groups, torch.full((2, 6), 1 / 6)))
    gradients = []
    for aggregation in (GroupsTarget(3).aggregation(batch), BarycenterTarget(3).aggregation(batch), balanced):
        syn = torch.randn(2 * 2, 3, 28, 28, generator=seeded(2), requires_grad=True)
        dm_loss(net, real, aggregation, syn, ipc=2).backward()
        gradients.append(syn.grad.view(2, -1))
    fairdd, barycenter, weighted = gradients
    present = torch.tensor([[3.0], [2.0]])
    assert torch.allclose(barycenter, fairdd / present, rtol=1e-4, atol=1e-7)
    assert torch.allclose(weighted, barycenter, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("method", ["dm", "dc"])
def test_bf16_precision_covers_matching_and_the_inner_loop_trainings(method, precision, monkeypatch):
    """Every matching loss, and DC's inner trainings of the network, run under bf16 autocast with precision=bf16
    and under none with fp32."""
    import paperlib.distill.dc as dc
    import paperlib.distill.dm as dm
    import paperlib.distill.engine as engine

    seen: dict[str, list[bool]] = {"matching": [], "training": []}

    def spy(module, name, kind):
        original = getattr(module, name)

        def spied(*args, **kwargs):
            seen[kind].append(torch.is_autocast_enabled("cpu"))
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, spied)

    spy(dm, "dm_loss", "matching")
    spy(dc, "dc_class_loss", "matching")
    spy(engine, "train_classifier", "training")
    params = _params(dataset="mnist", method=method, outer_loop=2, inner_loop=1, precision=precision,
                     torch_compile="never")
    ds = build_dataset(params)
    d = Distiller(ds, params, TARGETS["vanilla"].for_run(ds, params, CPU)[0], CPU)
    loss = d.step()
    bf16 = precision == "bf16"
    assert seen["matching"] == [bf16] * (1 if method == "dm" else 2 * ds.num_classes)  # DC: each class, each outer
    assert seen["training"] == ([bf16] if method == "dc" else [])  # DC trains the network between outer loops
    assert bool(torch.isfinite(loss))


def test_the_distiller_holds_everything_a_step_may_read():
    """A method's step is written against DistillerState; the engine's Distiller must keep every member of it."""
    from paperlib.distill.state import DistillerState

    params = _params(dataset="mnist", method="dc")
    ds = build_dataset(params)
    distiller = Distiller(ds, params, TARGETS["vanilla"].for_run(ds, params, CPU)[0], CPU)
    members = [name for name in DistillerState.__annotations__] + ["real_batch", "update_images", "train_network"]
    assert len(members) == 18 and [name for name in members if not hasattr(distiller, name)] == []
    assert isinstance(distiller, DistillerState)


def test_dm_warm_start_trains_the_network_first_and_stays_deterministic(monkeypatch):
    ds = build_dataset(dataset="cmnist_fg", source="digits", majority_ratio=0.9)
    params = make_params(dataset="cmnist_fg", source="digits", method="dm", ipc=2, batch_real=8, net_width=8,
                         target="barycenter", warm_start_epochs=2, device="cpu",
                         torch_compile="never")
    trained, original = [], Distiller.train_network

    def spy(self, epochs, lr, batch, lr_name):
        trained.append((epochs, lr, batch, lr_name))
        return original(self, epochs, lr, batch, lr_name)

    monkeypatch.setattr(Distiller, "train_network", spy)
    target, _ = make_target(ds, params, torch.device("cpu"))
    Distiller(ds, params, target, torch.device("cpu")).step()
    assert trained == [(2, 0.01, 256, "warm_start_lr")]  # warm_start_batch=0 takes eval_batch
    monkeypatch.undo()
    losses = []
    for _ in range(2):
        d = Distiller(ds, params, target, torch.device("cpu"))
        losses.append((float(d.step()), d.syn.detach().clone()))
    assert losses[0][0] == losses[1][0] and torch.equal(losses[0][1], losses[1][1])
    cold = Distiller(ds, make_params({**dataclasses.asdict(params), "warm_start_epochs": 0}), target,
                     torch.device("cpu"))
    assert float(cold.step()) != losses[0][0]  # the warm-started network embeds differently


@pytest.mark.parametrize("fill", ["drop", "impute"])
def test_hidden_group_labels_are_dropped_or_imputed_for_the_group_targets_only(fill):
    ds = build_dataset(dataset="cmnist_fg", source="digits", majority_ratio=0.8)
    params = make_params(dataset="cmnist_fg", source="digits", majority_ratio=0.8, method="dm", target="groups",
                         hidden_groups=0.3, hidden_groups_fill=fill, net_width=8, batch_real=16)
    target, facts = make_target(ds, params, torch.device("cpu"))
    again, _ = make_target(ds, params, torch.device("cpu"))
    assert torch.equal(target.sample_groups, again.sample_groups)  # drawn from the seed
    changed = target.sample_groups != ds.train.attributes
    assert facts["hidden_groups"] == round(0.3 * len(ds.train))
    batch = RealSampler(ds.train.labels, ds.train.attributes, 10, ds.info.num_attributes, 16).sample(
        torch.Generator().manual_seed(0))
    rows = target.aggregation(batch)
    if fill == "drop":
        assert int(changed.sum()) == facts["hidden_groups"]
        in_no_row = rows.sum(1) == 0  # [K, B]
        assert torch.equal(in_no_row, target.sample_groups[batch.index] == -1)
    else:
        assert (target.sample_groups >= 0).all() and 0.5 < facts["imputed_right"] <= 1.0  # colour is easy to see
        assert int(changed.sum()) == round((1 - facts["imputed_right"]) * facts["hidden_groups"])
    assert torch.allclose(rows.sum(-1)[rows.sum(-1) > 0], torch.tensor(1.0))
    vanilla = make_params({**dataclasses.asdict(params), "target": "vanilla"})
    assert "hidden_groups" not in key_values(vanilla)  # KDE and vanilla never read group labels
    all_hidden = make_params({**dataclasses.asdict(params), "hidden_groups": 1.0})
    with pytest.raises(PaperlibError, match=r"hidden_groups=1.0 hides every group label of class 0; .*lower"):
        make_target(ds, all_hidden, torch.device("cpu"))  # else drop matched nothing and the run did not move


@pytest.mark.parametrize("a", [3, 25, 26])  # torch.cdist takes a matrix product above 25 centroids
def test_imputation_is_the_batched_cdist_argmin_without_a_centroid_copy_per_hidden_sample(a, monkeypatch):
    g = torch.Generator().manual_seed(0)
    k, h, d = 4, 300, 64
    # Far from the origin and close together: a matrix product's rounding would pick other centroids.
    features = 100 + 1e-3 * torch.randn(h, d, generator=g)
    centroids = 100 + 1e-3 * torch.randn(k, a, d, generator=g)
    labels = torch.randint(0, k, (h,), generator=g)
    present = torch.rand(k, a, generator=g) < 0.7
    present[:, 0] = True
    reference = torch.cdist(features[:, None, :], centroids[labels]).squeeze(1)  # the old [H, A, D] call
    reference[~present[labels]] = float("inf")
    cdist, copied = torch.cdist, []
    monkeypatch.setattr(torch, "cdist", lambda x1, x2, **kw: copied.append(x2.numel()) or cdist(x1, x2, **kw))
    assert torch.equal(_nearest_centroid(features, labels, centroids, present), reference.argmin(1))
    if a <= 25:
        assert max(copied) == a * d  # one class's centroids at a time


@pytest.mark.parametrize("setting, named", [({"sampling": "stratified"}, "sampling=stratified"),
                                            ({"init": "balanced"}, "init=balanced")])
def test_hidden_group_labels_refuse_a_setting_that_reads_every_true_one(setting, named):
    base = dict(dataset="cmnist_fg", source="digits", method="dm", hidden_groups=0.3)
    for target in ("groups", "barycenter"):
        with pytest.raises(PaperlibError, match=rf"hidden_groups=0.3 hides group labels that {named} would read"):
            make_params(**base, target=target, **setting)
        make_params(**{**base, "hidden_groups": 0.0}, target=target, **setting)  # all labels known: fine
    make_params(**base, target="vanilla", **setting)  # hidden_groups unused: fine


def test_stratified_sampling_contains_every_group():
    ds = build_dataset(dataset="cmnist", source="digits", conflict_ratio=0.05)
    sampler = RealSampler(ds.train.labels, ds.train.attributes, 10, 10, 64, "stratified", stratified_min=2)
    counts = torch.tensor(ds.info.group_counts["train"], dtype=torch.float)
    for seed in range(5):
        batch = sampler.sample(torch.Generator().manual_seed(seed))
        assert batch.index.shape == (10, 64)
        in_batch = torch.zeros(10, 10).scatter_add_(1, batch.groups, torch.ones(10, 64))
        assert torch.equal(in_batch > 0, counts > 0)  # every group that exists is in every batch
        assert torch.equal(ds.train.labels[batch.index], torch.arange(10)[:, None].expand(10, 64))
        # inclusion weights undo the over-sampling: the groups' weight shares are the class's.
        share = torch.zeros(10, 10).scatter_add_(1, batch.groups, batch.inclusion)
        assert torch.allclose(share, counts / counts.sum(1, keepdim=True), atol=1e-5)


def test_uniform_sampling_can_miss_small_groups():
    ds = build_dataset(dataset="cmnist", source="digits", conflict_ratio=0.05)
    sampler = RealSampler(ds.train.labels, ds.train.attributes, 10, 10, 16, "uniform")
    batch = sampler.sample(torch.Generator().manual_seed(0))
    assert any(batch.groups[k].unique().numel() < 10 for k in range(10))


def test_batch_real_above_the_smallest_class_is_an_error():
    # Every class fills a row of B images; a smaller class must not silently shrink B for all.
    labels = torch.tensor([0] * 40 + [1] * 25 + [2] * 60)
    groups = torch.zeros_like(labels)
    assert RealSampler(labels, groups, 3, 1, 25).sample(torch.Generator().manual_seed(0)).index.shape == (3, 25)
    with pytest.raises(PaperlibError, match=r"^batch_real=26 is more than class 1's 25 training images; "
                                            r"lower batch_real to at most 25$"):
        RealSampler(labels, groups, 3, 1, 26)
    with pytest.raises(PaperlibError, match=r"class 3's 0 training images; the training split needs images of "
                                            r"every class$"):
        RealSampler(labels, groups, 4, 1, 8)  # an empty class: no batch_real would fit


def test_a_real_batch_too_large_stops_before_the_kde_encoder_trains(monkeypatch):
    from paperlib.distill.kde import ENCODERS

    def no_training(*args, **kwargs):
        raise AssertionError("the encoder trained before the batch_real check")

    monkeypatch.setitem(ENCODERS._entries, "supcon", dataclasses.replace(ENCODERS["supcon"], embed=no_training))
    params = make_params(dataset="cmnist", source="digits", method="dm", target="weighted", weights="kde",
                         batch_real=200, device="cpu")
    ds = build_dataset(params)
    with pytest.raises(PaperlibError, match=r"batch_real=200 is more than class"):
        make_target(ds, params, torch.device("cpu"))


def test_stratified_quota_sums_to_batch_and_respects_floor():
    sizes = torch.tensor([[900, 10, 3, 0], [50, 50, 50, 50]])
    quota = stratified_quota(sizes, 64, 8)
    assert quota.sum(1).tolist() == [64, 64]
    assert quota[0].tolist()[1:] == [8, 3, 0] and int(quota[1].min()) == 16


def test_balanced_init_spreads_over_groups():
    sizes = torch.tensor([[100, 5, 5, 5], [100, 100, 0, 100]])
    assert balanced_quota(sizes, 10).tolist() == [[3, 3, 2, 2], [4, 3, 0, 3]]
    ds = build_dataset(dataset="cmnist_fg", source="digits")
    images = initial_images(ds, 10, "balanced", torch.Generator().manual_seed(0))
    assert images.shape == (100, 3, ds.image_size, ds.image_size)
    drawn = INITS["balanced"].draw(ds, 10, torch.Generator().manual_seed(0))
    cells = ds.train.labels * 10 + ds.train.attributes
    counts = torch.bincount(cells[drawn], minlength=100).view(10, 10)
    assert torch.equal(counts, balanced_quota(torch.bincount(cells, minlength=100).view(10, 10), 10))
    assert int((counts > 0).sum(1).min()) >= 2  # spread, where real draws follow the majority


def test_balanced_init_water_fills_what_small_groups_leave_and_names_a_short_class():
    assert balanced_quota(torch.tensor([[4, 4, 1]]), 9).tolist() == [[4, 4, 1]]  # exactly 9: used to raise
    assert balanced_quota(torch.tensor([[40, 30, 5, 5]]), 70).tolist() == [[40, 20, 5, 5]]
    sizes = torch.tensor([[100, 100, 1], [4, 4, 1], [2, 9, 0]])  # the largest takes what it can, first
    assert balanced_quota(sizes, 9).tolist() == [[5, 3, 1], [4, 4, 1], [2, 7, 0]]
    every = torch.tensor(list(itertools.product(range(6), repeat=3)))
    for ipc in range(1, 16):
        feasible = every[every.sum(1) >= ipc]
        quota = balanced_quota(feasible, ipc)
        assert bool((quota.sum(1) == ipc).all()) and bool((quota <= feasible).all())
    with pytest.raises(PaperlibError, match=r"^ipc=9 is more than class 1's 8 training images; lower ipc to at "
                                            r"most 8$"):
        balanced_quota(torch.tensor([[5, 5], [4, 4]]), 9)
    with pytest.raises(PaperlibError, match=r"^ipc=9 is more than class 2's 3 training images; lower ipc to at "
                                            r"most 3$"):  # the smallest class, not the first one too small
        balanced_quota(torch.tensor([[4, 4], [5, 5], [2, 1]]), 9)


def test_bad_sample_weights_say_how_many_in_which_class_and_what_to_do(monkeypatch):
    weights = torch.tensor([1.0, 0.5, 1.0, float("nan"), -1.0, 1.0])
    fix = (r"KDE weights are cached under .*weights/ folder: recompute them with force=true \(with the supcon "
           r"encoder, a lower supcon_lr\)$")
    with pytest.raises(PaperlibError, match=r"^2 of 6 sample weights are negative or not finite \(the first in "
                                            rf"class 1\); {fix}"):
        WeightedTarget(weights, torch.tensor([0, 0, 1, 1, 2, 2]))
    with pytest.raises(PaperlibError, match=r"\(the first in sample 3\)"):
        WeightedTarget(weights)
    params = _params(dataset="cmnist", method="dm", target="weighted", weights="kde")
    ds = build_dataset(params)
    bad = torch.ones(len(ds.train))
    bad[int((ds.train.labels == 7).nonzero()[0, 0])] = float("inf")
    monkeypatch.setattr("paperlib.distill.targets.sample_weights", lambda *args: (bad, {}))
    with pytest.raises(PaperlibError, match=r"^1 of \d+ sample weights .*\(the first in class 7\)") as raised:
        TARGETS["weighted"].for_run(ds, params, CPU)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("drawn_by", ["the random baseline", "the real init"])
def test_an_ipc_larger_than_a_class_is_a_one_line_error(drawn_by):
    ds = build_dataset(dataset="cmnist", source="digits")
    sizes = torch.bincount(ds.train.labels)
    smallest, too_many = int(sizes.argmin()), int(sizes.min()) + 1
    with pytest.raises(PaperlibError, match=f"^ipc={too_many} is more than class {smallest}'s {too_many - 1} training "
                                            f"images; lower ipc to at most {too_many - 1}$"):
        if drawn_by == "the random baseline":
            METHODS["random"].select(ds, make_params(dataset="cmnist", source="digits", method="random",
                                                      ipc=too_many))
        else:
            initial_images(ds, too_many, "real", torch.Generator().manual_seed(0))


def test_dc_loops_defined_for_every_ipc():
    assert default_loops(1) == (1, 1) and default_loops(10) == (10, 50) and default_loops(50) == (50, 10)
    assert default_loops(7) == (10, 50) and default_loops(100) == (100, 10)


def test_gradient_distance_zero_for_identical_and_ignores_biases():
    g = [torch.randn(4, 3, 3, 3, generator=seeded(3761)), torch.randn(4, generator=seeded(3762))]
    assert float(gradient_distance(g, g)) == pytest.approx(0.0, abs=1e-5)
    assert float(gradient_distance(g, [-g[0], g[1]])) == pytest.approx(8.0, abs=1e-4)
    assert float(gradient_distance(g, [g[0], -g[1]])) == pytest.approx(0.0, abs=1e-5)  # a bias counted: 2 > 0


@pytest.mark.parametrize("method", ["dm", "dc", "dsa"])  # gradient matching's inner loop and DSA's draws too
def test_checkpoint_resume_is_bit_identical(tmp_path, monkeypatch, method):
    params = _params(dataset="cmnist", method=method, iterations=6, checkpoint_every=2,
                     **({} if method == "dm" else {"outer_loop": 2, "inner_loop": 2}))
    uninterrupted = _distill(params).images
    checkpoint = tmp_path / "ckpt.pt"
    real_step, calls = Distiller.step, {"n": 0}

    def dying_step(self):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # killed during iteration 4, after the checkpoint at 2
        return real_step(self)

    monkeypatch.setattr(Distiller, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        _distill(params, checkpoint=checkpoint)
    assert checkpoint.is_file()
    monkeypatch.setattr(Distiller, "step", real_step)
    resumed = _distill(params, checkpoint=checkpoint)
    assert resumed.resumed_from == 2
    assert torch.equal(resumed.images, uninterrupted)
    assert checkpoint.is_file()  # kept until the caller has stored the set (the runner removes it then)


def test_force_restarts_past_an_unreadable_checkpoint(tmp_path):
    checkpoint = tmp_path / "ckpt.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    params = _params(dataset="cmnist", method="dm", iterations=2)
    with pytest.raises(PaperlibError, match="cannot be read"):
        _distill(params, checkpoint=checkpoint)
    forced = _distill(dataclasses.replace(params, force=True), checkpoint=checkpoint)
    assert forced.resumed_from == 0 and torch.equal(forced.images, _distill(params).images)
    checkpoint.unlink()
    torch.save({"iteration": 1, "images": torch.zeros(3)}, checkpoint)  # readable, another layout
    with pytest.raises(PaperlibError, match=r"ckpt.pt cannot be read \(no 'syn'\); nothing was recomputed"):
        _distill(params, checkpoint=checkpoint)


@pytest.mark.parametrize("fill", [float("nan"), 1e20])
def test_a_last_update_that_diverges_is_blamed_on_lr_img_and_stores_nothing(tmp_path, monkeypatch, fill):
    """The last iteration's loss is computed before its update, so only the images show that update diverged."""
    from paperlib.experiments import runner

    def diverged_images(self):  # a finite loss whose update leaves the images far outside the data
        with torch.no_grad():
            self.syn.fill_(fill)
        return torch.tensor(1.0)

    monkeypatch.setattr(Distiller, "step", diverged_images)
    params = _params(dataset="mnist", method="dm", iterations=1, lr_img=1e30, cache_dir=str(tmp_path), num_eval=1,
                     eval_epochs=1)
    with pytest.raises(PaperlibError, match=r"images diverged by iteration 1 \((some pixels are not finite|\|x\| up "
                                            r"to 1e\+20, whose squares overflow float32)\); lr_img=1e\+30 is likely"):
        runner.run(params)
    assert not list(tmp_path.rglob("synthetic.pt")) and not list(tmp_path.rglob("record.json"))


def test_nan_loss_names_the_iteration_and_writes_no_record(tmp_path, monkeypatch):
    from paperlib.experiments import runner

    # Losses are read on the host in blocks of iterations; the error still names the first bad one.
    losses = iter([torch.tensor(1.0), torch.tensor(float("nan")), torch.tensor(float("nan"))])
    monkeypatch.setattr(Distiller, "step", lambda self: next(losses))
    params = _params(dataset="mnist", method="dm", iterations=3, cache_dir=str(tmp_path), num_eval=1, eval_epochs=1)
    with pytest.raises(PaperlibError, match="at iteration 2; lr_img=1.0 is likely too high"):
        runner.run(params)
    assert not (runner.record_dir(params) / "record.json").exists()


def test_a_diverging_inner_training_names_lr_net_and_its_iteration():
    params = _params(dataset="mnist", method="dc", iterations=2, outer_loop=2, inner_loop=2, lr_net=1e30)
    with pytest.raises(PaperlibError, match=r"diverged \(a non-finite loss\) by iteration 2; lower lr_net "
                                            r"\(now 1e\+30\)"):
        _distill(params)


def test_run_writes_record_tensor_and_grid_and_cache_hit_does_not_recompute(tmp_path, monkeypatch):
    from paperlib.experiments import runner

    params = _params(dataset="cmnist", method="dm", iterations=2, cache_dir=str(tmp_path), num_eval=1,
                     eval_epochs=1)
    first = runner.run(params)
    assert first["environment"] == environment(torch.device("cpu"))  # where it was computed: what identity needs
    from paperlib.core.runtime import _cxx_compiler_found

    assert first["environment"] == {"torch": torch.__version__, "threads": torch.get_num_threads(),
                                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                    "cxx_compiler": _cxx_compiler_found()}  # each fact, read from torch itself
    assert first["distilled_on"] == {"device": "cpu", **first["environment"]}  # where its set was made
    assert first["distilled_on_devices"] == ["cpu"]  # every set's device (num_distill sets)
    assert {p.name for p in runner.record_dir(params).iterdir()} == {"record.json"}
    assert {p.name for p in runner.distilled_dir(params).iterdir()} == {"synthetic.pt", "synthetic.png",
                                                                        "facts.json"}
    assert first["cached"] is False and len(first["losses"]) == 2 and first["distill_cached"] is False
    # Another evaluation of the same distilled set does not distil again.
    more = runner.run(params, num_eval=2)
    assert more["distill_cached"] is True and more["losses"] == first["losses"]

    def boom(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(runner, "distill", boom)
    again = runner.run(params)
    assert again["cached"] is True and again["metrics"] == first["metrics"]
    with pytest.raises(AssertionError, match="recomputed"):
        runner.run(params, force=True)


def test_distilling_a_non_distillation_method_is_an_error():
    with pytest.raises(PaperlibError, match="does not distil"):
        _distill(_params(dataset="mnist", method="random"), "vanilla")


def test_benchmarking_a_non_distillation_method_is_the_same_error():
    """The check is the Distiller's: bench, which builds one without distill(), said "unknown init ''"."""
    from paperlib.experiments.bench import bench

    with pytest.raises(PaperlibError, match="^method 'whole' does not distil; use one of "):
        bench(_params(dataset="mnist", method="whole"), warmup=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_distiller_keeps_the_split_as_bytes_and_normalises_each_batch_to_the_same_values(channels_last):
    params = make_params(dataset="cmnist_fg", source="digits", method="dm", ipc=2, batch_real=8, net_width=8,
                         device="cpu", torch_compile="never", channels_last=channels_last)
    ds = build_dataset(params)
    d = Distiller(ds, params, TARGETS["vanilla"].for_run(ds, params, CPU)[0], CPU)
    assert d.real_uint8.dtype == torch.uint8  # a quarter of a float copy's memory
    state = d.gen.get_state()
    real, _ = d.real_batch()
    d.gen.set_state(state)
    index = d.sampler.sample(d.gen).index.flatten()
    expected = ds.normalized("train")[index]
    assert torch.equal(real, expected)
    assert real.is_contiguous(memory_format=torch.channels_last) == channels_last
