"""The README's Python example for a set made elsewhere runs as written: the block is taken from README.md and
executed, with the set, the predictions and the tiny scale (digits source, one model of one epoch) supplied
by the test."""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_with(text: str) -> str:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if text in b]
    assert len(blocks) == 1, f"expected one README python block with {text!r}, found {len(blocks)}"
    return blocks[0]


def test_the_readme_evaluates_a_set_made_elsewhere_and_scores_a_models_predictions(tmp_path):
    from paperlib.core.params import make_params
    from paperlib.data.presets import build_dataset

    tiny = {"source": "digits", "net_width": 16, "num_eval": 1, "eval_epochs": 1, "cache_dir": str(tmp_path),
            "device": "cpu", "progress": False}
    block = _block_with("evaluate_set(")
    call = 'make_params(dataset="cmnist", method="dm", ipc=10)'
    assert block.count(call) == 1
    dataset = build_dataset(make_params(dataset="cmnist", method="dm", ipc=10, **tiny))
    pick = torch.stack([torch.nonzero(dataset.train.labels == c)[0, 0] for c in range(dataset.num_classes)])
    namespace = {"images01": dataset.train.images[pick].float() / 255, "labels": dataset.train.labels[pick],
                 "predictions": dataset.test.labels.clone(), "TINY": tiny}  # the predictions of a perfect model
    exec(block.replace(call, call[:-1] + ", **TINY)"), namespace)
    result = namespace["result"]
    assert len(result["runs"]) == 1 and math.isfinite(result["acc"]) and math.isfinite(result["deo_m"])
    assert namespace["metrics"]["acc"] == 100.0 and namespace["metrics"]["deo_m"] == 0.0
