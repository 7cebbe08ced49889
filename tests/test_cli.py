"""The command-line contracts later issues rely on, run in-process."""

import dataclasses
import gzip
import json

import pytest
import torch

from paperlib.cli import COMMANDS, main
from paperlib.train.metrics import METRIC_KEYS


def _last_json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_describe_reports_aligned_fraction_and_group_counts(capsys):
    assert main(["describe", "--set", "dataset=cmnist", "--set", "source=digits", "--set", "conflict_ratio=0.05"]) == 0
    result = _last_json(capsys)
    assert abs(result["train"]["aligned_fraction"] - 0.95) <= 0.002
    counts = result["test"]["group_counts"]
    assert len(counts) == 10 and all(len(row) == 10 and max(row) - min(row) <= 1 for row in counts)


def test_describe_reads_a_params_file(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text("dataset: cmnist_fg\nsource: digits\nmajority_ratio: 0.8\n")
    assert main(["describe", str(f)]) == 0
    # FairDD's split (the preset's default protocol) takes int(n * 0.8) per class: just under 0.8
    assert 0.79 <= _last_json(capsys)["train"]["aligned_fraction"] <= 0.8
    assert main(["describe", "params/smoke/defaults.yaml"]) == 2  # a profile's file, not a parameter file
    assert capsys.readouterr().err == (  # not "did you mean 'method'?" for its block 'methods'
        "error: params/smoke/defaults.yaml is not a parameter file (name: value, one per line): 'methods' holds a "
        "block. An experiment's file runs with `python -m paperlib suite FILE --profile P`; a profile's is chosen "
        "with --profile\n")
    f.write_text("ipcc: 10\n")  # a typo in a parameter file: no such advice, and no list of ~100 names
    assert main(["describe", str(f)]) == 2
    assert capsys.readouterr().err == (f"error: {f}: unknown parameter 'ipcc'; did you mean 'ipc'? `python -m "
                                       "paperlib params` lists every parameter with its meaning\n")


def test_run_prints_metrics_json_and_caches(capsys, tmp_path):
    args = ["run", "--set", "dataset=cmnist", "--set", "source=digits", "--set", "method=random",
            "--set", "ipc=5", "--set", "eval_epochs=2", "--set", "num_eval=2", "--set", "net_width=16",
            "--set", f"cache_dir={tmp_path}"]
    assert main(args) == 0
    first = _last_json(capsys)
    for key in METRIC_KEYS:
        assert key in first and f"{key}_std" in first
    assert first["num_eval"] == 2 and first["seconds"] > 0 and first["cached"] is False
    assert main(args) == 0
    again = _last_json(capsys)
    assert again["cached"] is True and again["acc"] == first["acc"]


@pytest.mark.parametrize("sets,message", [
    (["dataset=nope"], "unknown dataset 'nope'"),
    (["colour_ratio=0.1"], "unknown parameter 'colour_ratio'"),
    (["conflict_ratio=1.5"], r"conflict_ratio must be in \[0, 1\]"),
    (["ipc=0"], "ipc must be at least 1"),
])
def test_bad_input_is_one_line_error_and_writes_nothing(sets, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path / "cache"))
    args = ["run"] + [a for s in sets for a in ("--set", s)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert __import__("re").search(message, err)
    assert not (tmp_path / "cache").exists()


def test_missing_data_root_is_a_clear_error(capsys, tmp_path):
    assert main(["describe", "--set", "dataset=cmnist", "--set", f"data_dir={tmp_path / 'absent'}"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1


def test_truncated_idx_file_is_a_clear_error_and_leaves_no_cache(capsys, tmp_path, monkeypatch, cache_entries):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / f"{stem}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03\x00\x00\x00\x05" + b"\x00" * 10))
    cache = tmp_path / "cache"
    code = main(["describe", "--set", "dataset=cmnist", "--set", f"data_dir={tmp_path / 'data'}",
                 "--set", f"cache_dir={cache}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and len(err.strip().splitlines()) == 1
    assert cache_entries(cache) == []


def test_bench_prints_seconds_per_iteration(capsys):
    args = ["bench", "dm", "--warmup", "0", "--set", "dataset=cmnist_fg", "--set", "source=digits",
            "--set", "iterations=2", "--set", "ipc=1", "--set", "batch_real=8", "--set", "net_width=8",
            "--set", "target=groups", "--set", "torch_compile=never"]
    assert main(args) == 0
    result = _last_json(capsys)
    assert result["seconds_per_iteration"] > 0 and result["iterations"] == 2 and result["target"] == "groups"
    assert (result["threads"], result["torch"], result["cpu_capability"]) == (
        torch.get_num_threads(), torch.__version__, torch.backends.cpu.get_cpu_capability())
    assert "host_sync_check" not in result
    assert main([*args, "--set", "device=cpu", "--sync-check", "1"]) == 0
    assert _last_json(capsys)["host_sync_check"] == "skipped: needs CUDA, this run is on cpu"
    for flag in ("--warmup", "--sync-check"):
        assert main([*args, flag, "-1"]) == 2
        assert capsys.readouterr().err.startswith(f"error: {flag[2:].replace('-', '_')} must not be negative, got -1")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_sync_check_counts_and_locates_each_wait_of_the_host():
    from types import SimpleNamespace

    from paperlib.experiments.bench import _count_host_syncs

    x = torch.ones(4, device="cuda")
    waits = SimpleNamespace(step=lambda: (x * 2).sum().item())  # .item() waits for the device once
    found = _count_host_syncs(waits, steps=3)
    assert found["host_syncs_per_step"] == 1 and list(found["host_sync_sites"].values()) == [3]
    assert _count_host_syncs(SimpleNamespace(step=lambda: x * 2), steps=3)["host_syncs_per_step"] == 0


def test_weights_command_prints_per_class_diagnostics(capsys):
    args = ["weights", "--set", "dataset=cmnist", "--set", "source=digits", "--set", "conflict_ratio=0.1",
            "--set", "kde_encoder=pixels", "--set", "device=cpu"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["classes"]) == 10 and len(out["bandwidth"]) == 10
    # 10% of each class is conflicting, and the KDE gives that rare 10% more than its share of the weight
    assert all(row["conflicting_sample_share"] == pytest.approx(0.1, abs=0.01) for row in out["classes"])
    assert all(row["conflicting_weight_share"] > row["conflicting_sample_share"] for row in out["classes"])
    assert main([*args, "--set", "kde_bandwidth=wide"]) == 2
    assert "unknown kde_bandwidth 'wide'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["run", "--set", "method=whole", "--set", "target=groups"],
     "--set target=groups changes nothing: target is not read (method 'whole' does not use target)"),
    (["run", "--set", "method=whole", "--set", "kde_tau=2"],  # two selectors down: the first that leaves it out
     "--set kde_tau=2 changes nothing: kde_tau is not read (method 'whole' does not use target)"),
    (["bench", "dm", "--set", "outer_loop=3"],
     "outer_loop is not read (method 'dm' does not use outer_loop)"),
    (["weights", "--set", "kde_tau=1"], "(kde_weighting 'power' does not use kde_tau)"),
    (["run", "--set", "method=dm", "--set", "warm_start_lr=0.1"],
     "(warm_start_lr applies only while warm_start_epochs is set)"),
    (["run", "--set", "warm_start_lr=1e-1"],  # the default method: no warm start to switch on; the value as typed
     "--set warm_start_lr=1e-1 changes nothing: warm_start_lr is not read (method 'whole' does not use warm_start_lr)"),
    # each command by what it computes: the dataset, a distilled set, the KDE weights
    (["describe", "--set", "ipc=3"], "ipc is not read (the dataset does not depend on ipc)"),
    (["bench", "dm", "--set", "num_eval=3"], "num_eval is not read (a distilled set does not depend on num_eval)"),
    (["weights", "--set", "method=random"], "method is not read (the KDE weights do not depend on method)"),
    (["suite", "params/experiments/03_kde_reweighting.yaml", "--profile", "smoke", "--table-only",
      "--set", "kde_tau=1"],
     "none of the 8 runs reads kde_tau (target 'vanilla' does not use weights; kde_weighting 'power' does not use "
     "kde_tau)"),
])
def test_a_set_that_no_run_reads_is_refused_before_anything_runs(argv, message, capsys, tmp_path, monkeypatch):
    """`--set target=groups` beside `method=whole` used to be dropped without a word, and the run was stored as if
    FairDD had been asked for and ignored."""
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path / "cache"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert err.strip().endswith("drop it" if "depend on" in message else "drop it, or choose a setting that uses it")
    assert not (tmp_path / "cache").exists()


def test_a_set_read_by_some_runs_an_off_value_or_a_file_s_unread_setting_is_accepted(capsys, tmp_path):
    """A suite's --set needs one run that reads it; the "off" value of a setting that switches itself on is read
    (it is the quick profile's schedule, and turns a warm start off); a parameter file may serve runs that read
    different settings."""
    for off in ("warm_start_epochs=0", "eval_official_schedule=false"):
        assert main(["suite", "params/experiments/07_three_answers.yaml", "--profile", "quick", "--table-only",
                     "--set", off]) == 0
    assert main(["suite", "params/experiments/03_kde_reweighting.yaml", "--profile", "smoke", "--table-only",
                 "--set", "kde_bandwidth=silverman"]) == 0
    f = tmp_path / "p.yaml"
    f.write_text("dataset: cmnist_fg\nsource: digits\nouter_loop: 3\niterations: 1\nipc: 1\nbatch_real: 8\n"
                 "net_width: 8\ntorch_compile: never\n")  # outer_loop: DC's, unread by DM
    assert main(["bench", "dm", str(f), "--warmup", "0"]) == 0
    capsys.readouterr()
    assert main(["weights", str(f), "--set", "kde_encoder=pixels", "--set", "method=random"]) == 2
    err = capsys.readouterr().err  # the --set is named, none of the file's settings the KDE weights do not read
    assert err.startswith("error: --set method=random changes nothing") and "outer_loop" not in err
    assert err.strip().endswith("drop it")  # no choice of the command's result reads it: nothing else to choose
    # a --set that repeats the command's own choice is no error
    assert main(["weights", "--set", "dataset=cmnist", "--set", "source=digits", "--set", "kde_encoder=pixels",
                 "--set", "device=cpu", "--set", "weights=kde"]) == 0
    assert main(["bench", "dc", "--warmup", "0", "--set", "dataset=cmnist_fg", "--set", "source=digits",
                 "--set", "iterations=1", "--set", "ipc=1", "--set", "batch_real=8", "--set", "net_width=8",
                 "--set", "outer_loop=2", "--set", "inner_loop=1", "--set", "torch_compile=never",
                 "--set", "eval_batch=64"]) == 0  # DC's inner training takes the evaluation's batch
    capsys.readouterr()


def test_a_command_s_own_choice_is_not_overridden_by_the_file_or_set(capsys):
    """bench's METHOD and weights' KDE target are the command's: a contradicting --set is a one-line error."""
    assert main(["bench", "dm", "--set", "method=dc"]) == 2
    err = capsys.readouterr().err
    assert "bench takes method=dm here" in err and len(err.strip().splitlines()) == 1
    assert main(["weights", "--set", "target=vanilla"]) == 2
    assert "weights takes target=weighted here" in capsys.readouterr().err


def test_weights_accepts_every_kde_weighting(capsys):
    args = ["weights", "--set", "dataset=cmnist", "--set", "source=digits", "--set", "kde_encoder=pixels",
            "--set", "device=cpu"]
    shares = {}
    for weighting in ("power", "softmax"):
        assert main([*args, "--set", f"kde_weighting={weighting}"]) == 0
        classes = json.loads(capsys.readouterr().out)["classes"]
        assert len(classes) == 10
        shares[weighting] = [row["conflicting_weight_share"] for row in classes]
    assert shares["power"] != shares["softmax"]  # the setting reached the weights


@pytest.mark.parametrize("argv", [["bench", "foo"], ["run", "--set"], ["suite", "x.yaml", "--jobs", "two"]])
def test_a_bad_argument_is_one_error_line_naming_help_not_the_usage_block(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "usage:" not in err
    assert err.startswith("error: argument ") and err.endswith(f"; see python -m paperlib {argv[0]} --help\n")


def test_every_parameter_says_what_it_means():
    from paperlib.core.params import field_meanings, param_names

    meanings = field_meanings()
    assert list(meanings) == param_names()
    # each says what it is, not only its special values ("0: eval_batch" once stood alone)
    assert not [name for name, text in meanings.items() if len(text.split()) < 3 or text[0].isdigit()]
    assert meanings["kde_alpha"] == "power: weight ∝ density ** -kde_alpha (sum 1 per class)"  # its own comment
    assert meanings["hidden_groups"].startswith("group targets (FairDD, COBRA)")  # the comment lines above it


def test_params_lists_every_parameter_as_a_file_of_the_defaults(capsys):
    import yaml

    from paperlib.core.params import Params, make_params

    assert main(["params"]) == 0
    listed = capsys.readouterr().out
    assert make_params(yaml.safe_load(listed)) == make_params(dataclasses.asdict(Params()))  # a valid file
    def names(word):
        assert main(["params", word]) == 0
        return [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]

    assert names("SupCon") == ["supcon_epochs", "supcon_temperature", "supcon_lr"]  # in any case
    assert names("warm start") == ["warm_start_epochs", "warm_start_lr", "warm_start_batch"]  # in the meaning
    assert main(["params", "no such word"]) == 2
    assert capsys.readouterr().err == ("error: no parameter's name or meaning holds 'no such word'; "
                                       "`python -m paperlib params` lists all\n")


def test_running_out_of_memory_is_one_line_naming_the_sizes_to_lower(monkeypatch, capsys):
    import paperlib.cli as cli

    def allocate(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 108000000000000 bytes. Error code 12 (Cannot allocate memory)")

    def describe_by(handler):
        monkeypatch.setitem(cli.COMMANDS, "describe", dataclasses.replace(cli.COMMANDS["describe"], handler=handler))

    describe_by(allocate)
    assert main(["describe"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: out of memory ([enforce fail") and \
        err.endswith("; lower net_width, ipc, batch_real or eval_batch, or run on a machine with more memory\n")
    describe_by(lambda args: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # any other error is not dressed up
        main(["describe"])


def test_a_stray_word_after_the_command_is_named_as_the_parameter_file_it_was_read_as(capsys):
    assert main(["describe", "--set", "dataset=cmnist", "extra"]) == 2
    assert capsys.readouterr().err == ("error: parameter file 'extra' does not exist: a word after the command names "
                                       "a YAML file of parameters; check the path, or give parameters with --set "
                                       "KEY=VALUE\n")


def test_every_example_of_the_help_is_a_command_line_the_parser_takes():
    import shlex

    from paperlib.cli import EXAMPLES, _parser

    lines = [line.split("#")[0].strip() for line in EXAMPLES.splitlines() if line.startswith("  python -m paperlib")]
    commands = [shlex.split(line)[3:] for line in lines if "COMMAND" not in line]
    assert len(commands) == 5
    for argv in commands:
        assert _parser().parse_args(argv).command == argv[0]


def test_every_command_computes_one_cache_scope_or_nothing():
    """A command's scope decides which --set it refuses: a scope that is no cache scope would refuse every one."""
    from paperlib.core.keys import SCOPES

    assert {name: command.scope for name, command in COMMANDS.items() if command.scope not in SCOPES} == \
        {"params": None}
