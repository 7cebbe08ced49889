"""The results store: runs shipped with the repository answer without computing; reproduce collects what the
notebooks read and replaces a profile's folder only as a whole."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from paperlib.core import results_store
from paperlib.core.errors import PaperlibError
from paperlib.core.params import make_params
from paperlib.core.paths import find_repo_root
from paperlib.distill.methods import METHODS
from paperlib.experiments.runner import (distilled_name, load_record, record_dir, record_key, record_name, run,
                                         stored_grid)
from paperlib.experiments.studies import stored_table
from paperlib.reproduce import _absolute_folders, _store

TINY = dict(dataset="cmnist", source="digits", method="dm", ipc=1, iterations=2, batch_real=8, eval_epochs=2,
            num_eval=1, net_width=8, device="cpu")


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A tiny run computed in one cache, then moved into a store's ``quick/`` folder; a fresh cache."""
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path / "first"))
    params = make_params(**TINY)
    record = run(params)
    store = tmp_path / "results"
    for kind in ("records", "distilled"):
        shutil.copytree(tmp_path / "first" / kind, store / "quick" / kind)
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path / "fresh"))
    monkeypatch.setenv("PAPERLIB_RESULTS", str(store))
    return params, record, store


def test_a_shipped_run_answers_without_computing_and_the_store_can_be_turned_off(shipped, monkeypatch):
    params, record, store = shipped
    again = run(params)
    assert again["cached"] is True and again["metrics"] == record["metrics"]
    assert not record_dir(params).exists()  # nothing computed into the fresh cache
    assert stored_grid(params).is_relative_to(store) and stored_grid(params).read_bytes().startswith(b"\x89PNG")
    assert record["distilled"] == stored_grid(params).parent.name  # a folder name, no machine path
    monkeypatch.setenv("PAPERLIB_RESULTS", "off")
    assert load_record(params) is None and stored_grid(params) is None
    monkeypatch.setenv("PAPERLIB_RESULTS", "OFF")
    assert results_store.results_root() is None


def test_a_damaged_shipped_record_says_to_restore_it_not_to_delete_it(shipped, monkeypatch):
    """'delete it' would delete a tracked file of results/."""
    params, record, store = shipped
    stored = next(store.glob("quick/records/*/record.json"))
    for damage in ("{broken", json.dumps({**record, "metrics": {**record["metrics"], "acc": "high"}})):
        stored.write_text(damage)
        stored_re, store_re = re.escape(str(stored)), re.escape(str(store))  # temporary paths: regex characters
        with pytest.raises(PaperlibError, match=rf"^cache entry {stored_re} cannot be read \(.*\); it ships in the "
                                                rf"results store \({store_re}\): restore it "
                                                rf"\(git checkout -- {stored_re}\), "
                                                r"or set PAPERLIB_RESULTS=off to recompute the run in your cache$"):
            run(params)
    monkeypatch.setenv("PAPERLIB_RESULTS", "off")
    assert run(params)["cached"] is False  # the advice works


def test_a_store_that_is_a_file_is_an_error_and_off_is_off_in_any_case(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("PAPERLIB_RESULTS", str(tmp_path / "file"))
    with pytest.raises(PaperlibError, match=r"^PAPERLIB_RESULTS=.*file is a file, not a folder; set it to a results "
                                            r"folder or to off$"):
        results_store.results_root()
    monkeypatch.setenv("PAPERLIB_RESULTS", str(tmp_path / "new"))  # make reproduce creates it
    assert results_store.results_root() == tmp_path / "new"
    monkeypatch.setenv("PAPERLIB_RESULTS", "Off")
    assert _absolute_folders() == {}  # the kernels get "Off" too, not a folder of that name


def test_the_cache_wins_over_the_store(shipped):
    params, record, store = shipped
    mine = record_dir(params) / "record.json"
    mine.parent.mkdir(parents=True)
    mine.write_text(json.dumps({**record, "metrics": {**record["metrics"], "acc": 1.0}}))
    assert load_record(params)["metrics"]["acc"] == 1.0 != record["metrics"]["acc"]


def test_publishing_collects_what_is_read_and_a_profile_is_replaced_whole(shipped, tmp_path, monkeypatch):
    params, _, store = shipped
    staging = tmp_path / "staging"
    monkeypatch.setenv("PAPERLIB_PUBLISH", str(staging))
    load_record(params)
    stored_grid(params)
    collected = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    assert [c.split("/")[0] for c in collected] == ["distilled", "records"]
    assert collected[1].endswith("/record.json") and collected[0].endswith("/synthetic.png")
    (store / "quick" / "records" / "stale").mkdir()
    written = _store(staging, store, "quick", merge=False)
    assert written == store / "quick" and not (written / "records" / "stale").exists()
    assert results_store.folder_size(written)[0] == 2
    assert [p.name for p in store.iterdir() if p.suffix != ".lock"] == ["quick"]
    (written / "records" / "kept.json").write_text("{}")
    assert _store(staging, store, "quick", merge=True) == written  # --only: added to the store, file by file
    merged = sorted(p.relative_to(written).as_posix() for p in written.rglob("*") if p.is_file())
    assert merged == sorted(collected + ["records/kept.json"])  # nothing removed, no temporary file left
    # readable by a shared checkout's other users, although the staging folder was a private temporary one
    staging.chmod(0o700)
    assert _store(staging, store, "quick", merge=True).stat().st_mode & 0o777 == 0o755
    assert _store(staging, store, "quick", merge=False).stat().st_mode & 0o777 == 0o755


def test_a_study_table_is_computed_once_then_read_back_with_its_dtypes(tmp_path):
    params = make_params(**TINY, cache_dir=str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"label": ["a", "b"], "count": [1, 2], "share": [0.25, 0.75]})

    first = stored_table("demo", params, {"variants": [1]}, compute)
    second = stored_table("demo", params, {"variants": [1]}, compute)
    assert len(calls) == 1 and first.equals(second) and str(second["count"].dtype) == "int64"
    stored_table("demo", params, {"variants": [2]}, compute)  # other settings: another table
    assert len(calls) == 2
    for table in (tmp_path / "tables").glob("demo-*.json"):
        table.write_text('{"rows": []}')  # readable JSON, not a table
    with pytest.raises(PaperlibError, match=r"demo-.*\.json cannot be read \(no columns\); nothing was recomputed"):
        stored_table("demo", params, {"variants": [1]}, compute)


def test_find_or_make_makes_only_what_neither_the_cache_nor_the_store_holds(tmp_path, monkeypatch):
    store, cache = tmp_path / "results", tmp_path / "cache"
    (store / "quick" / "data").mkdir(parents=True)
    (store / "quick" / "data" / "shipped.png").write_bytes(b"shipped")
    monkeypatch.setenv("PAPERLIB_RESULTS", str(store))
    made = []

    def make() -> bytes:
        made.append(1)
        return b"made"

    assert results_store.find_or_make("data/shipped.png", cache, make).read_bytes() == b"shipped" and not made
    new = results_store.find_or_make("data/new.png", cache, make)
    assert new == cache / "data" / "new.png" and new.read_bytes() == b"made" and len(made) == 1
    assert results_store.find_or_make("data/new.png", cache, make) == new and len(made) == 1
    forced = results_store.find_or_make("data/shipped.png", cache, make, force=True)
    assert forced == cache / "data" / "shipped.png" and len(made) == 2  # the cache copy now wins over the store
    (store / ".quick.x1" / "data").mkdir(parents=True)  # a staging copy cut short: never served
    (store / ".quick.x1" / "data" / "left.png").write_bytes(b"half")
    assert results_store.find("data/left.png", cache) is None


def _strings(value) -> list[str]:
    """Every string anywhere in a JSON value (nested mappings and lists: params.cache_dir sits one level down)."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_shipped_records_name_no_path_of_the_machine_that_computed_them():
    from pathlib import Path

    assert "/tmp/x" in _strings({"params": {"cache_dir": "/tmp/x"}, "runs": [{"a": 1}]})  # the walk looks deep
    shipped = sorted((Path(__file__).resolve().parents[1] / "results").glob("*/records/*/*.json"))
    assert len(shipped) > 40, "the shipped records were not found"
    with_paths = [p.parent.name for p in shipped
                  if any(s.startswith(("/", "~")) or ":\\" in s for s in _strings(json.loads(p.read_text())))]
    assert not with_paths, f"records holding an absolute path: {with_paths}"


def test_a_new_record_names_no_path_of_this_machine(tmp_path):
    """A record computed with ``cache_dir`` and ``data_dir`` set is published as it is: no folder in it."""
    data = tmp_path / "data"
    data.mkdir()
    record = run(make_params(**TINY, cache_dir=str(tmp_path), data_dir=str(data)))
    assert record["params"]["cache_dir"] is None and record["params"]["data_dir"] is None
    assert not [s for s in _strings(record) if str(tmp_path) in s]
    assert load_record(make_params(**TINY, cache_dir=str(tmp_path)))["key"] == record["key"]  # found again


def test_a_replace_that_fails_midway_leaves_the_old_store_in_place(tmp_path, monkeypatch):
    store = tmp_path / "results"
    (store / "quick").mkdir(parents=True)
    (store / "quick" / "a.json").write_text("old")

    def staging(text: str):
        folder = tmp_path / f"staging-{text}"
        folder.mkdir()
        (folder / "a.json").write_text(text)
        return folder

    def failing_move(*args):
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "move", failing_move)
    with pytest.raises(OSError, match="disk full"):
        results_store.replace_profile(staging("new"), store, "quick")
    assert (store / "quick" / "a.json").read_text() == "old"  # rolled back, not a missing store
    (store / "quick").rename(store / ".quick.old")  # as a process killed between the two moves leaves it
    monkeypatch.undo()
    results_store.replace_profile(staging("newer"), store, "quick")
    assert (store / "quick" / "a.json").read_text() == "newer" and not (store / ".quick.old").exists()
    monkeypatch.setattr(shutil, "move", failing_move)
    (store / "quick").rename(store / ".quick.old")
    with pytest.raises(OSError):
        results_store.replace_profile(staging("newest"), store, "quick")
    assert (store / "quick" / "a.json").read_text() == "newer"  # the killed replace's old folder was kept


def test_two_replaces_of_one_profile_take_turns(tmp_path, monkeypatch):
    """Unlocked, the second replace renamed the first's half-moved folders (a store nested in the store)."""
    store = tmp_path / "results"
    (store / "quick").mkdir(parents=True)
    real_move, inside, overlapped = shutil.move, threading.Semaphore(1), []

    def slow_move(*args):
        if not inside.acquire(blocking=False):
            overlapped.append(args)  # another replace is between its two moves
        time.sleep(0.2)
        result = real_move(*args)
        inside.release()
        return result

    monkeypatch.setattr(shutil, "move", slow_move)
    stagings = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.json").write_text(name)
        stagings.append(tmp_path / name)
    threads = [threading.Thread(target=results_store.replace_profile, args=(s, store, "quick")) for s in stagings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not overlapped and (store / "quick" / "a.json").read_text() in ("one", "two")
    assert sorted(p.name for p in store.iterdir()) == [".quick.lock", "quick"]
    assert sorted(p.name for p in (store / "quick").iterdir()) == ["a.json"]


def test_make_reproduce_hides_the_shipped_store_from_the_notebooks_unless_asked(tmp_path, monkeypatch):
    """docs/reproducibility.md: `make reproduce` recomputes (never reads the store); FROM_STORE=1 reads it."""
    from paperlib import reproduce as reproducing

    monkeypatch.setenv(results_store.RESULTS_ENV_VAR, str(tmp_path / "results"))
    seen = []

    def notebooks_see(profile, only, output_dir, jobs):
        seen.append(os.environ.get(results_store.RESULTS_ENV_VAR))
        return []

    monkeypatch.setattr(reproducing, "_run_notebooks", notebooks_see)
    reproducing.reproduce("smoke", output_dir=tmp_path / "out")
    reproducing.reproduce("smoke", output_dir=tmp_path / "out", from_store=True)
    assert seen == [results_store.OFF, str(tmp_path / "results")]
    assert os.environ[results_store.RESULTS_ENV_VAR] == str(tmp_path / "results")  # restored after the run


def test_the_notebook_kernels_get_absolute_folders_and_the_serial_thread_count(tmp_path, monkeypatch):
    """Kernels start in notebooks/: a relative PAPERLIB_CACHE would be another folder there. With the serial
    executor the notebooks compute the runs, so --threads reaches them as OMP_NUM_THREADS."""
    from paperlib import reproduce as reproducing
    from paperlib.experiments.jobs import job_settings

    monkeypatch.setenv("PAPERLIB_CACHE", "my-cache")  # nothing is written there: the notebooks are not run
    monkeypatch.setenv(results_store.RESULTS_ENV_VAR, "off")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = []
    monkeypatch.setattr(reproducing, "_run_notebooks", lambda *args: seen.append(
        (os.environ["PAPERLIB_CACHE"], os.environ.get("OMP_NUM_THREADS"))) or [])
    reproducing.reproduce("smoke", output_dir=tmp_path / "out", jobs=job_settings("serial", threads=1))
    reproducing.reproduce("smoke", output_dir=tmp_path / "out", jobs=job_settings("serial"))
    assert seen == [(str(Path.cwd() / "my-cache"), "1"), (str(Path.cwd() / "my-cache"), None)]
    assert os.environ["PAPERLIB_CACHE"] == "my-cache" and "OMP_NUM_THREADS" not in os.environ  # restored
    monkeypatch.setenv("PAPERLIB_CACHE", "~/my-cache")
    reproducing.reproduce("smoke", output_dir=tmp_path / "out")
    assert seen[-1][0] == str(Path.home() / "my-cache")


@pytest.mark.parametrize("study, change, moves", [
    ("kde", {"supcon_epochs": 5.0}, True), ("kde", {"kde_alpha": 0.5}, True), ("kde", {"eval_lr": 0.5}, False),
    ("theorem", {"ipc": 3}, True), ("theorem", {"batch_real": 32}, True), ("theorem", {"eval_lr": 0.5}, False)])
def test_a_study_table_is_keyed_by_what_it_computes(study, change, moves, monkeypatch):
    """The KDE ablation by each variant's weights key (encoder and KDE settings included), the theorem check by
    its FairDD-DM run's set (IPC and real batch included); an evaluation setting moves neither."""
    import paperlib.experiments.studies as studies

    class Looked(Exception):
        pass

    def look(relative, cache_dir, make, force=False):
        raise Looked(relative)

    monkeypatch.setattr(studies, "find_or_make", look)

    def table_file(settings):
        with pytest.raises(Looked) as looked:
            if study == "kde":
                studies.kde_ablation(settings, [{"label": "default"}], "smoke")
            else:
                studies.theorem_check(settings, "smoke")
        return str(looked.value)

    base = {"dataset": "cmnist", "source": "digits", "ipc": 2, "batch_real": 16}
    assert (table_file({**base, **change}) != table_file(base)) == moves


def test_every_shipped_record_sits_under_the_keys_of_its_own_parameters():
    """A change of the cache key (a new field, a scope) must move the shipped records with it, or a fresh clone
    would recompute what it ships: each record's folder, key and distilled set follow from its parameters."""
    records = sorted((find_repo_root() / "results").glob("*/records/*/record.json"))
    assert records, "the results store ships records"
    for path in records:
        record = json.loads(path.read_text())
        params = make_params(record["params"])
        assert (path.parent.name, record["key"]) == (record_name(params), record_key(params)), path
        expected = distilled_name(params) if METHODS[params.method].distils else None  # a distilling run names its set
        assert record.get("distilled") == expected, path
