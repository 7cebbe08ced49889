"""The cache under damage and contention: unreadable entries are reported, concurrent runs stay whole."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from paperlib.core.params import make_params
from paperlib.data import build_dataset
from paperlib.core.errors import PaperlibError
from paperlib.distill.kde import kde_weights
from paperlib.experiments.runner import distilled_dir, distilled_set, load_record, record_dir, run
from paperlib.core.store import atomic_write, cache_root, load_json, load_tensors, save_tensors

TINY_RUN = dict(dataset="cmnist", source="digits", method="dm", ipc=1, iterations=2, batch_real=8, net_width=8,
                num_eval=1, eval_epochs=1, progress=False, device="cpu")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_cache_dir_under_home_is_expanded_like_paperlib_cache(tmp_path, monkeypatch):
    """``cache_dir=~/c`` is the home folder's c, not a folder named ``~`` in the current directory."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PAPERLIB_CACHE", "~/from-env")
    assert cache_root("~/c") == tmp_path / "c" and cache_root() == tmp_path / "from-env"
    assert record_dir(make_params(TINY_RUN, cache_dir="~/c")).is_relative_to(tmp_path / "c")
    assert cache_root("relative") == Path("relative")  # from the current directory, as PAPERLIB_CACHE and data_dir


def test_an_unreadable_tensor_file_is_one_line_naming_it_and_what_happens_next(tmp_path):
    path = tmp_path / "entry.pt"
    save_tensors(path, {"x": 1})
    _truncate(path)
    with pytest.raises(PaperlibError) as error:
        load_tensors(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "nothing was recomputed" in message
    assert load_tensors(tmp_path / "absent.pt") is None


def _stored_run(tmp_path):
    params = make_params(**TINY_RUN, cache_dir=str(tmp_path))
    run(params)
    return params


def test_an_unreadable_json_record_is_an_error_not_a_silent_recompute(tmp_path):
    params = _stored_run(tmp_path)
    record = record_dir(params) / "record.json"
    _truncate(record)
    record_re = re.escape(str(record))  # a temporary path may hold regex characters
    with pytest.raises(PaperlibError, match=f"cache entry {record_re} cannot be read .*force=true"):
        run(params)
    forced = run(params, force=True)
    assert forced["cached"] is False  # force recomputes and rewrites the entry
    assert load_record(params)["metrics"] == forced["metrics"]
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(PaperlibError, match="a JSON object was expected"):
        load_json(tmp_path / "list.json")


def test_a_record_without_its_fields_is_an_error_naming_them(tmp_path):
    params = _stored_run(tmp_path)
    record = record_dir(params) / "record.json"
    record.write_text(json.dumps({"params": {}, "runs": []}))
    record_re = re.escape(str(record))  # a temporary path may hold regex characters
    with pytest.raises(PaperlibError, match=f"cache entry {record_re} cannot be read "
                                            "\\(no metrics, no timings, no num"):
        load_record(params)
    whole = json.loads(json.dumps(run(params, force=True)))
    del whole["timings"]["evaluate"], whole["metrics"]["deo_m_std"]
    record.write_text(json.dumps(whole))
    with pytest.raises(PaperlibError, match=r"cannot be read \(no timings.evaluate, no metrics.deo_m_std\)"):
        load_record(params)  # else a table would stop on a KeyError
    record.write_text(json.dumps({**whole, "timings": 12.5}))
    with pytest.raises(PaperlibError, match=r"cannot be read \(timings is a number, not a mapping, no metrics.deo_m"):
        load_record(params)


def test_a_record_with_a_field_of_the_wrong_type_is_an_error_naming_it(tmp_path):
    params = _stored_run(tmp_path)
    record = record_dir(params) / "record.json"
    whole = json.loads(record.read_text())
    whole["metrics"]["acc_std"] = None  # an undefined metric is null, and readable
    broken = {**whole, "timings": {**whole["timings"], "total": None}, "num_eval": True, "key": 3,
              "metrics": {**whole["metrics"], "acc": "91.5"}}
    record.write_text(json.dumps(broken))
    record_re = re.escape(str(record))  # a temporary path may hold regex characters
    with pytest.raises(PaperlibError, match=rf"cache entry {record_re} cannot be read \(num_eval is true/false, "
                                            r"not a "
                                            r"whole number, key is a whole number, not text, timings.total is null, "
                                            r"not a number, metrics.acc is text, not a number\)"):
        load_record(params)  # else the CLI's table stopped on a TypeError
    spreads = {f"{key}_std": True for key in ("acc", "acc_aligned", "acc_conflicting", "deo_m", "deo_a")}
    record.write_text(json.dumps({**whole, "metrics": {**whole["metrics"], **spreads}}))
    with pytest.raises(PaperlibError, match=r"metrics.deo_m_std is true/false, not a number and 1 more\); nothing"):
        load_record(params)  # four named, the rest counted, and the line not cut in the middle of a word
    record.write_text(json.dumps({**whole, "metrics": {**whole["metrics"], "acc": float("nan")}}))
    with pytest.raises(PaperlibError, match=r"cannot be read \(metrics.acc is nan\)"):
        load_record(params)  # a record is written with null for an undefined metric: a NaN is damage
    record.write_text(json.dumps(whole))
    assert load_record(params)["metrics"]["acc_std"] is None


def test_an_unreadable_distilled_set_is_an_error_naming_it(tmp_path):
    params = _stored_run(tmp_path)
    synthetic = distilled_dir(params) / "synthetic.pt"
    _truncate(synthetic)
    reason = r"not a torch file this version reads: cut short, damaged or incompatible \(\w+\)"
    synthetic_re = re.escape(str(synthetic))  # a temporary path may hold regex characters
    with pytest.raises(PaperlibError, match=f"^cache entry {synthetic_re} cannot be read \\({reason}\\); nothing was "
                                            "recomputed"):
        run(params, eval_epochs=2)  # a new evaluation of the same distilled set must read it
    synthetic.write_text("garbage")  # torch's own message here is a paragraph about weights_only
    with pytest.raises(PaperlibError, match=f"\\({reason}\\); nothing"):
        run(params, eval_epochs=2)


@pytest.mark.parametrize(("payload", "reason"), [({"images": [0.0]}, "no 'labels'"), ([1, 2], "a list, not a mapping")])
def test_a_distilled_set_that_loads_without_its_tensors_is_an_error_naming_it(tmp_path, payload, reason):
    import torch

    params = _stored_run(tmp_path)
    synthetic = distilled_dir(params) / "synthetic.pt"
    torch.save(payload, synthetic)
    synthetic_re = re.escape(str(synthetic))  # a temporary path may hold regex characters
    with pytest.raises(PaperlibError, match=f"cache entry {synthetic_re} cannot be read \\({reason}\\); nothing"):
        run(params, eval_epochs=2)


@pytest.mark.parametrize(("change", "reason"), [
    (lambda saved: {**saved, "images": saved["images"][:, :1]}, r"images of shape \(\d+, 1, "),
    (lambda saved: {**saved, "images": saved["images"].long()}, "images are torch.int64, not a float tensor"),
    (lambda saved: {**saved, "labels": saved["labels"].flip(0)}, "labels are not \\d+ per class in class order"),
    (lambda saved: {**saved, "labels": saved["labels"].float()}, "labels are not \\d+ per class in class order"),
    (lambda saved: {**saved, "images": saved["images"] * float("nan")}, "images with pixels that are not finite"),
])
def test_a_distilled_set_of_the_wrong_shape_is_an_error_naming_it(tmp_path, change, reason):
    import torch

    params = _stored_run(tmp_path)
    synthetic = distilled_dir(params) / "synthetic.pt"
    torch.save(change(torch.load(synthetic)), synthetic)
    synthetic_re = re.escape(str(synthetic))  # a temporary path may hold regex characters
    with pytest.raises(PaperlibError, match=f"cache entry {synthetic_re} cannot be read \\({reason}.*\\); nothing"):
        run(params, eval_epochs=2)  # else a torch error about channels deep in the evaluation


def test_writing_where_a_file_or_a_folder_is_in_the_way_is_a_one_line_error(tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir").mkdir()
    in_the_way = r"cannot write .*afile/x.json \(.*afile is a file, not a folder\); point the cache"
    with pytest.raises(PaperlibError, match=in_the_way):
        with atomic_write(tmp_path / "afile" / "x.json") as tmp:
            tmp.write_text("{}")
    with pytest.raises(PaperlibError, match=r"cannot write .*adir: it is a folder; name a file"):
        with atomic_write(tmp_path / "adir") as tmp:
            tmp.write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]  # no temporary file left
    blocked = make_params(dataset="cmnist", source="digits", method="random", ipc=1, num_eval=1, eval_epochs=1,
                          cache_dir=str(tmp_path / "afile"))  # a run takes a lock before it writes anything
    with pytest.raises(PaperlibError, match=r"cannot write .*afile/.* \(.*afile is a file, not a folder\)"):
        run(blocked)


def test_a_cache_that_is_a_file_is_a_one_line_error_for_a_dataset_too(tmp_path):
    """Building a dataset looked at its entry before taking a lock: NotADirectoryError's traceback."""
    (tmp_path / "afile").write_text("")
    params = make_params(dataset="cmnist", source="digits", cache_dir=str(tmp_path / "afile"))
    with pytest.raises(PaperlibError, match=r"cannot write .*afile/.* \(.*afile is a file, not a folder\)"):
        build_dataset(params)


def test_an_entry_that_cannot_be_opened_is_not_called_damaged_nor_rebuilt_over(tmp_path, monkeypatch):
    """A record or tensor file another user wrote with umask 077: PermissionError's traceback for JSON, and for
    tensors "cut short, damaged ... delete it" (a dataset: rebuilt over a whole file)."""
    (tmp_path / "record.json").write_text("{}")
    save_tensors(tmp_path / "set.pt", {"x": torch.zeros(1)})

    import builtins

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    def open_denied(file, *args, _open=builtins.open, **kwargs):  # as root, a chmod 000 file still opens
        return denied() if str(file).endswith("set.pt") else _open(file, *args, **kwargs)

    (tmp_path / "latin.json").write_bytes(b'{"a": "\xe9"}')  # not UTF-8: damaged, one line, not a traceback
    with pytest.raises(PaperlibError, match=r"latin.json cannot be read \(.*utf-8.*\); nothing was recomputed"):
        load_json(tmp_path / "latin.json")
    (tmp_path / "gone.json").write_text("{}")

    def read_bytes(path):  # gone.json is removed between the look and the read; the others are refused
        if path.name == "gone.json":
            raise FileNotFoundError(2, "No such file")
        denied()

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(builtins, "open", open_denied)
    assert load_json(tmp_path / "gone.json") is None  # absent, as if never written
    opened = r"cache entry .*{} cannot be opened \(Permission denied\); make it readable .* a cache of your own$"
    with pytest.raises(PaperlibError, match=opened.format("record.json")):
        load_json(tmp_path / "record.json")
    for rebuild in (False, True):
        with pytest.raises(PaperlibError, match=opened.format("set.pt")):
            load_tensors(tmp_path / "set.pt", rebuild=rebuild)


def test_a_file_system_without_locks_warns_and_runs_unlocked(tmp_path, monkeypatch):
    """flock on a file system without locks (Lustre mounted noflock) raised a bare OSError at every run."""
    import errno
    import fcntl

    from paperlib.core.store import exclusive

    def no_locks(handle, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ran = []
    with pytest.warns(UserWarning, match=r"no file locks on .* \(Function not implemented\): processes running"):
        with exclusive(tmp_path / "locks" / "x.lock"):
            ran.append(True)
    assert ran == [True]


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_thread_waiting_for_another_process_lock_can_be_stopped(tmp_path):
    """A blocking flock held the thread in C: the explorer's stop (an exception raised in the thread) waited for
    the other process to release the lock, perhaps for the whole of its run."""
    import ctypes
    import fcntl
    import threading

    from paperlib.core.store import exclusive

    class Stopped(BaseException):
        pass

    lock, outcome = tmp_path / "locks" / "x.lock", []
    lock.parent.mkdir()

    def wait_for_the_lock():
        try:
            with exclusive(lock):
                outcome.append("got the lock")
        except Stopped:
            outcome.append("stopped")

    with open(lock, "a") as other:  # another open file description: to flock, another process
        fcntl.flock(other, fcntl.LOCK_EX)
        waiter = threading.Thread(target=wait_for_the_lock, daemon=True)
        waiter.start()
        waiter.join(timeout=0.3)
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(waiter.ident), ctypes.py_object(Stopped))
        waiter.join(timeout=2)
        stopped_while_held = not waiter.is_alive()
    waiter.join(timeout=5)  # without the fix it ends here, once the lock is released
    assert stopped_while_held and outcome == ["stopped"]
    with exclusive(lock):  # and the lock is free again
        pass


def test_an_empty_cache_or_data_folder_is_unset_not_the_current_directory(tmp_path, monkeypatch):
    """``cache_dir: ""`` in a file wrote records into the current directory (a notebook's kernel: notebooks/)."""
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    assert cache_root("") == cache_root(None) == tmp_path
    params = make_params(cache_dir="", data_dir="", source="")
    assert (params.cache_dir, params.data_dir, params.source) == (None, None, make_params().source)


@pytest.mark.skipif(sys.platform == "win32", reason="a file size limit (RLIMIT_FSIZE) is POSIX")
def test_a_disk_that_fills_up_while_writing_is_a_one_line_error_and_leaves_no_file(tmp_path):
    """A tensor write that met a full disk ended in torch's RuntimeError traceback (its own C++ file writer)."""
    import resource
    import signal

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    ignored = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), not the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, limit[1]))  # files of 64 KiB at most: a full disk
    try:
        with pytest.raises(PaperlibError, match=r"^cannot write .*x\.pt \(File too large\); free some space"):
            save_tensors(tmp_path / "x.pt", {"images": torch.zeros(1 << 16)})  # 256 KiB
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, ignored)
    assert list(tmp_path.iterdir()) == []  # neither the entry nor its temporary file
    with pytest.raises(FileNotFoundError):  # another failure inside the write is its own error, not a full disk
        with atomic_write(tmp_path / "copy.json") as tmp:
            tmp.write_bytes((tmp_path / "absent.json").read_bytes())


def test_a_folder_in_place_of_a_cache_entry_stops_before_anything_is_computed(tmp_path):
    """It used to be taken for an entry not stored yet: computed (hours, for a run) and then not written."""
    build_dataset(dataset="cmnist", source="digits", cache_dir=str(tmp_path))
    (entry,) = (tmp_path / "datasets").glob("*.pt")
    entry.unlink()
    entry.mkdir()
    entry_text = re.escape(str(entry))  # a temporary path may hold regex characters
    message = f"^cache entry {entry_text} is a folder, not a file; move it away \\(nothing was computed\\)$"
    with pytest.raises(PaperlibError, match=message):
        build_dataset(dataset="cmnist", source="digits", cache_dir=str(tmp_path))
    (tmp_path / "record.json").mkdir()
    with pytest.raises(PaperlibError, match="record.json is a folder, not a file"):
        load_json(tmp_path / "record.json")


@pytest.mark.parametrize("entry", ["record", "facts.json", "synthetic.png"])
def test_a_folder_in_place_of_a_run_s_entry_stops_it_before_it_distils(tmp_path, entry, monkeypatch):
    """A record is looked up through the results store, and a distilled set's facts only once its tensors load:
    each path took the folder for an entry not stored yet, distilled, evaluated, then failed to write."""
    params = make_params(**TINY_RUN, cache_dir=str(tmp_path))
    folder = record_dir(params) / "record.json" if entry == "record" else distilled_dir(params) / entry
    folder.mkdir(parents=True)
    monkeypatch.setattr("paperlib.experiments.runner.distill", lambda *args: pytest.fail("it distilled"))
    folder_text = re.escape(str(folder))  # a temporary path may hold regex characters
    with pytest.raises(PaperlibError, match=f"^cache entry {folder_text} is a folder, not a file"):
        run(params)


def test_an_unreadable_dataset_entry_is_reported_and_rebuilt_in_seconds(tmp_path, capsys):
    first = build_dataset(dataset="cmnist", source="digits", cache_dir=str(tmp_path))
    (entry,) = (tmp_path / "datasets").glob("*.pt")
    _truncate(entry)
    again = build_dataset(dataset="cmnist", source="digits", cache_dir=str(tmp_path))
    warning = capsys.readouterr().err.strip()
    assert warning.startswith(f"warning: cache entry {entry} cannot be read") and warning.endswith("rebuilding it")
    assert "\n" not in warning and (again.train.images == first.train.images).all()


_CHILD = """
import json, sys
from paperlib.experiments.runner import run
record = run(**json.loads(sys.argv[1]))
print(json.dumps({"cached": record["cached"], "acc": record["metrics"]["acc"]}))
"""


def test_two_processes_computing_the_same_run_leave_one_complete_record(tmp_path):
    settings = json.dumps({**TINY_RUN, "iterations": 20, "cache_dir": str(tmp_path)})
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, settings], stdout=subprocess.PIPE, text=True)
                for _ in range(2)]
    results = [json.loads(child.communicate(timeout=300)[0]) for child in children]
    assert all(child.returncode == 0 for child in children)
    # The run lock makes the second wait and take the first's record: computed once, the same numbers.
    assert sorted(r["cached"] for r in results) == [False, True]
    assert results[0]["acc"] == results[1]["acc"]
    params = make_params(**{**TINY_RUN, "iterations": 20, "cache_dir": str(tmp_path)})
    assert load_record(params)["metrics"]["acc"] == results[0]["acc"]
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp") or p.name == "checkpoint.pt"]
    assert not leftovers


def test_a_file_written_whole_is_readable_by_the_group_and_nothing_is_left_after_a_failure(tmp_path):
    umask = os.umask(0o022)  # a cluster's usual umask: group and others may read
    try:
        with atomic_write(tmp_path / "record.json") as tmp:
            tmp.write_text("{}")
        with pytest.raises(RuntimeError), atomic_write(tmp_path / "record.json") as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("killed mid-write")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "record.json").stat().st_mode) == 0o644  # mkstemp's 0600 hid it from others
    assert (tmp_path / "record.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_cache_entrys_report_gives_the_reason_or_the_errors_first_line():
    from paperlib.core.store import unreadable_message

    said = unreadable_message("x.pt", "no 'images'", "rebuilding it")
    assert said == "cache entry x.pt cannot be read (no 'images'); rebuilding it"
    assert "(cut short)" in unreadable_message("x.pt", ValueError("cut short\nand a long trace"), "stop")
    assert "(KeyError)" in unreadable_message("x.pt", KeyError(), "stop")  # an error without a text: its type
    assert "(no reason given)" in unreadable_message("x.pt", "", "stop")


def test_a_dataset_other_than_the_parameters_describe_is_refused_before_anything_is_cached(tmp_path):
    """What is cached for a run is keyed by its parameters alone: a dataset built for other parameters would be
    served another dataset's distilled set or KDE weights, or have its own stored under their key."""
    params = make_params(TINY_RUN, cache_dir=str(tmp_path), target="weighted", weights="kde", kde_encoder="pixels")
    other = build_dataset(params, conflict_ratio=0.2)  # same shapes and labels: only the key tells them apart
    with pytest.raises(PaperlibError, match=r"^the dataset given is not the one these parameters describe "
                                            r"\(dataset='cmnist'\), and the distilled set cached"):
        distilled_set(other, params, torch.device("cpu"))
    with pytest.raises(PaperlibError, match="and the KDE weights cached under their key"):
        kde_weights(other, params, torch.device("cpu"))
    root = cache_root(str(tmp_path))
    assert not [path for folder in ("distilled", "weights") for path in (root / folder).glob("*")]  # nothing stored
    images, labels, _ = distilled_set(build_dataset(params), params, torch.device("cpu"))  # its own dataset runs
    assert images.shape[0] == labels.shape[0] == 10
