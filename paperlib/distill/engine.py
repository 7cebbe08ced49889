"""The distillation loop shared by DM and gradient matching.

It owns everything around a matching step: the synthetic images and their
SGD optimiser, the seeded generator, real-batch sampling, the target,
checkpoints with resume, the progress bar and the NaN guard.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from paperlib.train.augment import DSA, DSAParams
from paperlib.core.keys import derive_seed
from paperlib.core.params import Params
from paperlib.data.container import BiasedDataset
from paperlib.distill.dc import default_loops
from paperlib.distill.init import class_major_labels, initial_images
from paperlib.distill.methods import METHODS, distilling_methods, run_tags
from paperlib.distill.sampling import RealSampler
from paperlib.distill.targets import Target
from paperlib.core.errors import PaperlibError
from paperlib.train.loop import TrainSettings, train_classifier
from paperlib.train.models import model_from_params
from paperlib.core.runtime import HOST_READ_EVERY, Compiled, compile_wanted, generator, progress, read_on_host, \
    diverged_pixels, to_device
from paperlib.core.store import KEEP_AND_STOP, load_tensors, save_tensors, unreadable_message


@dataclass
class DistillResult:
    """A synthetic set (normalised, class-major) and how it was made."""

    images: Tensor
    labels: Tensor
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0


class Distiller:
    """Set up once, then :meth:`step` per iteration; :func:`distill` drives it.

    Exposed as a class so the benchmark can time bare steps.
    """

    def __init__(self, dataset: BiasedDataset, params: Params, target: Target, device: torch.device,
                 run_iterations: int | None = None) -> None:
        """``run_iterations`` (default ``params.iterations``): the length of the run these steps belong to,
        which decides ``torch_compile=auto``. A method that distils nothing is a one-line error."""
        if not METHODS[params.method].distils:
            raise PaperlibError(f"method {params.method!r} does not distil; use one of "
                                f"{', '.join(distilling_methods())}")
        self.dataset, self.params, self.target, self.device = dataset, params, target, device
        self.k, self.ipc = dataset.num_classes, params.ipc
        self.gen = generator(derive_seed(params.seed, "distill", params.method, *run_tags(params)))
        # uint8 on the device, normalised per gathered batch: the same values as a float copy of the split, in a
        # quarter of its memory (CelebA at 64 px: 2 GB instead of 8)
        self.real_uint8 = dataset.train.images.to(device)
        self.sampler = RealSampler(dataset.train.labels, dataset.train.attributes, self.k,
                                   dataset.info.num_attributes, params.batch_real, params.sampling,
                                   params.stratified_min)
        self.method = METHODS[params.method]
        use_dsa = params.dsa and self.method.augment
        self.dsa = DSA(DSAParams(strategy=params.dsa_strategy)) if use_dsa else None
        self.net = model_from_params(params, dataset.channels, self.k, dataset.image_size).to(device)
        self.syn = initial_images(dataset, self.ipc, params.init, self.gen).to(device)
        if params.channels_last and "channels_last" in self.method.uses:
            self.net = self.net.to(memory_format=torch.channels_last)
            self.real_uint8 = self.real_uint8.contiguous(memory_format=torch.channels_last)
            self.syn = self.syn.contiguous(memory_format=torch.channels_last)
        self.syn.requires_grad_(True)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=params.precision == "bf16")
        self.syn_labels = class_major_labels(self.k, self.ipc).to(device)
        self.optimizer = torch.optim.SGD([self.syn], lr=params.lr_img, momentum=params.momentum_img)
        # DSA's groups (one transform per class) stay on the host, where DSA draws its parameters: reading them
        # from the device would wait for it twice per step.
        self.real_classes = class_major_labels(self.k, self.sampler.batch)
        self.syn_classes = class_major_labels(self.k, self.ipc)
        outer, inner = default_loops(self.ipc)
        self.outer_loop = params.outer_loop or outer
        self.inner_loop = params.inner_loop or inner
        # One decision per run: the inner loop's many short trainings add up to the run's steps.
        trainings = (self.outer_loop - 1) * self.inner_loop if "inner_loop" in self.method.uses else 1
        run_steps = (run_iterations or params.iterations) * max(1, trainings)
        self.compiled = compile_wanted(params.torch_compile, device, run_steps)
        self.embed = Compiled(self.net.embed, self.compiled)  # DM's forward passes
        self.forward = Compiled(self.net, self.compiled)  # trainings of the network; gradient matching's real side
        # Whether every training of the network so far kept a finite loss: kept on the device and read with the
        # matching losses, as the inner loop trains many times per iteration. Its learning rate's setting:
        self.network_finite = torch.ones((), dtype=torch.bool, device=device)
        self.network_lr_name = ""

    def real_batch(self) -> tuple[Tensor, Tensor]:
        """The next real batch (class-major ``[K*B, ...]``, on the device) and its target's ``[K, J, B]``
        aggregation matrix, left on the host: the steps read its structure (which rows are present, which
        samples each row holds) there without waiting for the device."""
        batch = self.sampler.sample(self.gen)
        images = self.real_uint8[to_device(batch.index.flatten(), self.device)]
        aggregation = self.target.aggregation(batch)
        shape = aggregation.shape  # read from the tensor's metadata: no wait for the device
        if aggregation.dtype != torch.float32 or len(shape) != 3 or (shape[0], shape[2]) != tuple(batch.index.shape):
            raise PaperlibError(f"target {self.params.target!r} gave a {aggregation.dtype} aggregation matrix of "
                                f"shape {tuple(shape)}; it must be float32 [K, J, B] = [{self.k}, J, "
                                f"{batch.index.shape[1]}] (paperlib.distill.targets)")
        return self.dataset.normalize_uint8(images), aggregation

    def step(self) -> Tensor:
        """One distillation iteration (the method's registered ``step``); returns its matching loss, on the
        device."""
        return self.method.step(self)

    def train_network(self, epochs: int, lr: float, batch: int, lr_name: str) -> None:
        """Train the network for ``epochs`` on the current synthetic set (detached), with constant ``lr`` (the
        setting ``lr_name``, named if the training diverges), batches of ``batch`` and no momentum or weight
        decay: gradient matching's inner loop, and DM's optional warm start (COBRA)."""
        settings = TrainSettings(epochs=epochs, lr=lr, batch=batch, momentum=0.0, weight_decay=0.0,
                                 lr_drop=False, dsa_strategy=self.params.dsa_strategy if self.dsa else None)
        with self.autocast:  # precision=bf16 covers these trainings too: in DC they are most of the work
            train_classifier(self.net, self.syn.detach().clone(), self.syn_labels, settings, self.gen,
                             show_progress=False, forward=self.forward, finite=self.network_finite)
        self.network_lr_name = lr_name

    def update_images(self, loss: Tensor) -> None:
        """One SGD step of the synthetic images on ``loss``."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    # --- checkpoints -------------------------------------------------------------------------
    def state(self, iteration: int, losses: list[float]) -> dict:
        """The checkpoint after ``iteration`` iterations: all a resumed run needs to end bit-identical (the
        images, the optimiser's momentum, the generator's state, the losses so far)."""
        return {"iteration": iteration, "syn": self.syn.detach().cpu().contiguous(),
                "optimizer": self.optimizer.state_dict(), "rng": self.gen.get_state(), "losses": list(losses)}

    def load_state(self, state: dict) -> tuple[int, list[float]]:
        """Continue from a :meth:`state`; returns its iteration count and losses."""
        with torch.no_grad():
            self.syn.copy_(state["syn"].to(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.gen.set_state(state["rng"])
        return int(state["iteration"]), list(state["losses"])


def _read_losses(pending: list[Tensor], first_iteration: int, distiller: Distiller) -> list[float]:
    """The pending losses as floats, read with the network's training flag in one transfer; a non-finite loss
    (iterations count from ``first_iteration``) or a diverged training of the network is an error."""
    params = distiller.params
    values, bad = read_on_host([*pending, distiller.network_finite.float()])
    if not values.pop():
        name = distiller.network_lr_name
        raise PaperlibError(
            f"the network's training inside distillation diverged (a non-finite loss) by iteration "
            f"{first_iteration + len(values) - 1}; lower {name} (now {getattr(params, name)})")
    if bad is not None:
        raise PaperlibError(f"matching loss became {values[bad]} at iteration {first_iteration + bad}; "
                            f"{_lower_lr_img(params)}")
    return values


def _lower_lr_img(params: Params) -> str:
    return f"lr_img={params.lr_img} is likely too high for method={params.method} (try a 10x smaller lr_img)"


def distill(dataset: BiasedDataset, params: Params, target: Target, device: torch.device,
            checkpoint: Path | None = None) -> DistillResult:
    """Run ``params.iterations`` steps of ``params.method`` and return the synthetic set.

    With ``checkpoint``, the state (images, optimiser, generator, losses) is
    saved there every ``params.checkpoint_every`` iterations and a run restarts
    from it (unless ``params.force``); the caller removes it once the result is stored (a kill between the
    last iteration and the store then resumes near the end). On the CPU a resumed run ends with the same
    synthetic set, bit for bit, as an uninterrupted one.
    """
    distiller = Distiller(dataset, params, target, device)
    start, losses = 0, []
    saved = load_tensors(checkpoint) if checkpoint is not None and not params.force else None  # force: restart
    if saved is not None:
        try:
            start, losses = distiller.load_state(saved)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:  # another version's layout, another shape
            raise PaperlibError(unreadable_message(checkpoint, err, KEEP_AND_STOP)) from None
    began = time.perf_counter()
    bar = progress(range(start, params.iterations), total=params.iterations - start,
                   desc=f"{params.method} {target.name}", enabled=params.progress)
    pending: list[Tensor] = []
    for iteration in bar:
        pending.append(distiller.step())
        done = iteration + 1
        save = checkpoint is not None and params.checkpoint_every and done % params.checkpoint_every == 0 \
            and done < params.iterations
        if save or len(pending) == HOST_READ_EVERY or done == params.iterations:
            losses += _read_losses(pending, done + 1 - len(pending), distiller)
            pending = []
            bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
        if save:
            save_tensors(checkpoint, distiller.state(done, losses))
    seconds = time.perf_counter() - began
    images = distiller.syn.detach().cpu().contiguous()
    # A loss is computed before its update, so the last update's divergence shows only in the images.
    why = diverged_pixels(images)
    if why is not None:
        raise PaperlibError(f"the synthetic images diverged by iteration {params.iterations} ({why}); "
                            f"{_lower_lr_img(params)}")
    return DistillResult(images, distiller.syn_labels.cpu(), losses, seconds, start)
