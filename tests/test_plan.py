"""``make plan``: which runs of a profile are stored and what the missing ones cost, computing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from paperlib.core.errors import PaperlibError
from paperlib.experiments.plan import plan, summary
from paperlib.experiments.runner import run
from paperlib.experiments.suite import load_suite
from paperlib.reproduce import main as reproduce_main


def _specs(cache: str) -> list:
    return load_suite({
        "defaults": {"source": "digits", "net_width": 8, "num_eval": 2, "eval_epochs": 2, "device": "cpu",
                     "iterations": 3, "batch_real": 64, "cache_dir": cache, "dataset": "cmnist", "ipc": 2},
        "experiments": [{"name": "tiny", "runs": {"whole": {"method": "whole"}, "dm": {"method": "dm"},
                                                  "dm_lff": {"method": "dm", "eval_trainer": "lff"},
                                                  "dm_3": {"method": "dm", "num_distill": 3}}},
                        {"name": "again", "runs": {"dm": {"method": "dm"}}}],  # the same run as tiny.dm
    })


def test_the_plan_counts_each_run_and_each_distilled_set_once_and_sees_what_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_RESULTS", "off")
    specs = _specs(str(tmp_path))
    table = plan(specs).set_index("run")
    assert list(table.index) == ["whole", "dm", "dm_lff", "dm_3"]  # again.dm is tiny.dm
    assert set(table["record"]) == {"missing"}
    # dm_lff evaluates dm's set; dm_3's first set is dm's too, its two others are new
    assert table.loc["dm", "distilled_set"] == "to distil" and table.loc["dm_lff", "distilled_set"] == "shared"
    assert table.loc["dm_3", "distilled_set"] == "shared, to distil"
    assert list(table["distill_iterations"]) == [0, 3, 0, 6]
    # the official schedule runs eval_epochs + 1 epochs; dm_3 evaluates num_eval models on each of its 3 sets
    assert list(table["eval_epochs"]) == [2 * 3, 2 * 3, 2 * 3, 3 * 2 * 3]
    assert "4 runs: 0 in the cache, 0 in the results store, 4 to compute (9 distillation iterations, " \
           "30 evaluation epochs on small sets and 6 on whole training splits)" == summary(plan(specs))

    run(specs[1].params)  # dm: its record and its set are now cached
    table = plan(specs).set_index("run")
    assert table.loc["dm", "record"] == "cache" and table.loc["dm", "eval_epochs"] == 0
    assert table.loc["dm_lff", "distilled_set"] == "cached" and table.loc["dm_lff", "distill_iterations"] == 0
    assert table.loc["dm_3", "distilled_set"] == "cached, to distil"


def test_make_plan_lists_the_profiles_runs_and_computes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PAPERLIB_RESULTS", str(Path(__file__).parents[1] / "results"))  # the shipped store
    assert reproduce_main(["--profile", "paper", "--only", "04", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "dm_fairdd" in out and "results store not read" in out
    assert not (tmp_path / "cache").exists()
    assert reproduce_main(["--profile", "quick", "--only", "03", "--plan", "--from-store"]) == 0
    out = capsys.readouterr().out.splitlines()[-1]
    assert " 0 to compute" in out and "0 in the cache" in out and "results store read" in out
    assert reproduce_main(["--profile", "quick", "--only", "no_such_notebook", "--plan"]) == 2
    assert reproduce_main(["--profile", "paper", "--plan", "--executor", "local", "--jobs", "2"]) == 2
    assert "--plan computes no run, so --executor local and --jobs have nothing to do; drop them" in \
        capsys.readouterr().err
    assert reproduce_main(["--profile", "quik", "--executor", "local", "--jobs", "2"]) == 2  # as without flags
    assert capsys.readouterr().err.startswith("error: unknown profile 'quik'; choose one of: ")


def test_a_figures_folder_that_cannot_be_made_is_one_line_after_the_runs(tmp_path, monkeypatch, capsys):
    """The timing file was written outside the error handling, and PAPERLIB_FIGURES naming a file gave
    NotADirectoryError's traceback: after every notebook had run."""
    import paperlib.reproduce as reproducing
    from paperlib.core.paths import figures_dir

    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("PAPERLIB_FIGURES", str(tmp_path / "afile"))
    with pytest.raises(PaperlibError, match=r"cannot make the figures folder .*afile/smoke \(.*afile is a file, "
                                            r"not a folder\); point PAPERLIB_FIGURES at a writable folder"):
        figures_dir("smoke")
    monkeypatch.setattr(reproducing, "reproduce", lambda *args: [("01_biased_datasets", 1.0)])
    assert reproduce_main(["--profile", "smoke"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot make the figures folder")
