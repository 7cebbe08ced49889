"""The Python examples for a reader's own work run as written: each block is taken from README.md,
docs/extending.md or docs/library.md and executed, with what stands for the reader's data (a set, predictions,
files) and a tiny scale supplied here."""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", ROOT / "docs" / "extending.md", ROOT / "docs" / "library.md")


def _block_with(text: str) -> str:
    blocks = [b for page in PAGES for b in re.findall(r"```python\n(.*?)```", page.read_text(), re.S) if text in b]
    assert len(blocks) == 1, f"expected one python block with {text!r} in the README, docs/extending.md and " \
        f"docs/library.md, found {len(blocks)}"
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


def test_the_readmes_built_preset_builds_and_distils(tmp_path):
    from paperlib.core.params import make_params
    from paperlib.data.presets import PRESETS, build_dataset, dataset_present
    from paperlib.experiments.runner import run

    def read_my_files(split):  # stands in for the reader's files: 2 classes x 2 groups, 8 px
        n = 40 if split == "train" else 16
        gen = torch.Generator().manual_seed(n)
        labels, attributes = torch.arange(n) % 2, torch.arange(n) // 2 % 2
        images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=gen)
        return images, labels, attributes, attributes == labels

    namespace = {"read_my_files": read_my_files}
    block = _block_with("BuiltPreset(")
    files = tmp_path / "my_faces"  # where the reader's files would be: present() asks for this folder
    assert '"/data/my_faces"' in block
    exec(block.replace('"/data/my_faces"', repr(str(files))), namespace)
    try:
        params = make_params(dataset="my_faces", cache_dir=str(tmp_path), device="cpu", progress=False)
        assert dataset_present(params) is False  # its present(), asked without building: no files, no cache
        files.mkdir()
        assert dataset_present(params) is True
        built = build_dataset(params)
        assert (built.num_classes, built.info.num_attributes, built.info.attribute_names) == (2, 2, ["female", "male"])
        assert built.info.group_counts["train"] == [[10, 10], [10, 10]]
        record = run(params, method="dm", ipc=1, iterations=2, batch_real=4, net_width=8, net_depth=1, num_eval=1,
                     eval_epochs=1)
        assert math.isfinite(record["metrics"]["deo_m"])
    finally:
        PRESETS.unregister("my_faces")


def test_the_readmes_model_registers_and_evaluates_a_set(tmp_path):
    from paperlib.experiments.runner import run
    from paperlib.train.models import MODELS

    exec(_block_with("MODELS.register("), {})
    try:
        assert MODELS["wide_mlp"](3, 10, 28, 128, 3, "instancenorm", "relu", "avgpooling").embed_dim == 512
        record = run(dataset="cmnist", source="digits", method="random", ipc=1, eval_model="wide_mlp", num_eval=1,
                     eval_epochs=1, cache_dir=str(tmp_path), device="cpu", progress=False)
        assert record["params"]["eval_model"] == "wide_mlp" and math.isfinite(record["metrics"]["acc"])
    finally:
        MODELS.unregister("wide_mlp")
