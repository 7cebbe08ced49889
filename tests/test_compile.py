"""``torch_compile``: when long work is compiled, that compiled training computes what eager training computes (up
to float reassociation) and is bit-identical run to run, and that a failed compilation falls back to eager."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch._dynamo.utils import counters

from paperlib.core.errors import PaperlibError
from paperlib.core.params import make_params
from paperlib.core.runtime import COMPILE_MIN_STEPS, Compiled, compile_wanted
from paperlib.train.loop import TrainSettings, train_classifier
from paperlib.train.models import ConvNet, init_parameters

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_compiles_long_cpu_work_only(monkeypatch):
    monkeypatch.setattr("paperlib.core.runtime._cxx_compiler_found", lambda: True)
    assert compile_wanted("auto", CPU, COMPILE_MIN_STEPS)
    assert not compile_wanted("auto", CPU, COMPILE_MIN_STEPS - 1)
    assert not compile_wanted("auto", CUDA, 10 * COMPILE_MIN_STEPS)  # not yet measured on a GPU
    assert compile_wanted("always", CUDA, 1) and not compile_wanted("never", CPU, 10 * COMPILE_MIN_STEPS)
    monkeypatch.setattr("paperlib.core.runtime._cxx_compiler_found", lambda: False)
    assert not compile_wanted("auto", CPU, 10 * COMPILE_MIN_STEPS)  # inductor needs a C++ compiler
    with pytest.raises(PaperlibError, match=r"^torch_compile=always needs a C\+\+ compiler for inductor's CPU code"):
        compile_wanted("always", CPU, 1)  # it failed at the first batch, in a two-line warning with no reason


def test_unknown_compile_setting_is_a_one_line_error():
    """The same settings and the same message from the runtime and from the parameters (one list of them)."""
    for wrong in (lambda: compile_wanted("on", CPU, 1), lambda: make_params(torch_compile="on")):
        with pytest.raises(PaperlibError, match=r"^unknown torch_compile 'on'; choose one of: auto, always, never$"):
            wrong()


def test_a_failed_compilation_warns_once_and_runs_eagerly():
    def broken(x: torch.Tensor) -> torch.Tensor:
        raise torch._dynamo.exc.TorchDynamoException("no C++ compiler found\nsecond line")

    forward = Compiled(lambda x: x * 2, enabled=False)
    forward.compiled = broken
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed \(no C\+\+ compiler found\); running eagerly"):
        assert torch.equal(forward(torch.ones(2)), torch.full((2,), 2.0))
    assert forward.compiled is None and torch.equal(forward(torch.ones(1)), torch.full((1,), 2.0))


def _trained(mode: str) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(40, 1, 28, 28, generator=gen)
    labels = torch.arange(40) % 10
    model = init_parameters(ConvNet(1, 10, 28, width=8), gen)
    settings = TrainSettings(epochs=3, batch=32, dsa_strategy=None, torch_compile=mode)
    train_classifier(model, images, labels, settings, gen, show_progress=False)
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.skipif(not compile_wanted("auto", CPU, COMPILE_MIN_STEPS), reason="no C++ compiler for inductor")
def test_compiled_training_matches_eager_and_repeats_bit_for_bit():
    eager = _trained("never")
    torch._dynamo.reset()  # compiled from scratch, whatever another test compiled: its graphs are counted
    counters.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = _trained("always")
    failed = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
    if failed and re.search(r"C\+\+|CppCompile|compiler|OpenMP|omp\.h", failed[0]):
        # a compiler that cannot build inductor's code (e.g. clang without OpenMP): the eager fallback ran
        pytest.skip(f"compiled code could not be built here, nothing to compare: {failed[0]}")
    assert not failed, failed[0]  # any other failure to compile is a finding
    graphs = counters["stats"]["unique_graphs"]
    again = _trained("always")
    assert all(torch.equal(a, b) for a, b in zip(compiled, again))
    assert graphs > 0  # it ran compiled code (that it rounds differently is the CPU's and inductor's business)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_the_compiler_is_looked_up_once_per_process(monkeypatch):
    from paperlib.core import runtime

    looked_up = []
    monkeypatch.setattr(runtime.shutil, "which", lambda name: looked_up.append(name) or "/usr/bin/g++")
    runtime._cxx_compiler_found.cache_clear()
    try:
        assert compile_wanted("auto", CPU, COMPILE_MIN_STEPS) and compile_wanted("auto", CPU, COMPILE_MIN_STEPS)
        assert len(looked_up) == 1  # the first name found answers for the whole process
    finally:
        runtime._cxx_compiler_found.cache_clear()


def test_training_takes_the_forward_it_is_given():
    """The gradient-matching inner loop trains one network many times through the one wrapper it holds."""
    gen = torch.Generator().manual_seed(0)
    model = init_parameters(ConvNet(1, 10, 28, width=8), gen)
    calls = []
    forward = Compiled(model, enabled=False)
    forward.compiled = lambda x: calls.append(x.shape[0]) or model(x)  # stands in for compiled code
    settings = TrainSettings(epochs=2, batch=32, dsa_strategy=None)
    train_classifier(model, torch.randn(40, 1, 28, 28, generator=gen), torch.arange(40) % 10, settings, gen,
                     show_progress=False, forward=forward)
    assert sum(calls) == 2 * 40  # every image of both epochs went through it (in micro-batches)


@pytest.mark.parametrize("trainer", ["lff", "selecmix"])
def test_debiasing_trainers_run_their_networks_through_the_training_forward(monkeypatch, trainer):
    import paperlib.train.lff as lff
    import paperlib.train.selecmix as selecmix

    module = {"lff": lff, "selecmix": selecmix}[trainer]
    wrapped = []

    seen = []  # per wrapper: the images that went through it

    def recording(fn, images, settings):
        wrapped.append(settings.torch_compile)
        forward, count = Compiled(fn, enabled=False), len(seen)
        seen.append(0)

        def counting(*args):  # stands in for compiled code
            seen[count] += args[0].shape[0]
            return fn(*args)

        forward.compiled = counting
        return forward

    monkeypatch.setattr(module, "training_forward", recording)
    gen = torch.Generator().manual_seed(0)
    biased, model = (init_parameters(ConvNet(1, 10, 28, width=8), gen) for _ in range(2))
    settings = TrainSettings(epochs=1, batch=32, dsa_strategy=None, torch_compile="always")
    images, labels = torch.randn(40, 1, 28, 28, generator=gen), torch.arange(40) % 10
    if trainer == "lff":
        lff.train_lff(biased, model, images, labels, settings, 0.7, 0.7, gen, show_progress=False)
    else:
        selecmix.train_selecmix(biased, model, images, labels, settings, 0.7, gen, show_progress=False)
    assert wrapped == ["always"] * 2  # the tested model and its biased companion (selecmix: one pass, both outputs)
    assert min(seen) >= 40  # and each network's training passes went through its wrapper, not around it
