"""Paper A's sample reweighting: low-density (bias-conflicting) samples weigh more.

Pipeline, one call (:func:`kde_weights`), cached like any other result:

1. **Encode** every training sample (``kde_encoder``):
   ``supcon`` — a ConvNet trained with a supervised contrastive loss on the
   biased training split (augmentation on); its L2-normalised projection is
   the embedding. ``random`` — a fresh random ConvNet's features (2048-d at
   the default width and depth). ``pixels`` — the standardised pixels.
2. **Density within each class**: a Gaussian KDE with an isotropic bandwidth
   from ``kde_bandwidth`` (Scott, Silverman, median pairwise distance, or a
   fixed value), evaluated at every sample of the class (itself included, as a
   KDE evaluated at its own data is). Computed in row chunks, so memory is
   ``chunk x class size`` whatever the class size, on GPU or CPU alike.
3. **Weights decreasing in density**, normalised to sum to one per class
   (``kde_weighting``): ``power`` gives ``w ~ p^-alpha``; ``softmax`` gives
   ``softmax(-z / tau)`` with ``z`` the class-standardised log density, so
   ``tau`` means the same whatever the embedding's dimension and bandwidth.
   ``kde_clip`` caps a weight at ``clip`` times the uniform one.

The weights feed the engine's ``weighted`` target for DM and gradient matching.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from paperlib.core.errors import PaperlibError
from paperlib.core.keys import cache_key, derive_seed, unread_reason
from paperlib.core.params import Params, field_tags, with_overrides
from paperlib.core.registry import Registry
from paperlib.core.runtime import generator, progress, wait_for
from paperlib.core.store import (KEEP_AND_STOP, cache_root, entry_lock, load_tensors, save_tensors,
                                  unreadable_message)
from paperlib.data.container import BiasedDataset
from paperlib.train.models import init_parameters, model_from_params
from paperlib.train.supcon import train_supcon


_MEDIAN_SUBSAMPLE = 2000


@dataclass
class KdeWeights:
    """Per-training-sample results of :func:`kde_weights`.

    ``weights`` sum to one within each class; ``log_density`` is each sample's
    KDE log density within its class; ``bandwidth`` is per class; ``seconds``
    holds the one-off costs (``encoder``, ``density``) measured when computed (``encoder`` is ``None`` when
    cached embeddings predate their stored cost: see :class:`Embeddings`).
    """

    weights: Tensor
    log_density: Tensor
    bandwidth: Tensor
    seconds: dict[str, float]


# --- density ---------------------------------------------------------------------------------


def _spread(x: Tensor) -> float:
    """The root mean per-dimension variance of the ``[n, d]`` points ``x`` (1 for a single point)."""
    n = x.shape[0]
    return float(x.var(0, unbiased=n > 1).mean().sqrt()) if n > 1 else 1.0


def _median_distance(x: Tensor) -> float:
    """The median pairwise distance among every ``(n // _MEDIAN_SUBSAMPLE)``-th of the ``[n, d]`` points ``x``.

    That keeps up to ``2 * _MEDIAN_SUBSAMPLE - 1`` points, not at most ``_MEDIAN_SUBSAMPLE``: all 3,999 of
    3,999, 2,000 of 4,000, 2,333 of 6,999 (every KDE result depends on it: leave it so).
    """
    sub = x[:: max(1, x.shape[0] // _MEDIAN_SUBSAMPLE)]
    distances = torch.cdist(sub, sub)
    upper = torch.triu_indices(sub.shape[0], sub.shape[0], offset=1, device=x.device)
    return float(distances[upper[0], upper[1]].median()) if sub.shape[0] > 1 else 1.0


@dataclass(frozen=True)
class BandwidthRule:
    """``rule(x, value)``: an isotropic Gaussian bandwidth for the ``[n, d]`` points ``x``."""

    rule: Callable[[Tensor, float], float]
    uses: tuple[str, ...] = ()
    version: int = 0  # bump when its output changes: the cache then recomputes what was made with it


BANDWIDTHS: Registry[BandwidthRule] = Registry("kde_bandwidth", field="kde_bandwidth")
# The median pairwise distance (of an evenly strided subsample: every (n // 2000)-th point, up to 2 * 2000 - 1).
BANDWIDTHS.register("median", BandwidthRule(lambda x, value: _median_distance(x)))
BANDWIDTHS.register("scott", BandwidthRule(lambda x, value: _spread(x) * x.shape[0] ** (-1.0 / (x.shape[1] + 4))))
BANDWIDTHS.register("silverman", BandwidthRule(
    lambda x, value: _spread(x) * (4.0 / (x.shape[0] * (x.shape[1] + 2))) ** (1.0 / (x.shape[1] + 4))))
BANDWIDTHS.register("fixed", BandwidthRule(lambda x, value: float(value), uses=("kde_bandwidth_value",)))


def bandwidth(x: Tensor, rule: str, value: float = 1.0) -> float:
    """Isotropic Gaussian bandwidth for the ``[n, d]`` points ``x`` by a registered rule.

    ``scott``: ``sigma n^(-1/(d+4))``; ``silverman``: ``sigma (4 / (n (d+2)))^(1/(d+4))``,
    with ``sigma`` the root mean per-dimension variance; ``median``: the median
    pairwise distance; ``fixed``: ``value``.
    """
    h = BANDWIDTHS[rule].rule(x, value)
    # All points identical: any positive bandwidth gives equal densities (a fixed one is kept as given).
    return h if h > 0 else 1.0


def log_density(x: Tensor, h: float, chunk: int = 1024) -> Tensor:
    """Gaussian KDE log density of every row of ``x`` ``[n, d]`` under the KDE of all rows.

    ``log p_i = logsumexp_j(-|x_i - x_j|^2 / 2h^2) - log n - d/2 log(2 pi h^2)``.
    Rows are processed ``chunk`` at a time, so memory is ``chunk x n``.
    """
    n, d = x.shape
    x = x.float()
    constant = math.log(n) + 0.5 * d * math.log(2 * math.pi * h * h)
    sq_norm = (x * x).sum(1)
    parts = []
    for start in range(0, n, chunk):
        rows = x[start:start + chunk]
        # |a - b|^2 through one matmul; clamped because rounding can make it slightly negative.
        sq = (sq_norm[start:start + chunk, None] + sq_norm[None, :] - 2 * rows @ x.T).clamp_min_(0)
        parts.append(torch.logsumexp(-sq / (2 * h * h), dim=1))
    return torch.cat(parts) - constant


def _standardised(log_p: Tensor) -> Tensor:
    std = log_p.std(unbiased=False) if log_p.shape[0] > 1 else log_p.new_ones(())
    return (log_p - log_p.mean()) / (std if float(std) > 0 else 1.0)


@dataclass(frozen=True)
class Weighting:
    """``logits(log_p, alpha, tau)``: a class's weights are the softmax of these logits."""

    logits: Callable[[Tensor, float, float], Tensor]
    uses: tuple[str, ...] = ()
    version: int = 0  # bump when its output changes: the cache then recomputes what was made with it


WEIGHTINGS: Registry[Weighting] = Registry("kde_weighting", field="kde_weighting")
WEIGHTINGS.register("power", Weighting(lambda log_p, alpha, tau: -alpha * log_p, uses=("kde_alpha",)))  # p^-alpha
WEIGHTINGS.register("softmax", Weighting(lambda log_p, alpha, tau: -_standardised(log_p) / tau, uses=("kde_tau",)))


def density_to_weights(log_p: Tensor, weighting: str, alpha: float = 1.0, tau: float = 1.0,
                       clip: float = 0.0) -> Tensor:
    """Weights of one class's samples from their log densities; they sum to one.

    ``power``: ``w ~ p^-alpha``; ``softmax``: ``softmax(-z / tau)`` with ``z``
    the standardised log density. ``clip > 0`` caps every weight at
    ``clip / n`` (then renormalises the rest, keeping the cap).
    """
    weights = torch.softmax(WEIGHTINGS[weighting].logits(log_p, alpha, tau).double(), 0)
    if clip > 0:
        n, nonzero = log_p.shape[0], int((weights > 0).sum())  # once per class, when the weights are made
        if nonzero * clip < n:  # the cap would need more weight than the non-zero samples may hold
            raise PaperlibError(f"kde_clip={clip} cannot hold: the weighting leaves {nonzero} of {n} samples a "
                                f"non-zero weight; soften it (lower kde_alpha or raise kde_tau) or raise kde_clip "
                                f"to at least {math.ceil(n / nonzero)}")
        weights = _clip(weights, clip / n)
    return weights.float()


def _clip(weights: Tensor, cap: float) -> Tensor:
    """Water-filling in closed form: ``min(cap, scale * w)``, the one ``scale`` that makes the weights sum to one.

    With the ``k`` largest weights capped, the rest scale by ``(1 - k cap) / (their sum)``; the fewest caps
    whose scaled largest free weight stays under the cap is the answer (the last always does: ``cap >= 1/n``).
    """
    weights = weights / weights.sum()
    ordered = weights.sort(descending=True).values
    free_sums = ordered.flip(0).cumsum(0).flip(0)  # sum of the weights from the k-th largest on
    scales = (1 - cap * torch.arange(ordered.numel(), dtype=weights.dtype, device=weights.device)) / free_sums
    fits = scales * ordered <= cap * (1 + 1e-9)
    fits[-1] = True
    scale = scales[fits.to(torch.uint8).argmax()]  # first k that fits
    return torch.minimum(weights * scale, torch.full_like(weights, cap))


@dataclass
class Embeddings:
    """An encoder's ``[N, D]`` features of the training split, and the seconds computing them took.

    For an encoder whose embeddings are cached (SupCon), ``seconds`` is the cost of the run that computed them,
    stored beside them, so every KDE setting sharing the encoder reports the same one-off cost; ``None`` for an
    entry written before the cost was stored.
    """

    values: Tensor
    seconds: float | None


@torch.inference_mode()
def _embed_all(fn, dataset: BiasedDataset, device: torch.device, show_progress: bool, batch: int = 1024) -> Tensor:
    """``fn`` of every training image, normalised a batch at a time on ``device`` from the uint8 split there (the
    same values as :meth:`~paperlib.data.container.BiasedDataset.normalized`, without a float copy of the split:
    CelebA at 64 px, 8 GB)."""
    images = dataset.train.images.to(device)
    starts = progress(range(0, images.shape[0], batch), desc="embedding the training set", enabled=show_progress)
    return torch.cat([fn(dataset.normalize_uint8(images[i:i + batch])).float() for i in starts])


def _timed(compute: Callable[[], Tensor], device: torch.device) -> Embeddings:
    start = time.perf_counter()
    values = compute()
    wait_for(device)
    return Embeddings(values, time.perf_counter() - start)


def _pixels(dataset: BiasedDataset, params: Params, device: torch.device) -> Embeddings:
    return _timed(lambda: dataset.normalized("train", device).flatten(1), device)


def random_network_features(dataset: BiasedDataset, params: Params, device: torch.device) -> Embeddings:
    """A fresh ConvNet's features of the training split, drawn from the run's seed: the ``random`` KDE encoder,
    and the features ``hidden_groups_fill=impute`` finds the nearest group centroid in. A change to its output
    changes both: bump this encoder's ``version`` and the group targets' (``GroupsTarget.version``)."""
    def compute() -> Tensor:
        net = model_from_params(params, dataset.channels, dataset.num_classes, dataset.image_size)
        net = init_parameters(net, generator(derive_seed(params.seed, "kde-random")))
        return _embed_all(net.to(device).eval().embed, dataset, device, params.progress)

    return _timed(compute, device)


def _supcon(dataset: BiasedDataset, params: Params, device: torch.device) -> Embeddings:
    # The encoder is the expensive part; every KDE setting of the same encoder reuses its embeddings.
    dataset.check_built_for(params, "embeddings")
    name = f"{params.dataset}-embeddings-{cache_key(params, 'embeddings')}.pt"
    path = cache_root(params.cache_dir) / "weights" / name
    with entry_lock(params.cache_dir, path.stem):  # parallel jobs sharing one encoder train it once
        saved = None if params.force else load_tensors(path, keys=("embeddings",))
        if saved is not None:
            _check_stored(path, saved["embeddings"], len(dataset.train), "embeddings", dims=2)
            if not _is_seconds(saved.get("seconds")):
                raise PaperlibError(unreadable_message(path, f"seconds {saved['seconds']!r} is not a number",
                                                       KEEP_AND_STOP))
            return Embeddings(saved["embeddings"].to(device), saved.get("seconds"))
        embedded = _timed(lambda: _embed_all(train_supcon(dataset, params, device), dataset, device, params.progress),
                          device)
        values = embedded.values.cpu()
        if not bool(torch.isfinite(values).all()):  # SupCon's last steps diverged after its last loss was read
            raise PaperlibError(f"the SupCon encoder's embeddings are not finite: its training diverged; lower "
                                f"supcon_lr (now {params.supcon_lr:g}) or raise supcon_temperature (nothing cached)")
        save_tensors(path, {"embeddings": values, "seconds": embedded.seconds})
        return embedded


@dataclass(frozen=True)
class Encoder:
    """``embed(dataset, params, device)``: the training split's :class:`Embeddings` for the KDE."""

    embed: Callable[[BiasedDataset, Params, torch.device], Embeddings]
    uses: tuple[str, ...] = ()
    version: int = 0  # bump when its output changes: the cache then recomputes what was made with it


ENCODERS: Registry[Encoder] = Registry("kde_encoder", field="kde_encoder")
ENCODERS.register("supcon", Encoder(_supcon, uses=("supcon_epochs", "supcon_temperature", "supcon_lr")))
ENCODERS.register("random", Encoder(random_network_features))  # a fresh random ConvNet's features
ENCODERS.register("pixels", Encoder(_pixels))  # the standardised pixels


def embed_training_set(dataset: BiasedDataset, params: Params, device: torch.device) -> Embeddings:
    """The training split's embeddings with ``params.kde_encoder``, and what computing them cost."""
    return ENCODERS[params.kde_encoder].embed(dataset, params, device)


# --- the whole pipeline ----------------------------------------------------------------------


def class_kde_weights(embeddings: Tensor, labels: Tensor, num_classes: int, rule: str = "median",
                      bandwidth_value: float = 1.0, weighting: str = "power", alpha: float = 1.0,
                      tau: float = 1.0, clip: float = 0.0,
                      show_progress: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """KDE within each class of ``embeddings`` ``[N, D]``: ``(weights, log_density, bandwidth per class)``.

    ``weights`` sum to one within every class (see :func:`density_to_weights`).
    """
    labels = labels.to(embeddings.device)
    log_p = torch.zeros(labels.shape[0], device=embeddings.device)
    weights = torch.zeros(labels.shape[0], device=embeddings.device)
    bandwidths = torch.zeros(num_classes)
    # ten classes: a loop over classes, never over samples
    for c in progress(range(num_classes), desc="KDE densities per class", enabled=show_progress):
        members = (labels == c).nonzero().squeeze(1)
        if members.numel() == 0:
            continue
        x = embeddings[members]
        bandwidths[c] = h = bandwidth(x, rule, bandwidth_value)
        log_p[members] = log_density(x, h)
        weights[members] = density_to_weights(log_p[members], weighting, alpha, tau, clip)
    weights = weights.cpu()  # read here, once, before anything stores them
    bad = torch.nonzero(~torch.isfinite(weights)).flatten()
    if bad.numel():
        c = int(labels[int(bad[0])])
        raise PaperlibError(f"KDE weights are not finite in class {c} (bandwidth {float(bandwidths[c]):.3g}): the "
                            f"densities under- or overflow; use another kde_bandwidth (median, the default) or a "
                            f"milder kde_weighting (lower kde_alpha, raise kde_tau)")
    return weights, log_p.cpu(), bandwidths


def compute_kde_weights(dataset: BiasedDataset, params: Params, device: torch.device) -> KdeWeights:
    """Encode the training split, then :func:`class_kde_weights` (no cache)."""
    embeddings = embed_training_set(dataset, params, device)
    encoded = time.perf_counter()
    weights, log_p, bandwidths = class_kde_weights(
        embeddings.values, dataset.train.labels, dataset.num_classes, params.kde_bandwidth, params.kde_bandwidth_value,
        params.kde_weighting, params.kde_alpha, params.kde_tau, params.kde_clip, params.progress)
    done = time.perf_counter()
    return KdeWeights(weights, log_p, bandwidths, {"encoder": embeddings.seconds, "density": done - encoded})


def kde_weights(dataset: BiasedDataset, params: Params, device: torch.device) -> KdeWeights:
    """Paper A's per-sample weights for ``params`` (cached in ``<cache>/weights/``)."""
    dataset.check_built_for(params, "KDE weights")
    path = cache_root(params.cache_dir) / "weights" / f"{params.dataset}-{cache_key(params, 'weights')}.pt"
    with entry_lock(params.cache_dir, path.stem):
        saved = None if params.force else load_tensors(path, keys=("weights", "log_density", "bandwidth", "seconds"))
        if saved is not None:
            _check_stored(path, saved["weights"], len(dataset.train), "weights", dims=1)
            _check_rest_of_entry(path, saved, len(dataset.train), dataset.num_classes)
            return KdeWeights(saved["weights"], saved["log_density"], saved["bandwidth"], dict(saved["seconds"]))
        result = compute_kde_weights(dataset, params, device)
        save_tensors(path, {"weights": result.weights, "log_density": result.log_density,
                            "bandwidth": result.bandwidth, "seconds": result.seconds})
        return result


def _check_stored(path: Path, values: Any, n: int, what: str, dims: int) -> None:
    """A cached tensor of ``dims`` dimensions, one row per training image (``n``), finite and (weights, one
    dimension) not negative, or a one-line error naming the file."""
    if not (isinstance(values, Tensor) and values.dim() == dims and values.shape[0] == n):
        got = f"{values.dtype} {tuple(values.shape)}" if isinstance(values, Tensor) else type(values).__name__
        problem = f"{what} for {n} training images expected, got {got}"
    elif not bool(torch.isfinite(values).all()):
        problem = f"{what} that are not finite"
    elif dims == 1 and bool((values < 0).any()):
        problem = f"negative {what}"
    else:
        return
    raise PaperlibError(unreadable_message(path, problem, KEEP_AND_STOP))


def _is_seconds(value: Any) -> bool:
    """A stored one-off cost: seconds, or ``None`` (not measured)."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _check_rest_of_entry(path: Path, saved: dict[str, Any], n: int, num_classes: int) -> None:
    """The rest of a cached KDE entry beside its weights: a log density per training image, a bandwidth per
    class and a mapping of one-off costs, or a one-line error naming the file."""
    log_density, bandwidth, seconds = saved["log_density"], saved["bandwidth"], saved["seconds"]
    if not (isinstance(log_density, Tensor) and tuple(log_density.shape) == (n,)):
        problem = f"log_density for {n} training images expected"
    elif not (isinstance(bandwidth, Tensor) and tuple(bandwidth.shape) == (num_classes,)):
        problem = f"a bandwidth for each of {num_classes} classes expected"
    elif not (isinstance(seconds, dict) and all(_is_seconds(v) for v in seconds.values())):
        problem = f"seconds {seconds!r} is not a mapping of costs"
    else:
        return
    raise PaperlibError(unreadable_message(path, problem, KEEP_AND_STOP))


def weight_diagnostics(weights: Tensor, labels: Tensor, aligned: Tensor, num_classes: int) -> list[dict]:
    """Per class: the share of samples and the share of total weight that is bias-conflicting.

    The mechanism works when ``conflicting_weight_share`` is well above
    ``conflicting_sample_share``. ``effective_samples`` is ``1 / sum w^2``
    (Kish) for the class's normalised weights.
    """
    conflicting = (~aligned.bool()).float()
    counts = torch.bincount(labels, minlength=num_classes).float()
    totals = torch.zeros(num_classes).index_add_(0, labels, weights)
    normalised = weights / totals[labels].clamp_min(1e-30)
    conflict_weight = torch.zeros(num_classes).index_add_(0, labels, normalised * conflicting)
    conflict_count = torch.zeros(num_classes).index_add_(0, labels, conflicting)
    effective = 1.0 / torch.zeros(num_classes).index_add_(0, labels, normalised ** 2).clamp_min(1e-30)
    return [{"class": c, "samples": int(counts[c]),
             "conflicting_sample_share": float(conflict_count[c] / counts[c].clamp_min(1)),
             "conflicting_weight_share": float(conflict_weight[c]),
             "effective_samples": float(effective[c])}
            for c in range(num_classes)]


def summarize_diagnostics(diagnostics: list[dict]) -> dict[str, float]:
    """One line for :func:`weight_diagnostics`: conflicting share of samples and of weight (mean over
    classes, and the lowest class's weight share, in %), and the mean effective sample size."""
    n = len(diagnostics)
    weight_share = [row["conflicting_weight_share"] for row in diagnostics]
    return {"conflicting % of samples": 100 * sum(r["conflicting_sample_share"] for r in diagnostics) / n,
            "conflicting % of weight": 100 * sum(weight_share) / n,
            "lowest class % of weight": 100 * min(weight_share),
            "effective samples per class": sum(r["effective_samples"] for r in diagnostics) / n}


def weight_ablation(dataset: BiasedDataset, params: Params, variants: list[dict], device: torch.device) -> list[dict]:
    """KDE weights under each variant of ``params`` (a dict of overrides plus a ``label``), with diagnostics.

    The encoder is trained and applied once per distinct encoder setting (and
    its embeddings cached on disk); each variant then costs one density estimate. Rows hold the label, the mean and
    lowest per-class share of weight on bias-conflicting samples, and the mean
    effective sample size.
    """
    embeddings: dict[str, Tensor] = {}
    rows = []
    for variant in variants:
        varied = ablation_params(params, variant)
        key = cache_key(varied, "embeddings")
        if key not in embeddings:
            embeddings[key] = embed_training_set(dataset, varied, device).values
        weights, _, _ = class_kde_weights(embeddings[key], dataset.train.labels, dataset.num_classes,
                                          varied.kde_bandwidth, varied.kde_bandwidth_value, varied.kde_weighting,
                                          varied.kde_alpha, varied.kde_tau, varied.kde_clip)
        diagnostics = weight_diagnostics(weights, dataset.train.labels, dataset.train.aligned, dataset.num_classes)
        label = variant.get("label", str(_variant_overrides(variant)))
        rows.append({"variant": label, **summarize_diagnostics(diagnostics)})
    return rows


def ablation_params(params: Params, variant: dict) -> Params:
    """The parameters of one variant of :func:`weight_ablation`: ``params`` with KDE weights and the variant's
    overrides (all of its items but ``label``). A setting the variant's weights do not read (``kde_tau`` with the
    ``power`` weighting) is a one-line error: the row would repeat another under a label that says otherwise."""
    overrides = _variant_overrides(variant)
    varied = with_overrides(params, {"target": "weighted", "weights": "kde", **overrides})
    for name in overrides:
        reason = unread_reason(varied, name, "weights")
        if reason:
            raise PaperlibError(f"KDE variant {variant.get('label', overrides)!r} sets {name}, which changes nothing "
                                f"({reason}); drop it, or also set the choice that uses it")
    return varied


# What a variant may change: the weights' own settings. The dataset is built once for every variant, so a dataset
# or seed setting would be ignored by the computation while it keyed the weights and their cached embeddings.
_VARIANT_GROUPS = ("model", "augment", "encoder", "kde")


def _variant_overrides(variant: dict) -> dict:
    """A variant's parameter overrides: all of its items but ``label``; a one-line error for a setting outside
    :data:`_VARIANT_GROUPS` (an unknown name is left to the parameters' own check)."""
    overrides = {k: v for k, v in variant.items() if k != "label"}
    tags = field_tags()
    fixed = [name for name in overrides if name in tags and tags[name]["group"] not in _VARIANT_GROUPS]
    if fixed:
        raise PaperlibError(f"KDE variant {variant.get('label', overrides)!r} sets {', '.join(fixed)}, which the "
                            f"ablation keeps fixed (one dataset for every variant); a variant may change only "
                            f"{'/'.join(_VARIANT_GROUPS)} settings: move {fixed[0]} to the ablation's dataset")
    return overrides
