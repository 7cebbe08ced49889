import re

import pytest
import torch

from paperlib.core.keys import derive_seed, stable_hash
from paperlib.core.params import default_of, make_params, with_overrides
from paperlib.core.yamlio import parse_set
from paperlib.core.errors import PaperlibError
from paperlib.core.runtime import resolve_device


def test_defaults_are_the_papers_protocol():
    p = make_params()
    architecture = (p.net_depth, p.net_width, p.net_norm, p.net_act, p.net_pooling)
    assert architecture == (3, 128, "instancenorm", "relu", "avgpooling")
    assert (p.eval_lr, p.eval_batch) == (0.01, 256)


def test_unknown_parameter_suggests_the_close_name():
    with pytest.raises(PaperlibError, match="did you mean 'conflict_ratio'"):
        make_params(conflict_ration=0.1)


def test_default_of_reads_the_declaration_and_names_a_close_parameter():
    assert (default_of("target"), default_of("eval_trainer"), default_of("ipc")) == ("vanilla", "plain", 10)
    with pytest.raises(PaperlibError, match="did you mean 'conflict_ratio'"):
        default_of("conflict_ration")


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
    for value in (1.5, True, float("inf")):
        with pytest.raises(PaperlibError, match=r"^parameter 'ipc' must be an integer, got "):
            make_params(ipc=value)


def test_numpy_scalars_read_off_an_array_are_numbers_like_pythons():
    import numpy as np

    params = make_params(ipc=np.int64(5), seed=np.int32(3), conflict_ratio=np.float64(0.25), iterations=np.float32(4))
    assert (params.ipc, params.seed, params.conflict_ratio, params.iterations) == (5, 3, 0.25, 4)
    assert type(params.ipc) is int and type(params.conflict_ratio) is float  # the cache key sees Python numbers
    assert params == make_params(ipc=5, seed=3, conflict_ratio=0.25, iterations=4)


def test_set_values_are_yaml_scalars():
    assert parse_set(["ipc=10", "conflict_ratio=0.05", "dsa=false", "dataset=cmnist"]) == {
        "ipc": 10, "conflict_ratio": 0.05, "dsa": False, "dataset": "cmnist"}
    with pytest.raises(PaperlibError, match="KEY=VALUE"):
        parse_set(["ipc"])
    with pytest.raises(PaperlibError, match=r"^--set conflict_ratio is given twice; keep one$"):
        parse_set(["conflict_ratio=0.5", "ipc=1", " conflict_ratio=0.1"])


def test_a_zero_padded_or_colon_number_is_an_error_in_a_file_and_read_as_typed_after_set(tmp_path):
    """YAML 1.1 reads ``010`` as octal 8 and ``1:30`` as 90: ``seed: 010`` ran seed 8 without a word."""
    from paperlib.core.yamlio import load_yaml, parse_yaml

    for text, fix in (("seed: 010\n", r"010 reads as 8 \(octal\) in YAML; write it without the leading zero"),
                      ("ipc: 1:30\n", r"1:30 reads as 90 \(base 60\) in YAML; write it without the colon"),
                      ("lr_img: 1:30.5\n", r"1:30.5 reads as 90.5 \(base 60\) in YAML; write it without the colon")):
        (tmp_path / "p.yaml").write_text(text)
        with pytest.raises(PaperlibError, match=fix):
            load_yaml(tmp_path / "p.yaml")
    assert make_params(parse_set(["seed=010"])).seed == 10  # --set keeps what YAML refuses as typed text
    assert parse_yaml("a: 0\nb: 10\nc: 0x1A\nd: 1_000\ne: -0\n") == {"a": 0, "b": 10, "c": 26, "d": 1000, "e": 0}


def test_source_must_fit_the_preset():
    with pytest.raises(PaperlibError, match="cannot use source 'cifar10'"):
        make_params(dataset="cmnist", source="cifar10")


def test_a_bias_ratio_the_preset_does_not_read_is_an_error_not_ignored():
    """``cmnist_fg`` with conflict_ratio=0.01 built the 0.9-majority set, and the record said 0.01."""
    with pytest.raises(PaperlibError, match=r"^dataset 'cmnist_fg' does not read conflict_ratio \(given 0.01\): its "
                                            r"bias is set by majority_ratio; drop conflict_ratio$"):
        make_params(dataset="cmnist_fg", conflict_ratio=0.01)
    with pytest.raises(PaperlibError, match="dataset 'mnist' does not read majority_ratio .* its data fixes its bias"):
        make_params(dataset="mnist", majority_ratio=0.5)
    assert make_params(dataset="cmnist_fg", majority_ratio=0.8, conflict_ratio=0.05).majority_ratio == 0.8  # default
    with pytest.raises(PaperlibError, match=r"^dataset 'cmnist_fg' does not read severity \(given 2\): drop severity$"):
        make_params(dataset="cmnist_fg", severity=2)


def test_hash_and_seed_derivation_are_stable():
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})
    assert derive_seed(0, "eval", 1) == derive_seed(0, "eval", 1) != derive_seed(0, "eval", 2)
    # the same in every process and on every machine (Python's own hash() would change with PYTHONHASHSEED): the
    # seeds of every shipped result
    assert (derive_seed(0, "eval", 1), stable_hash({"a": 1, "b": 2})) == (4254160996170199013, "43258cff783fe703")


def test_papers_defaults_fill_in_by_method():
    assert (make_params(method="dm").iterations, make_params(method="dm").lr_img) == (20000, 1.0)
    assert make_params(method="dm", ipc=100).lr_img == 10.0
    assert (make_params(method="dsa").iterations, make_params(method="dsa").lr_img) == (1000, 0.1)


def test_a_run_that_would_not_be_the_one_it_is_named_is_refused():
    """DSA matching with dsa=false was DC's matching under DSA's name."""
    with pytest.raises(PaperlibError, match=r"^method 'dsa' is named for DSA, which dsa=false turns off .*; set "
                                             r"dsa=true, or choose dm or dc$"):
        make_params(method="dsa", dsa=False)
    assert not make_params(method="dm", dsa=False).dsa  # DM without its augmentation is an ablation, not DC


@pytest.mark.parametrize("field, value", [("hidden_groups_fill", "drop:x"), ("precision", "bf16:zz"),
                                          ("eval_augment", "none:x"), ("device", "cuda:xyz"),
                                          ("device", "auto:0"), ("eval_model", "none")])
def test_a_choice_must_match_whole(field, value):
    # 'drop:x' once ran the impute path and 'none:x' turned augmentation on
    with pytest.raises(PaperlibError, match=f"unknown {field} '{value}'"):
        make_params({field: value})


def test_a_cuda_index_and_no_dsa_are_valid():
    assert make_params(device="cuda:1").device == "cuda:1"
    assert make_params(dsa_strategy="none").dsa_strategy == "none"


@pytest.mark.parametrize("field", ["kde_clip", "lr_img", "momentum_img", "supcon_epochs"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), "inf", "-Infinity", "NaN"])  # --set lr_img=inf too
def test_numbers_must_be_finite(field, value):
    with pytest.raises(PaperlibError, match=f"{field} must be a finite number"):
        make_params({field: value})


@pytest.mark.parametrize(("field", "value"), [("lr_img", 1e300), ("eval_lr", -1e39), ("kde_bandwidth_value", 1e-300),
                                              ("kde_alpha", 1e39)])
def test_numbers_must_fit_in_float32_where_the_computation_runs(field, value):
    expected = re.escape(f"{field}={value} cannot be computed with: the tensors are float32")
    with pytest.raises(PaperlibError, match=expected):
        make_params({field: value})
    make_params({field: 0.5})  # an ordinary value passes


@pytest.mark.parametrize(("call", "message"), [
    (lambda: make_params({1: 2}), "parameter names are text, got 1"),
    (lambda: make_params([("ipc", 1)]), "parameters are a mapping of name: value, got list"),
    (lambda: with_overrides({"ipc": 2}, {}), "expected Params .from make_params. or None, got dict"),
    (lambda: with_overrides(None, [("ipc", 2)]), "overrides are a mapping of name: value, got list"),
])
def test_parameters_of_the_wrong_type_are_a_one_line_error(call, message):
    with pytest.raises(PaperlibError, match=message):
        call()


def test_image_momentum_below_one():
    with pytest.raises(PaperlibError, match="momentum_img must be below 1"):
        make_params(momentum_img=1.0)


def test_an_unavailable_device_is_a_one_line_error(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(PaperlibError, match="'cuda' requested but CUDA is not available; use device=auto or cpu"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.version, "cuda", None)  # no kernels to look up (a CPU build), even on a GPU machine
    with pytest.raises(PaperlibError, match=r"'cuda:7' requested but this machine has 2 CUDA device\(s\), cuda:0 to "
                                            r"cuda:1; pick one"):
        resolve_device("cuda:7")
    assert resolve_device("cuda:1") == torch.device("cuda:1")


def test_a_gpu_without_kernels_in_the_torch_build_is_a_one_line_error(monkeypatch):
    from paperlib.core.runtime import missing_kernels

    archs = ["sm_50", "sm_80", "sm_86", "sm_90", "compute_90"]
    assert not missing_kernels((8, 9), archs)  # an sm_8x binary runs on an 8.9 card
    assert not missing_kernels((12, 0), archs)  # compute_90's PTX is compiled for newer cards
    assert missing_kernels((12, 0), archs[:-1]) and missing_kernels((3, 7), archs)
    assert missing_kernels((10, 0), ["sm_90a", "sm_120"]) and missing_kernels((8, 0), ["sm_86"])  # a later minor
    assert not missing_kernels((10, 0), ["sm_100a"]) and missing_kernels((10, 3), ["sm_100a"])  # arch-specific
    assert not missing_kernels((7, 0), [])  # a build that does not say
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: archs[:-1])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (12, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA RTX PRO 6000")
    for name in ("auto", "cuda"):  # auto too: a CPU fallback would run for hours unannounced
        with pytest.raises(PaperlibError, match=r"^NVIDIA RTX PRO 6000 \(compute capability 12.0, sm_120\) has no "
                                                r"kernels in this torch .*, built for sm_50 sm_80 sm_86 sm_90; install "
                                                r"a torch build for it \(pytorch.org\), or set device=cpu$"):
            resolve_device(name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert resolve_device("auto") == torch.device("cuda")


def test_to_device_gives_the_same_values_in_the_asked_dtype():
    from paperlib.core.runtime import to_device

    drawn = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    moved = to_device(drawn, torch.device("cpu"), torch.float32)
    assert moved.dtype == torch.float32 and torch.equal(moved, drawn.float())
    assert to_device(drawn, "cpu") is drawn  # nothing copied where nothing moves


class _Pinned(Exception):
    """Stops ``to_device`` after pinning: this machine has no CUDA device to copy to."""


def test_to_device_pins_an_expanded_view_as_a_writable_copy(monkeypatch):
    """ATen pins a tensor by copying it into a new one of the same strides; an expanded view (SelecMix's one
    draw for a whole batch) has stride 0, and that copy is refused: a crash only a CUDA machine would show."""
    from paperlib.core.runtime import to_device

    def pin_as_aten_does(self):
        pinned = torch.empty_strided(self.size(), self.stride(), dtype=self.dtype)
        pinned.copy_(self)  # RuntimeError for a view whose elements share memory
        raise _Pinned(pinned)

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_as_aten_does)
    drawn = torch.rand(1, generator=torch.Generator().manual_seed(0))
    with pytest.raises(_Pinned) as stopped:
        to_device(drawn.expand(5), "cuda")
    assert torch.equal(stopped.value.args[0], drawn.expand(5))


def test_params_built_by_hand_are_validated_and_filled_in_before_a_run():
    """``Params(...)`` skips validation; every entry point goes through with_overrides, which checks it."""
    from paperlib.core.params import Params, with_overrides

    filled = with_overrides(Params(dataset="cmnist", method="dm"), {})
    assert (filled.iterations, filled.lr_img, filled.init) == (20000, 1.0, "real")
    with pytest.raises(PaperlibError, match="ipc must be at least 1"):
        with_overrides(Params(ipc=0), {})


def test_an_empty_set_of_a_field_whose_default_is_empty_means_that_default():
    """`--set eval_augment=` (YAML reads it as null) is the documented "the method's own", not an error."""
    from paperlib.core.yamlio import parse_set

    assert make_params(parse_set(["eval_augment=", "eval_model="])).eval_augment == "dsa"
    with pytest.raises(PaperlibError, match="must not be empty"):
        make_params(parse_set(["dataset="]))


def test_an_unreadable_yaml_file_is_a_one_line_error_naming_it(tmp_path):
    """Named by its path alone: load_yaml reads suites, experiment files and profile defaults too, not only
    parameter files (each message said "parameter file")."""
    import re

    from paperlib.core.yamlio import load_yaml

    binary = tmp_path / "bad.yaml"
    binary.write_bytes(b"dataset: cmnist\n\xff\xfe")
    with pytest.raises(PaperlibError, match=rf"^{re.escape(str(binary))} is not UTF-8 text \(.* at byte 16\); save"):
        load_yaml(binary)
    with pytest.raises(PaperlibError, match=rf"^{re.escape(str(tmp_path))} is a folder; name a \.yaml file in it$"):
        load_yaml(tmp_path)
    with pytest.raises(PaperlibError, match=rf"^{re.escape(str(tmp_path / 'gone.yaml'))} does not exist; check the"):
        load_yaml(tmp_path / "gone.yaml")
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")  # "does not exist" would send one hunting a typo
    with pytest.raises(PaperlibError, match=r"loop\.yaml is a symbolic link to .*loop\.yaml, which leads nowhere \(a "
                                            r"missing file, or a loop\); check the path$"):
        load_yaml(tmp_path / "loop.yaml")
    (tmp_path / "bad.yaml").write_text("dataset: [cmnist\n")
    with pytest.raises(PaperlibError, match=rf"^{re.escape(str(binary))} is not valid YAML: "):
        load_yaml(binary)
    (tmp_path / "bad.yaml").write_text("- dataset\n")
    with pytest.raises(PaperlibError, match=rf"^{re.escape(str(binary))} must hold a mapping of name: value$"):
        load_yaml(binary)


def test_a_key_written_twice_in_a_parameter_file_is_an_error_naming_its_line(tmp_path):
    from paperlib.core.yamlio import load_yaml

    path = tmp_path / "p.yaml"
    path.write_text("ipc: 1\nmethod: dm\nipc: 5\n")
    with pytest.raises(PaperlibError, match="not valid YAML: duplicate key 'ipc': keep one in line 3, column 1"):
        load_yaml(path)
    path.write_text("a: {ipc: 1}\nb: {ipc: 1}\n")  # the same key in two mappings is fine
    assert load_yaml(path) == {"a": {"ipc": 1}, "b": {"ipc": 1}}


def test_merge_keys_and_aliases_load_and_a_merged_key_may_be_overridden(tmp_path):
    from paperlib.core.yamlio import load_yaml

    path = tmp_path / "p.yaml"
    path.write_text("base: &b {ipc: 1, method: dm}\n"
                    "inner: &i {<<: *b, ipc: 5}\n"  # a merged key overridden: not a duplicate
                    "outer: {<<: *i, lr_img: 2.0}\n"
                    "alias: *b\n")
    assert load_yaml(path) == {"base": {"ipc": 1, "method": "dm"}, "inner": {"ipc": 5, "method": "dm"},
                               "outer": {"ipc": 5, "method": "dm", "lr_img": 2.0}, "alias": {"ipc": 1, "method": "dm"}}
    assert parse_set(["x={a: 1}"]) == {"x": {"a": 1}}
    assert parse_set(["x={a: 1, a: 2}"]) == {"x": "{a: 1, a: 2}"}  # kept as text, never the last value alone


def test_pixels_whose_squares_overflow_float32_are_told_apart_from_large_ones():
    from paperlib.core.runtime import diverged_pixels

    def images(largest):  # 3,072 pixels per image: sqrt(3.4e38 / 3072) = 3.3e17
        return torch.zeros(2, 3, 32, 32).index_fill_(1, torch.tensor([0]), largest)

    assert diverged_pixels(images(25.0)) is None and diverged_pixels(images(1e17)) is None
    assert diverged_pixels(images(4e17)) == "|x| up to 4e+17, whose squares overflow float32"
    assert diverged_pixels(images(float("nan"))) == "some pixels are not finite"


def test_torch_threads_sets_and_restores_the_count_and_leaves_it_alone_at_zero(monkeypatch):
    import torch

    from paperlib.core.runtime import torch_threads

    before = torch.get_num_threads()
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    with torch_threads(0):
        pass
    assert calls == []  # the serial executor's default: this process's setting is not touched
    with pytest.raises(RuntimeError), torch_threads(before + 1):
        raise RuntimeError("a failed run")
    assert calls == [before + 1, before]  # restored after a failure too


def test_an_integer_beyond_float_range_is_a_one_line_error():
    with pytest.raises(PaperlibError, match="^lr_img must be a finite number, got an integer of 401 digits$"):
        make_params(lr_img=10**400)


@pytest.mark.parametrize("text, fix", [
    ("dataset: cmnist\n\tsource: digits\n", "; indent with spaces, not tabs$"),
    ("experiments:\n  - name: a\n   runs: x\n", "; check the indentation and the ': ' after each name on line 3 and"),
    ("a: b: c\n", "; check the indentation and the ': ' after each name on line 1 and"),
    ("ipc: [1, 2\nmethod: dm\n", "; close the bracket opened before line 2$"),
])
def test_a_yaml_syntax_error_says_how_to_fix_the_usual_causes(text, fix, tmp_path):
    from paperlib.core.yamlio import load_yaml

    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PaperlibError, match=r"is not valid YAML: .*" + fix):
        load_yaml(tmp_path / "p.yaml")
