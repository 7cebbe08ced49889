"""``make sync``: push each notebook source's inputs into its paired notebook, where they differ.

``notebooks/NN_*.py`` (jupytext's percent format) is the reviewed source; ``notebooks/NN_*.ipynb`` holds the same
cells with the quick profile's outputs. ``python -m paperlib.pairing`` pairs a source that has no notebook yet
(jupytext creates it) and updates a notebook whose cells differ from its source's, keeping the outputs of the
cells that did not change. The comparison reads the cells, not the files' modification times, which a fresh
clone sets in no particular order (APFS), so a notebook already in step is left as it is, papermill's injected
parameters cell included (it is not in the source, and an updated notebook loses it: re-run ``make reproduce``).
The header (the notebook's metadata) is not compared: after editing only that, run ``jupytext --sync`` on the
source.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from paperlib.core.errors import ArgumentParser, PaperlibError
from paperlib.core.paths import notebook_sources

_INJECTED = "injected-parameters"  # papermill's tag on the cell it adds


def cell_inputs(notebook: Any) -> list[tuple[str, str, tuple[str, ...]]]:
    """Each cell's type, source and tags, in order (a jupytext notebook node): what the source file holds, so
    without papermill's injected parameters cell."""
    return [(cell.cell_type, cell.source, tuple(cell.metadata.get("tags", []))) for cell in notebook.cells
            if _INJECTED not in cell.metadata.get("tags", [])]


def out_of_step(source: Path) -> bool:
    """Whether the paired notebook of ``source`` (an ``NN_*.py``) is missing or holds other cells."""
    import jupytext

    paired = source.with_suffix(".ipynb")
    if not paired.is_file():
        return True
    cells = cell_inputs(jupytext.read(source))  # a source jupytext cannot read raises its own error
    try:
        return cells != cell_inputs(jupytext.read(paired))
    except Exception as err:  # noqa: BLE001 - nbformat raises many types for a damaged notebook
        raise PaperlibError(f"{paired} is not a readable notebook ({type(err).__name__}); restore it with "
                            f"`git checkout {paired}`, or delete it to pair {source.name} anew") from None


def sync(sources: list[Path]) -> list[Path]:
    """Pair or update the notebook of every source in ``sources`` that is out of step; return those sources."""
    from jupytext.cli import jupytext as jupytext_cli

    changed = [source for source in sources if out_of_step(source)]
    for source in changed:
        if source.with_suffix(".ipynb").exists():
            jupytext_cli(["--to", "ipynb", "--update", str(source)])
        else:  # pairing a paired source again would rewrite its header from the executed notebook: only new ones
            jupytext_cli(["--set-formats", "ipynb,py:percent", str(source)])
    return changed


def main(argv: list[str] | None = None) -> int:
    """Sync every numbered notebook (or the given sources) and say which changed."""
    parser = ArgumentParser(prog="python -m paperlib.pairing", description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", type=Path, help="notebook sources (default: notebooks/NN_*.py)")
    args = parser.parse_args(argv)
    try:
        not_sources = [str(source) for source in args.sources if source.suffix != ".py" or not source.is_file()]
        if not_sources:
            raise PaperlibError(f"{not_sources[0]} is not a notebook source; name notebooks/NN_*.py files")
        changed = sync(args.sources or notebook_sources())
    except PaperlibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"updated from their sources: {', '.join(s.name for s in changed)}" if changed
          else "every notebook holds its source's cells; nothing to update")
    return 0


if __name__ == "__main__":
    sys.exit(main())
