"""Shared fixtures: every test writes its cache into a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# A shell's plugins would add entries to the registries the tests list exactly; `import paperlib` imports them,
# which happens while the test modules are collected, after this file and before any fixture.
os.environ.pop("PAPERLIB_PLUGINS", None)


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory, monkeypatch):
    # One cache per test session keeps built digits datasets shared between tests while never touching the
    # developer's ./cache; figures go there too, and no data root, results store or thread setting of the
    # shell leaks in.
    base = tmp_path_factory.getbasetemp()
    monkeypatch.chdir(ROOT)  # the repository's folders are found from the working directory: pytest may start elsewhere
    monkeypatch.setenv("PAPERLIB_CACHE", str(base / "cache"))
    monkeypatch.setenv("PAPERLIB_FIGURES", str(base / "figures"))
    monkeypatch.delenv("PAPERLIB_DATA", raising=False)
    monkeypatch.setenv("PAPERLIB_RESULTS", "off")  # the shipped results store answers only where a test asks
    monkeypatch.delenv("PAPERLIB_PUBLISH", raising=False)
    monkeypatch.setenv("CI", "1")  # no progress bars in test output
    # kernels the tests start keep their history and connection files out of the home folder
    monkeypatch.setenv("IPYTHONDIR", str(base / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(base / "jupyter-runtime"))
    # no test reaches the network: one that fell through to the default data root would download into the
    # repository on an online machine (a test that fakes a download patches these itself)
    from paperlib.data import downloads

    monkeypatch.setattr(downloads, "_fetch", _no_network)
    monkeypatch.setattr(downloads, "_import_torchvision", lambda: None)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # a test that changes the thread count leaves the others as they were


def _no_network(url: str, dest: Path) -> None:
    raise OSError(f"network disabled in tests ({url})")


@pytest.fixture
def one_thread():
    # The MLP's matmuls are far too small to gain from threads, and on a busy machine OpenMP workers
    # waiting for one another made this test 20-80x slower (85 s instead of 1-2 s with two threads).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_eval():
    """Evaluation settings small enough for a test: 2 epochs, 1 model, narrow net."""
    return dict(eval_epochs=2, num_eval=1, net_width=16, source="digits", device="cpu")


@pytest.fixture
def cache_entries():
    """``entries(cache)``: the files a cache folder holds besides its locks (a lock file holds no data; a failed
    command may leave one, as a failed run does)."""
    return lambda cache: sorted(p for p in Path(cache).rglob("*") if p.is_file() and p.parent.name != "locks")
