"""The notebook checks: claims with margins and reference numbers within tolerance, as nbval sees them."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from paperlib.report import checks
from paperlib import notebook as nb
from paperlib.experiments.profiles import PROFILES
from paperlib.core.errors import PaperlibError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [p.stem for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))]


def _table(rows):
    base = {"status": "done", "target": "vanilla", "method": "dm", "eval_trainer": "plain", "num_eval": 1}
    return pd.DataFrame([{**base, **row} for row in rows])


TABLE = _table([{"experiment": "colour", "run": "whole", "method": "whole", "acc": 66.0, "acc_conflicting": 61.7},
                {"experiment": "colour", "run": "dm", "acc": 23.6, "acc_conflicting": 14.2},
                {"experiment": "colour", "run": "dm_kde", "acc": 44.2, "acc_conflicting": 37.3},
                {"experiment": "colour", "run": "lost", "status": "missing", "acc": float("nan")}])
AMPLIFIED = {"says": "colour bias is amplified", "of": "colour/whole acc_conflicting",
             "minus": "colour/dm acc_conflicting", "at_least": 10}


def test_quantities_name_each_cell_by_row_and_column_and_skip_runs_not_done():
    values = checks.quantities(TABLE, pd.DataFrame([{"variant": "pixel space", "conflicting % of weight": 24.2}]))
    assert values["colour/dm acc"] == 23.6 and values["pixel space conflicting % of weight"] == 24.2
    assert not any(k.startswith("colour/lost") for k in values)


def test_a_claim_holds_or_fails_with_the_measured_value():
    holds = checks.claim_rows([AMPLIFIED], checks.quantities(TABLE))
    assert holds == [{"check": "colour bias is amplified",
                      "test": "colour/whole acc_conflicting - colour/dm acc_conflicting >= 10",
                      "verdict": "holds (measured 47.5)"}]
    flipped = TABLE.assign(acc_conflicting=[61.7, 58.0, 37.3, float("nan")])  # DM no longer loses the minority
    assert checks.claim_rows([AMPLIFIED], checks.quantities(flipped))[0]["verdict"] == "FAILS (measured 3.7)"
    ratio = {"says": "x", "of": "colour/dm_kde acc", "over": "colour/dm acc", "at_most": 1.5}
    assert checks.claim_rows([ratio], checks.quantities(TABLE))[0]["verdict"] == "FAILS (measured 1.87)"
    for bound in ({"at_least": 1.0}, {"at_most": 1.0}):  # 0 / 0 supports no claim, whichever its side
        zero = {"says": "x", "of": "r a", "over": "r b", **bound}
        assert checks.claim_rows([zero], {"r a": 0.0, "r b": 0.0})[0]["verdict"] == "FAILS (measured nan)"
    above = {"says": "x", "of": "r a", "over": "r b", "at_least": 2.0}
    assert checks.claim_rows([above], {"r a": 3.0, "r b": 0.0})[0]["verdict"] == "holds (measured inf)"  # 3 / 0


@pytest.mark.parametrize("entry, message", [
    ({"says": "x", "of": "colour/dm acc"}, "exactly one of 'at_least' / 'at_most'"),
    ({"says": "x", "of": "colour/dm acc", "at_least": 1, "at_most": 2}, "exactly one"),
    ({"says": "x", "of": "colour/dm acc", "minus": "a", "over": "b", "at_least": 1}, "at most one of"),
    ({"says": "x", "of": "colour/dm acc", "at_least": 1, "margin": 2}, "unknown: margin"),
    ({"says": "x", "of": "colour/dm accuracy", "at_least": 1}, "did not compute; that row has: colour/dm acc"),
    ({"says": "x", "of": "colour/dm acc", "at_least": "10%"}, "claim 'x': at_least must be a number, got '10%'"),
    ("colour/dm acc >= 10", "a claim must be a mapping with 'says', 'of' and 'at_least' or 'at_most'"),
    ({"says": "x", "of": 2024, "at_least": 1}, r"^claim 'x': of must name a quantity as '<row> <column>', e\.g\. "
                                                r"'colour_0\.05/dm acc', got 2024$"),
    ({"says": "x", "of": "colour/dm acc", "minus": ["colour/whole acc"], "at_least": 1}, "claim 'x': minus must"),
    ({"says": "x", "of": "colour/dm acc", "over": "acc", "at_least": 1}, "claim 'x': over must .* got 'acc'$"),
    ({"says": "x", "of": "colour/dm acc", "minus": None, "at_least": 1}, "claim 'x': minus must .* got None$"),
])
def test_a_malformed_claim_or_an_unknown_quantity_is_a_clear_error(entry, message):
    with pytest.raises(PaperlibError, match=message):
        checks.claim_rows([entry], checks.quantities(TABLE))


def _references(tmp_path, monkeypatch, runs):
    (tmp_path / "params" / "toy").mkdir(parents=True)
    (tmp_path / "paperlib").mkdir()
    (tmp_path / "params" / "toy" / "references.yaml").write_text(
        "# tolerances set by hand\n" + yaml.safe_dump({"tolerance": {"acc": 3.0, "acc_conflicting": 4.0},
                                                       "runs": runs}))
    monkeypatch.chdir(tmp_path)


def test_reference_numbers_pass_within_tolerance_and_fail_beyond_it(tmp_path, monkeypatch):
    _references(tmp_path, monkeypatch, {"02_nb": {"colour/dm": {"acc": 25.0, "acc_conflicting": 14.0},
                                                  "colour/dm_kde": {"acc": 40.0, "acc_conflicting": 37.0}}})
    rows = checks.reference_rows("02_nb", "toy", checks.quantities(TABLE))
    assert rows[0] == {"check": "colour/dm matches the toy reference", "test": "acc 25 ± 3, conflicting 14 ± 4",
                       "verdict": "within tolerance"}
    assert rows[1]["verdict"] == "FAILS (acc 44.2 vs 40)"  # 4.2 points off, tolerance 3
    assert checks.reference_rows("03_other", "toy", checks.quantities(TABLE)) == []


def test_a_reference_run_that_was_not_computed_fails(tmp_path, monkeypatch):
    _references(tmp_path, monkeypatch, {"02_nb": {"colour/gone": {"acc": 25.0}}})
    assert checks.reference_rows("02_nb", "toy", checks.quantities(TABLE))[0]["verdict"] == \
        "FAILS (not computed: acc)"


def test_a_broken_references_file_is_a_clear_error(tmp_path, monkeypatch):
    _references(tmp_path, monkeypatch, {})
    (tmp_path / "params" / "toy" / "references.yaml").write_text("tolerance: {accuracy: 3}\n")
    with pytest.raises(PaperlibError, match="not a references file.*unknown metrics in tolerance: accuracy"):
        checks.load_references("toy")
    (tmp_path / "params" / "toy" / "references.yaml").write_text("tolerance: {acc: 3}\nruns: {nb: {dm: {acc: high}}}\n")
    with pytest.raises(PaperlibError, match="not a references file.*not a number.*checks record --profile toy"):
        checks.load_references("toy")
    (tmp_path / "params" / "toy" / "references.yaml").write_text("tolerance: {acc: 3}\nruns: {nb: {dm: {deo_m: 9}}}\n")
    with pytest.raises(PaperlibError, match="not a references file .no tolerance for deo_m.; rewrite it"):
        checks.load_references("toy")


def test_recording_references_for_an_unknown_profile_names_the_profiles(capsys):
    """A misspelt --profile said that params/<it>/references.yaml needs a 'tolerance' block first."""
    assert checks.main(["record", "--profile", "quik"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: unknown profile 'quik'; choose one of: {', '.join(PROFILES)}\n"


def test_the_checks_command_says_what_is_wrong_with_its_arguments_in_one_line(tmp_path, capsys):
    assert checks.main(["record", "--profile", "quick"]) == 2  # quick pins no reference numbers
    assert "params/quick/references.yaml does not exist; write it with a 'tolerance' block" in capsys.readouterr().err
    for argv, said in ((["record", str(tmp_path)], f"record takes no folder (got {tmp_path})"),
                       (["verify", str(tmp_path), "--profile", "smoke"], "verify takes no --profile (got smoke)"),
                       (["verify"], "verify needs the folder of executed notebooks, e.g. .nbcheck/executed")):
        with pytest.raises(SystemExit) as stopped:
            checks.main(argv)
        assert stopped.value.code == 2
        assert capsys.readouterr().err == f"error: {said}; see python -m paperlib.report.checks --help\n"
    assert checks.main(["verify", str(tmp_path / "absent")]) == 2
    assert "absent is not a folder; name the folder of executed notebooks" in capsys.readouterr().err


def _as_nbval_compares(table: pd.DataFrame) -> str:
    """``table`` as nbval compares it: its text and HTML through every sanitizer of tests/nbval_sanitize.cfg,
    read as nbval reads them."""
    from nbval.plugin import get_sanitize_patterns

    shown = table.to_string() + table.to_html()
    for regex, replace in get_sanitize_patterns((ROOT / "tests" / "nbval_sanitize.cfg").read_text()):
        shown = re.sub(regex, replace, shown)
    return shown


def test_the_verdict_table_is_the_same_for_numbers_that_differ_within_tolerance(tmp_path, monkeypatch):
    _references(tmp_path, monkeypatch, {"02_nb": {"colour/dm": {"acc": 23.6, "acc_conflicting": 14.2}}})
    claim = {**AMPLIFIED, "at_least": 5}
    here = checks.verdicts("02_nb", "toy", [claim], TABLE)
    # the measured quantity is shown, 47.5 here and 7.5 there (a text column is padded to its widest cell) ...
    shifted = TABLE.assign(acc=TABLE["acc"] + 2.9, acc_conflicting=TABLE["acc_conflicting"] + [-40, 0, 0, 0])
    elsewhere = checks.verdicts("02_nb", "toy", [claim], shifted)
    assert not here.equals(elsewhere)
    assert _as_nbval_compares(here) == _as_nbval_compares(elsewhere)  # ... and masked where nbval compares
    assert not here["verdict"].str.startswith("FAILS").any()
    flipped = checks.verdicts("02_nb", "toy", [claim], TABLE.assign(acc_conflicting=[61.7, 58.0, 37.3, 0]))
    assert _as_nbval_compares(flipped) != _as_nbval_compares(here)  # a claim that flips is not masked
    moved = checks.verdicts("02_nb", "toy", [AMPLIFIED], TABLE.assign(acc=TABLE["acc"] + 3.1))
    failed = moved[moved["verdict"].str.startswith("FAILS")]
    assert [f"{r.check}: {r.verdict}" for r in failed.itertuples()] == \
        ["colour/dm matches the toy reference: FAILS (acc 26.7 vs 23.6)"]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_claim_of_every_profile_is_well_formed_and_names_runs_of_its_suite(profile):
    """A quantity '<experiment>/<run> <column>' names a run of the notebook's suite (other rows are of the
    notebook's own tables, such as the KDE ablation's). The smoke and quick profiles have claims (the paper
    profile, never run, has none yet)."""
    count = 0
    for name in NOTEBOOKS:
        parameters = nb.notebook_parameters(profile, name)
        suite = parameters.get("suite")
        runs = {f"{s.experiment}/{s.label}" for s in nb.suite_specs(profile, suite, name)} if suite else set()
        for entry in parameters.get("claims") or []:
            claim = checks.Claim.from_dict(entry)
            rows = [q.split()[0] for q in (claim.of, claim.minus, claim.over) if q]
            assert all(row in runs for row in rows if "/" in row), f"{name}: {claim.says}: {rows} not in {runs}"
            count += 1
    assert count > 0 or profile == "paper"


def test_the_smoke_references_pin_every_run_of_the_smoke_suites_with_a_stated_tolerance():
    references = checks.load_references("smoke")
    assert set(references["tolerance"]) == {"acc", "acc_aligned", "acc_conflicting"}
    suites = {name: nb.notebook_parameters("smoke", name).get("suite") for name in NOTEBOOKS}
    assert set(references["runs"]) == {name for name, suite in suites.items() if suite}  # no stale notebook
    for name, suite in suites.items():
        if suite:
            specs = nb.suite_specs("smoke", suite, name)
            assert set(references["runs"][name]) == {f"{s.experiment}/{s.label}" for s in specs}, name


@pytest.mark.parametrize("name", ["02_bias_in_distillation", "03_kde_reweighting", "04_fairdd", "05_ablations",
                                  "06_explore"])
def test_the_committed_quick_results_satisfy_the_quick_claims(name, monkeypatch):
    """Every claim of the quick profile holds on what its committed run wrote: the notebook's table
    (figures/quick/*.csv) and the tables it reads from the shipped results store (KDE weight shares)."""
    monkeypatch.setenv("PAPERLIB_RESULTS", str(ROOT / "results"))
    table = pd.read_csv(ROOT / "figures" / "quick" / f"{name}.csv")
    claims = nb.notebook_parameters("quick", name).get("claims")
    assert claims, f"params/experiments/{name}.yaml states no claims for the quick profile"
    file_values = nb.notebook_parameters("quick", name)
    extra = {"02_bias_in_distillation": lambda: [nb.bias_effect(table)],
             "03_kde_reweighting": lambda: [nb.weight_shares(nb.suite_specs("quick", None, name))],
             "05_ablations": lambda: [nb.kde_ablation(file_values["kde_dataset"], file_values["kde_variants"],
                                                      "quick")],
             }.get(name, list)()
    rows = checks.claim_rows(claims, checks.quantities(table, *extra))  # a claim it cannot measure is an error
    assert len(rows) == len(claims) and all(r["verdict"].startswith("holds (") for r in rows), rows


def test_verify_lists_every_failed_verdict_and_error_of_the_executed_notebooks(tmp_path):
    import nbformat

    notebook = nbformat.v4.new_notebook()
    table = checks.verdicts("02_nb", "smoke", [AMPLIFIED], TABLE.assign(acc_conflicting=[61.7, 58.0, 37.3, 0]))
    notebook.cells = [nbformat.v4.new_code_cell("nb.verdicts()", outputs=[nbformat.v4.new_output(
                          "execute_result", data={"text/plain": table.to_string(), "text/html": table.to_html()},
                          execution_count=1)]),
                      nbformat.v4.new_code_cell("1 / 0", outputs=[nbformat.v4.new_output(
                          "error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])])]
    nbformat.write(notebook, tmp_path / "02_nb.ipynb")
    found = checks.failed_checks(tmp_path)
    assert found[0] == ("02_nb: colour bias is amplified | colour/whole acc_conflicting - colour/dm "
                        "acc_conflicting >= 10 | FAILS (measured 3.7)")
    assert len(found) == 2
    assert found[1] == "02_nb: ZeroDivisionError: division by zero"
    assert checks.main(["verify", str(tmp_path)]) == 1
    assert checks.main(["verify", str(tmp_path / "empty")]) == 2
    (tmp_path / "03_cut.ipynb").write_text('{"cells": [')  # a notebook cut short
    with pytest.raises(PaperlibError, match=r"03_cut.ipynb is not a readable notebook \(JSONDecodeError: .*reproduce"):
        checks.failed_checks(tmp_path)
    for malformed in ('{"cells": [{"cell_type": "code", "outputs": [5]}]}',
                      '{"cells": [{"cell_type": "code", "outputs": [{"data": 5}]}]}', '{"cells": [5]}'):
        (tmp_path / "03_cut.ipynb").write_text(malformed)  # used to end in an AttributeError's traceback
        with pytest.raises(PaperlibError, match=r"03_cut.ipynb is not a readable notebook \((TypeError|Attribute)"):
            checks.failed_checks(tmp_path)
    (tmp_path / "03_cut.ipynb").unlink()
    (tmp_path / "03_cut.ipynb").mkdir()  # a folder named like a notebook
    with pytest.raises(PaperlibError, match=r"03_cut.ipynb is not a readable notebook \(IsADirectoryError"):
        checks.failed_checks(tmp_path)


def test_reference_values_pin_the_done_runs_metrics_to_one_decimal():
    table = pd.DataFrame({"experiment": ["colour", "colour"], "run": ["dm", "kde"], "status": ["done", "failed"],
                          "acc": [23.456, 50.0], "deo_m": [float("nan"), 1.0], "device": ["cpu", None]})
    assert checks.reference_values(table, ["acc", "deo_m", "deo_a"]) == {"colour/dm": {"acc": 23.5}}
    checks.refuse_off_cpu(table, "smoke")
    # a run on a GPU (device=auto takes one) is not written into the CPU references
    on_gpu = table.assign(device=["cuda:0", None])
    with pytest.raises(PaperlibError, match=r"^the references are CPU numbers, and 1 runs were computed elsewhere: "
                                            r"colour/dm \(cuda:0\); in one shell, export "
                                            r"PAPERLIB_CACHE=\$\(mktemp -d\) CUDA_VISIBLE_DEVICES=, then run "
                                            r"`make reproduce PROFILE=toy` and this"):
        checks.refuse_off_cpu(on_gpu, "toy")
    # a CPU evaluation of a set distilled on a GPU is no CPU number either
    set_on_gpu = table.assign(distilled_on=["cuda:0", None])
    with pytest.raises(PaperlibError, match=r"1 runs were computed elsewhere: colour/dm \(cuda:0\); in one shell"):
        checks.refuse_off_cpu(set_on_gpu, "toy")
    checks.refuse_off_cpu(table.assign(distilled_on=["cpu", "cuda:0"]), "smoke")  # the failed run is not read
    # one of a run's num_distill sets made on a GPU (results_table joins their devices)
    with pytest.raises(PaperlibError, match=r"colour/dm \(cpu, cuda:0\)"):
        checks.refuse_off_cpu(table.assign(distilled_on=["cpu, cuda:0", None]), "toy")
    from paperlib.report.tables import _made_on

    assert _made_on({"distilled_on_devices": ["cpu", "cuda:0"], "distilled_on": {"device": "cpu"}}) == ["cpu", "cuda:0"]
    assert _made_on({"distilled_on": {"device": "mps"}}) == ["mps"] and _made_on({}) == []
