"""Command line: ``python -m paperlib {describe,run,bench} [PARAMS.yaml] [--set KEY=VALUE ...]``.

``describe`` prints the dataset summary as one JSON object. ``run`` trains and
evaluates; its last stdout line is one JSON object with the metrics (percent,
means over evaluation models, each with ``_std``), ``num_eval`` and
``seconds``. ``bench dm|dc|dsa`` prints ``{"seconds_per_iteration": ...}``
(5 timed iterations unless ``iterations`` is set). Errors print one
``error: ...`` line to stderr and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from paperlib.config import load_yaml, make_params, parse_set
from paperlib.errors import PaperlibError
from paperlib.metrics import METRIC_KEYS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m paperlib", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("describe", "print the dataset's group counts as JSON"),
                       ("run", "train and evaluate; print the metrics as JSON"),
                       ("bench", "time distillation iterations; print seconds per iteration as JSON")):
        sub = commands.add_parser(name, help=text)
        if name == "bench":
            sub.add_argument("method", choices=("dm", "dc", "dsa"))
            sub.add_argument("--warmup", type=int, default=1, help="untimed iterations first (default 1)")
        sub.add_argument("params_file", nargs="?", help="YAML file of parameters (flat mapping)")
        sub.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                         help="override one parameter; values are YAML scalars; repeatable")
    return parser


def _params(args: argparse.Namespace, **defaults):
    values = {**defaults, **(load_yaml(args.params_file) if args.params_file else {})}
    values.update(parse_set(args.assignments))
    return make_params(values)


def _describe(args: argparse.Namespace) -> dict:
    from paperlib.data import build_dataset

    return build_dataset(_params(args)).summary()


def _run(args: argparse.Namespace) -> dict:
    from paperlib.runner import run

    record = run(_params(args))
    metrics = record["metrics"]
    out = {k: metrics[k] for k in METRIC_KEYS}
    out.update({f"{k}_std": metrics[f"{k}_std"] for k in METRIC_KEYS})
    out.update(num_eval=record["num_eval"], seconds=round(record["timings"]["total"], 2),
               cached=record["cached"], key=record["key"])
    return out


def _bench(args: argparse.Namespace) -> dict:
    from paperlib.bench import bench

    return bench(_params(args, iterations=5, progress=False, method=args.method), warmup=args.warmup)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        result = {"describe": _describe, "run": _run, "bench": _bench}[args.command](args)
    except PaperlibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0
