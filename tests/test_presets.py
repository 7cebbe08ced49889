import pytest
import torch

from paperlib.data import PRESETS, build_dataset
from paperlib.data.bias import (DISTINCT_COLOURS, LFF_COLOURS, assign_attributes, composite_on_background,
                               textured_backgrounds)
from paperlib.core.errors import PaperlibError
from paperlib.core.params import make_params
from paperlib.data.container import Split, assemble, channel_stats, sample_per_class
from paperlib.data.presets import ColourPreset

BIASED = [name for name, preset in PRESETS.items()
          if getattr(preset, "render", None) is not None or isinstance(preset, ColourPreset)]


def _digits(dataset, **kw):
    return build_dataset(dataset=dataset, source="digits", **kw)


@pytest.mark.parametrize("ratio", [0.005, 0.01, 0.05, 0.3, 1.0])
def test_assign_attributes_exact_ratio_and_even_spread(ratio):
    labels = torch.arange(10).repeat_interleave(1000)
    attrs, aligned = assign_attributes(labels, 1 - ratio, 10, torch.Generator().manual_seed(0))
    counts = torch.bincount(labels * 10 + attrs, minlength=100).view(10, 10)
    n_aligned = round(1000 * (1 - ratio))
    assert torch.equal(counts.diagonal(), torch.full((10,), n_aligned))
    off = counts[~torch.eye(10, dtype=torch.bool)].view(10, 9)
    assert int((off.amax(1) - off.amin(1)).max()) <= 1  # the rest spread evenly
    assert torch.equal(aligned, attrs == labels)


def test_balanced_assignment_gives_equal_groups():
    labels = torch.arange(10).repeat_interleave(103)
    attrs, _ = assign_attributes(labels, 0.1, 10, torch.Generator().manual_seed(1))
    counts = torch.bincount(labels * 10 + attrs, minlength=100).view(10, 10)
    assert int((counts.amax(1) - counts.amin(1)).max()) <= 1


@pytest.mark.parametrize("name", BIASED)
def test_every_biased_preset_has_exact_ratio_and_balanced_test(name):
    ds = _digits(name, protocol="companion")  # this companion's construction (FairDD's: tests/test_protocols.py)
    assert ds.train.images.dtype == torch.uint8 and ds.train.images.shape[1:] == (3, 28, 28)
    counts = torch.tensor(ds.info.group_counts["train"])
    sizes = counts.sum(1)
    preset = PRESETS[name]
    expected_aligned = 0.95 if "conflict_ratio" in preset.uses else 0.9
    assert torch.equal(counts.diagonal(), torch.round(sizes.double() * expected_aligned).long())
    test_counts = torch.tensor(ds.info.group_counts["test"])
    assert int((test_counts.amax(1) - test_counts.amin(1)).max()) <= 1
    assert abs(float(ds.test.aligned.float().mean()) - 0.1) < 0.02


def _colour_error(severity):
    ds = _digits("cmnist", conflict_ratio=0.05, severity=severity)
    rgb = ds.train.images.float().sum(dim=(2, 3))
    direction = rgb / rgb.norm(dim=1, keepdim=True)
    expected = torch.tensor(LFF_COLOURS)[ds.train.attributes]
    return (direction - expected / expected.norm(dim=1, keepdim=True)).abs()


def test_cmnist_colours_follow_lff_palette_with_severity_noise():
    least_noise, most_noise = _colour_error(5), _colour_error(1)
    assert float(least_noise.max()) < 0.03  # every image carries its attribute's colour
    assert float(most_noise.mean()) > 3 * float(least_noise.mean())  # severity 1 is noisier


def test_cmnist_fg_is_binary_colour_on_black():
    ds = _digits("cmnist_fg", protocol="companion")
    img = ds.train.images[:50].float() / 255
    colour = torch.tensor(DISTINCT_COLOURS)[ds.train.attributes[:50]][:, :, None, None]
    on = img.sum(1, keepdim=True) > 0
    assert torch.allclose(img, colour * on, atol=1 / 255)


def test_cmnist_bg_has_black_digit_on_coloured_background():
    ds = _digits("cmnist_bg", protocol="companion")
    img = ds.train.images[:50].float() / 255
    corner = img[:, :, 0, 0]  # digits never touch the corner
    assert torch.allclose(corner, torch.tensor(DISTINCT_COLOURS)[ds.train.attributes[:50]], atol=1 / 255)
    assert bool((img.sum(1) == 0).any(dim=(1, 2)).all())  # every image has black (digit) pixels


def test_bg_fmnist_backgrounds_carry_their_colour_and_orientation_and_the_object_covers_them():
    attributes = torch.arange(10).repeat(2)
    backgrounds = textured_backgrounds(attributes, 32, torch.Generator().manual_seed(0))
    colour = torch.tensor(DISTINCT_COLOURS)[attributes][:, :, None, None]
    shade = backgrounds / colour  # every channel of a pixel scaled alike: the colour identifies the background
    assert torch.allclose(shade, shade[:, :1].expand_as(shade), atol=1e-5)
    assert float(shade.min()) >= 0.2 - 1e-5 and float(shade.max()) <= 1.0 + 1e-5
    # the grating's orientation: background 0 (0 degrees) varies along the rows only, background 5 (90) down them
    assert float(shade[0, 0].std(dim=0).max()) < 1e-5 < float(shade[0, 0].std(dim=1).min())
    assert float(shade[5, 0].std(dim=1).max()) < 1e-5 < float(shade[5, 0].std(dim=0).min())
    gray = torch.zeros(20, 1, 32, 32)
    gray[:, :, 8:24, 8:24] = 0.5  # an object of intensity 0.5 (opaque from 0.15) in the middle
    image = composite_on_background(gray, backgrounds)
    assert torch.equal(image[:, :, 8:24, 8:24], gray[:, :, 8:24, 8:24].expand(-1, 3, -1, -1))
    assert torch.equal(image[:, :, :8], backgrounds[:, :, :8])


def test_plain_preset_is_grayscale_with_one_group():
    ds = _digits("mnist")
    assert ds.train.images.shape[1] == 1 and ds.info.num_attributes == 1
    assert bool(ds.train.aligned.all())


def test_same_seed_same_tensors_and_different_seed_differs(tmp_path):
    a = build_dataset(dataset="bg_fmnist", source="digits", seed=3, cache_dir=str(tmp_path / "a"))
    b = build_dataset(dataset="bg_fmnist", source="digits", seed=3, cache_dir=str(tmp_path / "b"))
    c = build_dataset(dataset="bg_fmnist", source="digits", seed=4, cache_dir=str(tmp_path / "c"))
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.train.attributes, b.train.attributes)
    assert not torch.equal(a.train.attributes, c.train.attributes)


def test_cache_is_written_once_atomically_and_reused(tmp_path):
    first = build_dataset(dataset="cmnist", source="digits", cache_dir=str(tmp_path))
    files = list((tmp_path / "datasets").iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"  # no temporary left behind
    stamp = files[0].stat().st_mtime_ns
    again = build_dataset(dataset="cmnist", source="digits", cache_dir=str(tmp_path))
    assert files[0].stat().st_mtime_ns == stamp
    for split in ("train", "test"):
        for name, tensor in getattr(first, split).tensors().items():
            other = getattr(again, split).tensors()[name]
            assert torch.equal(tensor, other) and tensor.dtype == other.dtype
    raw = sum(s.images.numel() for s in (first.train, first.test))
    assert files[0].stat().st_size < 0.75 * raw  # images stored compressed (digits: 58% of their raw bytes)


@pytest.mark.parametrize("entry", ["absent", "damaged"])
def test_a_dataset_is_built_under_its_lock_and_a_job_that_waited_loads_it(entry, tmp_path, monkeypatch):
    """Parallel jobs starting on one dataset used to build it each (CelebA: minutes and GBs apiece); so did jobs
    that all found the same damaged entry."""
    import contextlib

    import paperlib.data.presets as presets

    if entry == "damaged":
        stale = presets._cache_path(make_params(dataset="cmnist", source="digits", cache_dir=str(tmp_path)))
        stale.parent.mkdir(parents=True)
        stale.write_bytes(b"cut short")
    written, locked = [], []
    save = presets.save_tensors
    monkeypatch.setattr(presets, "save_tensors", lambda path, payload: written.append(path) or save(path, payload))

    def lock_got_after_another_job_built_it(cache_dir, name):
        locked.append(name)
        with monkeypatch.context() as other_job:
            other_job.setattr(presets, "entry_lock", lambda *args: contextlib.nullcontext())
            build_dataset(dataset="cmnist", source="digits", cache_dir=str(tmp_path))
        return contextlib.nullcontext()

    monkeypatch.setattr(presets, "entry_lock", lock_got_after_another_job_built_it)
    build_dataset(dataset="cmnist", source="digits", cache_dir=str(tmp_path))
    assert len(locked) == 1 and len(written) == 1  # this job waited, then loaded what the other one wrote
    monkeypatch.setattr(presets, "entry_lock", lambda *args: pytest.fail("a stored dataset is read without a lock"))
    build_dataset(dataset="cmnist", source="digits", cache_dir=str(tmp_path))
    assert len(written) == 1


def _damage_labels(payload):
    payload["train"]["labels"] = payload["train"]["labels"][:10]


def _damage_classes(payload):
    payload["info"]["num_classes"] = 3


def _damage_shape(payload):
    payload["train"]["images_shape"] = [7, 3, 28, 28]


@pytest.mark.parametrize("damage", [_damage_labels, _damage_classes, _damage_shape])
def test_a_damaged_dataset_cache_entry_is_rebuilt_with_a_warning(damage, tmp_path, capsys):
    """An entry that unpacks but does not hold together was a torch error later (a shape or an index)."""
    from paperlib.core.store import load_tensors, save_tensors

    first = build_dataset(dataset="cmnist", source="digits", cache_dir=str(tmp_path))
    path, = (tmp_path / "datasets").iterdir()
    payload = load_tensors(path)
    damage(payload)
    save_tensors(path, payload)
    again = build_dataset(dataset="cmnist", source="digits", cache_dir=str(tmp_path))
    assert torch.equal(again.train.labels, first.train.labels) and again.num_classes == 10
    warning = capsys.readouterr().err
    assert warning.startswith(f"warning: cache entry {path} cannot be read (") and warning.endswith("rebuilding it\n")


def test_irrelevant_parameters_share_the_cached_dataset(tmp_path):
    build_dataset(dataset="cmnist_fg", source="digits", cache_dir=str(tmp_path), method="dm", iterations=3)
    build_dataset(dataset="cmnist_fg", source="digits", cache_dir=str(tmp_path), ipc=5, target="groups")
    assert len(list((tmp_path / "datasets").iterdir())) == 1


def test_sample_per_class_takes_k_of_each_class():
    labels = torch.arange(5).repeat_interleave(20)
    index = sample_per_class(labels, 3, torch.Generator().manual_seed(0))
    assert torch.equal(torch.bincount(labels[index]), torch.full((5,), 3))
    assert index.unique().numel() == 15


def test_normalize_roundtrip():
    ds = _digits("cmnist")
    x = ds.normalized("train")[:10]
    assert torch.allclose(ds.denormalize(x), ds.train.images[:10].float() / 255, atol=1e-5)


def test_normalising_leaves_a_float_batch_as_it_was():
    """``.float()`` of a float32 tensor is that tensor: it was divided by 255 in place."""
    ds = _digits("cmnist")
    images = ds.train.images[:4].float()
    given = images.clone()
    assert torch.equal(ds.normalize_uint8(images), ds.normalize_uint8(ds.train.images[:4]))
    assert torch.equal(images, given)


def test_normalising_a_batch_makes_its_statistics_on_the_host(monkeypatch):
    """The engine normalises every real batch: ``torch.tensor(..., device="cuda")`` would wait for the queued
    kernels each time, so the mean and std are made on the host and sent by ``to_device`` (no wait)."""
    import paperlib.data.container as container

    ds = _digits("cmnist")
    made_on, tensor, sent, send = [], torch.tensor, [], container.to_device
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made_on.append(str(k.get("device", "cpu"))) or tensor(*a, **k))
    monkeypatch.setattr(container, "to_device", lambda t, device: sent.append(str(device)) or send(t, device))
    batch = ds.train.images[:4].to("meta")  # another device than the host; runs on the CPU build
    assert ds.normalize_uint8(batch).device.type == "meta"
    assert made_on and set(made_on) == {"cpu"} and sent == ["meta", "meta"]  # the mean and the std


def _toy_split(n: int = 6) -> dict:
    return {"images": torch.zeros(n, 3, 4, 4, dtype=torch.uint8), "labels": torch.arange(n) % 2,
            "attributes": torch.arange(n) % 3, "aligned": torch.ones(n, dtype=torch.bool)}


@pytest.mark.parametrize("change, message", [
    ({"images": torch.zeros(6, 3, 4, 4)}, r"images must be uint8 \[N, C, H, W\].*got torch.float32"),
    ({"images": torch.zeros(6, 3, 4, 5, dtype=torch.uint8)},
     r"images must be uint8 .N, C, H, W. with H = W.*got torch.uint8 .6, 3, 4, 5."),
    ({"labels": torch.arange(6)}, r"labels must lie in 0..1, got 0..5"),
    ({"attributes": torch.arange(6) - 1}, r"attributes must lie in 0..2, got -1..4"),
    ({"labels": torch.zeros(5, dtype=torch.int64)}, r"labels must be int64 \[N\] with N = 6 images"),
    ({"attributes": torch.zeros(6, dtype=torch.int32)}, r"attributes must be int64"),
    ({"aligned": torch.ones(6)}, r"aligned must be bool \[N\]"),
])
def test_assemble_names_what_a_builder_got_wrong(change, message):
    """A builder's split is checked where it is assembled: not a torch error later, nor float images divided by
    255 twice without a word."""
    good = _toy_split()
    kwargs = dict(preset="toy", key={}, num_classes=2, num_attributes=3, attribute_kind="toy",
                  attribute_names=["a", "b", "c"], palette=[], mean=[0.5] * 3, std=[0.5] * 3)
    assemble(Split(**good), Split(**good), **kwargs)  # the good split passes
    with pytest.raises(PaperlibError, match=r"the train split of preset 'toy': " + message):
        assemble(Split(**{**good, **change}), Split(**good), **kwargs)


def test_channel_stats_refuses_float_images_and_leaves_them_alone():
    images = torch.full((2, 3, 4, 4), 0.5)
    with pytest.raises(PaperlibError, match="channel_stats: images must be uint8"):
        channel_stats(images)
    assert bool((images == 0.5).all())  # not divided by 255 in place on the way


def test_cell_ids_index_a_classes_by_groups_table_row_major():
    from paperlib.data.container import cell_counts, cell_ids

    labels, groups = torch.tensor([0, 0, 1, 1, 1, 0]), torch.tensor([2, 2, 0, 1, 1, 0])
    assert cell_ids(labels, groups, 3).tolist() == [2, 2, 3, 4, 4, 0]
    assert cell_counts(cell_ids(labels, groups, 3), 2, 3).tolist() == [[1, 0, 2], [1, 2, 0]]
