"""Profiles: every experiment defined once (params/experiments/), read at one profile's scale."""

from __future__ import annotations

from pathlib import Path

import pytest

from paperlib.cli import main
from paperlib.core.errors import PaperlibError
from paperlib.core.yamlio import load_yaml
from paperlib.experiments.profiles import (PROFILES, experiment_file, for_profile, notebook_parameters,
                                           parameters_or_file, profile_defaults, profile_params, suite_from_file)
from paperlib.experiments.suite import scaled

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "params" / "experiments"
MARKED = {
    "suite": {"experiments": [
        {"name": "everywhere", "settings": {"ipc": {"per_profile": {"smoke": 2, "quick": 10}}},
         "runs": {"dm": {"method": "dm"}, "dc": {"method": "dc", "profiles": ["paper"]}}},
        {"name": "paper_only", "profiles": ["paper"], "runs": {"dm": {"method": "dm"}}},
    ]},
    "claims": [{"says": "smoke only", "profiles": ["smoke"]}],
}


def test_profiles_keeps_an_entry_in_the_named_profiles_only():
    smoke = for_profile(MARKED, "smoke")
    assert smoke == {"suite": {"experiments": [{"name": "everywhere", "settings": {"ipc": 2},
                                                "runs": {"dm": {"method": "dm"}}}]},
                     "claims": [{"says": "smoke only"}]}
    paper = for_profile(MARKED, "paper")
    assert [e["name"] for e in paper["suite"]["experiments"]] == ["everywhere", "paper_only"]
    assert paper["suite"]["experiments"][0]["runs"] == {"dm": {"method": "dm"}, "dc": {"method": "dc"}}


def test_per_profile_takes_the_profile_value_and_leaves_the_key_out_for_the_others():
    assert for_profile(MARKED, "quick")["suite"]["experiments"][0]["settings"] == {"ipc": 10}
    assert "settings" not in for_profile(MARKED, "paper")["suite"]["experiments"][0]  # emptied: left out


def test_an_entry_emptied_by_the_selection_is_left_out():
    assert "claims" not in for_profile(MARKED, "quick")
    assert for_profile({"claims": []}, "quick") == {"claims": []}  # empty in the file: kept as written


def test_a_notebook_parameter_left_none_is_read_from_its_experiment_file(monkeypatch, tmp_path):
    from paperlib.experiments import profiles

    on_file = notebook_parameters("smoke", "05_ablations")
    assert parameters_or_file("smoke", "05_ablations", kde_dataset=None, theorem_dataset={"dataset": "x"}) == (
        on_file["kde_dataset"], {"dataset": "x"})  # a given value, even one the file differs from, is kept
    assert parameters_or_file("smoke", "05_ablations", kde_variants=[]) == []  # given empty: not replaced
    (tmp_path / "04_fairdd.yaml").write_text("optional_datasets: [{name: x, profiles: [paper], runs: {}}]\n")
    monkeypatch.setattr(profiles, "experiment_file", lambda notebook: tmp_path / f"{notebook}.yaml")
    assert parameters_or_file("smoke", "04_fairdd", optional_datasets=None) == []  # none for this profile
    with pytest.raises(PaperlibError, match=r"04_fairdd.yaml has no 'suite' for profile 'smoke'; add it there or "
                                            r"pass suite as a notebook parameter$"):
        profiles.suite_specs("smoke", None, "04_fairdd")


def test_marks_are_checked_and_need_a_profile():
    with pytest.raises(PaperlibError, match=r"x\.runs\.dm\.profiles: unknown profile 'quik'"):
        for_profile({"runs": {"dm": {"profiles": ["quik"]}}}, "quick", "x")
    with pytest.raises(PaperlibError, match=r"x\.ipc\.per_profile: unknown profile 'fast'"):
        for_profile({"ipc": {"per_profile": {"fast": 1}}}, "quick", "x")
    with pytest.raises(PaperlibError, match="differs by profile"):
        for_profile(MARKED, None)
    for misspelt in ({"runs": {"dm": {"profiles": ["fast"]}}}, {"ipc": {"per_profile": {"fast": 1}}}):
        with pytest.raises(PaperlibError, match="unknown profile 'fast'"):  # named also where no profile is given
            for_profile(misspelt, None, "x")
    with pytest.raises(PaperlibError, match="unknown profile 'fast'"):
        for_profile(MARKED, "fast")
    plain = {"experiments": [{"name": "e", "runs": {"dm": {}}}]}
    assert for_profile(plain, None) == plain


def test_each_experiment_is_defined_once():
    """A profile folder holds only its scale (and the smoke reference numbers), never an experiment list."""
    for profile in PROFILES:
        assert {p.name for p in (ROOT / "params" / profile).iterdir()} <= {"defaults.yaml", "references.yaml"}
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert sorted(p.stem for p in EXPERIMENTS.glob("[0-9][0-9]_*.yaml")) == notebooks
    assert "profile" not in load_yaml(experiment_file(notebooks[0]))  # the profile is chosen, not written


@pytest.mark.parametrize("profile", PROFILES)
def test_the_kde_fairdd_suite_reads_at_quick_and_paper_and_has_no_smoke_runs(profile):
    if profile == "smoke":
        with pytest.raises(PaperlibError, match="defines no runs for profile 'smoke'"):
            suite_from_file(EXPERIMENTS / "kde_fairdd.yaml", profile)
    else:
        assert suite_from_file(EXPERIMENTS / "kde_fairdd.yaml", profile)


def test_a_file_without_runs_says_where_runs_go():
    """Notebook 01's file holds datasets only: it was told its keys were not a suite's (defaults, experiments)."""
    with pytest.raises(PaperlibError, match="01_biased_datasets.yaml holds no runs: a notebook's experiment file "
                                            "nests them under 'suite', a suite file under 'experiments'; it has "
                                            "'datasets', 'ratio_sweep'"):
        suite_from_file(EXPERIMENTS / "01_biased_datasets.yaml", "smoke")


def test_the_profiles_differ_in_scale_not_in_what_a_run_is():
    """The same run named in two profiles is the same experiment at two scales: only scale fields differ."""
    path = EXPERIMENTS / "03_kde_reweighting.yaml"
    smoke, quick = ({(s.experiment, s.label): s.params for s in suite_from_file(path, p)} for p in ("smoke", "quick"))
    assert set(smoke) <= set(quick)
    for key, params in smoke.items():
        same = ("dataset", "conflict_ratio", "ipc", "method", "target", "weights", "eval_trainer")
        assert [getattr(params, f) for f in same] == [getattr(quick[key], f) for f in same], key
        assert params.source == "digits" and quick[key].source != "digits"


def test_the_command_line_names_the_profile_a_file_needs(capsys, tmp_path):
    suite = str(EXPERIMENTS / "02_bias_in_distillation.yaml")
    assert main(["suite", suite]) == 2
    assert "differs by profile" in capsys.readouterr().err
    csv = tmp_path / "t.csv"
    assert main(["suite", suite, "--profile", "smoke", "--table-only", "--only", "colour_0.2",
                 "--set", f"cache_dir={tmp_path}", "--csv", str(csv)]) == 0
    assert '"runs": 2' in capsys.readouterr().out and csv.is_file()


def test_the_prose_that_quotes_the_quick_profiles_dc_length_matches_the_profile():
    # Markdown cannot compute, so the README and notebook 04 quote the quick DC runs' length as literals: they
    # must change with params/quick/defaults.yaml, not drift from it.
    dc = scaled(profile_defaults("quick"), {"method": "dc"})
    iterations, loops = dc["iterations"], f"{dc['outer_loop']}/{dc['inner_loop']}"
    quotes = {
        "README.md": [f"DC {iterations} iterations with {loops} loops",
                      f"Quick DC runs {iterations} iterations with {loops} loops"],
        "notebooks/04_fairdd.py": [f"the quick profile's {iterations} DC iterations"],
    }
    for path, phrases in quotes.items():
        text = " ".join((ROOT / path).read_text().replace("#", " ").split())
        missing = [phrase for phrase in phrases if phrase not in text]
        assert not missing, f"{path} no longer quotes the quick profile's DC length as {missing}"


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_a_method_without_a_scale_block_keeps_its_own_image_learning_rate(profile):
    """DM's scaled image learning rate (20) sat among every method's defaults: DSA, or a plugin method, ran at
    200 times its registered 0.1."""
    assert profile_params({"method": "dsa", "dataset": "cmnist"}, profile).lr_img == 0.1
    assert profile_params({"method": "dm", "dataset": "cmnist"}, profile).lr_img == 20.0


def test_the_theorem_table_is_keyed_by_the_fairdd_set_notebook_04_distils(monkeypatch):
    """The theorem check scaled its settings as a whole-data run, then made it FairDD-DM: its key then followed
    whichever defaults lay outside DM's scale block, and missed notebook 04's set (quick profile)."""
    from paperlib.core.keys import key_values
    from paperlib.experiments import studies

    keyed = {}
    monkeypatch.setattr(studies, "stored_table", lambda study, params, settings, compute: keyed.update(settings))
    studies.theorem_check(notebook_parameters("quick", "05_ablations")["theorem_dataset"], "quick")
    fairdd = {s.label: s for s in suite_from_file(experiment_file("04_fairdd"), "quick")
              if s.experiment == "cmnist_fg"}["dm_fairdd"]
    assert keyed["run"] == key_values(fairdd.params, "distilled")
