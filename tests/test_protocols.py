"""protocol=fairdd builds paper B's colour presets exactly as the official FairDD code does; companion is ours."""

from __future__ import annotations

import math

import pytest
import torch

from paperlib.core.errors import PaperlibError
from paperlib.core.params import make_params
from paperlib.data import build_dataset
from paperlib.data.protocols import FAIRDD_PALETTE, PROTOCOLS, fairdd_assign
from paperlib.train.metrics import classification_metrics

COLOUR_PRESETS = ("cmnist_fg", "cmnist_bg", "cfmnist_fg", "cfmnist_bg")


def _fairdd(dataset, **kw):
    return build_dataset(dataset=dataset, source="digits", **kw)


def test_the_palette_is_rebias_biased_mnist():
    assert FAIRDD_PALETTE == ((255, 0, 0), (255, 128, 0), (255, 255, 0), (255, 255, 128), (0, 255, 0),
                              (0, 255, 255), (0, 0, 255), (128, 0, 255), (255, 0, 255), (255, 255, 255))


@pytest.mark.parametrize("dataset", COLOUR_PRESETS)
def test_paper_b_presets_default_to_the_official_protocol(dataset):
    assert make_params(dataset=dataset).protocol == "fairdd"


def test_the_other_presets_default_to_ours_and_refuse_the_official_protocol():
    assert make_params(dataset="cmnist").protocol == "companion"
    with pytest.raises(PaperlibError, match="^dataset 'cmnist' is built by protocol companion only; protocol 'fairdd' "
                                            "applies to cmnist_fg, cmnist_bg, cfmnist_fg, cfmnist_bg, utkface$"):
        make_params(dataset="cmnist", protocol="fairdd")  # utkface too: it said "paper B's colour presets"


def test_split_rule_chunk_sizes():
    """Per class: int(n * rho) aligned, then chunks of ceil(rest / 9), the last smaller, over shuffled colours."""
    labels = torch.tensor([0] * 1135 + [1] * 100)
    attrs, aligned = fairdd_assign(labels, 0.1, 10, torch.Generator().manual_seed(0))
    big = torch.bincount(attrs[labels == 0], minlength=10)
    assert int(big[0]) == 113 and sorted(big[1:].tolist()) == [110] + [114] * 8
    attrs, aligned = fairdd_assign(labels, 0.9, 10, torch.Generator().manual_seed(0))
    small = torch.bincount(attrs[labels == 1], minlength=10)
    assert int(small[1]) == 90 and sorted(small[small > 0].tolist()) == [2, 2, 2, 2, 2, 90]  # 5 colours only
    assert torch.equal(aligned, attrs == labels)


def test_images_are_padded_to_32_px_top_and_left_before_colouring():
    fg, bg = _fairdd("cmnist_fg"), _fairdd("cmnist_bg")
    assert fg.train.images.shape[1:] == (3, 32, 32) and fg.image_size == 32
    assert int(fg.train.images[:, :, :4].max()) == 0 and int(fg.train.images[:, :, :, :4].max()) == 0
    colour = torch.tensor(FAIRDD_PALETTE, dtype=torch.uint8)[bg.train.attributes]
    assert torch.equal(bg.train.images[:, :, 0, 0], colour)  # BG: the padded border takes the colour too
    assert torch.equal(bg.train.images[:, :, :4].amax(dim=(2, 3)), colour)


def test_c_fmnist_bg_as_coded_wraps_around():
    rule = PROTOCOLS["fairdd"].rules["bg_shaded"]
    gray = torch.tensor([0, 200, 255], dtype=torch.uint8).view(3, 1, 1, 1)
    red = rule(gray, torch.zeros(3, dtype=torch.long))[:, :, 0, 0]
    assert red.tolist() == [[255, 0, 0], [111, 56, 56], [1, 1, 1]]
    fg = PROTOCOLS["fairdd"].rules["fg_shaded"](gray, torch.full((3,), 1))[:, :, 0, 0]  # orange (255, 128, 0)
    assert fg.tolist() == [[0, 0, 0], [200, 100, 0], [255, 128, 0]]


def test_normalisation_is_half_half_for_fairdd_and_the_split_statistics_for_ours():
    assert _fairdd("cmnist_fg").info.mean == [0.5] * 3 and _fairdd("cmnist_fg").info.std == [0.5] * 3
    ours = _fairdd("cmnist_fg", protocol="companion")
    assert ours.info.std[0] < 0.4 and ours.image_size == 28


def test_an_empty_test_cell_counts_as_zero_under_fairdd():
    labels = torch.tensor([0, 0, 1, 1])
    attributes = torch.tensor([0, 1, 0, 0])  # class 1 has no image of group 1
    correct = labels.clone()
    left_out = classification_metrics(correct, labels, attributes, labels == attributes, 2, 2)
    zero = classification_metrics(correct, labels, attributes, labels == attributes, 2, 2,
                                  PROTOCOLS["fairdd"].empty_cell_accuracy)
    assert left_out["deo_m"] == 0.0 and zero["deo_m"] == 100.0 and math.isclose(zero["deo_a"], 50.0)


def test_each_method_is_evaluated_as_the_official_code_does_unless_a_profile_says_otherwise():
    from paperlib.train.loop import TrainSettings

    dc, dm = make_params(method="dc"), make_params(method="dm")
    assert (dc.eval_epochs, dc.eval_augment) == (300, "none") and TrainSettings.from_params(dc).dsa_strategy is None
    assert (dm.eval_epochs, dm.eval_augment) == (1000, "dsa") and TrainSettings.from_params(dm).dsa_strategy
    pinned = make_params(method="dc", eval_epochs=200, eval_augment="dsa")  # a profile's override, kept
    assert (pinned.eval_epochs, TrainSettings.from_params(pinned).dsa_strategy is not None) == (200, True)
    with pytest.raises(PaperlibError, match="unknown eval_augment 'flip'"):
        make_params(eval_augment="flip")


def test_dsa_false_turns_augmentation_off_in_the_evaluation_too():
    from paperlib.core.params import with_overrides
    from paperlib.train.loop import TrainSettings

    off = make_params(method="dm", dsa=False)
    assert off.eval_augment == "none" and TrainSettings.from_params(off).dsa_strategy is None
    assert with_overrides(make_params(method="dm"), {"dsa": False}).eval_augment == "none"
    assert with_overrides(off, {"dsa": True}).eval_augment == "dsa"
    with pytest.raises(PaperlibError, match="eval_augment=dsa needs dsa=true"):
        make_params(method="dm", dsa=False, eval_augment="dsa")


def test_each_method_starts_from_the_official_codes_initialisation_unless_set():
    """main_DM.py starts DM from real images, and so does FairDD's main_DC.py DC and DSA (its --init defaults
    to real, which paper B's scripts keep)."""
    from paperlib.core.keys import cache_key
    from paperlib.core.params import with_overrides

    assert [make_params(method=m).init for m in ("dm", "dc", "dsa")] == ["real", "real", "real"]
    assert make_params(method="dc", init="noise").init == "noise"  # a choice is kept
    assert with_overrides(make_params(method="dc", init="noise"), {"method": "dm"}).init == "noise"
    assert with_overrides(make_params(method="dm"), {"method": "dc"}).init == "real"  # filled in again
    # the filled-in value keys the set: DC's default and DC set to real by hand (as the CPU profiles did before
    # this default) are one run, so their stored sets keep their keys
    assert cache_key(make_params(method="dc"), "distilled") == cache_key(make_params(method="dc", init="real"),
                                                                        "distilled")
    assert cache_key(make_params(method="dc"), "distilled") != cache_key(make_params(method="dc", init="noise"),
                                                                        "distilled")


def test_repeated_training_sets_keep_the_first_one_and_pool_every_model(tmp_path):
    from paperlib.experiments.runner import run

    base = dict(dataset="cmnist_fg", source="digits", method="dm", ipc=2, iterations=2, batch_real=64, net_width=8,
                num_eval=2, eval_epochs=2, cache_dir=str(tmp_path), progress=False, device="cpu")
    one, three = run(**base), run(**base, num_distill=3)
    assert three["num_distill"] == 3 and len(three["runs"]) == 6
    assert three["runs"][:2] == one["runs"]  # the first distillation and its models are the single run's
    assert three["runs"][2:4] != three["runs"][:2]  # another distillation, other models
    accs = torch.tensor([r["acc"] for r in three["runs"]], dtype=torch.float64)
    assert math.isclose(three["metrics"]["acc"], float(accs.mean())) and math.isclose(
        three["metrics"]["acc_std"], float(accs.std(unbiased=False)))
    assert run(**{**base, "method": "whole"}, num_distill=3)["num_distill"] == 1  # nothing to redraw
    # distill_run is the first set's index: one run can compute the third set alone (e.g. on another machine)
    third = run(**base, distill_run=2)
    assert third["runs"] == three["runs"][4:] and third["params"]["distill_run"] == 2
    whole = {**base, "method": "whole"}  # draws no set: distill_run is not in its key and changes nothing
    assert run(**whole, distill_run=2)["key"] == run(**whole)["key"] != third["key"]
