"""Command line: "python -m paperlib {describe,run,weights,bench dm|dc|dsa,suite FILE.yaml,params} [...]".

``describe`` prints the dataset summary as one JSON object. ``run`` trains and
evaluates; its last stdout line is one JSON object with the metrics (percent,
means over every evaluation model of every training set, each with ``_std``), ``num_eval`` and
``seconds``. ``bench dm|dc|dsa`` prints ``{"seconds_per_iteration": ...}``
(5 timed iterations unless ``iterations`` is set). ``weights`` computes (or
loads) paper A's KDE weights and prints, per class, the share of weight on
bias-conflicting samples against their share of the samples. ``suite FILE.yaml [--profile NAME]
[--only NAME] [--csv PATH] [--markdown PATH] [--figures DIR] [--table-only] [--executor NAME --jobs N ...]``
runs a suite of comparisons (see :mod:`paperlib.experiments.suite`; a file that differs by profile, as every
``params/experiments/*.yaml`` does, needs ``--profile``), its missing runs as jobs of the chosen executor
(:mod:`paperlib.experiments.jobs`), tabulates them and prints a JSON summary; ``--csv`` writes the results table
as CSV (and the overhead table beside it, ``*_overhead.csv``), ``--markdown`` the headline table, ``--figures``
the bar charts. ``params [WORD]`` prints every parameter (those whose name or meaning holds ``WORD``) with its
default and meaning, as a parameter file with comments. A ``--set`` that the command's result does not depend on
(a target for ``method=whole``, ``ipc`` for ``describe``) is refused. Errors print one ``error: ...`` line to
stderr and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from paperlib.core.errors import ArgumentParser, PaperlibError
from paperlib.core.paths import how_absent
from paperlib.core.store import atomic_write
from paperlib.core.params import Params, check_param_name, field_meanings, make_params
from paperlib.core.yamlio import load_yaml, parse_set, split_set
from paperlib.core.runtime import resolve_device
from paperlib.data.presets import build_dataset
from paperlib.distill.kde import kde_weights, weight_diagnostics
from paperlib.distill.methods import distilling_methods
from paperlib.experiments.bench import bench
from paperlib.experiments.runner import run
from paperlib.experiments.jobs import (add_executor_arguments, attach, given_executor_flags, refuse_unused_flags,
                                       run_specs, settings_from_args)
from paperlib.experiments.profiles import suite_from_file
from paperlib.experiments.suite import refuse_unread
from paperlib.report.figures import save_suite_figures
from paperlib.report.tables import markdown_table, overhead_table, results_table, write_csv
from paperlib.train.metrics import METRIC_KEYS


DESCRIPTION = """\
The companion's computations from a shell: build a biased dataset, distil a set and evaluate it, time a
distillation step, compute paper A's KDE weights, run a suite of comparisons. Every setting is a
--set name=value (or a YAML file of them); results are cached and printed as JSON. An error is one
'error: ...' line, with exit status 2."""
EXAMPLES = """examples:
  python -m paperlib describe --set dataset=cmnist_fg            # build a preset, print its group counts
  python -m paperlib run --set dataset=cmnist --set method=dm --set target=weighted --set weights=kde
  python -m paperlib bench dm --set ipc=10                       # seconds per DM iteration on this machine
  python -m paperlib suite params/experiments/kde_fairdd.yaml --profile quick --csv /tmp/kde_fairdd.csv
  python -m paperlib params kde                                  # the parameters about the KDE, with meanings
  python -m paperlib COMMAND --help                              # a command's own options"""


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m paperlib", description=DESCRIPTION, epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        command.arguments(commands.add_parser(name, help=command.help))
    return parser


def _one_run_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("params_file", nargs="?", help="YAML file of parameters (flat mapping)")
    _add_set(sub)


def _bench_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("method", choices=distilling_methods())
    sub.add_argument("--warmup", type=int, default=1, help="untimed iterations first (default 1)")
    sub.add_argument("--sync-check", type=int, default=0, metavar="N",
                     help="CUDA: N more iterations counting where the host waits for the device")
    _one_run_arguments(sub)


def _suite_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("suite_file", help="YAML suite file, e.g. params/experiments/kde_fairdd.yaml, or a notebook's "
                                        "experiment file (params/experiments/NN_*.yaml)")
    sub.add_argument("--profile", help="the profile to read the file at: smoke | quick | paper (needed by a file "
                                       "that differs by profile)")
    sub.add_argument("--only", help="only experiments whose name contains this")
    sub.add_argument("--csv", help="write the results table here (CSV)")
    sub.add_argument("--figures", help="write comparison bar charts (PNG) into this folder")
    sub.add_argument("--markdown", help="write the headline table (ours beside the papers') as Markdown here")
    sub.add_argument("--table-only", action="store_true", help="tabulate stored records; run nothing")
    add_executor_arguments(sub)
    _add_set(sub)


def _params_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("word", nargs="?", default="", help="only parameters whose name or meaning holds it")


def params_listing(word: str = "") -> str:
    """Every parameter whose name or meaning holds ``word`` (any case), as a flat YAML parameter file: its meaning
    as a comment, then ``name: default``."""
    defaults, lines = Params(), []
    for name, meaning in field_meanings().items():
        if word.lower() in f"{name} {meaning}".lower():
            lines += [f"# {meaning}", f"{name}: {json.dumps(getattr(defaults, name))}"]
    if not lines:
        raise PaperlibError(f"no parameter's name or meaning holds {word!r}; `python -m paperlib params` lists all")
    return "\n".join(lines)


def _add_set(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                     help="override one parameter; values are YAML scalars; repeatable")


SET_WRITTEN = "--set {name}={value}"  # how a --set names its setting in an error


def _params(args: argparse.Namespace, fixed: dict[str, Any] | None = None, **defaults: Any) -> Params:
    """The command's parameters: ``defaults``, the parameter file, ``--set``; then ``fixed``, the values the
    command itself decides (bench's METHOD), which a file or ``--set`` may not contradict."""
    if args.params_file and not Path(args.params_file).exists():  # the one word a command takes: `run extra`
        raise PaperlibError(f"parameter file {args.params_file!r} {how_absent(Path(args.params_file))}: a word after "
                            "the command names a YAML file of parameters; check the path, or give parameters with "
                            "--set KEY=VALUE")
    from_file = load_yaml(args.params_file) if args.params_file else {}
    for name, value in from_file.items():
        if isinstance(value, (dict, list)):  # a profile's or an experiment's file, not a flat mapping
            raise PaperlibError(f"{args.params_file} is not a parameter file (name: value, one per line): "
                                f"{name!r} holds a block. An experiment's file runs with `python -m paperlib suite "
                                "FILE --profile P`; a profile's is chosen with --profile")
        try:
            check_param_name(name)
        except PaperlibError as err:
            raise PaperlibError(f"{args.params_file}: {err}") from None
    given = {**from_file, **parse_set(args.assignments)}
    for name, value in (fixed or {}).items():
        if name in given and given[name] != value:
            raise PaperlibError(f"{args.command} takes {name}={value} here, but the parameter file or --set gives "
                                f"{name}={given[name]}; drop that setting")
    params = make_params({**defaults, **given, **(fixed or {})})
    # a --set must change what the command computes (one that repeats the command's own choice was checked
    # above); a parameter file may serve commands that read other settings
    typed = {name: raw for name, raw in split_set(args.assignments).items() if name not in (fixed or {})}
    refuse_unread(typed, [params], SET_WRITTEN, COMMANDS[args.command].scope)
    return params


def _describe(args: argparse.Namespace) -> dict:
    return build_dataset(_params(args)).summary()


def _run(args: argparse.Namespace) -> dict:
    record = run(_params(args))
    metrics = record["metrics"]
    out = {k: metrics[k] for k in METRIC_KEYS}
    out.update({f"{k}_std": metrics[f"{k}_std"] for k in METRIC_KEYS})
    out.update(num_eval=record["num_eval"], seconds=round(record["timings"]["total"], 2),
               cached=record["cached"], key=record["key"])
    return out


def _bench(args: argparse.Namespace) -> dict:
    return bench(_params(args, {"method": args.method}, iterations=5, progress=False), warmup=args.warmup,
                 sync_check=args.sync_check)


def _weights(args: argparse.Namespace) -> dict:
    params = _params(args, {"target": "weighted", "weights": "kde"}, method="dm")
    dataset = build_dataset(params)
    kde = kde_weights(dataset, params, resolve_device(params.device))
    train = dataset.train
    return {"seconds": kde.seconds, "bandwidth": [round(float(h), 6) for h in kde.bandwidth],
            "classes": weight_diagnostics(kde.weights, train.labels, train.aligned, dataset.num_classes)}


def _suite(args: argparse.Namespace) -> dict:
    if args.attach and args.no_wait:
        raise PaperlibError("--attach waits for the jobs that --no-wait submitted; give one of them")
    if args.table_only:
        refuse_unused_flags("--table-only runs nothing", given_executor_flags(args))
    specs = suite_from_file(args.suite_file, args.profile, parse_set(args.assignments), args.only)
    refuse_unread(split_set(args.assignments), [spec.params for spec in specs], SET_WRITTEN, COMMANDS["suite"].scope)
    settings = settings_from_args(args, args.profile)
    submitted = 0
    if args.attach:
        failures = attach(specs, settings)
        if failures:
            raise PaperlibError(f"{len(failures)} runs failed; first: {failures[0]}")
    elif not args.table_only:
        submitted = run_specs(specs, settings, wait=not args.no_wait)
        if args.no_wait:
            return {"runs": len(specs), "submitted": submitted, "job_folder": str(settings.job_folder())}
    table = results_table(specs)
    if args.csv:
        write_csv(table, args.csv)
        write_csv(overhead_table(table), Path(args.csv).with_name(Path(args.csv).stem + "_overhead.csv"))
    if args.markdown:
        with atomic_write(args.markdown) as tmp:
            tmp.write_text(markdown_table(table))
    if args.figures:
        save_suite_figures(specs, table, args.figures, Path(args.suite_file).stem)
    return {"runs": len(table), "done": int((table["status"] == "done").sum()), "computed": submitted,
            "csv": args.csv}


def _params_command(args: argparse.Namespace) -> str:
    return params_listing(args.word)  # text: a parameter file to copy from


@dataclass(frozen=True)
class Command:
    """One command of the command line: its help line, its arguments, what it does (its result: JSON, or text
    printed as it is) and what it computes, as a cache scope (a ``--set`` it does not depend on is refused; suite:
    its runs'; ``None``: it computes nothing)."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], dict | str]
    scope: str | None


COMMANDS: dict[str, Command] = {
    "describe": Command("print the dataset's group counts as JSON", _one_run_arguments, _describe, "dataset"),
    "run": Command("train and evaluate; print the metrics as JSON", _one_run_arguments, _run, "record"),
    "bench": Command("time distillation iterations; print seconds per iteration as JSON", _bench_arguments, _bench,
                     "distilled"),
    "weights": Command("compute paper A's KDE weights; print their per-class diagnostics as JSON",
                       _one_run_arguments, _weights, "weights"),
    "suite": Command("run a suite of comparisons and tabulate them; print a summary as JSON (--csv, --markdown, "
                     "--figures write the table and charts)", _suite_arguments, _suite, "record"),
    "params": Command("list every parameter with its default and meaning", _params_arguments, _params_command, None),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        result = COMMANDS[args.command].handler(args)
    except PaperlibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:  # torch's allocators raise RuntimeError subclasses
        if not _out_of_memory(err):
            raise
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        print(f"error: out of memory ({reason}); lower net_width, ipc, batch_real or eval_batch, or run on a machine "
              "with more memory", file=sys.stderr)
        return 2
    print(result if isinstance(result, str) else json.dumps(result))
    return 0


def _out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation that failed (on the CPU, torch raises a RuntimeError saying so)."""
    return isinstance(error, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(error)
