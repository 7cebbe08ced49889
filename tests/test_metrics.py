import math

import pytest
import torch

from paperlib.train.metrics import classification_metrics, summarize


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


def test_no_conflicting_samples_gives_nan():
    labels = torch.tensor([0, 1])
    m = classification_metrics(labels, labels, torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.bool), 2, 1)
    assert math.isnan(m["acc_conflicting"]) and m["deo_m"] == 0.0


def test_summarize_mean_and_std():
    runs = [{k: v for k in ("acc", "acc_aligned", "acc_conflicting", "worst_group_acc", "deo_m", "deo_a")}
            for v in (10.0, 20.0)]
    s = summarize(runs)
    assert s["acc"] == 15.0 and s["acc_std"] == 5.0
