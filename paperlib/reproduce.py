"""``make reproduce``: run every numbered notebook through papermill at one profile.

``python -m paperlib.reproduce --profile quick`` executes ``notebooks/NN_*.py``
(the jupytext source) in number order with ``profile`` as papermill's one parameter (the notebook reads
``params/experiments/NN_*.yaml`` as the profile sees it, so the injected cell stays one line) and
writes the executed notebook: for ``quick`` over the paired
``notebooks/NN_*.ipynb`` (the committed outputs), for other profiles into
``notebooks/<profile>/``. It prints progress per notebook, stops at the first
failure naming the notebook and the cell (keeping papermill's partial output as
``NN_*.failed.ipynb`` beside where the notebook would go), and never leaves a half-written notebook in place.
Wall times go to ``figures/<profile>/reproduce_times.csv`` after a run of every notebook (not with ``--only`` or
``--output-dir``).

The notebooks recompute (the shipped results store is not read: ``PAPERLIB_RESULTS=off``), and every stored
file they read is collected; when all of them succeeded, the collection replaces ``results/<profile>/``
(:mod:`paperlib.core.results_store`; ``--only`` adds to it instead, ``--output-dir`` leaves it alone).
``--from-store`` reads the store like a reader's notebook does, computing only what neither holds.
``--executor local --jobs N`` (or ``slurm``, see :mod:`paperlib.experiments.jobs`) computes the notebooks'
runs as jobs first; the notebooks then render from the cache. ``--plan`` computes no run: it lists the runs
the notebooks' suites need, where each record is and the work left (:mod:`paperlib.experiments.plan`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from paperlib.core import results_store
from paperlib.core.errors import ArgumentParser, PaperlibError
from paperlib.core.paths import FIGURES_ENV_VAR, code_digest, figures_dir, notebook_sources
from paperlib.data.sources import DATA_ENV_VAR
from paperlib.experiments.plan import plan, summary
from paperlib.experiments.jobs import (EXECUTORS, JobSettings, add_executor_arguments, given_executor_flags,
                                       refuse_unused_flags, run_specs, settings_from_args)
from paperlib.experiments.profiles import check_profile, notebook_parameters, profile_runs
from paperlib.core.store import CACHE_ENV_VAR, atomic_write

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in tracebacks
PAIRED_PROFILE = "quick"  # the profile whose outputs live in the paired notebooks/NN_*.ipynb


def output_path(source: Path, profile: str, output_dir: Path | None = None) -> Path:
    """Where the executed notebook of ``source`` under ``profile`` goes."""
    if output_dir is not None:
        return output_dir / f"{source.stem}.ipynb"
    if profile == PAIRED_PROFILE:
        return source.with_suffix(".ipynb")
    return source.parent / profile / f"{source.stem}.ipynb"


@contextlib.contextmanager
def environment_variables(**variables: str) -> Iterator[None]:
    """Set ``variables`` for the kernels started inside the block; restore the environment after it."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _this_python_kernel_manager() -> type:
    """A kernel manager that starts this very Python (``sys.executable``), whatever kernels Jupyter knows.

    A ``python3`` kernelspec in the user's Jupyter folder (``ipykernel install --user`` from another
    environment) would otherwise take precedence and run the notebooks with another Python and another
    paperlib.
    """
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec

    class ThisPythonKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self) -> KernelSpec:
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f",
                                                     "{connection_file}"], display_name="paperlib",
                                               language="python")
            return self._kernel_spec

    return ThisPythonKernelManager


def failed_path(output: Path) -> Path:
    """Where the partial output of a notebook that failed is kept: ``NN_name.failed.ipynb`` beside ``output``."""
    return output.with_name(f"{output.stem}.failed.ipynb")


def _failure(err: Exception, source: Path, kept: Path | None) -> PaperlibError:
    """The one-line error of a failed notebook; papermill's cell error is printed in full to stderr first."""
    cell = getattr(err, "cell_index", None)
    if cell is None:
        one_line = " ".join(str(err).split())
        return PaperlibError(f"notebook {source.stem} failed: {type(err).__name__}: {one_line[-500:]}")
    print(_ANSI.sub("", "\n".join(getattr(err, "traceback", []) or [])), file=sys.stderr)
    first_line = (getattr(err, "source", "") or "").strip().splitlines()[:1]
    where = f"cell {cell} (execution count {err.exec_count}: {first_line[0] if first_line else ''})"
    kept_note = f"; its partial output is in {kept}" if kept else ""
    return PaperlibError(f"notebook {source.stem} failed at {where}: {err.ename}: {err.evalue}{kept_note}")


def execute(source: Path, profile: str, output: Path) -> float:
    """Execute one notebook with its parameters under ``profile``; return its wall time in seconds.

    On success the executed notebook replaces ``output`` (atomically). On failure ``output`` is untouched, the
    partial notebook papermill wrote is kept at :func:`failed_path` and the error names the failing cell.
    """
    import jupytext
    import papermill

    notebook_parameters(profile, source.stem)  # a bad experiment file fails here, before a kernel starts
    code = code_digest()  # before the run: the code the outputs come from
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch, environment_variables(PAPERLIB_NO_PROGRESS="1"):
        # the kernel inherits PAPERLIB_NO_PROGRESS: no bar widgets in stored outputs
        fresh = Path(scratch) / f"{source.stem}.ipynb"
        notebook = jupytext.read(source)
        if output != source.with_suffix(".ipynb"):  # a profile's copy is not paired with the .py
            notebook.metadata.get("jupytext", {}).pop("formats", None)
        for i, cell in enumerate(notebook.cells):
            cell.id = f"cell-{i:02d}"  # stable ids: re-running changes only what the run changed
        jupytext.write(notebook, fresh)
        executed = Path(scratch) / "executed.ipynb"
        failed_path(output).unlink(missing_ok=True)
        try:
            papermill.execute_notebook(str(fresh), str(executed), parameters={"profile": profile},
                                       cwd=str(source.parent), kernel_name="python3", progress_bar=False,
                                       report_mode=False,
                                       kernel_manager_class=_this_python_kernel_manager())
        except Exception as err:  # papermill raises its own types; name the notebook and cell whatever failed
            kept = None
            if executed.is_file():
                kept = failed_path(output)
                with atomic_write(kept) as tmp:
                    tmp.write_bytes(executed.read_bytes())
            raise _failure(err, source, kept) from None
        with atomic_write(output) as tmp:
            tmp.write_text(_finished(executed.read_text(), source, output, code))
    return time.perf_counter() - start


def _finished(text: str, source: Path, output: Path, code: str) -> str:
    """The executed notebook with papermill's record of its temporary input and output files replaced by the
    repository's names (no machine path in a committed notebook, no change from one run to the next), and the
    digest of the code that rendered it (``metadata.paperlib.code``: :func:`~paperlib.core.paths.code_digest`)."""
    import nbformat

    notebook = nbformat.reads(text, as_version=4)
    notebook.metadata["paperlib"] = {"code": code}
    recorded = notebook.metadata.get("papermill", {})
    if "input_path" in recorded:
        recorded["input_path"] = source.name
    if "output_path" in recorded:
        recorded["output_path"] = output.name
    return nbformat.writes(notebook)


def selected_notebooks(only: str | None) -> list[Path]:
    """``notebooks/NN_*.py`` whose name contains ``only`` (all without it); a one-line error when none does."""
    sources = [source for source in notebook_sources() if not only or only in source.stem]
    if not sources:
        names = ", ".join(source.stem for source in notebook_sources())
        raise PaperlibError(f"--only {only!r} matches no notebook; choose a part of one of: {names}")
    return sources


def reproduce(profile: str, only: str | None = None, output_dir: Path | None = None,
              jobs: JobSettings | None = None, from_store: bool = False) -> list[tuple[str, float]]:
    """Run the notebooks (those whose name contains ``only``) under ``profile``; return their wall times.

    Without ``output_dir``, what the notebooks read is written to the results store afterwards (see the
    module's docstring). With ``jobs`` (an executor that computes ahead of the notebooks), every run of the
    notebooks' suites that has no stored record is computed through it first; the notebooks then render from
    the cache.
    """
    check_profile(profile)
    selected_notebooks(only)  # a bad --only stops here, before anything runs
    store = results_store.results_root() if output_dir is None else None
    with tempfile.TemporaryDirectory(prefix="paperlib-publish-") as staging:
        variables = {**_absolute_folders(), **_kernel_threads(jobs)}
        if store is not None:
            variables[results_store.PUBLISH_ENV_VAR] = staging
        if not from_store:
            variables[results_store.RESULTS_ENV_VAR] = results_store.OFF
        with environment_variables(**variables):
            times = _run_notebooks(profile, only, output_dir, jobs)
        if store is not None:
            written = _store(Path(staging), store, profile, merge=bool(only))
            count, size = results_store.folder_size(written)
            print(f"results store: {written} ({count} files, {size / 1e6:.1f} MB)", flush=True)
    return times


# The folders the kernels read from the environment: a relative one would mean another folder in a kernel,
# which starts in notebooks/, than in this process.
_FOLDER_VARIABLES = (CACHE_ENV_VAR, results_store.RESULTS_ENV_VAR, FIGURES_ENV_VAR, DATA_ENV_VAR)


def _absolute_folders() -> dict[str, str]:
    """The relative folders among :data:`_FOLDER_VARIABLES` (``~`` included), made absolute from this process's
    directory."""
    return {name: os.path.abspath(os.path.expanduser(value)) for name in _FOLDER_VARIABLES
            if (value := os.environ.get(name)) and value.lower() != results_store.OFF and not os.path.isabs(value)}


def _kernel_threads(jobs: JobSettings | None) -> dict[str, str]:
    """``--threads`` of an executor that leaves the runs to the notebooks (serial): the kernels' thread count,
    which torch reads from ``OMP_NUM_THREADS`` (and MKL from ``MKL_NUM_THREADS``) when it starts."""
    if jobs is None or EXECUTORS[jobs.executor].ahead_of_notebooks or not jobs.job_threads():
        return {}
    return {"OMP_NUM_THREADS": str(jobs.job_threads()), "MKL_NUM_THREADS": str(jobs.job_threads())}


def _copy_whole(source: str, destination: str) -> None:
    with atomic_write(destination) as tmp:
        shutil.copy2(source, tmp)


def _store(staging: Path, store: Path, profile: str, merge: bool) -> Path:
    """Put the collected files into ``store/<profile>/``: replacing it, or adding to it (``merge``)."""
    # copytree gives the top folder the staging folder's mode (0700, a temporary directory's): reset after it
    if merge:  # each file moved into place whole, so an interrupted merge leaves no half-written file
        shutil.copytree(staging, store / profile, dirs_exist_ok=True, copy_function=_copy_whole)
        (store / profile).chmod(0o755)
        return store / profile
    store.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{profile}.", dir=store))  # same file system: renamed into place
    shutil.copytree(staging, fresh, dirs_exist_ok=True)
    fresh.chmod(0o755)
    return results_store.replace_profile(fresh, store, profile)


def _run_notebooks(profile: str, only: str | None, output_dir: Path | None,
                   jobs: JobSettings | None) -> list[tuple[str, float]]:
    sources = selected_notebooks(only)
    times = []
    if jobs is not None and EXECUTORS[jobs.executor].ahead_of_notebooks:
        start = time.perf_counter()
        print(f"computing the missing runs with the {jobs.executor} executor ...", flush=True)
        count = run_specs(profile_runs(profile, [s.stem for s in sources]), jobs)
        times.append((f"runs ({jobs.executor})", time.perf_counter() - start))
        print(f"{count} runs computed in {times[-1][1]:.0f} s", flush=True)
    for i, source in enumerate(sources, 1):
        output = output_path(source, profile, output_dir)
        print(f"[{i}/{len(sources)}] {source.stem} ({profile}) ...", flush=True)
        seconds = execute(source, profile, output)
        times.append((source.stem, seconds))
        print(f"[{i}/{len(sources)}] {source.stem} done in {seconds:.0f} s -> {output}", flush=True)
    return times


def _print_plan(profile: str, only: str | None, from_store: bool) -> int:
    """``--plan``: the runs of the notebooks' suites (those whose name contains ``only``), as ``make reproduce``
    would find them (the results store read only with ``from_store``), and the work left."""
    check_profile(profile)
    sources = [source.stem for source in selected_notebooks(only)]
    variables = {} if from_store else {results_store.RESULTS_ENV_VAR: results_store.OFF}
    with environment_variables(**variables):
        table = plan(profile_runs(profile, sources, build=False))  # optional datasets looked for, not built
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(table.to_string(index=False))
    print(f"{summary(table)} (profile {profile}; results store {'read' if from_store else 'not read'}; "
          f"the studies' tables are not listed; time one step with `python -m paperlib bench`)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m paperlib.reproduce``: run the notebooks of a profile (or, with ``--plan``, list their runs);
    returns the exit status: 0, or 2 after a one-line error."""
    parser = ArgumentParser(prog="python -m paperlib.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", help="smoke | quick | paper (default quick)")
    parser.add_argument("--only", help="run only the notebooks whose name contains this")
    parser.add_argument("--output-dir", type=Path, help="write executed notebooks here instead")
    parser.add_argument("--plan", action="store_true",
                        help="compute no run: list the runs the notebooks' suites need, where each record is "
                             "(cache, results store, missing) and the work the missing ones need")
    parser.add_argument("--from-store", action="store_true",
                        help="take runs from the shipped results store too; compute only what neither it nor the "
                             "cache holds")
    add_executor_arguments(parser)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if args.plan:
            refuse_unused_flags("--plan computes no run",
                                given_executor_flags(args) + (["--output-dir"] if args.output_dir else []))
            return _print_plan(args.profile, args.only, args.from_store)
        if args.no_wait or args.attach:
            raise PaperlibError("make reproduce waits for its runs; submit them with `python -m paperlib suite "
                                "... --no-wait` to return at once")
        check_profile(args.profile)  # before the job settings read the profile's defaults
        times = reproduce(args.profile, args.only, args.output_dir, settings_from_args(args, args.profile),
                          args.from_store)
        total = time.perf_counter() - start
        if args.output_dir is None and not args.only:
            with atomic_write(figures_dir(args.profile) / "reproduce_times.csv") as tmp:
                tmp.write_text("notebook,seconds\n" + "".join(f"{n},{s:.1f}\n" for n, s in times)
                               + f"total,{total:.1f}\n")
    except PaperlibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2  # as python -m paperlib
    notebooks = sum(1 for name, _ in times if not name.startswith("runs ("))  # not the executor's own entry
    print(f"{notebooks} notebooks in {total / 60:.1f} min ({args.profile})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
