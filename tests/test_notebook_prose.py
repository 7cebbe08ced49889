"""The prose of the committed quick notebooks quotes numbers the notebooks show.

The sentences that describe results are written by hand; the verdict tables check the direction of each claim,
not the numbers quoted beside it. This test closes that gap: every decimal number in a markdown cell must
appear, at the precision quoted, among the notebook's outputs, be one of the papers' reported values, or be a
setting listed below with its reason. A re-render that changes a quoted number fails here until the prose is
updated.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from paperlib.report.reference import REPORTED

ROOT = Path(__file__).resolve().parents[1]
QUICK = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if not p.name.endswith(".failed.ipynb"))
DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+(?!\w|\.\d)")  # "59.6." at a sentence's end counts

# Numbers in the prose that are neither measured here nor in REPORTED, and why.
NOT_MEASURED = {
    "01_biased_datasets": {"0.5"},  # paper A's range of conflict ratios, 0.5%–5% (a setting)
    "02_bias_in_distillation": {"0.1"},  # the papers' DC image learning rate (a setting)
    # SelecMix's learning rate in its own code; SupCon's temperature, this companion's choice (settings)
    "03_kde_reweighting": {"0.001", "0.1"},
    "04_fairdd": {"0.5"},  # the presets' normalisation, mean 0.5 / std 0.5 (a setting)
    "05_ablations": {"2.5"},  # fairdd_small_step's image learning rate, 20 / 8 (a setting)
    "07_three_answers": {"26.2", "36.9", "1.4"},  # paper B's runtime table (DM 26.2 min, + FairDD 36.9 min, 1.4x)
}


def _shown(notebook: nbformat.NotebookNode) -> set[str]:
    """Every decimal number of the notebook's text outputs, at each precision the prose may quote it."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = output.get("data", {})
            texts += [data.get("text/plain", ""), data.get("text/html", ""), output.get("text", "")]
    shown = set()
    for number in DECIMAL.findall(" ".join(texts)):
        value = float(number)
        shown |= {number, f"{value:.1f}", f"{value:.2f}"}
    return shown


def _reported() -> set[str]:
    values = {v for entry in REPORTED.values() for v in entry.values() if isinstance(v, (int, float))}
    return {f"{v:.2f}" for v in values} | {f"{v:.1f}" for v in values} | {f"{v:g}" for v in values}


@pytest.mark.parametrize("path", QUICK, ids=[p.stem for p in QUICK])
def test_every_number_the_prose_quotes_is_shown_by_the_notebook_or_reported_by_a_paper(path):
    notebook = nbformat.read(path, as_version=4)
    known = _shown(notebook) | _reported() | NOT_MEASURED.get(path.stem, set())
    quoted = [number for cell in notebook.cells if cell.cell_type == "markdown"
              for number in DECIMAL.findall(cell.source)]
    assert quoted or path.stem == "06_explore"
    assert [n for n in quoted if n not in known] == []


def test_a_number_the_notebook_does_not_show_is_caught():
    notebook = nbformat.read(ROOT / "notebooks" / "05_ablations.ipynb", as_version=4)
    assert "85.0" in _shown(notebook) and "85.3" not in _shown(notebook) | _reported()
