"""Corruptions (paperlib.data.corruptions) and the corruption-bias preset on the digits source."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from paperlib.data import build_dataset
from paperlib.data.corruptions import (
    CORRUPTIONS,
    JPEG_QUALITY,
    RANDOM_CORRUPTIONS,
    SEVERITIES,
    corrupt,
    corrupt_by_attribute,
)
from paperlib.data.sources import load_source
from paperlib.core.errors import PaperlibError


@pytest.fixture(scope="module")
def batches() -> dict[str, torch.Tensor]:
    """8 random colour images at 32 px and 8 digits at 28 px (gray, repeated to RGB)."""
    noise = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    digits = load_source("digits", "test").images[:8].float().div(255).expand(-1, 3, -1, -1).contiguous()
    return {"random": noise, "digits": digits}


def _run(x: torch.Tensor, kind: str, severity: int, seed: int = 0) -> torch.Tensor:
    return corrupt(x, kind, severity, torch.Generator().manual_seed(seed))


def test_palette_is_ten_distinct_kinds_in_a_fixed_order():
    assert len(CORRUPTIONS) == 10 and len(set(CORRUPTIONS)) == len(CORRUPTIONS)
    assert CORRUPTIONS[0] == "gaussian_noise" and CORRUPTIONS[-1] == "jpeg"
    assert RANDOM_CORRUPTIONS < set(CORRUPTIONS)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_shape_range_and_determinism(batches, kind, severity):
    for x in batches.values():
        out = _run(x, kind, severity)
        assert out.shape == x.shape and out.dtype == torch.float32
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert torch.equal(out, _run(x, kind, severity))  # same seed, same output
        assert not torch.equal(out, x)  # every severity changes the image
        if kind in RANDOM_CORRUPTIONS:
            assert not torch.equal(out, _run(x, kind, severity, seed=1))


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_higher_severity_changes_the_image_more(batches, kind):
    for name, x in batches.items():
        change = [float((_run(x, kind, s) - x).abs().mean()) for s in SEVERITIES]
        assert all(b > a for a, b in zip(change, change[1:])), (name, change)


@pytest.mark.parametrize("kind", ["gaussian_noise", "frost"])
def test_generator_state_decides_the_pattern(batches, kind):
    x = batches["random"]
    gen = torch.Generator().manual_seed(5)
    first, second = corrupt(x, kind, 3, gen), corrupt(x, kind, 3, gen)
    assert not torch.equal(first, second)  # the generator advanced
    assert torch.equal(first, _run(x, kind, 3, seed=5))


def test_grayscale_input_is_repeated_to_three_channels(batches):
    gray = batches["digits"][:, :1]
    out = _run(gray, "contrast", 2)
    assert out.shape == (8, 3, 28, 28)
    assert torch.allclose(out, _run(batches["digits"], "contrast", 2), atol=1e-6)


def test_bad_arguments_are_clear_errors(batches):
    x = batches["random"]
    with pytest.raises(PaperlibError, match="unknown corruption 'snowstorm'"):
        _run(x, "snowstorm", 1)
    with pytest.raises(PaperlibError, match="severity must be 1..5"):
        _run(x, "fog", 6)
    with pytest.raises(PaperlibError, match=r"float images \[N, 3, H, W\]"):
        _run((x * 255).byte(), "fog", 1)


def _pillow_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    out = []
    for image in x:
        buffer = io.BytesIO()
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
            buffer, format="JPEG", quality=quality)
        decoded = np.array(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        out.append(torch.from_numpy(decoded).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def test_jpeg_matches_a_real_encoder():
    # Smooth colour images (a bilinear blow-up of 4x4 noise), quantised to 8 bits first.
    coarse = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    x = (torch.nn.functional.interpolate(coarse, size=32, mode="bilinear") * 255).round() / 255
    for severity, quality in zip(SEVERITIES, JPEG_QUALITY):
        ours, pillow = _run(x, "jpeg", severity), _pillow_jpeg(x, quality)
        distortion = float((pillow - x).abs().mean())
        assert float((ours - pillow).abs().mean()) < 0.35 * distortion  # chroma upsampling, integer DCT
        assert abs(float((ours - x).abs().mean()) - distortion) < 0.05 * distortion


def test_corrupt_by_attribute_applies_kind_a_to_attribute_a(batches):
    x = torch.cat([batches["digits"], batches["digits"][:2]])  # 10 images
    attrs = torch.arange(10)
    out = corrupt_by_attribute(x, attrs, 3, torch.Generator().manual_seed(0), chunk=3)
    # one image per kind, corrupted kind by kind: the random kinds' draws replay from the same seed, so two
    # swapped noises (or fog for frost) fail here too
    replay = torch.Generator().manual_seed(0)
    assert torch.equal(out, torch.cat([corrupt(x[a:a + 1], kind, 3, replay) for a, kind in enumerate(CORRUPTIONS)]))
    again = corrupt_by_attribute(x, attrs, 3, torch.Generator().manual_seed(0), chunk=3)
    assert torch.equal(out, again)


def test_corrupted_preset_on_digits_has_exact_ratio_and_balanced_test():
    ds = build_dataset(dataset="corrupted_cifar10", source="digits", conflict_ratio=0.1, severity=3)
    assert ds.train.images.shape[1:] == (3, 28, 28) and ds.train.images.dtype == torch.uint8
    assert ds.info.attribute_names == list(CORRUPTIONS) and ds.info.attribute_kind == "corruption"
    assert ds.info.params["source"] == "digits" and ds.info.params["severity"] == 3
    counts = torch.tensor(ds.info.group_counts["train"])
    assert torch.equal(counts.diagonal(), torch.round(counts.sum(1).double() * 0.9).long())
    off = counts[~torch.eye(10, dtype=torch.bool)].view(10, 9)
    assert int((off.amax(1) - off.amin(1)).max()) <= 1  # conflicting samples spread evenly
    assert torch.equal(ds.train.aligned, ds.train.attributes == ds.train.labels)
    test_counts = torch.tensor(ds.info.group_counts["test"])
    assert int(test_counts.max() - test_counts.min()) <= 1  # balanced over (class, corruption)


def test_corrupted_preset_renders_each_image_with_its_attribute_kind():
    ds = build_dataset(dataset="corrupted_cifar10", source="digits", severity=2)
    clean = load_source("digits", "train").images.float() / 255  # the builder keeps the source order
    for a, kind in enumerate(CORRUPTIONS):
        if kind in RANDOM_CORRUPTIONS:
            continue
        index = torch.nonzero(ds.train.attributes == a).flatten()[:5]
        expected = corrupt(clean[index], kind, 2, torch.Generator())
        assert float((ds.train.images[index].float() / 255 - expected).abs().max()) <= 0.5 / 255 + 1e-6


def test_corrupted_preset_severity_enters_key_and_images():
    mild = build_dataset(dataset="corrupted_cifar10", source="digits", severity=1)
    strong = build_dataset(dataset="corrupted_cifar10", source="digits", severity=5)
    assert mild.info.params != strong.info.params
    assert torch.equal(mild.train.attributes, strong.train.attributes)
    clean = load_source("digits", "train").images.float()
    assert float((strong.train.images.float() - clean).abs().mean()) > float(
        (mild.train.images.float() - clean).abs().mean())
