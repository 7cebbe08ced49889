import pytest

from paperlib.core.params import derive_seed, make_params, parse_set, stable_hash
from paperlib.core.errors import PaperlibError


def test_defaults_are_the_papers_protocol():
    p = make_params()
    architecture = (p.net_depth, p.net_width, p.net_norm, p.net_act, p.net_pooling)
    assert architecture == (3, 128, "instancenorm", "relu", "avgpooling")
    assert (p.eval_lr, p.eval_batch) == (0.01, 256)


def test_unknown_parameter_suggests_the_close_name():
    with pytest.raises(PaperlibError, match="did you mean 'conflict_ratio'"):
        make_params(conflict_ration=0.1)


def test_unknown_dataset_lists_presets():
    with pytest.raises(PaperlibError, match="unknown dataset 'cmnistt'.*cmnist_fg"):
        make_params(dataset="cmnistt")


@pytest.mark.parametrize("name", ["conflict_ratio", "majority_ratio"])
@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_ratio_outside_unit_interval(name, value):
    with pytest.raises(PaperlibError, match=rf"{name} must be in \[0, 1\]"):
        make_params({name: value})


def test_ipc_below_one():
    with pytest.raises(PaperlibError, match="ipc must be at least 1"):
        make_params(ipc=0)


def test_wrong_type_is_rejected():
    with pytest.raises(PaperlibError, match="must be an integer"):
        make_params(ipc="ten")


def test_set_values_are_yaml_scalars():
    assert parse_set(["ipc=10", "conflict_ratio=0.05", "dsa=false", "dataset=cmnist"]) == {
        "ipc": 10, "conflict_ratio": 0.05, "dsa": False, "dataset": "cmnist"}
    with pytest.raises(PaperlibError, match="KEY=VALUE"):
        parse_set(["ipc"])


def test_source_must_fit_the_preset():
    with pytest.raises(PaperlibError, match="cannot use source 'cifar10'"):
        make_params(dataset="cmnist", source="cifar10")


def test_hash_and_seed_derivation_are_stable():
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})
    assert derive_seed(0, "eval", 1) == derive_seed(0, "eval", 1) != derive_seed(0, "eval", 2)


def test_result_key_ignores_what_cannot_change_the_result():
    from paperlib.core.params import cache_key

    base = cache_key(make_params(dataset="cmnist_fg", method="whole"))
    assert cache_key(make_params(dataset="cmnist_fg", method="whole", conflict_ratio=0.3, ipc=7,
                                 target="groups", progress=False, device="cpu")) == base
    assert cache_key(make_params(dataset="cmnist_fg", method="whole", majority_ratio=0.8)) != base


def test_papers_defaults_fill_in_by_method():
    assert (make_params(method="dm").iterations, make_params(method="dm").lr_img) == (20000, 1.0)
    assert make_params(method="dm", ipc=100).lr_img == 10.0
    assert (make_params(method="dsa").iterations, make_params(method="dsa").lr_img) == (1000, 0.1)

