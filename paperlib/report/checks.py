"""What a notebook claims, checked against what it computed: the verdict tables that nbval compares.

A trained number differs in its last digits from one machine to the next (another CPU's vector width,
another thread count, a GPU), so the notebook checks never compare trained numbers exactly. A notebook's
experiment file (``params/experiments/NN_*.yaml``) lists its **claims**, each a comparison with a margin, for
the profiles whose scale shows it::

    claims:
      - says: colour bias is amplified
        profiles: [smoke, quick]
        of: colour_0.05/whole acc_conflicting
        minus: colour_0.05/dm acc_conflicting
        at_least: 10

and ``params/<profile>/references.yaml`` (written by ``python -m paperlib.report.checks record``) holds every
trained number of the profile's reference run, checked within a stated tolerance per metric. A quantity
is named ``<row> <column>``: the row is ``experiment/run`` of a results table (or ``comparison/run``,
or a KDE ``variant``), the column any numeric column of that table.

:func:`verdicts` turns both into a table of ``check | test | verdict``: a claim's verdict reads ``holds`` or
``FAILS`` with the quantity it measured (``holds (measured 45.1)``), a reference's ``within tolerance`` or
``FAILS`` with the values off. nbval compares the tables with the measured numbers masked
(``tests/nbval_sanitize.cfg``), so they are the same on every machine while the results hold, and differ
(and nbval fails) as soon as one does not.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from paperlib.core.errors import ArgumentParser, PaperlibError
from paperlib.core.yamlio import parse_yaml, yaml_error_text
from paperlib.core.paths import notebook_sources, params_dir
from paperlib.core.store import atomic_write
from paperlib.experiments.profiles import check_profile, notebook_parameters, suite_specs
from paperlib.report.tables import results_table
from paperlib.report.metric_names import short_name
from paperlib.train.metrics import METRIC_KEYS

ROW_COLUMNS = (("experiment", "run"), ("comparison", "run"), ("variant",))
COMPARISONS = {"at_least": ">=", "at_most": "<="}


def quantities(*tables: pd.DataFrame) -> dict[str, float]:
    """Every numeric cell of ``tables`` as ``{"<row> <column>": value}`` (rows named by :data:`ROW_COLUMNS`).

    Rows of a results table that did not run (``status`` other than ``done``) are left out.
    """
    found: dict[str, float] = {}
    for table in tables:
        if "status" in table:
            table = table[table["status"] == "done"]
        keys = next((k for k in ROW_COLUMNS if all(c in table for c in k)), None)
        if keys is None:
            raise PaperlibError(f"a checked table needs the columns {' + '.join(ROW_COLUMNS[0])}, "
                                f"comparison + run or variant; this one has {', '.join(map(str, table.columns))}")
        for _, row in table.iterrows():
            name = "/".join(str(row[k]) for k in keys)
            for column, value in row.items():
                if column not in keys and isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and not pd.isna(value):
                    found.setdefault(f"{name} {column}", float(value))
    return found


@dataclass(frozen=True)
class Claim:
    """``of - minus`` (or ``of / over``, or ``of`` alone) compared with a bound (``at_least`` / ``at_most``)."""

    says: str
    of: str
    bound: float
    comparison: str = "at_least"
    minus: str | None = None
    over: str | None = None

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> Claim:
        """The claim of one ``claims:`` entry of an experiment file; a malformed entry is a one-line error."""
        if not isinstance(entry, Mapping):
            raise PaperlibError(f"a claim must be a mapping with 'says', 'of' and 'at_least' or 'at_most'; got "
                                f"{entry!r}")
        entry = dict(entry)
        allowed = {"says", "of", "minus", "over", *COMPARISONS}
        unknown = set(entry) - allowed
        bounds = [k for k in COMPARISONS if k in entry]
        if unknown or "says" not in entry or "of" not in entry or len(bounds) != 1 or \
                ("minus" in entry and "over" in entry):
            raise PaperlibError(f"claim {entry} must have 'says', 'of', at most one of 'minus' / 'over', and "
                                f"exactly one of 'at_least' / 'at_most'"
                                + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
        bound = entry[bounds[0]]
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise PaperlibError(f"claim {entry['says']!r}: {bounds[0]} must be a number, got {bound!r}")
        for name in ("of", "minus", "over"):
            if name in entry and not (isinstance(entry[name], str) and " " in entry[name].strip()):
                raise PaperlibError(f"claim {entry['says']!r}: {name} must name a quantity as '<row> <column>', "
                                    f"e.g. 'colour_0.05/dm acc', got {entry[name]!r}")
        return cls(says=str(entry["says"]), of=entry["of"], minus=entry.get("minus"), over=entry.get("over"),
                   comparison=bounds[0], bound=float(bound))

    def in_words(self) -> str:
        """The comparison in words, e.g. ``whole acc_conflicting - dm acc_conflicting >= 10``."""
        value = self.of + (f" - {self.minus}" if self.minus else f" / {self.over}" if self.over else "")
        return f"{value} {COMPARISONS[self.comparison]} {self.bound:g}"

    def measure(self, values: Mapping[str, float]) -> float:
        """The claimed quantity from a notebook's computed values (``row column`` -> number)."""
        for name in (self.of, self.minus, self.over):
            if name is not None and name not in values:
                close = sorted(k for k in values if k.split(" ")[0] == name.split(" ")[0])
                raise PaperlibError(f"claim {self.says!r} names {name!r}, which this notebook did not compute"
                                    + (f"; that row has: {', '.join(close)}" if close else ""))
        value = values[self.of]
        if self.minus:
            return value - values[self.minus]
        if self.over:
            over = values[self.over]
            if over:
                return value / over
            return math.copysign(math.inf, value) if value else math.nan  # 0 / 0 holds on neither side
        return value

    def holds(self, measured: float) -> bool:
        """Whether ``measured`` is on the claimed side of the bound."""
        return measured >= self.bound if self.comparison == "at_least" else measured <= self.bound


def claim_rows(claims: Iterable[Mapping[str, Any]], values: Mapping[str, float]) -> list[dict[str, str]]:
    """One verdict row per claim, with the measured quantity: ``holds (measured 45.1)`` or ``FAILS (measured
    3.7)`` (a ratio with two decimals), so a reader sees each claim's room; the notebook checks mask the
    number and the padding it changes (``tests/nbval_sanitize.cfg``) and compare the verdict."""
    rows = []
    for entry in claims:
        claim = Claim.from_dict(entry)
        measured = claim.measure(values)
        shown = f"{measured:.2f}" if claim.over else f"{measured:.1f}"
        verdict = f"{'holds' if claim.holds(measured) else 'FAILS'} (measured {shown})"
        rows.append({"check": claim.says, "test": claim.in_words(), "verdict": verdict})
    return rows


def load_references(profile: str) -> dict[str, Any] | None:
    """``params/<profile>/references.yaml`` (``tolerance`` and ``runs``), or ``None`` when the profile has none."""
    path = params_dir() / profile / "references.yaml"
    if not path.is_file():
        return None
    try:
        references = parse_yaml(path.read_text(encoding="utf-8"))
        tolerance, runs = references["tolerance"], references.get("runs") or {}
        unknown = set(tolerance) - set(METRIC_KEYS)
        if unknown:
            raise ValueError(f"unknown metrics in tolerance: {', '.join(sorted(unknown))}")
        untolerated = {m for run in runs.values() for expected in run.values() for m in expected} - set(tolerance)
        if untolerated:
            raise ValueError(f"no tolerance for {', '.join(sorted(untolerated))}")
        numbers = [v for run in runs.values() for expected in run.values() for v in expected.values()]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in [*tolerance.values(), *numbers]):
            raise ValueError("a tolerance or a reference value is not a number")
    except yaml.YAMLError as err:
        raise PaperlibError(f"{path} is not valid YAML ({yaml_error_text(err)}); mend that line") from None
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise PaperlibError(f"{path} is not a references file ({err}); rewrite it with "
                            f"`python -m paperlib.report.checks record --profile {profile}`") from None
    return {"tolerance": tolerance, "runs": runs}


def reference_rows(notebook: str, profile: str, values: Mapping[str, float]) -> list[dict[str, str]]:
    """One verdict row per run of ``notebook`` in the profile's references: every metric within its tolerance."""
    references = load_references(profile)
    if references is None or notebook not in references["runs"]:
        return []
    tolerance = references["tolerance"]
    rows = []
    for run, expected in references["runs"][notebook].items():
        missing = [m for m in expected if f"{run} {m}" not in values]
        if missing:
            rows.append({"check": f"{run} matches the {profile} reference", "test": "",
                         "verdict": f"FAILS (not computed: {', '.join(missing)})"})
            continue
        off = [f"{short_name(m)} {values[f'{run} {m}']:.1f} vs {v:g}" for m, v in expected.items()
               if abs(values[f"{run} {m}"] - v) > tolerance[m]]
        test = ", ".join(f"{short_name(m)} {v:g} ± {tolerance[m]:g}" for m, v in expected.items())
        rows.append({"check": f"{run} matches the {profile} reference", "test": test,
                     "verdict": "within tolerance" if not off else f"FAILS ({'; '.join(off)})"})
    return rows


def verdicts(notebook: str, profile: str, claims: Iterable[Mapping[str, Any]] | None,
             *tables: pd.DataFrame) -> pd.DataFrame:
    """The verdict table of ``notebook``: its claims, then its runs against the profile's reference numbers."""
    values = quantities(*tables)
    rows = claim_rows(claims or [], values) + reference_rows(notebook, profile, values)
    if not rows:
        return pd.DataFrame([{"check": f"no claims or reference numbers for profile {profile!r}", "test": "",
                              "verdict": ""}])
    return pd.DataFrame(rows)


def reference_values(table: pd.DataFrame, metrics: Iterable[str]) -> dict[str, dict[str, float]]:
    """The ``metrics`` of a results table to pin: ``{experiment/run: {metric: value (1 decimal)}}``."""
    done = table[table["status"] == "done"]
    return {f"{row['experiment']}/{row['run']}": {m: round(float(row[m]), 1) for m in metrics
                                                  if m in row and not pd.isna(row[m])}
            for _, row in done.iterrows()}


def refuse_off_cpu(table: pd.DataFrame, profile: str) -> None:
    """A one-line error for a run of ``table`` evaluated, or with a set distilled, off the CPU (``device=auto``
    takes a GPU, and a set is reused on any device): the references, and their tolerance, are CPU numbers. A record
    that does not say where its sets were made (one from before records said so) is taken as made where it was
    evaluated."""
    done = table[table["status"] == "done"]
    made_on = done["distilled_on"] if "distilled_on" in done else pd.Series(None, index=done.index, dtype=object)
    # each run's first device that is not the CPU: its evaluation's, else its set's
    elsewhere = done["device"].where(done["device"] != "cpu", made_on.where(made_on.notna() & (made_on != "cpu")))
    off_cpu = done[elsewhere.notna()]
    if len(off_cpu):
        runs = ", ".join(off_cpu["experiment"] + "/" + off_cpu["run"] + " (" + elsewhere[off_cpu.index] + ")")
        raise PaperlibError(f"the references are CPU numbers, and {len(off_cpu)} runs were computed elsewhere: {runs}; "
                            "in one shell, export PAPERLIB_CACHE=$(mktemp -d) CUDA_VISIBLE_DEVICES=, then run "
                            f"`make reproduce PROFILE={profile}` and this command again (docs/reproducibility.md)")


def record_references(profile: str) -> Path:
    """Write ``params/<profile>/references.yaml`` from the stored runs of every notebook suite of ``profile``.

    The ``tolerance`` block of an existing file is kept (it is set by hand, with its reasons) and names the
    metrics that are pinned; every run must be stored (run ``make reproduce PROFILE=<profile>`` first with the
    same cache). An unknown profile is a one-line error.
    """
    previous = load_references(check_profile(profile))
    if previous is None:
        raise PaperlibError(f"params/{profile}/references.yaml does not exist; write it with a 'tolerance' block "
                            f"first (one bound per metric of {', '.join(METRIC_KEYS)}, as params/smoke has)")
    runs: dict[str, dict] = {}
    for source in notebook_sources():
        suite = notebook_parameters(profile, source.stem).get("suite")
        if suite is None:
            continue
        table = results_table(suite_specs(profile, suite, source.stem))
        missing = table[table["status"] != "done"]
        if len(missing):
            raise PaperlibError(f"{source.stem}: {len(missing)} runs are not stored "
                                f"({', '.join(missing['experiment'] + '/' + missing['run'])}); "
                                f"run `make reproduce PROFILE={profile}` with this cache first")
        refuse_off_cpu(table, profile)
        runs[source.stem] = reference_values(table, previous["tolerance"])
    path = params_dir() / profile / "references.yaml"
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    body = yaml.safe_dump({"tolerance": previous["tolerance"], "runs": runs}, sort_keys=False, width=120,
                          default_flow_style=None)  # one line per run
    with atomic_write(path) as tmp:
        tmp.write_text("\n".join(header) + "\n" + body)
    return path


def failed_checks(folder: Path) -> list[str]:
    """Every failed verdict and every error in the executed notebooks of ``folder``, as ``notebook: text``.

    nbval compares the *committed* notebooks' outputs with a re-execution; this reads the verdicts of the
    notebooks just executed from the current experiment files, so a claim that a changed experiment file
    breaks fails too.
    """
    if not Path(folder).is_dir():
        raise PaperlibError(f"{folder} is not a folder; name the folder of executed notebooks, e.g. .nbcheck/executed")
    notebooks = sorted(Path(folder).glob("*.ipynb"))
    if not notebooks:
        raise PaperlibError(f"no executed notebooks in {folder}; run `python -m paperlib.reproduce` first")
    found = []
    for path in notebooks:
        for output in _code_outputs(path):
            if output.get("output_type") == "error":
                found.append(f"{path.stem}: {output.get('ename')}: {output.get('evalue')}")
            html = "".join(output.get("data", {}).get("text/html", ""))
            for row in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S):
                columns = [unescape(c.strip()) for c in re.findall(r"<td>(.*?)</td>", row, flags=re.S)]
                if any(c.startswith("FAILS (") for c in columns):
                    found.append(f"{path.stem}: {' | '.join(columns)}")
    return found


def _code_outputs(path: Path) -> list[dict]:
    """The outputs of the code cells of the notebook at ``path``; a one-line error when it cannot be read as one."""
    try:
        outputs = [o for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"
                   for o in cell.get("outputs", [])]
        if not all(isinstance(o, dict) and isinstance(o.get("data", {}), dict) for o in outputs):
            raise TypeError("an output or its data is not a JSON object")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:  # json's decode error: a ValueError
        raise PaperlibError(f"{path} is not a readable notebook ({type(err).__name__}: {err}); execute it "
                            "again with `python -m paperlib.reproduce`") from None
    return outputs


def main(argv: list[str] | None = None) -> int:
    """``python -m paperlib.report.checks record | verify``; the exit status (1: a check failed)."""
    parser = ArgumentParser(prog="python -m paperlib.report.checks", description=(
        "record: write a profile's reference numbers from its stored runs; verify FOLDER: fail if an executed "
        "notebook there has a failed verdict or an error."))
    parser.add_argument("command", choices=["record", "verify"])
    parser.add_argument("folder", nargs="?", type=Path, help="verify: the folder of executed notebooks")
    parser.add_argument("--profile", help="record: the profile (default smoke)")
    args = parser.parse_args(argv)
    unused = args.folder if args.command == "record" else args.profile
    if unused is not None:
        parser.error(f"{args.command} takes no {'folder' if args.command == 'record' else '--profile'} (got {unused})")
    if args.command == "verify" and args.folder is None:
        parser.error("verify needs the folder of executed notebooks, e.g. .nbcheck/executed")
    try:
        if args.command == "record":
            print(f"wrote {record_references(args.profile or 'smoke')}")
            return 0
        failed = failed_checks(args.folder)
    except PaperlibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for line in failed:
        print(f"failed check: {line}", file=sys.stderr)
    print(f"{len(failed)} failed checks in {args.folder}" if failed else f"every check holds in {args.folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
