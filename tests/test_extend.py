"""Extending the companion: a new dataset preset and a new target are one registered class each plus one line of
YAML; nothing else in paperlib changes. (The toy entries are removed again after each test.)"""

from __future__ import annotations

import json

import pytest
import torch

from paperlib.cli import main
from paperlib.core.errors import PaperlibError
from paperlib.core.keys import cache_key
from paperlib.core.params import make_params
from paperlib.data.presets import PRESETS, RenderedPreset
from paperlib.distill.targets import TARGETS, GroupsTarget, Target, WeightedTarget, normalise_rows
from paperlib.experiments.runner import run
from paperlib.experiments.suite import load_suite, run_suite
from paperlib.report.reference import reported, variant
from paperlib.report.styles import distilled_set_name
from paperlib.report.tables import results_table


def _invert_digits(gray, attrs, params, gen):
    """The toy bias: the bias-aligned images of class c are drawn inverted when c is even."""
    flip = (attrs % 2 == 0).view(-1, 1, 1, 1)
    return torch.where(flip, 1 - gray, gray).expand(-1, 3, -1, -1)  # a view: the preset must not write into it


class FirstHalfTarget(Target):
    """A toy target: the plain average of the first half of each class's real batch."""

    name = "toy_first_half"

    @classmethod
    def for_run(cls, dataset, params, device):
        return cls(), {"toy": True}

    def aggregation(self, batch):
        rows = batch.inclusion.clone()
        rows[:, rows.shape[1] // 2:] = 0
        return normalise_rows(rows)[:, None, :]


@pytest.fixture
def toy_entries():
    PRESETS.register("toy_inverted", RenderedPreset("digits", "inversion", sources=("digits",),
                                                    uses=("conflict_ratio",), render=_invert_digits))
    TARGETS.register(FirstHalfTarget.name, FirstHalfTarget)
    yield
    PRESETS.unregister("toy_inverted")
    TARGETS.unregister(FirstHalfTarget.name)


def test_a_toy_preset_and_a_toy_target_run_through_describe_run_and_a_suite(toy_entries, tmp_path, capsys):
    assert main(["describe", "--set", "dataset=toy_inverted", "--set", "conflict_ratio=0.2",
                 "--set", f"cache_dir={tmp_path}"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train"]["aligned_fraction"] == pytest.approx(0.8, abs=0.005)

    suite = tmp_path / "toy.yaml"
    suite.write_text(  # the one YAML line of each new entry: dataset and target
        f"defaults: {{cache_dir: {json.dumps(str(tmp_path))}, device: cpu, progress: false, net_width: 8, "
        "num_eval: 1, eval_epochs: 1, iterations: 2, batch_real: 8, ipc: 1}\n"
        "experiments:\n"
        "  - name: toy\n"
        "    settings: {dataset: toy_inverted, conflict_ratio: 0.2}\n"
        "    runs:\n"
        "      dm: {method: dm}\n"
        "      dm_toy: {method: dm, target: toy_first_half}\n")
    specs = load_suite(suite)
    run_suite(specs)
    table = results_table(specs)
    assert list(table["status"]) == ["done", "done"] and list(table["target"]) == ["vanilla", "toy_first_half"]
    assert list(table["distilled_set"]) == ["DM", "DM + toy_first_half"]  # no display name: its registered name
    record = run(specs[1].params)
    assert record["cached"] and record["toy"] is True
    assert record["distilled"] != run(specs[0].params)["distilled"]  # another target, another distilled set


def test_a_target_subclass_without_a_name_of_its_own_is_refused():
    """It inherited its parent's, so a changed FairDD's sets were labelled "DM + groups"."""
    with pytest.raises(TypeError, match="^Unnamed sets no name: give the class name = '...', the name it is "):
        type("Unnamed", (GroupsTarget,), {"aggregation": lambda self, batch: None})


def test_a_built_preset_needs_its_builder_and_a_way_to_find_files_no_source_knows():
    """Without ``present``, a source of its own made every look for its files (make plan, notebook 04) an error."""
    from paperlib.data.presets import BuiltPreset

    with pytest.raises(PaperlibError, match="^a BuiltPreset needs builder="):
        BuiltPreset("mnist", "none")
    with pytest.raises(PaperlibError, match="^a BuiltPreset whose source 'my_faces' is not in .*SOURCES needs "):
        BuiltPreset("my_faces", "gender", sources=("my_faces",), builder=lambda params: None)
    BuiltPreset("my_faces", "gender", sources=("my_faces",), builder=lambda params: None, present=lambda p: False)


def test_unregistered_names_fail_with_the_registered_choices(toy_entries):
    with pytest.raises(PaperlibError, match="unknown dataset 'toy_inverte'.*did you mean 'toy_inverted'"):
        make_params(dataset="toy_inverte")
    PRESETS.unregister("toy_inverted")
    with pytest.raises(PaperlibError, match="unknown dataset 'toy_inverted'"):
        make_params(dataset="toy_inverted")
    PRESETS.register("toy_inverted", RenderedPreset("digits", "inversion", sources=("digits",)))


def test_registering_a_name_twice_says_how_to_replace_it(toy_entries):
    """A notebook cell that registers a target, run twice, registers it twice."""
    with pytest.raises(PaperlibError, match="^target 'toy_first_half' is registered already; pick another name, or "
                                            "unregister it first to replace it"):
        TARGETS.register(FirstHalfTarget.name, FirstHalfTarget)
    TARGETS.unregister(FirstHalfTarget.name)
    TARGETS.register(FirstHalfTarget.name, FirstHalfTarget)  # replaced
    assert TARGETS[FirstHalfTarget.name] is FirstHalfTarget


def test_a_rendered_preset_must_key_its_ratio():
    """Without its ratio in ``uses``, datasets built at two ratios would share one cache entry."""
    with pytest.raises(PaperlibError, match="must list conflict_ratio .or majority_ratio. in its uses"):
        RenderedPreset("digits", "inversion", sources=("digits",), render=_invert_digits)


def test_a_target_version_moves_its_runs_cache_key(toy_entries):
    params = make_params(dataset="toy_inverted", method="dm", target=FirstHalfTarget.name)
    before = cache_key(params, "distilled")
    FirstHalfTarget.version = 1
    try:
        assert cache_key(params, "distilled") != before
    finally:
        FirstHalfTarget.version = 0
    assert cache_key(params, "distilled") == before


class _SharperFairDD(GroupsTarget):
    """Changes FairDD's aggregation: its sets are not FairDD's, whatever it inherits."""

    name = "toy_sharper_fairdd"


class _SharperKde(WeightedTarget):
    name = "toy_sharper_kde"


class _ReadsWeights(Target):
    """Reads ``weights`` without letting them name its sets."""

    name = "toy_reads_weights"
    uses = ("weights",)


def test_a_subclassed_target_is_named_by_its_own_name_and_beside_no_paper():
    """A subclass of FairDD's or KDE's target is another target: neither their names in tables nor the papers'
    numbers of FairDD or KDE stand beside its runs; a target reading ``weights`` is named by them only if it
    says so."""
    for target in (_SharperFairDD, _SharperKde, _ReadsWeights):
        TARGETS.register(target.name, target)
    try:
        for target in (_SharperFairDD, _SharperKde, _ReadsWeights):
            params = make_params(dataset="cmnist_fg", method="dm", target=target.name, weights="kde")
            assert distilled_set_name("dm", target.name, "kde") == f"DM + {target.name}"
            assert variant(params) == "other" and reported(params) is None
        fairdd = make_params(dataset="cmnist_fg", method="dm", target="groups")  # the built-ins keep theirs
        kde = make_params(dataset="cmnist", conflict_ratio=0.05, method="dm", ipc=50, target="weighted", weights="kde")
        assert distilled_set_name("dm", "groups") == "DM + FairDD" and reported(fairdd)["acc"] == 94.61
        assert distilled_set_name("dm", "weighted", "kde") == "DM + KDE" and reported(kde)["acc"] == 91.5
    finally:
        for target in (_SharperFairDD, _SharperKde, _ReadsWeights):
            TARGETS.unregister(target.name)


class _TensorFactsTarget(FirstHalfTarget):
    name = "toy_tensor_facts"

    @classmethod
    def for_run(cls, dataset, params, device):
        return cls(), {"share": torch.tensor(0.5)}


class _MetricsFactTarget(FirstHalfTarget):
    name = "toy_metrics_fact"

    @classmethod
    def for_run(cls, dataset, params, device):
        return cls(), {"metrics": "mine", "toy_share": 0.5}


@pytest.mark.parametrize("target, message", [
    (_TensorFactsTarget, "target 'toy_tensor_facts' returned facts that cannot be stored as JSON .*Tensor"),
    # a fact named metrics replaced the record's metrics, and the record then read as unreadable
    (_MetricsFactTarget, "target 'toy_metrics_fact' returned facts named metrics, which a run's record writes itself"),
])
def test_facts_that_cannot_be_stored_stop_the_run_before_it_distils(target, message, tmp_path, monkeypatch):
    import paperlib.experiments.runner as runner

    TARGETS.register(target.name, target)
    monkeypatch.setattr(runner, "distill", lambda *args: pytest.fail("distilled before the facts were checked"))
    try:
        with pytest.raises(PaperlibError, match=message):
            run(dataset="mnist", source="digits", method="dm", target=target.name, cache_dir=str(tmp_path),
                device="cpu", progress=False, ipc=1, batch_real=8)
    finally:
        TARGETS.unregister(target.name)
    assert not list(tmp_path.rglob("facts.json"))


def test_the_reserved_names_are_every_field_a_record_writes_itself(toy_entries, tmp_path):
    """``OWN_FIELDS`` cannot fall behind the record: a run's fields, less its target's facts, are all in it."""
    from paperlib.experiments.runner import OWN_FIELDS

    record = run(dataset="toy_inverted", conflict_ratio=0.2, method="dm", target=FirstHalfTarget.name,
                 cache_dir=str(tmp_path), device="cpu", progress=False, ipc=1, batch_real=8, iterations=2,
                 net_width=8, num_eval=1, eval_epochs=1)
    assert set(record) - {"toy"} <= set(OWN_FIELDS) and "toy" not in OWN_FIELDS


def test_a_method_registered_from_outside_distils_and_keys_its_sets(tmp_path):
    """A distillation method is one registered ``Method``; one whose ``uses`` miss what the engine reads (its sets
    would be shared across IPCs and targets) or without default iterations and image lr is refused."""
    from paperlib.distill.dm import dm_step
    from paperlib.distill.methods import DM_USES, METHODS, Method

    with pytest.raises(PaperlibError, match="ipc, num_distill, .*target, iterations, .* missing: start from DM_USES"):
        Method(uses=("channels_last",), step=dm_step, iterations=10, lr_img=lambda ipc: 1.0)
    with pytest.raises(PaperlibError, match=r"default iterations \(>= 1, got 0\) and lr_img"):
        Method(DM_USES, dm_step)
    METHODS.register("toy_dm", Method(DM_USES, dm_step, iterations=2, lr_img=lambda ipc: 0.5, display_name="toy DM"))
    try:
        settings = dict(dataset="mnist", source="digits", method="toy_dm", cache_dir=str(tmp_path), device="cpu",
                        progress=False, ipc=1, batch_real=8, net_width=8, num_eval=1, eval_epochs=1)
        params = make_params(settings)
        assert (params.iterations, params.lr_img) == (2, 0.5)  # the method's defaults
        assert cache_key(params, "distilled") != cache_key(make_params(settings, ipc=2), "distilled")
        assert cache_key(params, "distilled") != cache_key(make_params(settings, target="groups"), "distilled")
        record = run(params)
        assert len(record["losses"]) == 2 and distilled_set_name("toy_dm", "groups") == "toy DM + FairDD"
    finally:
        METHODS.unregister("toy_dm")


class _FlatTarget(FirstHalfTarget):
    name = "toy_flat"

    def aggregation(self, batch):
        return super().aggregation(batch)[:, 0, :]  # the J axis forgotten


def test_an_aggregation_matrix_of_the_wrong_shape_and_weights_of_the_wrong_length_are_named(tmp_path):
    from paperlib.distill.engine import Distiller
    from paperlib.distill.weights import SAMPLE_WEIGHTINGS, SampleWeighting
    from paperlib.data import build_dataset

    TARGETS.register(_FlatTarget.name, _FlatTarget)
    SAMPLE_WEIGHTINGS.register("toy_short", SampleWeighting(lambda dataset, params, device: (torch.ones(3), {})))
    try:
        settings = dict(dataset="mnist", source="digits", method="dm", cache_dir=str(tmp_path), device="cpu",
                        progress=False, ipc=1, batch_real=8, net_width=8)
        params = make_params(settings, target=_FlatTarget.name)
        dataset = build_dataset(params)
        distiller = Distiller(dataset, params, _FlatTarget(), torch.device("cpu"))
        with pytest.raises(PaperlibError, match=r"target 'toy_flat' gave a torch.float32 aggregation matrix of shape "
                                                r"\(10, 8\); it must be float32 \[K, J, B\] = \[10, J, 8\]"):
            distiller.step()
        with pytest.raises(PaperlibError, match=r"sample weights of shape \(3,\); a weighting gives \[\d+\], one per "
                                                "training sample"):
            run(make_params(settings, target="weighted", weights="toy_short"))
    finally:
        TARGETS.unregister(_FlatTarget.name)
        SAMPLE_WEIGHTINGS.unregister("toy_short")


_PLUGIN = '''
from paperlib.data.presets import PRESETS, RenderedPreset
from paperlib.distill.targets import TARGETS, VanillaTarget


class Plugged(VanillaTarget):
    name = "toy_plugged"


TARGETS.register(Plugged.name, Plugged)
PRESETS.register("toy_plugged", RenderedPreset("digits", "none", sources=("digits",)))
'''


def _paperlib_process(args, tmp_path, plugins):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "PAPERLIB_PLUGINS": plugins}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)


def test_modules_named_in_paperlib_plugins_register_for_the_command_line(tmp_path):
    """Entries registered outside the package reach every process (the CLI, make reproduce, job processes)."""
    (tmp_path / "toy_plugin.py").write_text(_PLUGIN)
    done = _paperlib_process(["-m", "paperlib", "describe", "--set", "dataset=toy_plugged", "--set",
                              f"cache_dir={tmp_path}"], tmp_path, " toy_plugin ,")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["train"]["aligned_fraction"] == 1.0  # the plugin's preset, built
    done = _paperlib_process(["-c", "from paperlib.distill.targets import TARGETS; print(TARGETS.names())"],
                             tmp_path, "toy_plugin")
    assert "toy_plugged" in done.stdout
    missing = ("PAPERLIB_PLUGINS names 'no_such_plugin', which is not an importable module; put its folder on "
               "PYTHONPATH (an absolute path) or fix the name")
    for command in (["-m", "paperlib", "describe"], ["-m", "paperlib.reproduce", "--plan"]):  # one line, as main()'s
        done = _paperlib_process(command, tmp_path, "toy_plugin,no_such_plugin")
        assert (done.returncode, done.stderr) == (2, f"error: {missing}\n")
    done = _paperlib_process(["-c", "import paperlib"], tmp_path, "no_such_plugin")  # a library user: the exception
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"paperlib.core.errors.PaperlibError: {missing}"
    (tmp_path / "twice_plugin.py").write_text(_PLUGIN.replace("toy_plugged", "cmnist"))  # a built-in preset's name
    done = _paperlib_process(["-m", "paperlib", "describe"], tmp_path, "twice_plugin")
    assert (done.returncode, done.stderr) == (2, "error: the plugin 'twice_plugin' (PAPERLIB_PLUGINS): dataset "
                                                 "'cmnist' is registered already; pick another name, or unregister it "
                                                 "first to replace it (a notebook cell run twice registers twice)\n")
    (tmp_path / "broken_plugin.py").write_text("import no_such_dependency\n")
    done = _paperlib_process(["-m", "paperlib", "describe"], tmp_path, "broken_plugin")
    assert done.returncode == 1 and "No module named 'no_such_dependency'" in done.stderr  # its own traceback
