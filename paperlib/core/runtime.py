"""Where work runs and how it is shown: device choice, generators, progress bars."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
import re
import shutil
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch
from tqdm import tqdm

from paperlib.core.errors import PaperlibError

T = TypeVar("T")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU. An unavailable device, or a GPU this torch build has no kernels
    for, is a clear error."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)
    if name != "auto":
        _check_available(name, device)
    _check_cuda_kernels(device)
    return device


def _check_available(name: str, device: torch.device) -> None:
    """A one-line error for an explicitly named device this machine does not have."""
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PaperlibError(f"device {name!r} requested but CUDA is not available; use device=auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise PaperlibError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA "
                            f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}; pick one of them or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise PaperlibError(f"device {name!r} requested but MPS is not available; use device=auto or cpu")


_ARCH = re.compile(r"(sm|compute)_(\d+)(\d)([a-z]?)")


def missing_kernels(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether a torch build compiled for ``arch_list`` (``torch.cuda.get_arch_list()``: ``sm_90``, ``compute_90``)
    has no kernel a GPU of compute ``capability`` runs: a binary (``sm_86``) runs on its major version at its minor
    or a later one (``sm_90a``, arch-specific, on exactly 9.0), and PTX (``compute_``) is compiled for any GPU at
    least as new. An empty list (no build information) is taken as fine."""
    def runs(kind: str, arch: tuple[int, int], specific: bool) -> bool:
        if kind == "compute":
            return arch <= capability
        return arch == capability if specific else arch[0] == capability[0] and arch[1] <= capability[1]

    built = [(kind, (int(major), int(minor)), bool(suffix)) for kind, major, minor, suffix in
             (match.groups() for match in map(_ARCH.fullmatch, arch_list) if match)]
    return bool(arch_list) and not any(runs(*one) for one in built)


def _check_cuda_kernels(device: torch.device) -> None:
    """A one-line error for a GPU the installed torch has no kernels for: torch only warns, and the run then fails
    at its first kernel ("no kernel image is available")."""
    if device.type != "cuda" or torch.version.cuda is None:
        return
    capability, archs = torch.cuda.get_device_capability(device), torch.cuda.get_arch_list()
    if missing_kernels(capability, archs):
        major, minor = capability
        gpu = torch.cuda.get_device_name(device)
        raise PaperlibError(f"{gpu} (compute capability {major}.{minor}, sm_{major}{minor}) has no kernels in this "
                            f"torch {torch.__version__}, built for {' '.join(archs)}; install a torch build for it "
                            "(pytorch.org), or set device=cpu")


def environment(device: torch.device) -> dict[str, Any]:
    """What, beside the parameters, decides whether two runs are bit-identical (docs/reproducibility.md): the
    torch build, the CPU kernels ATen chose (``AVX512``, ``AVX2``, ``DEFAULT``...), the thread count, whether a
    C++ compiler was found (``torch_compile=auto`` compiles only then, and compiled code rounds differently) and,
    on CUDA, the GPU. Two CPU records that agree on these, on their key and on ``torch_compile`` (an execution
    setting, in the record's ``params``) hold the same numbers on the same machine."""
    facts: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                             "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                             "cxx_compiler": _cxx_compiler_found()}
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``; all random draws in paperlib go through one."""
    return torch.Generator().manual_seed(seed)


def chunk_size(batch: torch.Tensor, on_cpu: int) -> int:
    """Images per forward pass over ``batch``: ``on_cpu`` on the CPU, where a small chunk's activations stay in
    the cache (measured faster, docs/performance.md); the whole batch on an accelerator, which large batches
    keep busy."""
    return on_cpu if batch.device.type == "cpu" else max(1, batch.shape[0])


def to_device(tensor: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``tensor``, drawn on the host, on ``device`` (as ``dtype``) without making the host wait for the device.

    On CUDA a copy from pageable host memory first waits for every kernel already queued on the stream; one
    staged in pinned memory with ``non_blocking`` does not (PyTorch's caching host allocator keeps the pinned
    copy alive until the transfer has ended), so a step's small host-drawn tensors (indices, DSA's parameters,
    fresh weights) no longer stall it. Elsewhere a plain ``.to``: the same values either way. A view whose
    elements share memory (``expand``) is made contiguous first: pinning copies into a tensor of its strides,
    which cannot be written.
    """
    tensor = tensor if dtype is None else tensor.to(dtype)
    if torch.device(device).type == "cuda" and tensor.device.type == "cpu":
        return tensor.contiguous().pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


# Optimiser steps (or distillation iterations) from which ``torch_compile=auto`` compiles on the CPU. A first
# compilation costs 15-50 s per input shape on a 2-core CPU (later processes read inductor's disk cache: ~5 s);
# a compiled ConvNet training step is ~1.7x faster there (docs/performance.md), so a few hundred steps repay it.
COMPILE_MIN_STEPS = 100
# torch_compile's settings (Params.torch_compile takes these): auto decides by the rule of compile_wanted
COMPILE_SETTINGS = ("auto", "always", "never")


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (0: leave torch's setting alone), restored afterwards: the
    in-process executors share this process with the caller."""
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def compile_wanted(setting: str, device: torch.device, steps: int) -> bool:
    """Whether to ``torch.compile`` work of ``steps`` steps: ``always`` / ``never`` as asked (``always`` on the CPU
    without a C++ compiler is a one-line error); ``auto`` on the CPU only (measured faster there; not yet measured
    on a GPU), from :data:`COMPILE_MIN_STEPS` steps, and only when a C++ compiler is installed (inductor needs
    one)."""
    if setting not in COMPILE_SETTINGS:
        raise PaperlibError(f"unknown torch_compile {setting!r}; choose one of: {', '.join(COMPILE_SETTINGS)}")
    if setting == "always" and device.type == "cpu" and not _cxx_compiler_found():
        raise PaperlibError("torch_compile=always needs a C++ compiler for inductor's CPU code (g++, c++ or clang++ "
                            "on PATH, or $CXX); install one, or use torch_compile=auto, which compiles only where "
                            "it can")
    if setting != "auto":
        return setting == "always"
    return device.type == "cpu" and steps >= COMPILE_MIN_STEPS and _cxx_compiler_found()


@functools.cache  # one lookup per process: compile_wanted runs once per evaluation model
def _cxx_compiler_found() -> bool:
    return any(shutil.which(name) for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if name)


class Compiled:
    """``fn`` through ``torch.compile`` (static shapes) when ``enabled``, else ``fn`` itself.

    Compiled code computes the same function up to float reassociation. Should compilation fail (a missing
    header, an unsupported operator), one warning is given and ``fn`` runs eagerly from then on.
    """

    def __init__(self, fn: Callable[..., Any], enabled: bool) -> None:
        self.fn = fn
        self.compiled = torch.compile(fn, dynamic=False) if enabled else None

    @property
    def active(self) -> bool:
        """Whether calls run compiled code (``False`` when not enabled or after a failed compilation)."""
        return self.compiled is not None

    def __call__(self, *args: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except torch._dynamo.exc.TorchDynamoException as error:  # compilation failed, not the computation
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                warnings.warn(f"torch.compile failed ({first_line}); running eagerly (torch_compile=never hides "
                              "this)", RuntimeWarning, stacklevel=2)
                self.compiled = None
        return self.fn(*args)


# The tensors' number type: every setting must fit it (paperlib.core.params), and an image whose squared pixels
# overflow it breaks every normalisation layer.
FLOAT32 = torch.finfo(torch.float32)


def diverged_pixels(images: torch.Tensor) -> str | None:
    """What is wrong with ``images`` ``[N, ...]`` when some pixels are not finite, or so large that their squares
    summed over one image overflow float32, as a normalisation layer's variance does (then every network trained
    on them returns NaN); ``None`` when they are computable. Reads one number on the host."""
    largest = float(images.detach().abs().amax())
    if not math.isfinite(largest):
        return "some pixels are not finite"
    if largest >= math.sqrt(FLOAT32.max / max(1, images[0].numel())):
        return f"|x| up to {largest:.3g}, whose squares overflow float32"
    return None


def index_range_problem(values: torch.Tensor, limit: int) -> str | None:
    """What is wrong with integer class or attribute indices ``values`` when one lies outside ``0..limit-1``
    (an index past the end would be counted in the next class's cells); ``None`` when all are in range or
    there are none. Reads two numbers on the host."""
    if not values.numel():
        return None
    low, high = int(values.min()), int(values.max())
    return f"must lie in 0..{limit - 1}, got {low}..{high}" if low < 0 or high >= limit else None


# Steps (distillation iterations, training epochs) between host reads of a loss kept on the device: a read
# waits for the device, so hot loops collect their losses and read them in one transfer this often.
HOST_READ_EVERY = 10


def read_on_host(pending: list[torch.Tensor]) -> tuple[list[float], int | None]:
    """The ``pending`` scalars (on any device) as floats, read in one transfer, and the position of the first
    non-finite one (``None`` when all are finite)."""
    values = torch.stack(pending).cpu().tolist()
    bad = next((i for i, value in enumerate(values) if not math.isfinite(value)), None)
    return values, bad


def wait_for(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (a no-op off CUDA), so a host clock read after it
    times that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_enabled(requested: bool) -> bool:
    """Bars are off when not requested, in CI (``CI`` set) and in batch notebook runs (``PAPERLIB_NO_PROGRESS`` set)."""
    return requested and not os.environ.get("CI") and not os.environ.get("PAPERLIB_NO_PROGRESS")


# Where a notebook's progress bars go in this context: ``None`` displays them in the running cell's output; a
# callable receives each bar's widget instead (the explorer's live runs, in a thread that has no cell).
PROGRESS_DISPLAY: contextvars.ContextVar[Callable[[Any], None] | None] = contextvars.ContextVar(
    "paperlib_progress_display", default=None)


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", enabled: bool = True,
             leave: bool = False) -> tqdm:
    """A tqdm bar, or a silent pass-through when disabled.

    Inside a notebook the bar is a widget (never stderr, which nbval compares);
    elsewhere it goes to stderr so stdout stays machine-readable.
    """
    disable = not progress_enabled(enabled)
    if in_notebook() and not disable:
        from tqdm.notebook import tqdm as notebook_tqdm

        show = PROGRESS_DISPLAY.get()
        bar = notebook_tqdm(iterable, total=total, desc=desc, leave=leave, display=show is None)
        if show is not None:
            show(bar.container)
        return bar
    return tqdm(iterable, total=total, desc=desc, leave=leave, disable=disable, file=sys.stderr,
                dynamic_ncols=True)
