"""Experiment suites: loading, running, tabulating from records, the papers' reference values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paperlib.cli import main
from paperlib.core.params import make_params
from paperlib.core.yamlio import load_yaml
from paperlib.core.errors import PaperlibError
from paperlib.report.reference import reported, variant
from paperlib.experiments.profiles import suite_from_file
from paperlib.experiments.suite import load_suite, run_suite, scaled
from paperlib.report.figures import save_suite_figures
from paperlib.report.explore import metrics_html
from paperlib.report.metric_names import HEADLINE_METRICS
from paperlib.report.formatting import MISSING, mean_std, number, rounded
from paperlib.report.tables import (format_mean_std, markdown_table, metrics_view, overhead_table, results_table,
                                    write_csv)

PARAMS = Path(__file__).resolve().parents[1] / "params"


def _suite(tmp_path) -> dict:
    return {
        "defaults": {"source": "digits", "net_width": 16, "num_eval": 1, "eval_epochs": 1, "device": "cpu",
                     "iterations": 2, "batch_real": 64, "cache_dir": str(tmp_path)},
        "experiments": [{"name": "tiny", "settings": {"dataset": "cmnist", "ipc": 2},
                         "runs": {"random": {"method": "random"}, "dm": {"method": "dm"},
                                  "dm_fairdd": {"method": "dm", "target": "groups"}}}],
    }


def test_runs_merge_defaults_settings_and_own_values_and_overrides_win(tmp_path):
    specs = load_suite(_suite(tmp_path), overrides={"seed": 3})
    assert [s.label for s in specs] == ["random", "dm", "dm_fairdd"]
    assert specs[2].params.target == "groups" and specs[2].params.ipc == 2 and specs[2].params.net_width == 16
    assert all(s.params.seed == 3 for s in specs)


def test_bad_run_names_its_place_in_the_suite(tmp_path):
    suite = _suite(tmp_path)
    suite["experiments"][0]["runs"]["dm"] = {"method": "dm", "ipc": 0}
    with pytest.raises(PaperlibError, match=r"tiny\.dm: ipc must be at least 1"):
        load_suite(suite)
    with pytest.raises(PaperlibError, match="no experiment name contains 'zzz'"):
        load_suite(_suite(tmp_path), only="zzz")
    with pytest.raises(PaperlibError, match="non-empty list under 'experiments'"):
        load_suite({"defaults": {}})
    numbered = _suite(tmp_path)
    numbered["experiments"][0]["name"] = 2024  # YAML's `name: 2024`
    assert {s.experiment for s in load_suite(numbered, only="20")} == {"2024"}
    numbered["experiments"][0]["name"] = ""
    with pytest.raises(PaperlibError, match="every experiment needs a name"):
        load_suite(numbered)


def test_a_run_s_own_setting_that_it_does_not_read_is_an_error_a_shared_one_is_not(tmp_path):
    """`whole: {method: whole, target: groups}` was tabulated as a whole-data run with no word that FairDD was
    never applied; a suite's or experiment's setting may be unread by some of its runs."""
    suite = _suite(tmp_path)
    suite["experiments"][0]["runs"]["random"] = {"method": "random", "target": "groups"}
    with pytest.raises(PaperlibError, match=r"^tiny\.random: target: groups changes nothing: target is not read "
                                            r"\(method 'random' does not use target\); drop it"):
        load_suite(suite)
    # a --set over a run's own value replaces it: the own value is not checked (the --set is, by the caller)
    assert load_suite(suite, overrides={"target": "vanilla"})[0].params.target == "vanilla"
    shared = _suite(tmp_path)
    shared["experiments"][0]["settings"]["target"] = "groups"  # random reads no target, the DM runs do
    shared["experiments"][0]["runs"]["dm"] = {"method": "dm", "target": "weighted", "weights": "uniform"}
    specs = load_suite(shared)
    assert [s.params.target for s in specs] == ["groups", "weighted", "groups"]
    # and a table shows a setting only where the run read it: the sample weighting of the weighted target, the
    # start and the real batch's draw of a distilled set
    columns = ["run", "target", "weights", "init", "sampling"]
    assert results_table(specs)[columns].values.tolist() == [["random", "", "", "", ""],
                                                             ["dm", "weighted", "uniform", "real", "uniform"],
                                                             ["dm_fairdd", "groups", "", "real", "uniform"]]


def test_a_misspelt_suite_key_is_an_error_not_another_experiment(tmp_path):
    with pytest.raises(PaperlibError, match=r"^a suite has unknown key 'default'; its keys are: defaults, "
                                            r"experiments$"):
        load_suite({**_suite(tmp_path), "default": {"net_width": 8}})
    suite = _suite(tmp_path)
    suite["experiments"][0]["setting"] = {"dataset": "cmnist_bg"}
    with pytest.raises(PaperlibError, match=r"^experiment 'tiny' has unknown key 'setting'; its keys are: name, "):
        load_suite(suite)


def test_a_suite_with_two_experiments_of_one_name_or_a_list_value_is_a_one_line_error(tmp_path):
    suite = _suite(tmp_path)
    twice = {**suite, "experiments": suite["experiments"] * 2}
    with pytest.raises(PaperlibError, match=r"^two experiments are named 'tiny'; rename one"):
        load_suite(twice)
    with pytest.raises(PaperlibError, match=r"^an experiment's name is text, got \['a'\]"):
        load_suite({**suite, "experiments": [{**suite["experiments"][0], "name": ["a"]}]})
    for name, value in (("ipc", [1]), ("method", ["dm"])):  # not a key of the profile's blocks: the type error
        with pytest.raises(PaperlibError, match=f"parameter '{name}' must be .*, got \\['?"):
            load_suite(suite, overrides={name: value}, base={"methods": {"dm": {"by_ipc": {1: {"lr_img": 2.0}}}}})


def test_a_by_ipc_key_written_as_text_is_an_error_not_a_setting_never_applied():
    from paperlib.experiments.suite import scaled

    base = {"methods": {"dm": {"by_ipc": {50: {"lr_img": 99.0}}}}}
    assert scaled(base, {"method": "dm", "ipc": 50})["lr_img"] == 99.0
    with pytest.raises(PaperlibError, match=r"by_ipc key '50' is not an IPC; write it as a whole number"):
        scaled({"methods": {"dm": {"by_ipc": {"50": {"lr_img": 99.0}}}}}, {"method": "dm", "ipc": 50})



def test_a_run_whose_ipc_is_written_as_text_still_takes_its_by_ipc_entry():
    """The parameters read ``ipc: "50"`` as 50, but the profile's lookup missed its ``by_ipc`` entry: the run
    went ahead at IPC 50 with IPC 10's settings, under a key of its own."""
    profile = {"lr_img": 20.0, "methods": {"dm": {"by_ipc": {50: {"lr_img": 100.0}}}}}
    assert scaled(profile, {"method": "dm", "ipc": "50"})["lr_img"] == 100.0
    assert scaled(profile, {"method": "dm", "ipc": "5e1"})["lr_img"] == 100.0
    assert scaled(profile, {"method": "dm", "ipc": 10})["lr_img"] == 20.0
    with pytest.raises(PaperlibError, match="parameter 'ipc' must be an integer, got 'fifty'"):
        scaled(profile, {"method": "dm", "ipc": "fifty"})


def test_an_empty_suite_file_says_so(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(PaperlibError, match=r"empty.yaml is empty; a suite file holds 'experiments'"):
        suite_from_file(tmp_path / "empty.yaml")


def test_table_lists_missing_runs_as_not_run_then_real_numbers_after_running(tmp_path):
    specs = load_suite(_suite(tmp_path))
    before = results_table(specs)
    assert list(before["status"]) == ["not run"] * 3 and "acc" not in before
    records = run_suite(specs)
    after = results_table(specs)
    assert list(after["status"]) == ["done"] * 3
    # the records come back in spec order, computed; a second pass reads them all from the store
    assert [r["metrics"]["acc"] for r in records] == after["acc"].tolist()
    assert [r["cached"] for r in records] == [False] * 3 and all(r["cached"] for r in run_suite(specs))
    assert after["acc"].between(0, 100).all() and after.loc[1, "seconds_per_iteration"] > 0
    path = write_csv(after, tmp_path / "out" / "table.csv")
    assert pd.read_csv(path)["acc"].round(2).tolist() == after["acc"].round(2).tolist()
    overhead = overhead_table(after)
    assert list(overhead["run"]) == ["dm", "dm_fairdd"] and overhead.loc[0, "vs_vanilla"] == 1.0
    markdown = markdown_table(after).splitlines()
    assert len(markdown) == 2 + 3 and markdown[2].startswith("| tiny | random |")
    assert markdown[0] == ("| comparison | run | acc | aligned | conflicting | DEO_M | DEO_A | s / iteration | "
                           "paper acc / DEO_M / DEO_A |")  # the metrics' headers as every table names them
    shown = format_mean_std(after)  # one model per run: no spread to show (its record says 0.0)
    assert shown.loc[0, "acc"] == f"{after.loc[0, 'acc']:.1f}" and after.loc[0, "acc_std"] == 0.0
    assert format_mean_std(after.assign(num_eval=2)).loc[0, "acc"].endswith("± 0.0")
    unsaid = pd.DataFrame({"experiment": ["e"], "run": ["r"], "acc": [80.0], "acc_std": [2.0]})  # no num_eval
    assert format_mean_std(unsaid).loc[0, "acc"] == "80.0 ± 2.0"
    written = save_suite_figures(specs, after, tmp_path / "figures", "tiny")
    names = sorted(str(p.relative_to(tmp_path / "figures")) for p in written)
    assert names == ["grids/tiny_dm.png", "grids/tiny_dm_fairdd.png", "tiny_acc.png", "tiny_acc_conflicting.png",
                     "tiny_deo_m.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_a_metric_that_does_not_exist_shows_as_missing_in_every_view():
    """A metric is null where it is undefined (a group absent from the test split); the explorer's table raised
    TypeError on it, and a missing spread showed the mean as its own spread."""
    assert number(None) == number(float("nan")) == number(np.float32("nan")) == MISSING
    assert number(41.85) == "41.9" and number(0.5, 2) == "0.50"
    assert mean_std(75.0, 1.25) == "75.0 ± 1.2" and mean_std(75.0, None) == "75.0" and mean_std(None, 1.0) == MISSING
    table = pd.DataFrame({"experiment": ["e"], "run": ["r"], "acc": [80.0], "deo_m": [None]})
    assert format_mean_std(table).loc[0, ["acc", "deo_m"]].tolist() == ["80.0", MISSING]
    metrics = {"acc": 80.0, "acc_std": 2.0, "acc_aligned": 90.0, "acc_aligned_std": 1.0, "acc_conflicting": None,
               "acc_conflicting_std": None, "deo_m": None, "deo_m_std": None, "deo_a": 3.0, "deo_a_std": 0.5}
    html = metrics_html({"metrics": metrics, "num_eval": 2}, "profile", {}, {"acc": 94.61, "deo_m": None,
                                                                              "source": "paper B"})
    assert "<td>80.0 ± 2.0</td><td>94.61</td>" in html  # the paper's number as published
    assert "<th>this companion (stored run)</th><th>paper</th>" in html
    assert "<th>this companion (live, small scale)</th>" in metrics_html({"metrics": metrics, "num_eval": 1}, "live",
                                                                         {"iterations": 2}, None)
    assert f"<td>conflicting accuracy (%)</td><td>{MISSING}</td>" in html
    assert f"<td>DEO_M (%)</td><td>{MISSING}</td><td>{MISSING}</td>" in html and "3.0 ± 0.5" in html
    assert "<td>80.0</td>" in metrics_html({"metrics": metrics, "num_eval": 1}, "profile", {}, None)
    # one model on each of five training sets (the paper profile): five models, and their spread
    five = metrics_html({"metrics": metrics, "num_eval": 1, "num_distill": 5}, "profile", {}, None)
    assert "<td>80.0 ± 2.0</td>" in five and "; 5 evaluation model(s)" in five


def test_every_table_rounds_a_value_the_same_way():
    """41.85 (a shipped SelecMix accuracy) read 41.8 in one notebook table and 41.9 in another and the README."""
    table = pd.DataFrame({"experiment": ["e"], "run": ["r"], "status": ["done"], "acc": [41.85], "acc_aligned": [19.85],
                          "acc_conflicting": [0.25]})
    shown = metrics_view(table)
    assert shown.loc[0, "acc"] == 41.9 == round(41.85, 1) and shown.loc[0, "aligned"] == 19.9
    assert shown.loc[0, "conflicting"] == 0.2  # an exact tie goes to even
    assert rounded(pd.DataFrame({"name": ["x"], "share": [41.85]})).to_dict("list") == {"name": ["x"], "share": [41.9]}
    # a metric a record holds as null (undefined) reads as missing, in a column of numbers or of nothing else
    assert rounded(pd.Series([None, 41.85])).tolist() == [MISSING, 41.9] and rounded(pd.Series([None])).tolist() == \
        [MISSING]
    undefined = metrics_view(table.assign(acc_conflicting=[None]))
    assert undefined.loc[0, "conflicting"] == MISSING


def test_the_markdown_table_gives_the_papers_numbers_as_published():
    table = pd.DataFrame({"experiment": ["e"], "run": ["r"], "status": ["done"], "num_eval": [1],
                          **{key: [50.0] for key in HEADLINE_METRICS}, "paper_acc": [23.8], "paper_deo_m": [100.0]})
    assert markdown_table(table).splitlines()[2].endswith("| 23.8 / 100 / – |")


def test_the_shipped_kde_fairdd_table_is_its_csv_tabulated_by_this_code():
    """figures/quick/kde_fairdd.md, and its copy in docs/results.md, are what ``markdown_table`` makes of the
    shipped CSV: a formatting change that is not re-tabulated (or a hand edit) fails here."""
    root = PARAMS.parent
    expected = markdown_table(pd.read_csv(root / "figures" / "quick" / "kde_fairdd.csv"))
    assert (root / "figures" / "quick" / "kde_fairdd.md").read_text() == expected
    docs = (root / "docs" / "results.md").read_text()
    start, end = "<!-- kde_fairdd table: generated, do not edit -->\n", "<!-- end kde_fairdd table -->"
    assert docs[docs.index(start) + len(start):docs.index(end)].strip("\n") == expected.strip("\n")


def test_suite_command_writes_the_csv_from_records(tmp_path, capsys):
    import yaml

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(_suite(tmp_path)))
    csv = tmp_path / "t.csv"
    assert main(["suite", str(path), "--only", "tiny", "--table-only", "--csv", str(csv)]) == 0
    assert '"done": 0' in capsys.readouterr().out and csv.is_file()
    markdown = tmp_path / "t.md"
    assert main(["suite", str(path), "--table-only", "--markdown", str(markdown)]) == 0
    assert "| tiny | dm | not run |" in markdown.read_text()
    assert main(["suite", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_shipped_suites_are_valid(profile):
    specs = suite_from_file(PARAMS / "experiments" / "kde_fairdd.yaml", profile)
    names = {(s.experiment, s.label) for s in specs}
    assert ("cmnist_ipc50", "dm_kde") in names and ("cmnist_fg_ipc10", "dm_fairdd") in names
    if profile == "paper":
        dm = next(s.params for s in specs if s.label == "dm")
        assert dm.iterations == 20000 and dm.eval_epochs == 1000 and dm.net_width == 128
        # paper B's averaging, as the paper profile's notebooks (a standalone suite reads not their defaults)
        assert (dm.num_distill, dm.num_eval) == (5, 10) == tuple(
            load_yaml(PARAMS / "paper" / "defaults.yaml")[k] for k in ("num_distill", "num_eval"))


def test_reference_values_match_only_their_setting():
    kde = make_params(dataset="cmnist", conflict_ratio=0.05, method="dm", ipc=50, target="weighted", weights="kde")
    assert variant(kde) == "kde" and reported(kde)["acc"] == 91.5
    assert reported(make_params(dataset="cmnist", conflict_ratio=0.01, method="dm", ipc=50)) is None
    fair = make_params(dataset="cmnist_fg", method="dm", ipc=10, target="groups")
    assert reported(fair)["deo_m"] == 17.04
    assert reported(make_params(**{**dataclasses.asdict(fair), "sampling": "stratified"})) is None  # not theirs
    assert reported(make_params(dataset="cmnist_fg", method="dm", ipc=10, source="digits")) is None
    selecmix = make_params(dataset="cmnist", method="dm", ipc=50, eval_trainer="selecmix")
    assert reported(selecmix)["acc"] == 53.7  # paper A's baseline: SelecMix, per its reviews; not LfF's number
    assert reported(make_params(dataset="cmnist", method="dm", ipc=50, eval_trainer="lff")) is None
    dc = make_params(dataset="cmnist_fg", method="dc", ipc=10)
    assert reported(dc)["acc"] == 71.41
    # paper B's DC rows come from DC without augmentation: a DSA run has no reported counterpart
    assert reported(make_params(dataset="cmnist_fg", method="dsa", ipc=10)) is None


def test_a_profile_states_its_scale_once_per_method_below_every_experiment_value():
    from paperlib.experiments.suite import scaled

    base = {"net_width": 16, "methods": {"dc": {"iterations": 5, "lr_img": 2},
                                         "dm": {"by_ipc": {50: {"lr_img": 100}}}}}
    assert scaled(base, {"method": "dc"}) == {"net_width": 16, "iterations": 5, "lr_img": 2, "method": "dc"}
    assert scaled(base, {"method": "dc"}, {"lr_img": 1})["lr_img"] == 1  # the experiment's own value wins
    assert scaled(base, {"method": "dm", "ipc": 50})["lr_img"] == 100
    assert "lr_img" not in scaled(base, {"method": "dm"})  # IPC 10: no block
    specs = load_suite({"experiments": [{"name": "e", "runs": {"dc": {"method": "dc"}, "dm": {"method": "dm"}}}]},
                       base={**base, "source": "digits"})
    assert (specs[0].params.iterations, specs[1].params.iterations) == (5, 20000)
    with pytest.raises(PaperlibError, match="unknown method 'dcc'"):
        scaled({"methods": {"dcc": {}}}, {"method": "dc"})


def test_a_display_tables_settings_are_headed_in_words_and_a_setting_a_run_lacks_reads_as_missing():
    """07's table was headed hidden_groups_fill and left that column blank where no label was hidden."""
    table = pd.DataFrame({"experiment": ["e", "e"], "run": ["all", "half"], "status": ["done"] * 2, "acc": [1.0, 2.0],
                          "hidden_groups": [float("nan"), 0.5], "hidden_groups_fill": ["", "impute"],
                          "eval_model": ["convnet", None], "flag": [np.bool_(True), False], "num_eval": [1, 1]})
    shown = metrics_view(table, keys=("acc",), extra=("hidden_groups", "hidden_groups_fill", "eval_model", "flag"))
    assert list(shown.columns) == ["experiment", "run", "hidden groups", "hidden groups fill", "eval model", "flag",
                                   "acc"]
    assert shown["flag"].tolist() == [True, False]  # a value, not a missing one
    assert shown["hidden groups fill"].tolist() == [MISSING, "impute"]
    assert shown["eval model"].tolist() == ["convnet", MISSING]
    assert shown["hidden groups"].tolist() == [MISSING, "50%"]


def test_force_in_a_suite_recomputes_each_shared_piece_once(tmp_path, monkeypatch):
    """A vanilla DM run, two evaluations (1 and 2 epochs) of one KDE-weighted DM set, and the first of them again:
    under force each set, and the KDE encoder and weights, are recomputed once; the repeated run reads the record
    the suite has just recomputed. The vanilla run reads no KDE piece, so it does not count them as recomputed."""
    import paperlib.distill.kde as kde
    import paperlib.experiments.runner as runner

    calls = {"encoder": 0, "weights": 0, "distil": 0}

    def counting(name, function):
        def counted(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return counted

    monkeypatch.setattr(kde, "train_supcon", counting("encoder", kde.train_supcon))
    monkeypatch.setattr(kde, "compute_kde_weights", counting("weights", kde.compute_kde_weights))
    monkeypatch.setattr(runner, "distill", counting("distil", runner.distill))
    suite = _suite(tmp_path)
    suite["defaults"].update({"supcon_epochs": 0.05, "net_width": 8, "batch_real": 32, "ipc": 1})
    kde_dm = {"method": "dm", "target": "weighted", "weights": "kde"}
    settings = {"dataset": "cmnist", "conflict_ratio": 0.1}
    suite["experiments"] = [{"name": "plain", "settings": settings, "runs": {"dm": {"method": "dm"}}},
                            {"name": "shared", "settings": settings,
                             "runs": {"one": {**kde_dm, "eval_epochs": 1}, "two": {**kde_dm, "eval_epochs": 2}}},
                            {"name": "again", "settings": settings, "runs": {"one": {**kde_dm, "eval_epochs": 1}}}]
    run_suite(load_suite(suite))
    assert calls == {"encoder": 1, "weights": 1, "distil": 2}
    forced = run_suite(load_suite(suite, overrides={"force": True}))
    assert calls == {"encoder": 2, "weights": 2, "distil": 4}  # once more each, not once per run
    assert [r["cached"] for r in forced] == [False, False, False, True]
    assert forced[1]["distill_cached"] is False and forced[2]["distill_cached"] is True
    # a run on its own under force still recomputes everything it reads
    runner.run(load_suite(suite, overrides={"force": True})[2].params)
    assert calls == {"encoder": 3, "weights": 3, "distil": 5}
