"""The one cache key: derived from the field tags, it moves with every result-affecting change and only then."""

from __future__ import annotations

import dataclasses
import types

import pytest

from paperlib.core.errors import PaperlibError
from paperlib.core.keys import SCOPES, cache_key, key_values, unread_reason
from paperlib.core.params import GROUPS, Params, field_tags, make_params, with_overrides
from paperlib.core.yamlio import parse_set
from paperlib.core.registry import registry_for
from paperlib.experiments.runner import distilled_dir, record_key

# A base where every field is used, and a valid other value for every field.
BASE = {"dataset": "cmnist", "source": "digits", "method": "dc", "target": "weighted", "weights": "kde",
        "kde_encoder": "supcon", "kde_bandwidth": "fixed", "kde_weighting": "power", "sampling": "stratified",
        "eval_trainer": "lff"}
# Fields a choice of BASE leaves unused: the base for them switches that choice.
BASE_FOR = {"majority_ratio": {"dataset": "cmnist_fg"}, "protocol": {"dataset": "cmnist_fg"},
            "kde_tau": {"kde_weighting": "softmax"}, "channels_last": {"method": "dm"},
            "warm_start_epochs": {"method": "dm"}, "warm_start_lr": {"method": "dm", "warm_start_epochs": 2},
            "warm_start_batch": {"method": "dm", "warm_start_epochs": 2}, "dm_distance": {"method": "dm"},
            "hidden_groups": {"target": "groups", "sampling": "uniform"},
            "hidden_groups_fill": {"target": "groups", "sampling": "uniform", "hidden_groups": 0.1}}
CHANGED = {"dataset": "cmnist_fg", "source": "mnist", "conflict_ratio": 0.1, "majority_ratio": 0.8, "severity": 3,
           "protocol": "companion", "data_dir": "/elsewhere", "method": "dsa", "ipc": 5, "num_distill": 3,
           "distill_run": 1, "target": "groups", "weights": "group_balanced",
           "iterations": 7, "batch_real": 64, "lr_img": 0.5, "momentum_img": 0.9, "init": "balanced",
           "sampling": "uniform", "stratified_min": 4, "outer_loop": 3, "inner_loop": 2, "lr_net": 0.02,
           "inner_batch": 64, "warm_start_epochs": 3, "warm_start_lr": 0.02, "warm_start_batch": 64,
           "dm_distance": "l1",
           "hidden_groups": 0.2, "hidden_groups_fill": "impute",
           "checkpoint_every": 5, "precision": "bf16", "channels_last": False, "kde_encoder": "random",
           "supcon_epochs": 2.0, "supcon_temperature": 0.2, "supcon_lr": 0.1, "kde_bandwidth": "median",
           "kde_bandwidth_value": 2.0, "kde_weighting": "softmax", "kde_alpha": 0.5, "kde_tau": 2.0, "kde_clip": 2.0,
           "model": "lenet", "net_width": 32, "net_depth": 2, "net_norm": "batchnorm", "net_act": "sigmoid",
           "net_pooling": "maxpooling", "eval_epochs": 10, "eval_augment": "dsa", "eval_official_schedule": False,
           "eval_optimizer": "adam", "eval_lr": 0.05, "eval_batch": 32, "num_eval": 2,
           "dsa": False, "dsa_strategy": "crop", "eval_trainer": "plain", "lff_q": 0.5, "lff_ema": 0.5,
           "eval_model": "mlp", "seed": 1, "device": "cpu", "torch_compile": "never", "progress": False,
           "cache_dir": "/tmp/other", "force": True}


def test_a_switched_off_option_leaves_the_key_unchanged():
    """An option that is off (``warm_start_epochs=0``) is not in the key: runs stored before the option existed
    keep their keys; its learning rate counts only once it is on."""
    dm = make_params({**BASE, "method": "dm"})
    assert "warm_start_epochs" not in key_values(dm) and "warm_start_lr" not in key_values(dm)
    assert cache_key(make_params({**BASE, "method": "dm", "warm_start_lr": 0.5})) == cache_key(dm)
    warm = make_params({**BASE, "method": "dm", "warm_start_epochs": 2})
    assert key_values(warm)["warm_start_epochs"] == 2 and key_values(warm)["warm_start_lr"] == 0.01
    # the official evaluation schedule came later and is the default: the first schedule keeps the old keys
    assert key_values(dm)["eval_official_schedule"] is True
    assert "eval_official_schedule" not in key_values(make_params({**BASE, "method": "dm",
                                                                     "eval_official_schedule": False}))


def test_dms_distance_is_keyed_only_when_it_is_not_dms_own_squared_distance():
    """``dm_distance`` came later: DM's squared distance, left empty or named, keeps every earlier key; COBRA's
    L1 makes another set."""
    dm = make_params({**BASE, "method": "dm", "target": "barycenter"})
    named = make_params({**BASE, "method": "dm", "target": "barycenter", "dm_distance": "squared_l2"})
    l1 = make_params({**BASE, "method": "dm", "target": "barycenter", "dm_distance": "l1"})
    assert named.dm_distance == "" and "dm_distance" not in key_values(dm) and cache_key(named) == cache_key(dm)
    assert key_values(l1, "distilled")["dm_distance"] == "l1"
    assert cache_key(l1, "distilled") != cache_key(dm, "distilled")


def test_the_evaluation_optimiser_is_keyed_only_when_it_is_not_the_protocols_sgd():
    """``eval_optimizer`` came later: the protocol's SGD, left empty or named, keeps every earlier key."""
    dm = make_params({**BASE, "method": "dm"})
    sgd = make_params({**BASE, "method": "dm", "eval_optimizer": "sgd"})
    adam = make_params({**BASE, "method": "dm", "eval_optimizer": "adam"})
    assert sgd.eval_optimizer == "" and "eval_optimizer" not in key_values(dm)
    assert cache_key(sgd) == cache_key(dm)
    assert key_values(adam)["eval_optimizer"] == "adam" and cache_key(adam) != cache_key(dm)
    # the distilled set does not depend on how it is evaluated
    assert cache_key(adam, "distilled") == cache_key(dm, "distilled")


def test_every_field_is_classified():
    """A new Params field without a known group fails here (and so cannot enter the key silently)."""
    for name, tags in field_tags().items():
        assert tags.get("group") in GROUPS, f"Params.{name} needs a group tag, one of {GROUPS}"
        if tags["by"] is not None:
            assert registry_for(tags["by"]) is not None, f"{name} is selected by {tags['by']}, which has no registry"
    assert set(CHANGED) == {f.name for f in dataclasses.fields(Params)}, "give the new field a value in CHANGED"


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_a_result_field_moves_the_key_and_an_execution_field_does_not(name):
    base = make_params({**BASE, **BASE_FOR.get(name, {})})
    changed = make_params({**dataclasses.asdict(base), name: CHANGED[name]})
    if field_tags()[name]["group"] == "execution":
        assert cache_key(changed) == cache_key(base)
    else:
        assert cache_key(changed) != cache_key(base), f"changing {name} must change the record's key"


def test_fields_a_choice_does_not_use_leave_the_key_alone():
    dm = make_params(dataset="cmnist", method="dm")
    dc = make_params(dataset="cmnist", method="dc")
    assert cache_key(make_params(dataset="cmnist", method="dc", channels_last=False)) == cache_key(dc)
    assert cache_key(make_params(dataset="cmnist", method="dm", outer_loop=9, lr_net=0.5, hidden_groups=0.3,
                                 weights="kde", kde_alpha=3.0, lff_q=0.2, stratified_min=3)) == cache_key(dm)
    whole = make_params(dataset="cmnist", method="whole")
    assert cache_key(make_params(dataset="cmnist", method="whole", ipc=50, target="groups", iterations=3,
                                 lr_net=0.5)) == cache_key(whole)
    assert cache_key(make_params(dataset="cmnist", method="dm", eval_model="convnet")) == cache_key(dm)


def test_scopes_share_what_they_should():
    base = make_params(dataset="cmnist", method="dm", source="digits")
    more_models = make_params(dataset="cmnist", method="dm", source="digits", num_eval=9, eval_trainer="lff")
    assert distilled_dir(more_models) == distilled_dir(base) and record_key(more_models) != record_key(base)
    assert cache_key(base, "dataset") == cache_key(make_params(dataset="cmnist", source="digits", method="whole"),
                                                   "dataset")
    assert set(key_values(base, "dataset")) == {"scope", "key_version", "dataset", "dataset_version", "source",
                                                "conflict_ratio", "severity", "seed"}
    assert set(SCOPES) == {"dataset", "embeddings", "weights", "distilled", "record"}
    with pytest.raises(PaperlibError, match="unknown cache scope"):
        cache_key(base, "nope")


@pytest.mark.parametrize("scope", ["embeddings", "weights"])
def test_kde_keys_hold_every_kde_setting_whichever_method_asks(scope):
    """KDE's embeddings and weights do not depend on the method that uses them: a method that distils nothing
    (whole) once shared one weights file across every KDE setting, its key having dropped them all."""
    kde = {"dataset": "cmnist", "source": "digits", "target": "weighted", "weights": "kde"}
    whole = make_params(**kde, method="whole", supcon_temperature=0.5, kde_alpha=2)
    assert cache_key(whole, scope) == cache_key(make_params(**kde, method="dm", supcon_temperature=0.5, kde_alpha=2),
                                                scope)
    assert cache_key(whole, scope) != cache_key(with_overrides(whole, {"supcon_temperature": 0.1}), scope)
    if scope == "weights":
        assert cache_key(whole, scope) != cache_key(with_overrides(whole, {"kde_alpha": 1}), scope)
    assert "kde_alpha" not in key_values(whole)  # the record of a whole-data run is keyed by what it uses


def test_the_batch_of_distillations_own_trainings_keys_the_distilled_set():
    """DC's inner loop and DM's warm start train with ``eval_batch`` (the official code's one ``batch_train``):
    it is written into ``inner_batch`` / ``warm_start_batch``, so it keys the distilled set that it changes,
    and only that one."""
    def distilled(**changes):
        return cache_key(make_params(dataset="cmnist", source="digits", **changes), "distilled")

    dc = make_params(dataset="cmnist", method="dc", eval_batch=32)
    assert (dc.inner_batch, make_params(dataset="cmnist", method="dc").inner_batch) == (32, 256)
    assert distilled(method="dc", eval_batch=32) != distilled(method="dc")
    assert distilled(method="dc", eval_batch=32) == distilled(method="dc", inner_batch=32)
    assert distilled(method="dm", eval_batch=32) == distilled(method="dm")  # DM trains no network
    warm = {"method": "dm", "warm_start_epochs": 2}
    assert make_params(dataset="cmnist", eval_batch=32, **warm).warm_start_batch == 32
    assert distilled(eval_batch=32, **warm) != distilled(**warm)
    assert distilled(eval_batch=32, warm_start_batch=256, **warm) == distilled(**warm)


def test_overrides_fill_in_the_placeholders_again_as_make_params_would():
    """A value the first resolution filled in follows the overrides; a value set by hand stays."""
    assert with_overrides(make_params(method="dm"), {"method": "dc"}) == make_params(method="dc")
    assert with_overrides(make_params(method="dc"), {"eval_batch": 64}).inner_batch == 64
    assert with_overrides(make_params(dataset="cmnist_fg", method="dm", ipc=10), {"dataset": "cmnist", "ipc": 100}) \
        == make_params(dataset="cmnist", method="dm", ipc=100)  # source, protocol and lr_img follow
    by_hand = make_params(method="dm", iterations=7, inner_batch=32, eval_epochs=3)
    kept = with_overrides(by_hand, {"method": "dc"})
    assert (kept.iterations, kept.inner_batch, kept.eval_epochs) == (7, 32, 3)


def test_a_registered_entry_version_enters_the_key(monkeypatch):
    from paperlib.data.presets import PRESETS

    params = make_params(dataset="cmnist", source="digits")
    before = cache_key(params, "dataset")
    monkeypatch.setitem(PRESETS._entries, "cmnist", dataclasses.replace(PRESETS["cmnist"], version=2))
    assert cache_key(params, "dataset") != before


@pytest.mark.parametrize("text, value", [("1e-3", 0.001), ("5E-2", 0.05), ("2.5e+1", 25.0), ("1e3", 1000.0)])
def test_numbers_in_scientific_notation_parse_everywhere(text, value):
    assert make_params(parse_set([f"lr_img={text}"])).lr_img == value  # --set
    assert make_params({"eval_lr": text}).eval_lr == value  # YAML 1.1 reads 1e-3 as text
    assert make_params({"eval_epochs": "1e3"}).eval_epochs == 1000
    with pytest.raises(PaperlibError, match="must be a number"):
        make_params(lr_img="fast")


@pytest.mark.parametrize("name, value", [("net_norm", "foo"), ("net_act", "bar"), ("net_pooling", "baz"),
                                         ("dsa_strategy", "color_warp"), ("init", "zeros"), ("sampling", "x"),
                                         ("eval_trainer", "jtt"), ("kde_bandwidth", "wide"), ("precision", "fp8"),
                                         ("device", "tpu"), ("model", "vgg"), ("target", "cobra")])
def test_unknown_choices_fail_at_validation_in_one_line(name, value):
    shown = value.split("_")[-1]
    with pytest.raises(PaperlibError, match=rf"unknown .*'{shown}'.*choose one of") as err:
        make_params({name: value})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("field", ["method", "weights", "kde_encoder", "kde_bandwidth", "kde_weighting", "init",
                                   "sampling"])
def test_every_registered_entry_can_carry_a_version_that_moves_the_keys_it_enters(field, monkeypatch):
    """The registry's promise: bump an entry's ``version`` and the sets and weights made with it are recomputed
    (these entries could not carry one: a changed weighting or encoder was served from the cache)."""
    params = make_params(dataset="cmnist", source="digits", method="dm", target="weighted", weights="kde",
                         sampling="stratified")
    registry, name = registry_for(field), getattr(params, field)
    before = {scope: cache_key(params, scope) for scope in ("distilled", "record")}
    monkeypatch.setitem(registry._entries, name, dataclasses.replace(registry[name], version=1))
    assert all(cache_key(params, scope) != key for scope, key in before.items())


@pytest.mark.parametrize("field, settings, entry", [
    ("eval_model", {"eval_model": "mlp"}, "mlp"),  # a field naming another field's registry (model)
    ("dsa_strategy", {"dsa_strategy": "crop_flip"}, "flip"),  # a '_'-joined list of entries
])
def test_an_entry_chosen_through_another_registry_carries_its_version_into_the_record_key(field, settings, entry,
                                                                                        monkeypatch):
    """A record that only evaluated with a model kept being served after that model's version was bumped."""
    params = make_params(dataset="cmnist", source="digits", method="dm", **settings)
    registry = registry_for(field_tags()[field]["names"])
    before = cache_key(params, "record")
    monkeypatch.setitem(registry._entries, entry, types.SimpleNamespace(version=1))  # only the key is computed
    assert cache_key(params, "record") != before


@pytest.mark.parametrize("base", [BASE, *BASE_FOR.values(), {"method": "whole"}, {"method": "random"},
                                  {"method": "dm", "target": "groups"}, {"method": "dm", "target": "barycenter"}])
@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_what_a_scope_does_not_read_is_what_its_key_leaves_out(base, scope):
    """unread_reason (the refusal of a setting that changes nothing) and the key agree on every field, but for the
    "off" value of a field that switches itself on: left out of the key, it is read all the same."""
    params = make_params({**BASE, **base} if base is not BASE else BASE)
    keyed = set(key_values(params, scope))
    tags = field_tags()
    for name, tag in tags.items():
        reason = unread_reason(params, name, scope)
        if tag["group"] == "execution":
            assert reason is None
        elif name in keyed:
            assert reason is None, (name, reason)
        elif reason is None:  # read, not keyed: a self-switched field switched off, or one of another scope's
            # groups at its default (nothing to compare with), or one that fills a placeholder of this scope
            assert (tag["when"] == name and not getattr(params, name)) or (tag["group"] not in SCOPES[scope] and (
                getattr(params, name) == getattr(Params(), name) or cache_key(params, scope) != cache_key(
                    with_overrides(params, {name: getattr(Params(), name)}), scope))), name
        else:
            assert reason.endswith(name) or "does not use" in reason or "applies only while" in reason, reason


def test_the_reason_names_the_first_selector_that_leaves_a_setting_out():
    whole, dm = make_params(method="whole"), make_params(method="dm")
    assert unread_reason(whole, "kde_tau") == "method 'whole' does not use target"
    assert unread_reason(whole, "warm_start_lr") == "method 'whole' does not use warm_start_lr"  # not "while ..."
    assert unread_reason(dm, "warm_start_lr") == "warm_start_lr applies only while warm_start_epochs is set"
    assert unread_reason(dm, "warm_start_epochs") is None  # its "off" value, 0, is read
    assert unread_reason(dm, "eval_official_schedule") is None
    # without DSA no strategy is applied anywhere, so none keys the result either
    plain = make_params(method="dm", dsa=False, dsa_strategy="scale")
    assert unread_reason(plain, "dsa_strategy") == "dsa_strategy applies only while dsa is set"
    assert cache_key(plain) == cache_key(make_params(method="dm", dsa=False))
    assert unread_reason(make_params(method="dm", dsa_strategy="scale"), "dsa_strategy") is None
    assert unread_reason(make_params(method="dm", ipc=50), "ipc", "weights") == "the KDE weights do not depend on ipc"
    # the evaluation's batch feeds DC's inner training (inner_batch=0 takes it): a distilled set reads it
    assert unread_reason(make_params(method="dc", eval_batch=64), "eval_batch", "distilled") is None
    assert unread_reason(make_params(method="dc", eval_batch=64, inner_batch=32), "eval_batch", "distilled") == \
        "a distilled set does not depend on eval_batch"
    assert unread_reason(make_params(method="random"), "kde_alpha", "weights") is None  # no method selects there
    with pytest.raises(PaperlibError, match="unknown cache scope 'nope'"):
        unread_reason(dm, "ipc", "nope")


def test_a_field_declared_above_its_selector_stops_the_import():
    """relevant_fields reads the fields in order: a field above the one selecting it never entered a key."""
    import dataclasses

    from paperlib.core.params import _p, check_selectors_precede

    @dataclasses.dataclass
    class Misplaced:
        ratio: float = _p(0.1, "dataset", by="dataset")
        dataset: str = _p("cmnist", "dataset")

    with pytest.raises(AssertionError, match="ratio is selected by dataset, which must be declared above it"):
        check_selectors_precede(dataclasses.fields(Misplaced))
    check_selectors_precede(dataclasses.fields(Misplaced)[::-1])  # in order: holds
