"""The notebooks' library side: profiles, experiment files, tables, the theorem check, the explorer."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch

from paperlib import notebook as nb
from paperlib.core.params import make_params
from paperlib.data.presets import build_dataset
from paperlib.distill.theorem import fairdd_vs_barycenter
from paperlib.core.errors import PaperlibError
from paperlib.report import plots
from paperlib.report.explore import Explorer
from paperlib.report.explorer_model import ExplorerModel, Point
from paperlib.core.paths import notebook_sources
from paperlib.report.metric_names import short_name
from paperlib.train.metrics import METRIC_KEYS
from paperlib.reproduce import output_path, reproduce
from paperlib.distill.kde import ablation_params, weight_ablation
from paperlib.experiments.profiles import PROFILES, experiment_file, profile_defaults, suite_from_file
from paperlib.core.yamlio import load_yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [p.stem for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))]
SMOKE_EXPLORER = {
    "datasets": {"CMNIST": {"dataset": "cmnist", "source": "digits"},
                 "FG": {"dataset": "cmnist_fg", "source": "digits"}},
    "approaches": {"vanilla": {"target": "vanilla"},
                   "KDE reweighting (paper A)": {"target": "weighted", "weights": "kde"},
                   "FairDD (paper B)": {"target": "groups"}},
    "ratios": [0.05, 0.2], "ipcs": [1, 2], "methods": ["random", "dm"],
    "live": {"iterations": 2, "eval_epochs": 2, "num_eval": 1},
}
SCALE = {"methods": {"dm": {"by_ipc": {1: {"lr_img": 2}}}}}  # a profile's per-method scale block


def test_the_numbered_notebooks_each_with_a_paired_ipynb():
    assert [n[:2] for n in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07"]
    for name in NOTEBOOKS:
        assert (ROOT / "notebooks" / f"{name}.ipynb").is_file(), f"run `make sync` to pair {name}"
        source = (ROOT / "notebooks" / f"{name}.py").read_text()
        assert 'tags=["parameters"]' in source
        # the reviewed source never takes in a run's traces (papermill metadata, injected parameters)
        assert "injected-parameters" not in source and "papermill={" not in source


@pytest.mark.parametrize("folder", ["notebooks", "notebooks/smoke"])
def test_a_rendered_notebook_was_given_its_profile_alone(folder):
    # the experiment file is the one record of what runs: no copy of it, one line long, above the story
    for name in NOTEBOOKS:
        cells = nbformat.read(ROOT / folder / f"{name}.ipynb", as_version=4).cells
        injected = [c.source for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
        profile = "quick" if folder == "notebooks" else "smoke"
        assert injected == [f'# Parameters\nprofile = "{profile}"\n'], name


@pytest.mark.parametrize("profile", PROFILES)
def test_every_notebook_has_valid_parameters_at_every_profile(profile):
    defaults = profile_defaults(profile)
    assert defaults["seed"] == 0
    for name in NOTEBOOKS:
        values = nb.notebook_parameters(profile, name)
        assert values["profile"] == profile
        if "suite" in values:
            specs = suite_from_file(experiment_file(name), profile)
            assert specs and all(s.params.seed == 0 for s in specs)
            assert specs == nb.suite_specs(profile, None, name)  # the command line and the notebook: one reading


def test_a_misspelt_key_of_an_experiment_file_is_an_error_not_a_notebook_without_its_claims():
    """``claim:`` for ``claims:`` was read by nothing: the notebook ran without its claims and its checks passed."""
    from paperlib.experiments.profiles import _as_profile_sees, notebook_parameter_names

    assert notebook_parameter_names("07_three_answers") == {"profile", "suite", "claims"}
    written = load_yaml(experiment_file("07_three_answers"))
    assert {"profile": "quick", **_as_profile_sees(written, "quick", "07_three_answers")} == \
        nb.notebook_parameters("quick", "07_three_answers")
    written["claim"] = written.pop("claims")
    with pytest.raises(PaperlibError, match=r"07_three_answers.yaml has unknown key 'claim'; notebook "
                                            r"07_three_answers reads: claims, suite$"):
        _as_profile_sees(written, "quick", "07_three_answers")
    with pytest.raises(PaperlibError, match=r"has unknown key 'profile'"):  # the caller's, not the file's
        _as_profile_sees({"profile": "paper"}, "quick", "07_three_answers")


def test_smoke_profile_is_hermetic_and_quick_profile_uses_real_data():
    assert profile_defaults("smoke")["source"] == "digits"
    assert "source" not in profile_defaults("quick")
    quick = suite_from_file(experiment_file("02_bias_in_distillation"), "quick")
    corrupted = [s for s in quick if s.params.dataset == "corrupted_cifar10"]
    assert corrupted and all(s.params.source == "fashion_mnist" for s in corrupted)  # labelled, not CIFAR-10


def test_notebooks_share_runs_through_the_profile_defaults():
    """Notebook 02's vanilla DM run and notebook 03's are the same cached run."""
    two = {(s.experiment, s.label): s.params for s in nb.suite_specs("quick", None, "02_bias_in_distillation")}
    three = {(s.experiment, s.label): s.params for s in nb.suite_specs("quick", None, "03_kde_reweighting")}
    assert two[("colour_0.05", "dm")] == three[("colour_0.05", "dm")]


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(PaperlibError, match="choose one of: smoke, quick, paper"):
        nb.setup("fast")
    with pytest.raises(PaperlibError, match="has no"):
        profile_defaults("fast")
    with pytest.raises(PaperlibError, match="unknown profile"):
        reproduce("fast")


def test_executed_notebooks_go_to_the_paired_file_for_quick_and_a_subfolder_otherwise(tmp_path):
    source = notebook_sources()[0]
    assert output_path(source, "quick") == source.with_suffix(".ipynb")
    assert output_path(source, "smoke") == source.parent / "smoke" / f"{source.stem}.ipynb"
    assert output_path(source, "paper", tmp_path) == tmp_path / f"{source.stem}.ipynb"


def _table(rows):
    base = {"status": "done", "target": "vanilla", "eval_trainer": "plain", "num_eval": 1, "ipc": 10.0}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_bias_effect_reads_amplification_from_the_conflicting_gap():
    table = _table([
        {"experiment": "colour", "run": "whole", "method": "whole", "acc": 60.0, "acc_conflicting": 55.0},
        {"experiment": "colour", "run": "random", "method": "random", "acc": 25.0, "acc_conflicting": 20.0},
        {"experiment": "colour", "run": "dm", "method": "dm", "acc": 22.0, "acc_conflicting": 13.0},
        {"experiment": "corruption", "run": "whole", "method": "whole", "acc": 53.0, "acc_conflicting": 48.0},
        {"experiment": "corruption", "run": "dm", "method": "dm", "acc": 50.0, "acc_conflicting": 45.0},
        {"experiment": "colour_1%", "run": "whole", "method": "whole", "acc": 22.0, "acc_conflicting": 13.5},
        {"experiment": "colour_1%", "run": "dm", "method": "dm", "acc": 21.8, "acc_conflicting": 13.1},
        {"experiment": "sizes", "run": "whole", "method": "whole", "acc": 60.0, "acc_conflicting": 55.0, "ipc": None},
        {"experiment": "sizes", "run": "random", "method": "random", "acc": 25.0, "acc_conflicting": 20.0},
        {"experiment": "sizes", "run": "dm_ipc50", "method": "dm", "acc": 40.0, "acc_conflicting": 30.0, "ipc": 50.0},
        # a debiasing trainer on the vanilla set, and a reweighted set: not the plain distillation read here
        {"experiment": "colour", "run": "dm_lff", "method": "dm", "acc": 70.0, "acc_conflicting": 60.0,
         "eval_trainer": "lff"},
        {"experiment": "colour", "run": "dm_kde", "method": "dm", "acc": 80.0, "acc_conflicting": 70.0,
         "target": "weighted"},
        # no conflicting test sample: the gap does not exist, and reads as nothing
        {"experiment": "plain", "run": "whole", "method": "whole", "acc": 90.0, "acc_conflicting": None},
        {"experiment": "plain", "run": "dm", "method": "dm", "acc": 80.0, "acc_conflicting": None},
    ])
    from paperlib.report.formatting import MISSING

    effect = nb.bias_effect(table).set_index("comparison")
    assert effect.loc["sizes", "acc vs random"] == MISSING  # an IPC-10 subset is no baseline for IPC 50
    assert effect.loc["sizes", "ipc"] == 50 and effect["ipc"].dtype == "int64"  # an IPC prints as 50, not 50.0
    assert effect.loc["sizes", "acc vs whole"] == -20.0
    assert effect.loc["colour", "reading"] == "amplified" and effect.loc["colour", "conflicting vs whole"] == -42.0
    assert effect.loc["colour", "acc vs random"] == -3.0
    assert effect.loc["corruption", "reading"] == "not amplified"
    assert effect.loc["corruption", "acc vs random"] == MISSING
    assert effect.loc["colour_1%", "reading"] == "whole data biased too"
    assert effect.loc["plain", "reading"] == MISSING and effect.loc["plain", "acc vs whole"] == -10.0
    # a table where no run has a conflicting sample: the column holds None alone, as the records do
    plain = table[table["experiment"] == "plain"].assign(acc_conflicting=None)
    assert nb.bias_effect(plain).loc[0, "reading"] == MISSING
    assert list(effect["run"]) == ["dm", "dm", "dm", "dm_ipc50", "dm"]
    assert list(effect.columns) == ["run", "ipc", "acc", "conflicting", "acc vs random", "acc vs whole",
                                    "conflicting vs whole", "reading"]


def test_paper_table_labels_the_papers_numbers_apart_from_ours():
    table = _table([{"experiment": "e", "run": "dm_kde", "method": "dm", "dataset": "cmnist", "protocol": "companion",
                     "ratio": 0.05,
                     "ipc": 50.0, "acc": 90.71, "deo_m": 51.9, "deo_a": 22.0, "paper_acc": 91.5,
                     "paper_deo_m": float("nan"), "paper_deo_a": 99.96, "paper_source": "paper A"}])
    shown = nb.paper_vs_companion(table, "quick")
    assert shown[("paper", "acc")].item() == "91.5" and shown[("this companion (quick)", "acc")].item() == 90.7
    assert shown[("paper", short_name("deo_a"))].item() == "99.96"
    with pd.option_context("display.precision", 1):  # the notebooks' display: the paper's number as published
        assert "99.96" in shown.to_html() and "100.0" not in shown.to_html()
    deo_m = short_name("deo_m")
    assert shown[("paper", deo_m)].item() == "–" and shown[("this companion (quick)", deo_m)].item() == 51.9
    assert shown[("", "setting")].item() == "cmnist (companion protocol), conflict ratio 5%, IPC 50"


def test_paper_table_says_once_what_every_row_does_differently(capsys):
    rows = [{"experiment": "e", "run": run, "method": "dm", "dataset": "cmnist", "protocol": "companion",
             "ratio": 0.05, "ipc": 50.0, "acc": 90.0, "deo_m": 1.0, "deo_a": 1.0, "paper_acc": 91.5,
             "eval_schedule": "first", "eval_optimizer": optimiser, "eval_lr": 0.005}
            for run, optimiser in (("dm", "sgd"), ("dm_adam", "adam"))]
    shown = nb.paper_vs_companion(_table(rows), "quick")
    assert capsys.readouterr().out.startswith("every row of this table: first evaluation schedule (")
    assert shown[("", "setting")].tolist() == ["cmnist (companion protocol), conflict ratio 5%, IPC 50",
                                                "cmnist (companion protocol), conflict ratio 5%, IPC 50; "
                                                "evaluation optimiser adam, lr 0.005"]


def test_paper_table_without_a_reported_setting_is_a_note_not_an_empty_frame(capsys):
    table = _table([{"experiment": "e", "run": "dm", "method": "dm", "acc": 50.0, "deo_m": 1.0, "deo_a": 1.0,
                     "paper_acc": float("nan")}])
    assert nb.paper_vs_companion(table, "quick") is None
    assert "no run of this table has a number reported by the papers" in capsys.readouterr().out


def test_paper_table_names_the_papers_table_and_shows_its_slips():
    table = _table([{"experiment": "e", "run": r, "method": "dm", "dataset": "cfmnist_bg", "protocol": "fairdd",
                     "ratio": 0.9, "acc": 60.0, "deo_m": 30.0, "deo_a": 20.0, "paper_acc": 71.1, "paper_deo_m": 33.05,
                     "paper_deo_a": 19.72, "paper_source": "paper B (FairDD)", "paper_table": "paper B, main tables",
                     "paper_note": n}
                    for r, n in (("dm_fairdd", "Table 10 repeats the FG rows' DEO"), ("other", float("nan")))])
    shown = nb.paper_vs_companion(table, "quick")
    assert shown[("paper", "note")].tolist() == ["Table 10 repeats the FG rows' DEO", ""]
    assert shown[("", "paper source")].iloc[0] == "paper B (FairDD) (main tables)"  # the paper named once


def test_fairdd_gradient_is_groups_present_times_the_barycenters_on_real_batches():
    dataset = build_dataset(dataset="cmnist_fg", source="digits", majority_ratio=0.9)
    params = make_params(dataset="cmnist_fg", source="digits", ipc=2, net_width=8, batch_real=16)
    rows = pd.DataFrame(fairdd_vs_barycenter(dataset, params, torch.device("cpu"), batches=2))
    assert len(rows) == 2 * 10 and (rows["groups_present"] > 1).any()
    assert torch.allclose(torch.tensor(rows["norm_ratio"].values), torch.tensor(rows["groups_present"].values,
                          dtype=torch.float64), rtol=1e-3)
    assert rows["cosine"].min() > 0.9999
    summary = nb.theorem_summary(rows)  # one row per number of groups present, counting (class, batch) pairs
    assert list(summary.columns) == ["class × batch pairs", "gradient norm ratio (FairDD / barycenter)",
                                     "lowest cosine"]
    assert summary.index.name == "groups in the batch"
    assert summary["class × batch pairs"].sum() == 20
    assert summary["class × batch pairs"].to_dict() == rows["groups_present"].value_counts().sort_index().to_dict()
    assert (summary["gradient norm ratio (FairDD / barycenter)"] == summary.index.astype(float)).all()


def test_the_ratio_sweep_counts_conflicting_images_per_class_and_writes_ratios_as_percentages():
    per_class, summary = nb.ratio_sweep([{"dataset": "cmnist", "source": "digits", "ratio": "conflict_ratio",
                                          "values": [0.05, 0.2]}])
    assert summary["value"].tolist() == ["5%", "20%"] and len(per_class) == 2 * 10
    # per-class rounding gives 4.88 and 20.03; a count over the aligned images, c / (n - c), would give 5.26
    assert summary["conflicting %"].tolist() == pytest.approx([5.0, 20.0], abs=0.15)
    totals = per_class.groupby("value")["conflicting"].sum()
    assert totals[0.05] < totals[0.2]
    assert (summary["fewest conflicting per class"] <= summary["most conflicting per class"]).all()


def test_kde_ablation_trains_one_encoder_per_setting_and_reports_shares():
    dataset = build_dataset(dataset="cmnist", source="digits", conflict_ratio=0.05)
    params = make_params(dataset="cmnist", source="digits", net_width=8)
    rows = weight_ablation(dataset, params, [{"label": "pixels median", "kde_encoder": "pixels"},
                                             {"label": "pixels scott", "kde_encoder": "pixels",
                                              "kde_bandwidth": "scott"},
                                             {"label": "random median", "kde_encoder": "random"}],
                           torch.device("cpu"))
    assert [r["variant"] for r in rows] == ["pixels median", "pixels scott", "random median"]
    shares = [r["conflicting % of weight"] for r in rows]
    assert len(set(shares)) == 3  # each encoder and bandwidth gives its own weights
    for row in rows:
        assert 0 <= row["conflicting % of weight"] <= 100 and row["effective samples per class"] > 1
        assert abs(row["conflicting % of samples"] - 100 * (1 - dataset.train.aligned.float().mean().item())) < 1


def test_a_kde_variant_cannot_change_the_dataset_it_shares_with_the_others():
    """The dataset is built once for every variant: a variant's conflict_ratio would key weights (and cached
    embeddings) the computation never made."""
    params = make_params(dataset="cmnist", source="digits", net_width=8)
    varied = ablation_params(params, {"label": "t", "supcon_temperature": 0.5, "kde_weighting": "softmax",
                                      "kde_tau": 0.3})
    assert (varied.supcon_temperature, varied.kde_tau) == (0.5, 0.3)
    with pytest.raises(PaperlibError, match="KDE variant 'ratio 0.3' sets conflict_ratio, which the ablation keeps "
                                            "fixed.*move conflict_ratio to the ablation's dataset"):
        weight_ablation(None, params, [{"label": "ratio 0.3", "conflict_ratio": 0.3}], torch.device("cpu"))
    with pytest.raises(PaperlibError, match="sets seed"):
        ablation_params(params, {"seed": 1})


def test_a_kde_variant_that_changes_nothing_is_refused():
    """Under the default power weighting a temperature is never read: the row would repeat the baseline's weights
    under a label that says otherwise."""
    params = make_params(dataset="cmnist", source="digits", net_width=8)
    with pytest.raises(PaperlibError, match=r"KDE variant 'tau' sets kde_tau, which changes nothing \(kde_weighting "
                                            r"'power' does not use kde_tau\)"):
        ablation_params(params, {"label": "tau", "kde_tau": 0.3})
    with pytest.raises(PaperlibError, match="kde_encoder 'random' does not use supcon_epochs"):
        ablation_params(params, {"kde_encoder": "random", "supcon_epochs": 3})


@pytest.mark.parametrize("profile", PROFILES)
def test_every_ratio_sweep_of_notebook_06_is_a_point_the_explorer_answers_from(profile):
    """The sweeps are stored for the slider: a run keyed apart from its point would be computed and never shown."""
    from paperlib.core.keys import cache_key

    specs = nb.suite_specs(profile, None, "06_explore")
    model = ExplorerModel(profile_defaults(profile), nb.notebook_parameters(profile, "06_explore")["explorer"])
    points = {cache_key(model.params(point)): point for point in model.points()}
    assert specs and all(cache_key(spec.params) in points for spec in specs)
    # each sweep runs along the slider: its runs differ in the ratio alone
    for experiment in {spec.experiment for spec in specs}:
        along = [points[cache_key(spec.params)] for spec in specs if spec.experiment == experiment]
        assert len({(p.dataset, p.ipc, p.method) for p in along}) == 1 and len({p.ratio for p in along}) > 1


def test_explorer_maps_the_slider_to_the_right_ratio_and_scale():
    model = ExplorerModel({"seed": 0, "net_width": 8, **SCALE}, SMOKE_EXPLORER)
    colour = model.params(Point("CMNIST", 0.2, 1, "dm", "KDE reweighting (paper A)"))
    assert colour.conflict_ratio == 0.2 and colour.lr_img == 2 and colour.weights == "kde"
    fair = model.params(Point("FG", 0.05, 2, "dm", "FairDD (paper B)"), live=True)
    assert fair.majority_ratio == 0.95 and fair.target == "groups" and fair.iterations == 2
    assert model.params(Point("FG", 0.05, 2, "random", "FairDD (paper B)")).target == "vanilla"
    with pytest.raises(PaperlibError, match="unknown explorer dataset"):
        model.params(Point("CIFAR", 0.05, 2, "dm", "vanilla"))
    with pytest.raises(PaperlibError, match=r"ratio must be in \[0, 1\]"):
        model.params(Point("CMNIST", 1.5, 2, "dm", "vanilla"))
    with pytest.raises(PaperlibError, match="unknown explorer target 'COBRA'; choose one of: vanilla, KDE"):
        model.params(Point("CMNIST", 0.05, 2, "dm", "COBRA"))


def test_the_explorer_offers_the_approaches_its_settings_list_and_nothing_else():
    """The target choices are data (06_explore.yaml), not a list in the library: an approach added there is
    offered, computed with its parameter values, and the first one is what a method that distils nothing shows."""
    settings = {**SMOKE_EXPLORER, "approaches": {"plain": {"target": "vanilla"},
                                                 "balanced": {"target": "weighted", "weights": "group_balanced"}}}
    model = ExplorerModel({"seed": 0, "net_width": 8, **SCALE}, settings)
    assert {(p.method, p.target) for p in model.points()} == {("random", "plain"), ("dm", "plain"),
                                                              ("dm", "balanced")}
    assert model.params(Point("CMNIST", 0.05, 2, "dm", "balanced")).weights == "group_balanced"
    assert model.start_point().target == "plain" and model.start_point().method == "dm"
    app = Explorer({"seed": 0, "net_width": 8, "batch_real": 8, "device": "cpu", **SCALE}, settings, "smoke")
    assert list(app.target.options) == ["plain", "balanced"]
    for bad, message in (({}, "explorer.approaches is empty"), (["vanilla"], "explorer.approaches must be a mapping"),
                         ({"v": "vanilla"}, "explorer.approaches.v must be a mapping"),
                         ({"v": {"target": "groups", "ipc": 5, "conflict_ratio": 0.1}},
                          "explorer.approaches.v sets ipc, conflict_ratio, which the explorer's other controls")):
        with pytest.raises(PaperlibError, match=message):
            ExplorerModel({}, {**SMOKE_EXPLORER, "approaches": bad})
    with pytest.raises(PaperlibError, match="the explorer settings need 'approaches'"):
        ExplorerModel({}, {k: v for k, v in SMOKE_EXPLORER.items() if k != "approaches"})


START = {"dataset": "CMNIST", "ratio": 0.2, "ipc": 1, "method": "dm", "target": "FairDD (paper B)"}


@pytest.mark.parametrize("change, message", [
    ({"start": {**START, "ipc_": 1}}, r"^explorer.start names a point by dataset, ratio, ipc, method, target; it has "
                                      r"dataset, ratio, ipc, method, target, ipc_$"),
    ({"start": {**START, "ratio": "0.2"}}, r"^explorer.start \{.*'ratio': '0.2'.*\} is not a point of the explorer's"),
    ({"start": {**START, "method": "random"}}, r"is not a point .* takes the first approach, 'vanilla'\)$"),
    ({"start": [0.2, 1]}, r"^explorer.start must be a mapping of name: value"),
    ({"ratios": [0.05, "20%"]}, r"^explorer.ratios must be a non-empty list of numbers in \[0, 1\], e.g. \[0.05, "
                                r"0.2\]; got \[0.05, '20%'\]$"),
    ({"ratios": [5]}, r"^explorer.ratios must be"), ({"ratios": 0.05}, r"^explorer.ratios must be"),
    ({"ipcs": [1, "ten"]}, r"^explorer.ipcs must be a non-empty list of whole numbers"),
    ({"ipcs": []}, r"^explorer.ipcs must be"), ({"ipcs": [0.5]}, r"^explorer.ipcs must be"),
    ({"methods": "dm"}, r"^explorer.methods must be a non-empty list of method names"),
    ({"methods": ["dm", "dmm"]}, r"^explorer.methods: unknown method 'dmm' \(did you mean 'dm'\?\); choose one"),
])
def test_malformed_explorer_settings_are_a_one_line_error_when_read(change, message):
    """A misspelt key of start or a ratio written as text raised TypeError / ValueError when the explorer opened."""
    assert ExplorerModel({}, {**SMOKE_EXPLORER, "start": START}).settings["start"] == START  # a point of the grid
    with pytest.raises(PaperlibError, match=message):
        ExplorerModel({}, {**SMOKE_EXPLORER, **change})


def test_the_explorers_estimate_reads_a_record_without_num_distill_or_a_data_time(monkeypatch):
    """load_record guarantees neither (records before repeated distillations have no num_distill): the estimate
    takes one training set and no data time, as the tables do, instead of a KeyError."""
    model = ExplorerModel({"seed": 0, "net_width": 8, **SCALE}, SMOKE_EXPLORER)
    record = {"params": {"eval_epochs": 10, "ipc": 1, "batch_real": 8}, "num_eval": 1,
              "timings": {"evaluate": 10.0, "total": 12.0}}
    monkeypatch.setattr(model, "stored", lambda point: (record, "profile"))
    # 1 s per evaluation epoch, times the live scale's 2 epochs x 1 model x IPC 1
    assert model.estimate_seconds(Point("CMNIST", 0.05, 1, "random", "vanilla")) == 2.0


def test_the_explorers_estimate_counts_every_training_set_of_the_live_run(monkeypatch):
    """A live run with num_distill: 5 (the paper profile's default, before the live block set 1) distils and
    evaluates five sets: the estimate said the time of one."""
    record = {"params": {"eval_epochs": 10, "ipc": 1, "batch_real": 8}, "num_eval": 1, "num_distill": 1,
              "seconds_per_iteration": 0.5, "timings": {"evaluate": 10.0, "total": 12.0}}
    estimates = []
    for sets in (1, 5):
        model = ExplorerModel({"seed": 0, "net_width": 8, "batch_real": 8, "num_distill": sets, **SCALE},
                              SMOKE_EXPLORER)
        monkeypatch.setattr(model, "stored", lambda point: (record, "profile"))
        estimates.append(model.estimate_seconds(Point("CMNIST", 0.05, 1, "dm", "vanilla")))
    # 1 s per evaluation epoch x 2 epochs + 0.5 s per iteration x 2 iterations (the live scale), per set
    assert estimates == [3.0, 15.0]


def test_explorer_widget_offers_a_missing_point_then_shows_it_after_the_live_run(tmp_path):
    # its own cache: "not computed" and "one live run" must not depend on what other tests stored
    app = Explorer({"seed": 0, "net_width": 8, "batch_real": 8, "device": "cpu", "cache_dir": str(tmp_path), **SCALE},
                   SMOKE_EXPLORER, "smoke")
    assert "<img src=\"data:image/png;base64," in app.data_view.value
    assert not app.compute_button.disabled and "not computed" in app.status.value
    assert "make reproduce PROFILE=smoke" in app.status.value and "<img" not in app.training_view.value
    assert app.ratio.description == "conflict ratio"
    worker = app.compute()
    assert all(c.disabled for c in app.controls) and app.compute_button.disabled and not app.stop_button.disabled
    worker.join(timeout=300)
    assert not worker.is_alive() and not any(c.disabled for c in app.controls) and app.stop_button.disabled
    assert "accuracy" in app.metrics.value and "computed live" in app.metrics.value
    assert "computed live" in app.status.value and "<img" in app.training_view.value
    assert app.stored_along.value == ("<small>stored, answered at once: conflict ratio 20% (at IPC 2); IPC 2 (at "
                                      "20%)</small>")
    assert app.compute() is not worker  # a finished run is no guard: a new one may start (returns its thread)
    app.compute().join(timeout=300)
    app.ipc.value = 1  # elsewhere, then back: now answered from the store
    app.ipc.value = 2
    assert app.compute_button.disabled and "stored live run" in app.status.value
    snapshot = app.snapshot_html()  # the stored notebook's static view: each image in its own row, data first
    data_at, training_at = snapshot.index("biased training data"), snapshot.index("training set of the model")
    assert snapshot.count("<img") == 2 and data_at < snapshot.index("<img") < training_at
    assert "</tr><tr><th" in snapshot[data_at:training_at] and "computed live" in snapshot
    coverage = nb.explorer_coverage(app.model)
    assert (coverage == "live").sum().sum() == 1 and (coverage == "·").sum().sum() > 0
    assert not (coverage == "none").any().any()  # a point without a run is a dot, so stored ones stand out
    stored = nb.explorer_coverage(app.model, stored_only=True)  # only the one row and column with the live run
    assert stored.shape == (1, 4) and (stored == "live").sum().sum() == 1
    assert stored.iloc[0, :3].tolist() == coverage[(coverage == "live").any(axis=1)].iloc[0, :3].tolist()
    app.dataset.value = "FG"
    assert app.ratio.description == "minority share"
    app.target.value = "FairDD (paper B)"
    app.method.value = "random"
    assert app.target.disabled and app.target.value == "vanilla"
    shown = []
    show_data = app._show_data
    app._show_data = lambda point: shown.append(point) or show_data(point)
    app.method.value = "dm"  # the reader's target comes back, shown once (it was shown twice: once per refresh)
    assert not app.target.disabled and app.target.value == "FairDD (paper B)"
    assert [p.target for p in shown] == ["FairDD (paper B)"]
    app.method.value = "random"
    assert [p.target for p in shown] == ["FairDD (paper B)", "vanilla"]


def test_the_explorer_starts_one_live_run_at_a_time_and_labels_only_its_own_point(monkeypatch, tmp_path):
    """A click queued while the kernel was busy started a second run that nothing could stop; a control moved as
    the run ended got "computed live" written under the other point."""
    import threading

    app = Explorer({"seed": 0, "net_width": 8, "batch_real": 8, "device": "cpu", "cache_dir": str(tmp_path), **SCALE},
                   SMOKE_EXPLORER, "smoke")
    release = threading.Event()
    record = {"metrics": {key: 0.5 for key in METRIC_KEYS}, "num_eval": 1}

    def slow(point):
        assert release.wait(10)
        app.ipc.value = 1  # the reader moves on just as the run ends (the controls come back as it ends)
        return record

    monkeypatch.setattr(app.model, "compute", slow)
    monkeypatch.setattr(app.model, "estimate_seconds", lambda point: 42.0)
    first = app.compute()
    assert app.compute() is first  # the second click finds the run on
    assert app.status.value.startswith("<i>computing… (about 42 s, estimated from the stored runs; stop, ")
    release.set()
    first.join(timeout=10)
    assert app.point().ipc == 1 and "computed live" not in app.status.value and "not computed" in app.status.value


def test_a_point_that_cannot_be_shown_clears_the_last_points_numbers(monkeypatch, tmp_path):
    """An error in the observer went to a log the reader never sees, leaving the last point's metrics under the
    new controls."""
    app = Explorer({"seed": 0, "net_width": 8, "batch_real": 8, "device": "cpu", "cache_dir": str(tmp_path), **SCALE},
                   SMOKE_EXPLORER, "smoke")
    app.metrics.value = "<table>numbers of the point before</table>"

    def damaged(point):
        raise PaperlibError("cache entry run.json cannot be read (not JSON); delete it\nmore")

    monkeypatch.setattr(app.model, "stored", damaged)
    app.ratio.value = 0.05  # it opens at 0.2
    assert app.metrics.value == "" and app.training_view.value == "" and app.compute_button.disabled
    assert app.status.value == ("<b>this point cannot be shown: PaperlibError: cache entry run.json cannot be read "
                                "(not JSON); delete it</b>")


def test_a_live_run_whose_point_cannot_be_shown_says_why_not_computed_live(monkeypatch, tmp_path):
    app = Explorer({"seed": 0, "net_width": 8, "batch_real": 8, "device": "cpu", "cache_dir": str(tmp_path), **SCALE},
                   SMOKE_EXPLORER, "smoke")
    record, done = {"metrics": {key: 0.5 for key in METRIC_KEYS}, "num_eval": 1}, []
    monkeypatch.setattr(app.model, "stored", lambda point: (record, "live") if done else (None, "none"))
    monkeypatch.setattr(app.model, "compute", lambda point: done.append(point) or record)

    def damaged(point, scale):
        raise PaperlibError("cache entry grid.png cannot be read (truncated); delete it")

    monkeypatch.setattr(app.model, "training_grid", damaged)
    app.compute().join(timeout=10)
    assert "cannot be shown" in app.status.value and "computed live" not in app.status.value
    assert app.metrics.value == "" and not any(c.disabled for c in app.controls)


def test_a_damaged_neighbour_does_not_hide_the_point_shown(monkeypatch, tmp_path):
    """The line under the sliders looks up the neighbouring points: one damaged record among them blanked the
    point shown, whose own record is whole."""
    app = Explorer({"seed": 0, "net_width": 8, "batch_real": 8, "device": "cpu", "cache_dir": str(tmp_path), **SCALE},
                   SMOKE_EXPLORER, "smoke")
    record = {"metrics": {key: 0.5 for key in METRIC_KEYS}, "num_eval": 1}

    def stored(point):
        if point.ratio == 0.05:
            raise PaperlibError("cache entry run.json cannot be read (not JSON); delete it")
        return record, "profile"

    monkeypatch.setattr(app.model, "stored", stored)
    monkeypatch.setattr(app.model, "training_grid", lambda point, scale: None)
    assert app.point().ratio == 0.2
    app.ipc.value = 1 if app.ipc.value != 1 else 2
    assert "accuracy" in app.metrics.value and "stored run" in app.status.value
    assert "conflict ratio 20% (at IPC" in app.stored_along.value and "5%" not in app.stored_along.value


def test_a_damaged_record_elsewhere_does_not_hide_an_empty_point_or_its_estimate(monkeypatch, tmp_path):
    """The time estimate reads every stored run of the method: one damaged record among them made each empty point
    of that method 'cannot be shown', and a live run started by hand left the controls disabled for good."""
    app = Explorer({"seed": 0, "net_width": 8, "batch_real": 8, "device": "cpu", "cache_dir": str(tmp_path), **SCALE},
                   SMOKE_EXPLORER, "smoke")

    def stored(point):
        if point.ratio == 0.05:
            raise PaperlibError("cache entry run.json cannot be read (not JSON); delete it")
        return None, "none"

    monkeypatch.setattr(app.model, "stored", stored)
    app.ipc.value = 1 if app.ipc.value != 1 else 2
    assert app.point().ratio == 0.2 and "not computed yet" in app.status.value and "time unknown" in app.status.value
    assert not app.compute_button.disabled


def test_a_refresh_looks_each_point_up_once(monkeypatch, tmp_path):
    """The point shown is on both lines under the sliders: it was looked up three times per refresh (once to show
    it, once per line), each a read of its record."""
    from collections import Counter

    app = Explorer({"seed": 0, "net_width": 8, "batch_real": 8, "device": "cpu", "cache_dir": str(tmp_path), **SCALE},
                   SMOKE_EXPLORER, "smoke")
    record, looked_up = {"metrics": {key: 0.5 for key in METRIC_KEYS}, "num_eval": 1}, Counter()
    monkeypatch.setattr(app.model, "stored", lambda point: looked_up.update([point]) or (record, "profile"))
    monkeypatch.setattr(app.model, "training_grid", lambda point, scale: None)
    app.ipc.value = 1 if app.ipc.value != 1 else 2
    assert "stored run" in app.status.value and set(looked_up.values()) == {1}
    assert len(looked_up) == len(SMOKE_EXPLORER["ratios"]) + len(SMOKE_EXPLORER["ipcs"]) - 1
    looked_up.clear()
    assert app.model.stored_along(app.point()) == ([0.05, 0.2], [1, 2]) and set(looked_up.values()) == {1}


def _stopped_while_computing(app, monkeypatch, before=lambda point: None):
    """Start a live run whose compute() calls ``before`` then spins until it is stopped; stop it; return its
    (joined) thread."""
    import threading

    running = threading.Event()

    def spin(point):
        before(point)
        running.set()
        while True:
            pass

    monkeypatch.setattr(app.model, "compute", spin)
    worker = app.compute()
    assert running.wait(10)
    app.stop()
    worker.join(timeout=10)
    return worker


def test_a_stopped_or_failed_live_run_reenables_the_controls_and_stores_nothing(monkeypatch, tmp_path):
    from paperlib.report import explore

    app = Explorer({"seed": 0, "net_width": 8, "batch_real": 8, "device": "cpu", "cache_dir": str(tmp_path), **SCALE},
                   SMOKE_EXPLORER, "smoke")
    app.target.value = "KDE reweighting (paper A)"  # a missing KDE point: its first run also trains the encoder
    assert "not computed" in app.status.value and "trains its encoder" in app.status.value
    app.target.value = "FairDD (paper B)"
    assert "not computed" in app.status.value and "trains its encoder" not in app.status.value
    worker = _stopped_while_computing(app, monkeypatch)
    assert not worker.is_alive() and "stopped" in app.status.value and not app.compute_button.disabled
    assert not any(c.disabled for c in app.controls) and app.model.stored(app.point())[0] is None

    def failing(point):
        raise explore.PaperlibError("batch_real must be at least 1, got 0\nsecond line")

    monkeypatch.setattr(app.model, "compute", failing)
    app.compute().join(timeout=10)
    assert "failed: PaperlibError: batch_real must be at least 1, got 0" in app.status.value
    assert "second line" not in app.status.value and not any(c.disabled for c in app.controls)


def test_a_stop_as_the_live_run_ends_leaves_its_stored_run_shown_and_the_controls_back(monkeypatch, tmp_path):
    """stop() raises in the worker thread whenever it comes: after the record was stored the run is reported
    computed, and once compute() has returned (the stop delivered on the next line) the thread no longer dies with
    the controls disabled."""
    import threading

    app = Explorer({"seed": 0, "net_width": 8, "batch_real": 8, "device": "cpu", "cache_dir": str(tmp_path), **SCALE},
                   SMOKE_EXPLORER, "smoke")
    record = {"metrics": {key: 0.5 for key in METRIC_KEYS}, "num_eval": 1}
    stored = []
    monkeypatch.setattr(app.model, "stored", lambda point: (record, "live") if stored else (None, "none"))

    def finished():
        return (not worker.is_alive() and "computed live" in app.status.value and app.compute_button.disabled
                and app.stop_button.disabled and not any(c.disabled for c in app.controls))

    worker = _stopped_while_computing(app, monkeypatch, before=stored.append)  # stopped after the record is stored
    assert finished(), app.status.value  # it said "stopped: nothing was stored for this point"

    stored.clear()
    monkeypatch.setattr(app.model, "compute", lambda point: stored.append(point) or record)
    sent = []

    def on_the_line_after_compute(frame, event, arg):
        if event == "line" and stored and not sent:
            sent.append(frame.f_lineno)
            app.stop()  # raises LiveRunStopped in this thread, on this line of _work
        return on_the_line_after_compute

    threading.settrace(lambda frame, event, arg: on_the_line_after_compute
                       if frame.f_code is Explorer._work.__code__ else None)
    try:
        worker = app.compute()
    finally:
        threading.settrace(None)
    worker.join(timeout=10)
    assert sent and finished(), app.status.value


@pytest.mark.parametrize("stored", ["06_explore.ipynb", "smoke/06_explore.ipynb"])
def test_the_stored_explorer_runs_wrote_nothing_to_stderr_and_no_errors(stored):
    import json

    notebook = json.loads((ROOT / "notebooks" / stored).read_text())
    outputs = [o for cell in notebook["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])]
    assert outputs, f"{stored} has no outputs: run `make reproduce`"
    assert not [o for o in outputs if o["output_type"] == "stream" and o["name"] == "stderr"]
    assert not [o for o in outputs if o["output_type"] == "error"]


def test_a_failing_notebook_keeps_its_partial_output_and_names_the_cell(tmp_path, monkeypatch, capsys):
    import paperlib.experiments.profiles as profiles_module
    from paperlib.reproduce import execute, failed_path

    (tmp_path / "params" / "experiments").mkdir(parents=True)
    (tmp_path / "params" / "experiments" / "99_fails.yaml").write_text("{}\n")  # every notebook has one
    source = tmp_path / "99_fails.py"
    header = ("# ---\n# jupyter:\n#   kernelspec:\n#     display_name: Python 3\n#     language: python\n"
              "#     name: python3\n# ---\n\n")
    source.write_text(header + '# %% tags=["parameters"]\nprofile = "quick"\n\n# %%\nprint("before")\n\n# %%\n'
                      '1 / {"quick": 1, "smoke": 0}[profile]\n')  # the injected profile makes it fail
    monkeypatch.setattr(profiles_module, "params_dir", lambda: tmp_path / "params")
    output = tmp_path / "out" / "99_fails.ipynb"
    with pytest.raises(PaperlibError, match=r"99_fails failed at cell \d+ .*1 / \{.*ZeroDivisionError") as err:
        execute(source, "smoke", output)
    assert str(failed_path(output)) in str(err.value) and not output.exists()
    kept = nbformat.read(failed_path(output), as_version=4)
    assert any("before" in str(cell.get("outputs")) for cell in kept.cells)  # the cells that ran are kept
    assert "ZeroDivisionError" in capsys.readouterr().err  # the traceback is shown, not dropped


def test_an_executed_notebook_keeps_no_scratch_path_of_papermill_and_names_its_code(tmp_path):
    from paperlib.reproduce import _finished

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["papermill"] = {"input_path": "/tmp/tmpab12/02_x.ipynb",
                                      "output_path": "/tmp/tmpab12/executed.ipynb", "parameters": {"profile": "quick"}}
    cleaned = nbformat.reads(_finished(nbformat.writes(notebook), ROOT / "notebooks" / "02_x.py",
                                       ROOT / "notebooks" / "02_x.ipynb", "abc"), as_version=4)
    assert cleaned.metadata["papermill"] == {"input_path": "02_x.py", "output_path": "02_x.ipynb",
                                             "parameters": {"profile": "quick"}}
    assert cleaned.metadata["paperlib"] == {"code": "abc"}


@pytest.mark.parametrize("folder", ["notebooks", "notebooks/smoke"])
def test_every_committed_notebook_was_rendered_by_the_code_here(folder):
    """Outputs follow from paperlib, params/ and the notebook sources: a committed notebook rendered by other code
    (a cached run does not count: render from an empty cache) shows numbers this code may not give."""
    from paperlib.core.paths import code_digest

    current = code_digest()
    rendered = sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb"))
    assert len(rendered) == len(notebook_sources())
    stale = [p.name for p in rendered if nbformat.read(p, as_version=4).metadata.get("paperlib", {}).get("code")
             != current]
    fix = ("PAPERLIB_CACHE=$(mktemp -d) make reproduce PROFILE=smoke" if folder.endswith("smoke")
           else "PAPERLIB_CACHE=$(mktemp -d) make reproduce FROM_STORE=1")
    assert not stale, f"{folder}: {', '.join(stale)} rendered by other code than this checkout's; run {fix}"


def test_the_code_digest_follows_the_code_and_not_the_docs(tmp_path, monkeypatch):
    from paperlib.core.paths import code_digest

    for name in ("paperlib/core/a.py", "params/quick/defaults.yaml", "notebooks/01_x.py", "docs/design.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    first = code_digest()
    (tmp_path / "docs/design.md").write_text("other words\n")
    (tmp_path / "notebooks/01_x.py").write_bytes(b"x = 1\r\n")  # another line ending: the same code
    assert code_digest() == first
    seen = {first}
    for name in ("params/quick/defaults.yaml", "paperlib/core/a.py", "notebooks/01_x.py"):  # each kind of source
        (tmp_path / name).write_text("x = 2\n")
        assert code_digest() not in seen, f"editing {name} left the digest as it was"
        seen.add(code_digest())


def test_absent_data_is_reported_without_this_machines_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PAPERLIB_DATA", str(tmp_path / "nowhere"))
    # UTKFace is never downloaded: the test stays offline on any machine
    built, overview = nb.build_datasets({"faces": {"dataset": "utkface"}})
    assert not built and overview["status"].tolist() == ["data absent"]
    note = capsys.readouterr().out
    assert note.startswith("not built, their data is not on this machine: faces (preset utkface). ")
    assert "describe --set dataset=PRESET" in note and str(tmp_path) not in note and note.count("\n") == 1
    faces = {"name": "faces", "settings": {"dataset": "utkface"}, "runs": {"dm": {}}}
    assert nb.present_only([faces, {**faces, "name": "faces again"}], "quick") == []
    skipped = capsys.readouterr().out
    assert skipped.startswith("skipped, their data is not on this machine: utkface.") and str(tmp_path) not in skipped
    assert skipped.split(". ", 1)[1] == note.split(". ", 1)[1]  # one way to get the data, said alike by both
    # notebook 01's ratio sweep too: it stopped `make reproduce` at the first notebook on a machine without MNIST
    per_class, summary = nb.ratio_sweep([{"dataset": "cmnist", "ratio": "conflict_ratio", "values": [0.01, 0.05]}])
    assert per_class.empty and summary.empty and "conflicting" in per_class
    assert capsys.readouterr().out.startswith("not built, their data is not on this machine: cmnist. ")
    ax = plots.plot_conflicting_counts(per_class)
    assert ax.texts[0].get_text() == "no dataset of this sweep is on this machine"


def test_data_that_is_there_but_unreadable_is_not_skipped_as_absent(tmp_path, monkeypatch, capsys):
    """A corrupt dataset stops an optional run with its own error instead of being reported as not on this
    machine (only :class:`DataNotFound` means absent)."""
    from paperlib.core.errors import DataNotFound

    (tmp_path / "UTKFace").mkdir()
    (tmp_path / "UTKFace" / "25_0_0_20170116174525125.jpg.chip.jpg").write_bytes(b"not a jpeg")
    monkeypatch.setenv("PAPERLIB_DATA", str(tmp_path))
    with pytest.raises(PaperlibError, match=r"^UTKFace: ") as err:  # the data's own error, naming it
        nb.present_only([{"name": "faces", "settings": {"dataset": "utkface"}, "runs": {"dm": {}}}], "quick")
    assert not isinstance(err.value, DataNotFound)
    built, overview = nb.build_datasets({"faces": {"dataset": "utkface"}})
    assert not built and overview["status"].tolist() == ["cannot be built (see above)"]


@pytest.mark.parametrize(("before", "interrupts"), [("SIG_DFL", True), ("default_int_handler", True),
                                                    ("SIG_IGN", False)])
def test_outside_a_kernel_ctrl_c_without_a_live_run_acts_as_before_the_explorer(before, interrupts):
    import signal

    app = Explorer({"seed": 0, "net_width": 8, "batch_real": 8, "device": "cpu", **SCALE}, SMOKE_EXPLORER, "smoke")
    original = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, getattr(signal, before))
        app._route_interrupts_here()  # what a click on "compute live" does first
        handler = signal.getsignal(signal.SIGINT)
        assert handler.explorer is app
        if interrupts:
            with pytest.raises(KeyboardInterrupt):  # with SIG_DFL it was swallowed: Ctrl-C no longer stopped a script
                handler(signal.SIGINT, None)
        else:
            handler(signal.SIGINT, None)
    finally:
        signal.signal(signal.SIGINT, original)


def test_re_running_the_explorer_cell_does_not_chain_interrupt_handlers(monkeypatch, tmp_path):
    """Each explorer's handler called the one before it, which kept every explorer before alive; one with a live
    run stays in the chain (the interrupt still stops it)."""
    import signal
    import threading

    original = signal.signal(signal.SIGINT, signal.default_int_handler)  # not an earlier test's explorer's
    made = [Explorer({"seed": 0, "device": "cpu", "cache_dir": str(tmp_path), **SCALE}, SMOKE_EXPLORER, "smoke")
            for _ in range(3)]
    try:
        for app in made[:2]:
            app._route_interrupts_here()
        made[1]._worker = threading.Thread(target=lambda: None)  # a live run, as far as the chain is concerned
        made[2]._route_interrupts_here()
        handler = signal.getsignal(signal.SIGINT)
        assert handler.explorer is made[2] and handler.previous.explorer is made[1]
        assert handler.previous.previous is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, original)


def test_the_kernels_interrupt_stops_a_live_run_of_the_explorer():
    """In a real kernel: a live run works in a thread while the kernel is idle, and Jupyter's interrupt (a SIGINT,
    which ipykernel ignores between cells) stops it and gives the controls back."""
    import os
    import sys
    import time

    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpec

    class ThisPython(KernelManager):
        @property
        def kernel_spec(self) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="paperlib", language="python")

    manager = ThisPython()
    manager.start_kernel(cwd=str(ROOT / "notebooks"), env=dict(os.environ))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)

        def printed(code: str) -> str:
            texts = []
            client.execute_interactive(code, timeout=60, output_hook=lambda m: texts.append(
                m["content"].get("text", "") if m["msg_type"] == "stream" else ""))
            return "".join(texts).strip()

        printed("import time\n"
                "from paperlib.report.explore import Explorer\n"
                "from paperlib.experiments.profiles import profile_defaults, notebook_parameters\n"
                "app = Explorer(profile_defaults('smoke'), notebook_parameters('smoke', '06_explore')['explorer'])\n"
                "app.model.compute = lambda point: [time.sleep(0.01) for _ in iter(int, 1)]\n"
                "worker = app.compute()")
        assert printed("print(worker.is_alive(), all(c.disabled for c in app.controls))") == "True True"
        manager.interrupt_kernel()
        deadline = time.monotonic() + 20
        while printed("print(worker.is_alive())") == "True" and time.monotonic() < deadline:
            time.sleep(0.2)
        state = "print(worker.is_alive(), 'stopped' in app.status.value, any(c.disabled for c in app.controls))"
        assert printed(state) == "False True False"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_overhead_divides_by_the_vanilla_run_of_the_same_ipc_and_evaluation_model():
    from paperlib.report.formatting import MISSING
    from paperlib.report.tables import overhead_table

    rows = [{"experiment": "e", "run": run, "method": "dm", "target": target, "ipc": ipc, "eval_model": "convnet",
             "seconds_per_iteration": s, "seconds_per_iteration_amortised": s + one_off / 100,
             "kde_one_off_seconds": one_off or None}
            for run, target, ipc, s, one_off in (("dm10", "vanilla", 10.0, 1.0, 0), ("dm50", "vanilla", 50.0, 4.0, 0),
                                                 ("fair10", "groups", 10.0, 1.5, 0), ("fair50", "groups", 50.0, 5.0, 0),
                                                 ("kde10", "weighted", 10.0, 1.0, 200))]
    overhead = overhead_table(_table(rows)).set_index("run")
    assert (overhead.loc["fair10", "vs_vanilla"], overhead.loc["fair50", "vs_vanilla"],
            overhead.loc["dm50", "vs_vanilla"]) == (1.5, 1.25, 1.0)
    # KDE: as fast as vanilla per iteration, three times as slow with its one-off cost spread over 100 iterations
    assert overhead.loc["kde10", ["per_iteration_vs_vanilla", "vs_vanilla"]].tolist() == [1.0, 3.0]
    shown = nb.overhead_view(_table(rows)).set_index("run")
    assert shown.loc["kde10", "one-off s"] == "200.00" and shown.loc["fair10", "one-off s"] == MISSING
    assert shown.loc["kde10", "× vanilla, one-off spread"] == "3.00"


def test_kdes_one_off_cost_is_spread_over_the_iterations_of_every_set_of_the_run():
    """The sets of a run share one KDE (the first computes it, the others read it): with num_distill: 5 (the paper
    profile) the one-off cost per iteration was shown five times too large."""
    from paperlib.experiments.suite import RunSpec
    from paperlib.report.tables import _row

    params = make_params(dataset="cmnist", method="dm", target="weighted", weights="kde", iterations=100,
                         num_distill=2)
    record = {"metrics": {key: 50.0 for name in METRIC_KEYS for key in (name, f"{name}_std")},
              "timings": {"evaluate": 1.0}, "num_eval": 1, "num_distill": 2, "device": "cpu",
              "seconds_per_iteration": 1.0, "kde_seconds": {"encoder": 90.0, "density": 10.0}}
    row = _row(RunSpec("e", "dm_kde", params), record)
    assert (row["kde_one_off_seconds"], row["seconds_per_iteration_amortised"]) == (100.0, 1.5)


@pytest.mark.parametrize("stored", ["06_explore.ipynb", "smoke/06_explore.ipynb"])
def test_the_stored_explorer_inlines_no_image_wider_than_its_limit(stored):
    import base64
    import io
    import json
    import re

    from PIL import Image

    from paperlib.report.explore import MAX_IMAGE_WIDTH

    text = (ROOT / "notebooks" / stored).read_text()
    images = [Image.open(io.BytesIO(base64.b64decode(m))) for m in re.findall(r"base64,([A-Za-z0-9+/=]+)", text)]
    assert images, f"{stored} shows no image: run `make reproduce`"
    assert max(image.width for image in images) <= MAX_IMAGE_WIDTH
    assert json.loads(text)["cells"]  # a notebook, not a stray file


def test_a_notebook_never_downloads_an_optional_dataset(tmp_path, monkeypatch, capsys):
    """Online, notebook 04 downloaded CIFAR-10 and computed its runs where a reader only opened the notebook."""
    import paperlib.experiments.profiles as profiles

    monkeypatch.setattr(profiles, "build_dataset", lambda *a, **k: pytest.fail("an absent dataset was built"))
    monkeypatch.setenv("PAPERLIB_DATA", str(tmp_path))
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path / "cache"))
    experiments = [{"name": "cifar", "settings": {"dataset": "cifar10_s"}, "runs": {"dm": {}}}]
    assert profiles.present_only(experiments, "quick") == []
    assert "cifar10_s. `python -m paperlib describe --set dataset=PRESET` downloads" in capsys.readouterr().out


def test_a_plan_looks_for_optional_datasets_files_without_building_them(tmp_path, monkeypatch, capsys):
    """make plan built every optional dataset whose files were present (and downloaded CIFAR-10) to list its runs."""
    import paperlib.experiments.profiles as profiles

    monkeypatch.setattr(profiles, "build_dataset", lambda *a, **k: pytest.fail("a dataset built to make a plan"))
    monkeypatch.setenv("PAPERLIB_DATA", str(tmp_path))
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path / "cache"))  # no dataset another test cached
    experiments = [{"name": "faces", "settings": {"dataset": "utkface"}, "runs": {"dm": {}}},
                   {"name": "digits", "settings": {"dataset": "cmnist", "source": "digits"}, "runs": {"dm": {}}}]
    assert [s.params.dataset for s in profiles.present_only(experiments, "quick", build=False)] == ["cmnist"]
    assert capsys.readouterr().out.startswith("skipped, their data is not on this machine: utkface.")
    paper = profiles.profile_runs("paper", ["04_fairdd"], build=False)  # its optional sets: CIFAR10-S and faces
    assert paper and not {"cifar10_s", "celeba", "utkface", "bffhq"} & {s.params.dataset for s in paper}
    with pytest.raises(BaseException, match="a dataset built to make a plan"):
        profiles.present_only(experiments, "quick")  # the runs' own path builds, as they will need it
