"""Suites as jobs (submitit): the same table serially and through the local executor, a killed job resumed."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import torch

from paperlib.cli import main
from paperlib.core.errors import PaperlibError
from paperlib.core.params import with_overrides
from paperlib.experiments import jobs as job_module
from paperlib.experiments.bench import bench
from paperlib.experiments.jobs import JobSettings, job_settings, missing_runs, run_job, run_specs
from paperlib.experiments.runner import distilled_dir, load_record, run
from paperlib.experiments.suite import load_suite, run_suite
from paperlib.report.tables import results_table

# What a run computes (timings and the cache flags differ between two computations of the same numbers).
RESULT_COLUMNS = ["experiment", "run", "status", "acc", "acc_aligned", "acc_conflicting", "deo_m", "deo_a"]


def _suite(cache: str, **run_values) -> list:
    return load_suite({
        "defaults": {"source": "digits", "net_width": 8, "num_eval": 1, "eval_epochs": 2, "device": "cpu",
                     "iterations": 3, "batch_real": 64, "cache_dir": cache, "dataset": "cmnist", "ipc": 2},
        "experiments": [{"name": "tiny", "runs": {"random": {"method": "random"}, "dm": {"method": "dm"},
                                                  "dm_fairdd": {"method": "dm", "target": "groups", **run_values}}},
                        {"name": "again", "runs": {"dm": {"method": "dm"}}}],  # the same run as tiny.dm
    })


def _assert_same_table(specs: list, expected: list) -> None:
    pd.testing.assert_frame_equal(results_table(specs)[RESULT_COLUMNS], results_table(expected)[RESULT_COLUMNS],
                                  check_exact=True)


def test_settings_come_from_defaults_then_the_profile_block_then_flags():
    block = {"slurm": {"gpus_per_node": 1, "jobs": 16}, "local": {"jobs": 2}}
    assert job_settings("slurm", block, jobs=None) == JobSettings(executor="slurm", gpus_per_node=1, jobs=16)
    assert job_settings("slurm", block, jobs=4).jobs == 4
    assert job_settings("local", block).job_threads() >= 1
    assert job_settings("slurm", block, cpus_per_task=6).job_threads() == 6  # each executor's default
    assert job_settings("serial", block).job_threads() == 0  # serial: this process's threads unchanged
    assert job_settings("serial", block, threads=3).job_threads() == 3
    with pytest.raises(PaperlibError, match="unknown executor 'slurmm'"):
        job_settings("slurmm")
    with pytest.raises(PaperlibError, match="unknown executor setting.*gpus; known"):
        job_settings("slurm", {"slurm": {"gpus": 1}})
    with pytest.raises(PaperlibError, match="jobs must be at least 1"):
        job_settings("local", jobs=0)
    with pytest.raises(PaperlibError, match="threads must be at least 0, got -1"):
        job_settings("local", threads=-1)
    with pytest.raises(PaperlibError, match="executor setting jobs must be an integer, got '4'"):
        job_settings("slurm", {"slurm": {"jobs": "4"}})
    with pytest.raises(PaperlibError, match="executor setting mem_gb must be a number, got '16G'"):
        job_settings("slurm", {"slurm": {"mem_gb": "16G"}})
    assert job_settings("slurm", {"slurm": {"mem_gb": 16}}).mem_gb == 16  # an integer is a number
    with pytest.raises(PaperlibError, match=r"--no-wait needs an executor that submits and returns \(slurm\)"):
        run_specs(_suite("/nonexistent-never-written"), JobSettings(executor="local"), wait=False)


def test_the_default_executor_is_the_registered_one_the_settings_and_the_flag_both_take():
    import argparse

    parser = argparse.ArgumentParser()
    job_module.add_executor_arguments(parser)
    args = parser.parse_args([])
    assert args.executor == JobSettings().executor == job_module.DEFAULT_EXECUTOR in job_module.EXECUTORS
    assert job_module.given_executor_flags(args) == []  # the default is not echoed as a flag


def test_every_job_setting_is_a_flag_that_reaches_the_settings():
    """The flags are made from JobSettings' fields: a new field is a flag, typed as its default."""
    import argparse

    parser = argparse.ArgumentParser()
    job_module.add_executor_arguments(parser)
    values = {"jobs": 3, "threads": 2, "cpus_per_task": 4, "gpus_per_node": 1, "mem_gb": 7.5, "timeout_min": 9,
              "partition": "gpu", "folder": "/tmp/jobs"}
    assert set(values) == {f.name for f in dataclasses.fields(JobSettings)} - {"executor"}
    argv = [part for name, value in values.items() for part in (job_module._flag(name), str(value))]
    args = parser.parse_args(["--executor", "slurm", *argv])
    assert dataclasses.asdict(job_module.settings_from_args(args, None)) == {"executor": "slurm", **values}
    assert job_module.given_executor_flags(args)[1:] == [job_module._flag(name) for name in values]


def test_a_flag_the_executor_would_ignore_is_an_error():
    with pytest.raises(PaperlibError, match=r"^--jobs does not apply to the serial executor \(it takes --threads\); "
                                            r"drop it or choose --executor local \| slurm$"):
        job_settings("serial", jobs=4)
    with pytest.raises(PaperlibError, match=r"^--mem-gb, --partition do not apply to the local executor .* "
                                            r"or choose --executor slurm$"):
        job_settings("local", mem_gb=16, partition="gpu")
    block = {"slurm": {"mem_gb": 16}}  # another executor's block is not this one's business
    assert job_settings("local", block, jobs=2, threads=1, timeout_min=5, folder="/tmp/jobs").jobs == 2
    with pytest.raises(PaperlibError, match=r"^the profile's executor.local block sets mem_gb, which the local "
                                            r"executor does not read; remove it there$"):
        job_settings("local", {"local": {"jobs": 2, "mem_gb": 16}})
    with pytest.raises(PaperlibError, match=r"^unknown executor setting\(s\) job; known"):
        job_settings("serial", job=2)  # a misspelt name is unknown, not "does not apply"
    with pytest.raises(PaperlibError, match=r"^the profile's executor: block \(params/<profile>/defaults.yaml\) "
                                            r"has an unknown executor 'lokal' \(did you mean 'local'\?\)"):
        job_settings("local", {"lokal": {"jobs": 2}})  # a misspelt block would be ignored
    with pytest.raises(PaperlibError, match="mem_gb must be at least 0.1, got nan"):
        job_settings("slurm", mem_gb=float("nan"))


def test_missing_runs_skip_stored_records_and_count_a_shared_run_once(tmp_path):
    specs = _suite(str(tmp_path))
    assert [f"{s.experiment}.{s.label}" for s in missing_runs(specs)] == ["tiny.random", "tiny.dm", "tiny.dm_fairdd"]
    run(specs[0].params)
    assert [s.label for s in missing_runs(specs)] == ["dm", "dm_fairdd"]
    forced = [dataclasses.replace(s, params=with_overrides(s.params, {"force": True})) for s in specs]
    assert [s.label for s in missing_runs(forced)] == ["random", "dm", "dm_fairdd"]  # force=true recomputes


def test_without_submitit_paperlib_runs_serially_and_a_job_executor_says_what_to_install(tmp_path):
    """A machine without submitit (a GPU box with its own Python) still runs the command line, make reproduce's
    module and the notebooks' module, serially; an executor that needs submitit is one line naming the fix."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["submitit"] = None  # import submitit now raises ImportError
        import paperlib.cli, paperlib.reproduce, paperlib.notebook
        from paperlib.experiments.jobs import JobSettings, run_specs
        from paperlib.experiments.suite import load_suite

        def suite(seed):
            defaults = {{"source": "digits", "method": "random", "num_eval": 1, "eval_epochs": 1, "net_width": 8,
                         "device": "cpu", "cache_dir": {str(tmp_path)!r}, "seed": seed}}
            return load_suite({{"defaults": defaults, "experiments": [{{"name": "e", "runs": {{"r": {{}}}}}}]}})

        assert run_specs(suite(0), JobSettings(executor="serial")) == 1
        try:
            run_specs(suite(1), JobSettings(executor="local", folder={str(tmp_path / "j")!r}))
        except Exception as err:
            print(err)
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        "the local executor needs submitit, which is not installed; pip install submitit (requirements.lock pins "
        "its version), or use --executor serial")


def test_local_executor_two_jobs_at_once_gives_the_serial_table(tmp_path):
    threads = torch.get_num_threads()  # the jobs use the test's thread count: bit-identical results
    serial = _suite(str(tmp_path / "serial"))
    run_suite(serial)
    jobs = _suite(str(tmp_path / "jobs"))
    assert run_specs(jobs, JobSettings(executor="local", jobs=2, threads=threads, folder=str(tmp_path / "j"))) == 3
    _assert_same_table(jobs, serial)
    assert {load_record(spec.params)["environment"]["threads"] for spec in jobs} == {threads}
    assert run_specs(jobs, JobSettings(executor="local", jobs=2)) == 0  # nothing left to submit


def test_a_jobs_thread_count_reaches_its_run_and_its_record(tmp_path):
    """The job runs at the thread count it was given, not this process's, and its record says so (what a number
    computed at another count differs by: tests/test_reproducibility.py)."""
    threads = 1 if torch.get_num_threads() > 1 else 2
    job = _suite(str(tmp_path / "jobs"))[1:2]  # one distillation is enough to carry the count
    assert run_specs(job, JobSettings(executor="local", jobs=1, threads=threads, folder=str(tmp_path / "j"))) == 1
    assert load_record(job[0].params)["environment"]["threads"] == threads != torch.get_num_threads()


def test_debug_executor_runs_the_jobs_in_this_process(tmp_path):
    specs = _suite(str(tmp_path / "jobs"))
    assert run_specs(specs, JobSettings(executor="debug", folder=str(tmp_path / "j"))) == 3
    serial = _suite(str(tmp_path / "serial"))
    run_suite(serial)
    _assert_same_table(specs, serial)


def test_a_failed_job_is_reported_in_one_line_after_the_others_are_stored(tmp_path):
    specs = _suite(str(tmp_path), lr_img=1e30)  # dm_fairdd diverges: its loss becomes non-finite
    with pytest.raises(PaperlibError, match=r"1 of 3 runs failed; first: tiny\.dm_fairdd: .*matching loss became "
                                            r"nan at iteration \d.* \(logs: "):
        run_specs(specs, JobSettings(executor="local", jobs=2, folder=str(tmp_path / "j")))
    assert [s.label for s in missing_runs(specs)] == ["dm_fairdd"]  # the others are stored


@pytest.mark.parametrize("error", ["paperlib.core.errors.PaperlibError", "paperlib.core.errors.DataNotFound"])
def test_a_failed_jobs_reason_is_its_own_error_line_whatever_the_exceptions_name(error):
    trace = ("Job (task=0) failed during processing with trace:\n----------------------\n"
             "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
             "tarfile.ReadError: file could not be opened successfully\n\n"
             "The above exception was the direct cause of the following exception:\n\n"
             f"{error}: data root /scratch/data does not exist; set PAPERLIB_DATA\n"
             "----------------------\nYou can check full logs with 'job.stderr(0)' and 'job.stdout(0)'")
    assert job_module._reason(RuntimeError(trace)) == "data root /scratch/data does not exist; set PAPERLIB_DATA"


def _iterations_lasting(seconds: float, cache: str) -> int:
    """How many iterations of the suite's dm_fairdd run take about ``seconds`` on this machine (at least 32), so
    that a faster machine does not finish the run before the test cancels it."""
    spec = next(s for s in _suite(cache) if s.label == "dm_fairdd")
    eager = with_overrides(spec.params, {"iterations": 5, "torch_compile": "never"})
    per_iteration = bench(eager)["seconds_per_iteration"]
    return max(32, math.ceil(seconds / per_iteration))


def test_a_job_killed_mid_run_resumes_from_its_checkpoint_when_submitted_again(tmp_path):
    threads = torch.get_num_threads()
    iterations = _iterations_lasting(4.0, str(tmp_path / "jobs"))  # cancelled well before its end
    # eager, as the bench that sized it: compiling (from 100 iterations) would put a one-off pause in the job
    values = {"iterations": iterations, "checkpoint_every": iterations // 16, "torch_compile": "never"}
    specs = [s for s in _suite(str(tmp_path / "jobs"), **values) if s.label == "dm_fairdd"]
    params = specs[0].params
    import submitit  # pinned in the lock: a broken setup fails here, it does not skip
    executor = submitit.AutoExecutor(folder=tmp_path / "j" / "%j", cluster="local")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(run_job, params, threads)
    checkpoint = distilled_dir(params) / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), "the job wrote no checkpoint within 2 minutes"
    job.cancel()
    while not job.done():
        time.sleep(0.2)
    assert load_record(params) is None and checkpoint.exists()  # killed: no record, its checkpoint kept
    print(f"killed job {job.job_id} (state {job.state}); checkpoint at {checkpoint}")

    assert run_specs(specs, JobSettings(executor="local", threads=threads, folder=str(tmp_path / "j"))) == 1
    record = load_record(params)
    assert record["resumed_from"] > 0 and not checkpoint.exists()
    print(f"resubmitted: resumed from iteration {record['resumed_from']} of {params.iterations}")
    serial = [s for s in _suite(str(tmp_path / "serial"), **values) if s.label == "dm_fairdd"]
    run_suite(serial)
    _assert_same_table(specs, serial)


def test_suite_command_runs_through_the_local_executor(tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""
defaults: {{source: digits, net_width: 8, num_eval: 1, eval_epochs: 1, device: cpu, iterations: 2, batch_real: 64,
            cache_dir: {json.dumps(str(tmp_path))}, dataset: cmnist, ipc: 2}}
experiments:
  - name: tiny
    runs: {{random: {{method: random}}, dm: {{method: dm}}}}
""")
    assert main(["suite", str(suite), "--executor", "local", "--jobs", "2", "--job-folder", str(tmp_path / "j"),
                 "--csv", str(tmp_path / "t.csv")]) == 0
    assert '"done": 2, "computed": 2' in capsys.readouterr().out
    assert main(["suite", str(suite), "--executor", "local", "--attach", "--job-folder", str(tmp_path / "bad")]) == 2
    assert "the local executor submits none: use --executor slurm" in capsys.readouterr().err
    assert main(["suite", str(suite), "--executor", "slurm", "--attach", "--job-folder", str(tmp_path / "none")]) == 2
    assert "no submitted jobs to attach to" in capsys.readouterr().err
    for flags, said in ((["--table-only", "--no-wait"], "--table-only runs nothing, so --no-wait"),
                        (["--table-only", "--executor", "local"], "so --executor local has nothing to do"),
                        (["--table-only", "--jobs", "2"], "so --jobs has nothing to do; drop it"),
                        (["--attach", "--no-wait"], "give one of them")):
        assert main(["suite", str(suite), *flags]) == 2
        assert said in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "submitted.json").write_text("{bad")
    assert main(["suite", str(suite), "--executor", "slurm", "--attach", "--job-folder", str(tmp_path / "bad")]) == 2
    assert "submitted.json cannot be read" in capsys.readouterr().err


def test_slurm_settings_reach_the_sbatch_file_and_a_machine_without_slurm_gets_one_line(tmp_path, monkeypatch):
    from paperlib.experiments.jobs import _slurm_executor

    settings = job_settings("slurm", {"slurm": {"gpus_per_node": 1, "jobs": 3}}, partition="gpu", mem_gb=16,
                            folder=str(tmp_path / "j"))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PaperlibError, match="the slurm executor cannot start here.*use --executor local"):
        _slurm_executor(settings)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    executor = _slurm_executor(settings)._executor
    sbatch = executor._make_submission_file_text("command", "uid")
    for line in ("--gpus-per-node=1", "--cpus-per-task=8", "--mem=16GB", "--partition=gpu", "--time=1440"):
        assert f"#SBATCH {line}" in sbatch
    assert executor.parameters["array_parallelism"] == 3


def test_serial_with_threads_sets_them_for_the_runs_only(tmp_path):
    before = torch.get_num_threads()
    threads = 1 if before > 1 else 2
    specs = _suite(str(tmp_path))[:1]
    assert run_specs(specs, JobSettings(executor="serial", threads=threads)) == 1
    assert load_record(specs[0].params)["environment"]["threads"] == threads  # the run used them
    assert torch.get_num_threads() == before  # and this process has its own back


def test_reproduce_gathers_every_notebook_suite_and_waits_for_its_runs(capsys):
    from paperlib.core.paths import notebook_sources
    from paperlib.experiments.profiles import profile_runs
    from paperlib.reproduce import main as reproduce_main

    specs = profile_runs("smoke", [s.stem for s in notebook_sources()])
    assert {s.experiment for s in specs} >= {"colour_0.05", "cmnist_fg"} and len(specs) > 20
    assert reproduce_main(["--profile", "smoke", "--executor", "slurm", "--no-wait"]) == 2
    assert "make reproduce waits for its runs" in capsys.readouterr().err
    assert reproduce_main(["--profile", "smoke", "--only", "fairness"]) == 2  # 04_fairdd, not a word of its title
    assert "--only 'fairness' matches no notebook; choose a part of one of: 01_" in capsys.readouterr().err


def test_two_jobs_computing_one_key_leave_one_complete_record(tmp_path):
    params = _suite(str(tmp_path))[1].params
    import submitit  # pinned in the lock: a broken setup fails here, it does not skip
    executor = submitit.LocalExecutor(folder=tmp_path / "j" / "%j")
    jobs = [executor.submit(run_job, params, 1) for _ in range(2)]
    assert {job.result() for job in jobs} == {load_record(params)["key"]}
    folders = list((tmp_path / "records").iterdir())
    assert [f.name for f in folders] == [f"cmnist-dm-{load_record(params)['key']}"]
    assert [p.name for p in folders[0].iterdir()] == ["record.json"]  # no temporary file left beside it


def test_ctrl_c_while_waiting_for_cluster_jobs_says_how_to_wait_again(monkeypatch):
    class Queued:
        def done(self):
            raise KeyboardInterrupt

    monkeypatch.setattr(job_module, "POLL_SECONDS", 0)
    with pytest.raises(PaperlibError, match="1 job.s. still queued or running.*--attach.*waits for them again"):
        job_module._wait([], [Queued()])


def test_local_jobs_share_the_cores_this_process_may_use_not_the_machines(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)  # e.g. taskset -c 0-2
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert job_settings("local", jobs=1).job_threads() == 3 and job_settings("local", jobs=2).job_threads() == 1


def test_local_jobs_are_spread_over_the_visible_gpus(monkeypatch, tmp_path):
    """submitit shows every local job the same first GPUs: each job is handed the least-held one instead."""
    class Job:
        def __init__(self, gpu):
            self.gpu, self.polls = gpu, 0

        def done(self):
            self.polls += 1
            return self.polls > 2  # each job runs for two polls

        def result(self):
            return None

    class Executor:
        def __init__(self):
            self.visible, self.submitted = None, []

        def update_parameters(self, **values):
            self.visible = values.get("visible_gpus", self.visible)

        def submit(self, *args):
            self.submitted.append(self.visible)
            return Job(self.visible)

    executor = Executor()
    monkeypatch.setattr(job_module, "_local_executor", lambda settings: executor)
    monkeypatch.setattr(job_module, "POLL_SECONDS", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert job_module.local_gpus() == (3, 5)
    specs = _suite(str(tmp_path))[:3]
    assert job_module._local(specs, JobSettings(executor="local", jobs=2)) == []
    assert executor.submitted == [(3,), (5,), (3,)]  # two at once on their own GPUs; the third on a freed one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert job_module.local_gpus() == ()


def test_a_damaged_job_list_stops_a_slurm_submission_before_any_job_is_queued(monkeypatch, tmp_path):
    """The job list was read after ``map_array``: the error said nothing was recomputed while the jobs were
    queued, and a second try queued them again."""
    submitted = []

    class Executor:
        def map_array(self, *args):
            submitted.append(args)
            return []

    monkeypatch.setattr(job_module, "_slurm_executor", lambda settings: Executor())
    settings = JobSettings(executor="slurm", folder=str(tmp_path / "j"))
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "submitted.json").write_text("{bad")
    with pytest.raises(PaperlibError, match=r"submitted.json cannot be read .*; no job was submitted; it lists the "
                                            r"SLURM jobs of earlier --no-wait submissions"):
        job_module._slurm(_suite(str(tmp_path))[:1], settings, wait=False)
    assert submitted == []
