"""make sync (paperlib.pairing): a notebook is updated from its source when their cells differ, never because of
modification times."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest

from paperlib.pairing import cell_inputs, main, out_of_step, sync

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("source", sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py")), ids=lambda p: p.stem)
def test_every_committed_notebook_holds_its_sources_cells(source):
    assert not out_of_step(source)  # make sync would change nothing in a fresh clone


def test_sync_pairs_a_new_source_then_updates_only_on_a_changed_cell(tmp_path, capsys):
    source = tmp_path / "01_toy.py"
    source.write_text("# %% [markdown]\n# # Toy\n\n# %% tags=[\"parameters\"]\nprofile = 'quick'\n\n# %%\n1 + 1\n")
    assert sync([source]) == [source] and out_of_step(source) is False  # paired: the .ipynb now exists
    paired = source.with_suffix(".ipynb")
    notebook = nbformat.read(paired, as_version=4)
    # what make reproduce leaves: an output, and papermill's injected cell, which the source does not hold
    notebook.cells[2].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]
    injected = nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(2, injected)
    nbformat.write(notebook, paired)
    written = paired.read_bytes()
    os.utime(source, (paired.stat().st_mtime + 60,) * 2)  # a source that looks newer (a fresh clone on APFS)
    assert sync([source]) == [] and paired.read_bytes() == written
    source.write_text(source.read_text().replace("# # Toy", "# # Toy, edited"))
    assert main([str(source)]) == 0 and "updated from their sources: 01_toy.py" in capsys.readouterr().out
    updated = nbformat.read(paired, as_version=4)
    assert cell_inputs(updated) == cell_inputs(jupytext.read(source)) and updated.cells[0].source == "# Toy, edited"
    assert updated.cells[2].outputs[0]["data"] == {"text/plain": "2"}  # the unchanged cell kept its output


def test_an_unreadable_notebook_or_a_source_that_is_not_one_is_a_one_line_error(tmp_path, capsys):
    source = tmp_path / "01_toy.py"
    shutil.copy(NOTEBOOKS / "06_explore.py", source)
    source.with_suffix(".ipynb").write_text("{ cut short")
    assert main([str(source)]) == 2
    assert capsys.readouterr().err == (f"error: {source.with_suffix('.ipynb')} is not a readable notebook "
                                       f"(NotJSONError); restore it with `git checkout "
                                       f"{source.with_suffix('.ipynb')}`, or delete it to pair 01_toy.py anew\n")
    assert main([str(tmp_path / "missing.py")]) == 2
    assert "missing.py is not a notebook source; name notebooks/NN_*.py files" in capsys.readouterr().err
