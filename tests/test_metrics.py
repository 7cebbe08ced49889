import math

import pytest
import torch

from paperlib.core.errors import PaperlibError
from paperlib.train.metrics import METRIC_KEYS, classification_metrics, summarize


def test_metrics_on_a_hand_computed_example():
    # 2 classes x 2 attributes; attribute == class is "aligned".
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    attrs = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    preds = torch.tensor([0, 0, 0, 1, 1, 0, 1, 1])
    aligned = attrs == labels
    m = classification_metrics(preds, labels, attrs, aligned, 2, 2)
    # group accuracies: (0,0)=1.0 (0,1)=0.5 (1,0)=0.5 (1,1)=1.0
    assert m["acc"] == pytest.approx(75.0)
    assert m["acc_aligned"] == pytest.approx(100.0)  # groups (0,0) and (1,1)
    assert m["acc_conflicting"] == pytest.approx(50.0)
    assert m["worst_group_acc"] == pytest.approx(50.0)
    assert m["deo_m"] == pytest.approx(50.0)
    assert m["deo_a"] == pytest.approx(50.0)


def test_deo_max_and_mean_differ():
    labels = torch.tensor([0, 0, 1, 1])
    attrs = torch.tensor([0, 1, 0, 1])
    preds = torch.tensor([0, 1, 1, 1])  # class 0 gap 1.0, class 1 gap 0.0
    m = classification_metrics(preds, labels, attrs, attrs == labels, 2, 2)
    assert (m["deo_m"], m["deo_a"]) == (pytest.approx(100.0), pytest.approx(50.0))
    # here the worst group, the conflicting samples and the gaps all differ: no metric can stand in for another
    assert (m["acc"], m["acc_aligned"], m["acc_conflicting"], m["worst_group_acc"]) == (75.0, 100.0, 50.0, 0.0)


def test_metrics_without_aligned_flags_leave_aligned_and_conflicting_undefined():
    labels, attrs = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    m = classification_metrics(torch.tensor([0, 1, 1, 1]), labels, attrs, None, 2, 2)
    assert math.isnan(m["acc_aligned"]) and math.isnan(m["acc_conflicting"])
    assert (m["acc"], m["deo_m"], m["deo_a"]) == (75.0, 100.0, 50.0)


def test_the_gap_is_over_each_class_groups_not_over_classes():
    # 3 classes x 2 groups: class 0 right in group 0 only, classes 1 and 2 right everywhere; a transposed table
    # (a gap over classes within each group) would give DEO_A 50, not 33.3
    labels, attrs = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 0, 1, 0, 1])
    m = classification_metrics(torch.tensor([0, 1, 1, 1, 2, 2]), labels, attrs, None, 3, 2)
    assert (m["deo_m"], m["deo_a"]) == (100.0, pytest.approx(100 / 3))


def test_a_class_with_one_group_in_the_test_split_has_no_gap_unless_the_protocol_scores_empty_cells():
    labels, attrs = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0])  # no (class 1, group 1) test sample
    preds = torch.tensor([0, 1, 1])  # class 0: group 0 right, group 1 wrong
    left_out = classification_metrics(preds, labels, attrs, None, 2, 2)
    assert (left_out["deo_m"], left_out["deo_a"]) == (100.0, 100.0)  # class 1's single group is no gap of 0
    official = classification_metrics(preds, labels, attrs, None, 2, 2, empty_cell_accuracy=0.0)
    assert (official["deo_m"], official["deo_a"]) == (100.0, 100.0)  # FairDD's code: the empty cell scores 0
    right = classification_metrics(labels, labels, attrs, None, 2, 2, empty_cell_accuracy=0.0)
    assert (right["deo_m"], right["deo_a"], right["worst_group_acc"]) == (100.0, 50.0, 100.0)
    assert classification_metrics(labels, labels, attrs, None, 2, 2)["deo_a"] == 0.0
    # FairDD's code keeps a class without any test sample, at a gap of 0
    kept = classification_metrics(preds, labels, attrs, None, 3, 2, empty_cell_accuracy=0.0)
    assert kept["deo_a"] == pytest.approx(200 / 3)
    # no class with two groups to compare: the gaps do not exist
    alone = classification_metrics(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0, 0]), None, 2, 2)
    assert math.isnan(alone["deo_m"]) and math.isnan(alone["deo_a"]) and alone["worst_group_acc"] == 100.0


def test_an_empty_cell_accuracy_outside_0_1_is_an_error_naming_the_unit():
    labels = torch.tensor([0, 1])
    with pytest.raises(PaperlibError, match=r"empty_cell_accuracy=50 is a fraction; give a value in \[0, 1\]"):
        classification_metrics(labels, labels, labels, None, 2, 2, empty_cell_accuracy=50)


def test_no_conflicting_samples_gives_nan():
    labels = torch.tensor([0, 1])
    m = classification_metrics(labels, labels, torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.bool), 2, 1)
    assert math.isnan(m["acc_conflicting"]) and m["deo_m"] == 0.0


def test_summarize_mean_and_std():
    runs = [{k: v + 100 * i for i, k in enumerate(METRIC_KEYS)} for v in (10.0, 20.0)]  # each key its own values
    s = summarize(runs)
    assert s == {key: value for i, k in enumerate(METRIC_KEYS)
                 for key, value in ((k, 15.0 + 100 * i), (f"{k}_std", 5.0))}
    assert summarize(runs[:1]) == {key: value for i, k in enumerate(METRIC_KEYS)
                                   for key, value in ((k, 10.0 + 100 * i), (f"{k}_std", 0.0))}


@pytest.mark.parametrize("change, message", [
    ({"predictions": torch.zeros(4, 2)}, r"predictions are scores \(4, 2\); pass the predicted classes"),
    ({"attributes": torch.tensor([0, 1, 2, 0])}, r"attributes must lie in 0..1, got 0..2"),
    ({"labels": torch.tensor([0, 1, -1, 0])}, r"labels must lie in 0..1, got -1..1"),
    ({"labels": torch.tensor([0, 1, 0])}, r"integer tensors \[N\] of one length"),
    ({"predictions": torch.zeros(4)}, r"integer tensors \[N\].*got torch.float32 \(4,\)"),
    ({"predictions": torch.zeros(0, dtype=torch.long), "labels": torch.zeros(0, dtype=torch.long),
      "attributes": torch.zeros(0, dtype=torch.long)}, r"N >= 1"),
])
def test_metrics_name_what_is_wrong_with_their_input(change, message):
    """An attribute out of range would land in the next class's cells: C=2, A=2, (y=0, a=2) counts as (1, 0)."""
    good = {"predictions": torch.tensor([0, 1, 1, 0]), "labels": torch.tensor([0, 1, 0, 1]),
            "attributes": torch.tensor([0, 1, 1, 0])}
    classification_metrics(**good, aligned=None, num_classes=2, num_attributes=2)
    with pytest.raises(PaperlibError, match=message):
        classification_metrics(**{**good, **change}, aligned=None, num_classes=2, num_attributes=2)
