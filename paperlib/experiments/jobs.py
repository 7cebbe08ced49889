"""A suite's missing runs as jobs, through submitit: several at once on this machine, or a SLURM job array.

Every run of a suite that has no stored record becomes one job calling :func:`paperlib.experiments.runner.run`,
which writes the record atomically into the shared cache under a per-run lock and checkpoints distillations;
so two jobs computing one key give one record, and a job killed mid-run resumes from its checkpoint when
submitted again. Running the same command again submits only what is still missing.

Executors (:data:`EXECUTORS`): ``serial`` runs in this process, one run after the other (no submitit);
``local`` starts ``jobs`` processes at a time on this machine (on a GPU machine they share its GPUs);
``slurm`` submits one job array, ``jobs`` of it running at once; ``debug`` runs each job in this process
through submitit's debug executor (for tests and debugging). Resources come from :class:`JobSettings`: the
defaults, then the ``executor:`` block of the profile's ``defaults.yaml`` for the chosen executor, then flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from paperlib.core.errors import PaperlibError
from paperlib.core.params import Params
from paperlib.core.registry import Registry
from paperlib.core.runtime import progress, torch_threads
from paperlib.core.store import atomic_write, cache_root, exclusive, load_json
from paperlib.experiments.profiles import profile_defaults
from paperlib.experiments.runner import load_record, record_key, run
from paperlib.experiments.suite import RunSpec, mapping, run_suite

POLL_SECONDS = 1.0  # how often a waiting command looks at its jobs
DEFAULT_EXECUTOR = "serial"  # of JobSettings and of --executor
# A traceback's exception line, "paperlib.core.errors.DataNotFound: ...": a dotted name, capitalised last part.
_ERROR_LINE = re.compile(r"^(?:\w+\.)*[A-Z]\w*: (.*)$")


@dataclass(frozen=True)
class JobSettings:
    """How a suite's runs are executed, and what each job may use."""

    executor: str = DEFAULT_EXECUTOR
    jobs: int = 1  # runs at once (local: processes here; slurm: the array's parallelism)
    # torch threads per job (serial: of this process, restored after); 0: serial: unchanged, local: the
    # cores this process may use / jobs, slurm: cpus_per_task. Records are bit-identical to a serial run's only with the
    # same thread count (docs/reproducibility.md).
    threads: int = 0
    cpus_per_task: int = 8  # slurm
    gpus_per_node: int = 0  # slurm: 1 for the paper profile on a GPU cluster
    mem_gb: float = 32.0  # slurm
    timeout_min: int = 24 * 60  # a job's time limit (local and slurm)
    partition: str = ""  # slurm; "" leaves it to the cluster's default
    folder: str = ""  # submitit's pickles and logs; "": jobs/ in the default cache ($PAPERLIB_CACHE, not cache_dir)

    def job_folder(self) -> Path:
        """Where submitit keeps the jobs' pickles and logs: ``folder``, else ``jobs/`` in the default cache."""
        return Path(self.folder) if self.folder else cache_root() / "jobs"

    def job_threads(self) -> int:
        """Torch threads per job: ``threads``, else the executor's default for these settings."""
        return self.threads or EXECUTORS[self.executor].default_threads(self)


def job_settings(executor: str, profile_block: Mapping[str, Any] | None = None, **flags: Any) -> JobSettings:
    """:class:`JobSettings` for ``executor``: defaults, the profile's ``executor:`` entry for it, then the
    ``flags`` that are not ``None``. Unknown names and bad values are one-line errors."""
    uses = EXECUTORS[executor].uses  # (the one-line error for an unknown executor)
    blocks = mapping(profile_block, "executor")
    for name in blocks:  # a misspelt executor's block would be ignored
        if name not in EXECUTORS:
            raise PaperlibError(f"the profile's executor: block (params/<profile>/defaults.yaml) has an "
                                f"{EXECUTORS.unknown(name)}")
    block = mapping(blocks.get(executor), f"executor.{executor}")
    given = {k: v for k, v in flags.items() if v is not None}
    known = {f.name for f in dataclasses.fields(JobSettings)}
    unknown = sorted((set(block) | set(given)) - known)
    if unknown:
        raise PaperlibError(f"unknown executor setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    unread = sorted(set(block) - set(uses))
    if unread:
        raise PaperlibError(f"the profile's executor.{executor} block sets {', '.join(unread)}, which the {executor} "
                            "executor does not read; remove it there")
    ignored = sorted(set(given) - set(uses))
    if ignored:  # a flag the executor would silently ignore: the user meant another executor
        users = sorted(n for n in EXECUTORS.names() if set(ignored) <= set(EXECUTORS[n].uses))
        verb = "does" if len(ignored) == 1 else "do"
        raise PaperlibError(f"{_flags(ignored)} {verb} not apply to the {executor} executor (it takes "
                            f"{_flags(uses) or 'none of these flags'}); drop it"
                            + (f" or choose --executor {' | '.join(users)}" if users else ""))
    values = {**block, **given, "executor": executor}
    for field in dataclasses.fields(JobSettings):
        value, kind = values.get(field.name, field.default), type(field.default)
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
            raise PaperlibError(f"executor setting {field.name} must be {_KINDS[kind]}, got {value!r}")
    settings = JobSettings(**values)
    for name, least in _LEAST.items():
        if not getattr(settings, name) >= least:  # NaN fails too
            raise PaperlibError(f"{name} must be at least {least}, got {getattr(settings, name)}")
    return settings


def _flag(name: str) -> str:
    """The command-line flag of the :class:`JobSettings` field ``name`` (``folder``: ``--job-folder``, as the
    suite's own folders are named by other flags)."""
    return "--" + ("job-folder" if name == "folder" else name.replace("_", "-"))


def _flags(settings: Iterable[str]) -> str:
    """The command-line flags of these :class:`JobSettings` fields."""
    return ", ".join(map(_flag, settings))


_KINDS = {int: "an integer", float: "a number", str: "a string"}
# The smallest value each numeric setting may take (threads 0: the executor's default).
_LEAST = {"jobs": 1, "threads": 0, "cpus_per_task": 1, "gpus_per_node": 0, "mem_gb": 0.1, "timeout_min": 1}


def run_job(params: Params, threads: int) -> str:
    """What one job runs: ``params``'s run with ``threads`` torch threads (0: torch's default); returns its key."""
    with torch_threads(threads):
        return str(run(params)["key"])


def missing_runs(specs: list[RunSpec]) -> list[RunSpec]:
    """The specs without a stored record, or with ``force=true``, one per record key (a run shared by two
    comparisons is one job)."""
    seen: set[str] = set()
    todo = []
    for spec in specs:
        key = record_key(spec.params)
        if key not in seen and (spec.params.force or load_record(spec.params) is None):
            seen.add(key)
            todo.append(spec)
    return todo


def _submitit(executor: str) -> Any:
    """The submitit module, imported only when an executor needs it: the rest of paperlib (the serial executor,
    the notebooks) runs on a machine without it."""
    try:
        import submitit
    except ImportError:
        raise PaperlibError(f"the {executor} executor needs submitit, which is not installed; pip install "
                            "submitit (requirements.lock pins its version), or use --executor serial") from None
    return submitit


def _debug_executor(settings: JobSettings) -> Any:
    return _submitit("debug").DebugExecutor(folder=settings.job_folder() / "%j")


def _local_executor(settings: JobSettings) -> Any:
    executor = _submitit("local").LocalExecutor(folder=settings.job_folder() / "%j")
    executor.update_parameters(timeout_min=settings.timeout_min)
    return executor


def local_gpus() -> tuple[int, ...]:
    """The GPUs local jobs are spread over: the ids in ``CUDA_VISIBLE_DEVICES``, else every GPU; none without
    CUDA. (Ids that are not numbers, UUIDs or MIG slices, cannot be handed to submitit: every GPU then.)"""
    if not torch.cuda.is_available():
        return ()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").replace(" ", "")
    if visible.replace(",", "").isdigit():
        return tuple(int(i) for i in visible.split(","))
    return tuple(range(torch.cuda.device_count()))


def _hand_out_gpu(executor: Any, gpus: tuple[int, ...], held: list[int]) -> int | None:
    """Give the next job the GPU fewest running jobs hold (submitit shows a local job no GPU unless told, and
    would show every job the same first ones); ``None`` without GPUs."""
    if not gpus:
        return None
    gpu = min(gpus, key=lambda g: (held.count(g), gpus.index(g)))
    executor.update_parameters(gpus_per_node=1, visible_gpus=(gpu,))
    return gpu


def _slurm_executor(settings: JobSettings) -> Any:
    try:
        executor = _submitit("slurm").AutoExecutor(folder=settings.job_folder() / "%j", cluster="slurm")
    except RuntimeError as err:  # submitit's "Could not detect srun"
        raise PaperlibError(f"the slurm executor cannot start here ({err}); use --executor local "
                            "on a machine outside a cluster") from None
    executor.update_parameters(timeout_min=settings.timeout_min, name="paperlib", cpus_per_task=settings.cpus_per_task,
                               gpus_per_node=settings.gpus_per_node, mem_gb=settings.mem_gb,
                               slurm_array_parallelism=settings.jobs,
                               **({"slurm_partition": settings.partition} if settings.partition else {}))
    return executor


def _serial(todo: list[RunSpec], settings: JobSettings) -> list[str]:
    with torch_threads(settings.threads):
        run_suite(todo)  # a failure stops here, with its own one-line error
    return []


def _debug(todo: list[RunSpec], settings: JobSettings) -> list[str]:
    executor = _debug_executor(settings)
    return _collect(todo, [executor.submit(run_job, spec.params, settings.job_threads()) for spec in todo])


def _local(todo: list[RunSpec], settings: JobSettings) -> list[str]:
    """At most ``settings.jobs`` processes at a time; a new one starts when one ends."""
    executor, gpus = _local_executor(settings), local_gpus()
    waiting, running, finished = list(todo), [], []  # running: (spec, job, its GPU or None)
    bar = progress(range(len(todo)), total=len(todo), desc=f"runs ({settings.jobs} at once)", leave=True)
    try:
        while waiting or running:
            while waiting and len(running) < settings.jobs:
                spec = waiting.pop(0)
                gpu = _hand_out_gpu(executor, gpus, [held for _, _, held in running])
                running.append((spec, executor.submit(run_job, spec.params, settings.job_threads()), gpu))
            time.sleep(POLL_SECONDS)
            ended = [entry for entry in running if entry[1].done()]
            running = [entry for entry in running if entry not in ended]
            finished += [(spec, job) for spec, job, _ in ended]
            bar.update(len(ended))
    except KeyboardInterrupt:
        for _, job, _ in running:
            job.cancel()
        raise PaperlibError(f"stopped: {len(running)} running job(s) cancelled; run the command again to go on "
                            "(finished runs are stored, distillations resume from their checkpoints)") from None
    finally:
        bar.close()
    return _collect([spec for spec, _ in finished], [job for _, job in finished])


_DAMAGED_JOB_LIST = ("no job was submitted; it lists the SLURM jobs of earlier --no-wait submissions: repair it, or "
                     "delete it (--attach then no longer finds those jobs; their runs are stored when they end)")


def _slurm(todo: list[RunSpec], settings: JobSettings, wait: bool = True) -> list[str]:
    executor = _slurm_executor(settings)
    manifest = settings.job_folder() / "submitted.json"
    with exclusive(manifest.with_suffix(".lock")):  # two --no-wait submissions must not drop each other's jobs
        # read before submitting: a damaged job list stops the command before any job is queued
        known = load_json(manifest, _DAMAGED_JOB_LIST) or {}
        jobs = executor.map_array(run_job, [spec.params for spec in todo], [settings.job_threads()] * len(todo))
        known.update({record_key(spec.params): job.job_id for spec, job in zip(todo, jobs)})
        with atomic_write(manifest) as tmp:
            tmp.write_text(json.dumps(known, indent=1))
    return _wait(todo, jobs) if wait else []


def attach(specs: list[RunSpec], settings: JobSettings) -> list[str]:
    """Wait for the SLURM jobs an earlier ``--no-wait`` call submitted for ``specs``; returns the failures."""
    if EXECUTORS[settings.executor].submit_only is None:
        raise PaperlibError(f"--attach waits for the jobs that --no-wait submitted; the {settings.executor} executor "
                            f"submits none: use --executor {', '.join(_detachable())}")
    submitted = load_json(settings.job_folder() / "submitted.json")
    if submitted is None:
        raise PaperlibError(f"no submitted jobs to attach to in {settings.job_folder()}; submit them first")
    todo = [spec for spec in missing_runs(specs) if record_key(spec.params) in submitted]
    slurm_job = _submitit(settings.executor).SlurmJob
    jobs = [slurm_job(folder=settings.job_folder() / "%j", job_id=submitted[record_key(s.params)]) for s in todo]
    return _wait(todo, jobs)


def _wait(todo: list[RunSpec], jobs: list[Any]) -> list[str]:
    """Wait for submitted SLURM jobs; Ctrl-C stops the waiting, not the jobs."""
    bar = progress(range(len(jobs)), total=len(jobs), desc="jobs", leave=True)
    pending = list(jobs)
    try:
        while pending:
            time.sleep(POLL_SECONDS)
            ended = [job for job in pending if job.done()]
            pending = [job for job in pending if job not in ended]
            bar.update(len(ended))
    except KeyboardInterrupt:
        raise PaperlibError(f"stopped waiting: {len(pending)} job(s) still queued or running on the cluster; "
                            "`python -m paperlib suite FILE --executor slurm --attach` (the same suite, profile and "
                            "--job-folder) waits for them again; submitting again would queue them twice") from None
    finally:
        bar.close()
    return _collect(todo, jobs)


def _collect(todo: list[RunSpec], jobs: list[Any]) -> list[str]:
    """One line per job that ended without its record: the run, the job's error, where its log is."""
    failures = []
    for spec, job in zip(todo, jobs):
        try:
            job.result()
        except Exception as err:  # noqa: BLE001 - a job's failure is reported, the others' results kept
            failures.append(f"{spec.experiment}.{spec.label}: {_reason(err)} (logs: {job.paths.folder})")
    return failures


def _reason(err: BaseException) -> str:
    """The job's own error line out of submitit's report (which wraps the job's traceback and log paths)."""
    raised = [m.group(1) for m in map(_ERROR_LINE.match, str(err).splitlines()) if m]
    text = str(err).strip()
    return (raised[-1] if raised else text.splitlines()[0] if text else type(err).__name__)[:300]


@dataclass(frozen=True)
class Executor:
    """One way of computing a list of missing runs."""

    compute: Callable[[list[RunSpec], JobSettings], list[str]]  # runs them, waits; one line per failed run
    default_threads: Callable[[JobSettings], int]  # torch threads per job when JobSettings.threads is 0
    summary: str  # for --help
    ahead_of_notebooks: bool = True  # make reproduce computes the runs before the notebooks, which then read them
    submit_only: Callable[[list[RunSpec], JobSettings], object] | None = None  # --no-wait: submit and return
    uses: tuple[str, ...] = ()  # the JobSettings it reads: a flag for another one is an error, not ignored


EXECUTORS: Registry[Executor] = Registry("executor")
EXECUTORS.register("serial", Executor(
    _serial, lambda settings: 0, "here, one run after the other (the default)",
    ahead_of_notebooks=False, uses=("threads",)))  # the notebooks compute the same runs in the same order themselves
EXECUTORS.register("local", Executor(
    _local, lambda settings: max(1, usable_cores() // settings.jobs), "processes here, --jobs at once",
    uses=("jobs", "threads", "timeout_min", "folder")))
EXECUTORS.register("slurm", Executor(
    _slurm, lambda settings: settings.cpus_per_task, "one SLURM job array",
    submit_only=lambda todo, settings: _slurm(todo, settings, wait=False),
    uses=tuple(f.name for f in dataclasses.fields(JobSettings) if f.name != "executor")))
EXECUTORS.register("debug", Executor(_debug, lambda settings: 0, "submitit's in-process executor, for tests",
                                     uses=("threads", "folder")))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a cluster's allocation, ``taskset``), not the
    machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _detachable() -> list[str]:
    """The executors that can submit and return (``--no-wait``, then ``--attach``)."""
    return [name for name in EXECUTORS.names() if EXECUTORS[name].submit_only is not None]


def run_specs(specs: list[RunSpec], settings: JobSettings, wait: bool = True) -> int:
    """Compute every run of ``specs`` that has no record with ``settings``'s executor; returns how many were
    submitted. Failed jobs are reported together after the others have ended, one line each."""
    todo = missing_runs(specs)
    if not todo:
        return 0
    executor = EXECUTORS[settings.executor]
    if not wait:
        if executor.submit_only is None:
            raise PaperlibError(f"--no-wait needs an executor that submits and returns ({', '.join(_detachable())}); "
                                f"{settings.executor!r} runs while the command waits")
        executor.submit_only(todo, settings)
        return len(todo)
    failures = executor.compute(todo, settings)
    if failures:
        raise PaperlibError(f"{len(failures)} of {len(todo)} runs failed; first: {failures[0]}")
    return len(todo)


# Every JobSettings field but the executor (a flag with choices of its own) is a flag; its help line:
_FLAG_HELP = {"jobs": "runs at once (local: processes; slurm: array parallelism)",
              "threads": "torch threads per job (default: cores / jobs here, cpus-per-task on slurm)",
              "cpus_per_task": "slurm: CPUs per job", "gpus_per_node": "slurm: GPUs per job",
              "mem_gb": "slurm: memory per job", "timeout_min": "a job's time limit in minutes",
              "partition": "slurm partition",
              "folder": "submitit's pickles and logs (default: jobs/ in $PAPERLIB_CACHE or cache/)"}
_SETTING_FIELDS = tuple(field for field in dataclasses.fields(JobSettings) if field.name != "executor")


def add_executor_arguments(sub: argparse.ArgumentParser) -> None:
    """The flags that choose how the missing runs are computed (:mod:`paperlib.experiments.jobs`)."""
    group = sub.add_argument_group("execution (every run without a stored record becomes one job)")
    group.add_argument("--executor", default=DEFAULT_EXECUTOR, choices=EXECUTORS.names(),
                       help="; ".join(f"{name}: {EXECUTORS[name].summary}" for name in EXECUTORS.names()))
    for field in _SETTING_FIELDS:
        flag = _flag(field.name)
        group.add_argument(flag, type=type(field.default), dest=f"job_{field.name}",
                           metavar=flag[2:].upper().replace("-", "_"), help=_FLAG_HELP[field.name])
    group.add_argument("--no-wait", action="store_true", help="slurm: submit and return; --attach waits later")
    group.add_argument("--attach", action="store_true", help="slurm: wait for the jobs an earlier --no-wait "
                                                             "submitted, then tabulate")


def _setting_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`JobSettings` values of the execution flags (``None``: not given)."""
    return {field.name: getattr(args, f"job_{field.name}") for field in _SETTING_FIELDS}


def given_executor_flags(args: argparse.Namespace) -> list[str]:
    """The execution flags given on the command line (:func:`add_executor_arguments`), as typed."""
    given = [f"--executor {args.executor}"] if args.executor != DEFAULT_EXECUTOR else []
    given += [flag for flag in ("--no-wait", "--attach") if getattr(args, flag[2:].replace("-", "_"))]
    return given + [_flags([name]) for name, value in _setting_flags(args).items() if value is not None]


def refuse_unused_flags(why: str, flags: list[str]) -> None:
    """A one-line error when ``flags`` were given to a command that will not use them, ``why`` saying why."""
    if flags:
        one = len(flags) == 1
        named = flags[0] if one else f"{', '.join(flags[:-1])} and {flags[-1]}"
        raise PaperlibError(f"{why}, so {named} {'has' if one else 'have'} nothing to do; drop "
                            f"{'it' if one else 'them'}")


def settings_from_args(args: argparse.Namespace, profile: str | None) -> JobSettings:
    """The :class:`JobSettings` of the execution flags, on the profile's ``executor:`` block when a profile
    is named."""
    block = profile_defaults(profile).get("executor") if profile else None
    return job_settings(args.executor, block, **_setting_flags(args))
