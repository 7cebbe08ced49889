"""Paper A's sample reweighting: low-density (bias-conflicting) samples weigh more.

Pipeline, one call (:func:`kde_weights`), cached like any other result:

1. **Encode** every training sample (``kde_encoder``):
   ``supcon`` — a ConvNet trained with a supervised contrastive loss on the
   biased training split (augmentation on); its L2-normalised projection is
   the embedding. ``random`` — a fresh random ConvNet's 2048-d features.
   ``pixels`` — the standardised pixels.
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

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paperlib.augment import DSA, DSAParams
from paperlib.config import Params, derive_seed, result_dict, stable_hash
from paperlib.data.container import BiasedDataset
from paperlib.errors import PaperlibError
from paperlib.models import build_model, init_parameters
from paperlib.runtime import generator, progress
from paperlib.store import cache_root, load_tensors, save_tensors

# Bump when the weights this module computes change meaning.
REWEIGHT_VERSION = 1
PROJECTION_DIM = 128
SUPCON_BATCH = 256
_MEDIAN_SUBSAMPLE = 2000


@dataclass
class KdeWeights:
    """Per-training-sample results of :func:`kde_weights`.

    ``weights`` sum to one within each class; ``log_density`` is each sample's
    KDE log density within its class; ``bandwidth`` is per class; ``seconds``
    holds the one-off costs (``encoder``, ``density``) measured when computed.
    """

    weights: Tensor
    log_density: Tensor
    bandwidth: Tensor
    seconds: dict[str, float]


# --- density ---------------------------------------------------------------------------------

def bandwidth(x: Tensor, rule: str, value: float = 1.0) -> float:
    """Isotropic Gaussian bandwidth for the ``[n, d]`` points ``x``.

    ``scott``: ``sigma n^(-1/(d+4))``; ``silverman``: ``sigma (4 / (n (d+2)))^(1/(d+4))``,
    with ``sigma`` the root mean per-dimension variance; ``median``: the median
    pairwise distance (of an evenly strided subsample of at most 2000 points);
    ``fixed``: ``value``.
    """
    n, d = x.shape
    if rule == "fixed":
        return float(value)
    if rule in ("scott", "silverman"):
        sigma = float(x.var(0, unbiased=n > 1).mean().sqrt()) if n > 1 else 1.0
        factor = n ** (-1.0 / (d + 4)) if rule == "scott" else (4.0 / (n * (d + 2))) ** (1.0 / (d + 4))
        h = sigma * factor
    elif rule == "median":
        sub = x[:: max(1, n // _MEDIAN_SUBSAMPLE)]
        distances = torch.cdist(sub, sub)
        upper = torch.triu_indices(sub.shape[0], sub.shape[0], offset=1, device=x.device)
        h = float(distances[upper[0], upper[1]].median()) if sub.shape[0] > 1 else 1.0
    else:
        raise PaperlibError(f"unknown kde_bandwidth {rule!r}; choose scott, silverman, median or fixed")
    # All points identical: any positive bandwidth gives equal densities.
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


def density_to_weights(log_p: Tensor, weighting: str, alpha: float = 1.0, tau: float = 1.0,
                       clip: float = 0.0) -> Tensor:
    """Weights of one class's samples from their log densities; they sum to one.

    ``power``: ``w ~ p^-alpha``; ``softmax``: ``softmax(-z / tau)`` with ``z``
    the standardised log density. ``clip > 0`` caps every weight at
    ``clip / n`` (then renormalises the rest, keeping the cap).
    """
    n = log_p.shape[0]
    if weighting == "power":
        logits = -alpha * log_p
    elif weighting == "softmax":
        std = log_p.std(unbiased=False) if n > 1 else log_p.new_ones(())
        z = (log_p - log_p.mean()) / (std if float(std) > 0 else 1.0)
        logits = -z / tau
    else:
        raise PaperlibError(f"unknown kde_weighting {weighting!r}; choose power or softmax")
    weights = torch.softmax(logits.double(), 0)
    if clip > 0:
        weights = _clip(weights, clip / n)
    return weights.float()


def _clip(weights: Tensor, cap: float) -> Tensor:
    """Water-filling: cap weights at ``cap`` and spread the excess over the uncapped ones."""
    for _ in range(weights.shape[0]):
        capped = weights >= cap
        excess = float((weights[capped] - cap).sum())
        if excess <= 1e-12:
            break
        weights = torch.where(capped, torch.full_like(weights, cap), weights)
        free = ~capped
        weights[free] += excess * weights[free] / weights[free].sum()
    return weights / weights.sum()


# --- encoders --------------------------------------------------------------------------------

class ContrastiveEncoder(nn.Module):
    """A ConvNet backbone with a 2-layer projection head to L2-normalised 128-d features."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        dim = backbone.embed_dim
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, PROJECTION_DIM))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.head(self.backbone.embed(x)), dim=1)


def supcon_loss(features: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Supervised contrastive loss (Khosla et al., L_out) for one view of L2-normalised features.

    Each sample's positives are the other samples of its class in the batch;
    anchors without a positive are left out.
    """
    n = features.shape[0]
    logits = features @ features.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=features.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    count = positives.sum(1)
    has_positive = count > 0
    if not bool(has_positive.any()):
        return features.sum() * 0.0  # no pairs to contrast (e.g. a batch of one)
    mean_log_prob = torch.where(positives, log_prob, 0.0).sum(1)[has_positive] / count[has_positive]
    return -mean_log_prob.mean()


def _backbone(dataset: BiasedDataset, params: Params) -> nn.Module:
    return build_model(params.model, dataset.channels, dataset.num_classes, dataset.image_size,
                       width=params.net_width, depth=params.net_depth, norm=params.net_norm,
                       act=params.net_act, pooling=params.net_pooling)


def _shuffled_batches(n: int, batch: int, steps: int, gen: torch.Generator) -> Iterator[Tensor]:
    """``steps`` batches of indices; a fresh permutation at every epoch start."""
    done = 0
    while done < steps:
        for index in torch.randperm(n, generator=gen).split(batch)[:steps - done]:
            yield index
            done += 1


def train_supcon(dataset: BiasedDataset, params: Params, device: torch.device) -> ContrastiveEncoder:
    """A SupCon encoder trained for ``supcon_epochs`` on the biased training split.

    SGD (momentum 0.9, weight decay 5e-4, constant ``supcon_lr``), batch 256,
    one DSA-augmented view per image (with ~25 same-class images per batch, a
    second view is not needed for positives); every draw comes from a
    generator seeded by ``params.seed``.
    """
    gen = generator(derive_seed(params.seed, "supcon"))
    encoder = ContrastiveEncoder(_backbone(dataset, params))
    init_parameters(encoder, gen)
    encoder = encoder.to(device).train()
    optimizer = torch.optim.SGD(encoder.parameters(), lr=params.supcon_lr, momentum=0.9, weight_decay=5e-4)
    dsa = DSA(DSAParams(strategy=params.dsa_strategy))
    images = dataset.normalized("train", device)
    labels = dataset.train.labels.to(device)
    n = images.shape[0]
    steps = max(1, math.ceil(params.supcon_epochs * n / SUPCON_BATCH))
    bar = progress(_shuffled_batches(n, SUPCON_BATCH, steps, gen), total=steps, desc="supcon encoder",
                   enabled=params.progress)
    for step, index in enumerate(bar):
        index = index.to(device)
        loss = supcon_loss(encoder(dsa(images[index], gen)), labels[index], params.supcon_temperature)
        if not torch.isfinite(loss):
            raise PaperlibError(f"SupCon loss became {float(loss)} at step {step + 1}; lower supcon_lr "
                                f"(now {params.supcon_lr}) or raise supcon_temperature")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
    return encoder.eval()


@torch.inference_mode()
def _embed_all(fn, images: Tensor, batch: int = 1024) -> Tensor:
    return torch.cat([fn(images[i:i + batch]).float() for i in range(0, images.shape[0], batch)])


def encoder_key(params: Params) -> str:
    """Cache key of the embeddings: the dataset and the encoder's settings (not the KDE's).

    Read from the fields themselves, whatever the method and target of ``params``.
    """
    from paperlib.data.presets import dataset_key

    fields = dataclasses.asdict(params)
    keep = {"data": dataset_key(params), "kde_encoder": params.kde_encoder, "seed": params.seed}
    if params.kde_encoder != "pixels":
        keep.update({k: v for k, v in fields.items() if k.startswith("net_") or k in ("model", "dsa_strategy")})
    if params.kde_encoder == "supcon":
        keep.update({k: v for k, v in fields.items() if k.startswith("supcon_")})
    return stable_hash({**keep, "version": REWEIGHT_VERSION})


def embed_training_set(dataset: BiasedDataset, params: Params, device: torch.device) -> Tensor:
    """``[N, D]`` embeddings of the training split with ``params.kde_encoder``."""
    images = dataset.normalized("train", device)
    if params.kde_encoder == "pixels":
        return images.flatten(1)
    if params.kde_encoder == "random":
        net = init_parameters(_backbone(dataset, params), generator(derive_seed(params.seed, "kde-random")))
        return _embed_all(net.to(device).eval().embed, images)
    if params.kde_encoder == "supcon":
        # The encoder is the expensive part; every KDE setting of the same encoder reuses its embeddings.
        path = cache_root(params.cache_dir) / "weights" / f"{params.dataset}-embeddings-{encoder_key(params)}.pt"
        saved = None if params.force else load_tensors(path)
        if saved is not None:
            return saved["embeddings"].to(device)
        embeddings = _embed_all(train_supcon(dataset, params, device), images)
        save_tensors(path, {"embeddings": embeddings.cpu()})
        return embeddings
    raise PaperlibError(f"unknown kde_encoder {params.kde_encoder!r}; choose supcon, random or pixels")


# --- the whole pipeline ----------------------------------------------------------------------

def class_kde_weights(embeddings: Tensor, labels: Tensor, num_classes: int, rule: str = "median",
                      bandwidth_value: float = 1.0, weighting: str = "power", alpha: float = 1.0,
                      tau: float = 1.0, clip: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """KDE within each class of ``embeddings`` ``[N, D]``: ``(weights, log_density, bandwidth per class)``.

    ``weights`` sum to one within every class (see :func:`density_to_weights`).
    """
    labels = labels.to(embeddings.device)
    log_p = torch.zeros(labels.shape[0], device=embeddings.device)
    weights = torch.zeros(labels.shape[0], device=embeddings.device)
    bandwidths = torch.zeros(num_classes)
    for c in range(num_classes):  # ten classes: a loop over classes, never over samples
        members = (labels == c).nonzero().squeeze(1)
        if members.numel() == 0:
            continue
        x = embeddings[members]
        bandwidths[c] = h = bandwidth(x, rule, bandwidth_value)
        log_p[members] = log_density(x, h)
        weights[members] = density_to_weights(log_p[members], weighting, alpha, tau, clip)
    return weights.cpu(), log_p.cpu(), bandwidths


def compute_kde_weights(dataset: BiasedDataset, params: Params, device: torch.device) -> KdeWeights:
    """Encode the training split, then :func:`class_kde_weights` (no cache)."""
    start = time.perf_counter()
    embeddings = embed_training_set(dataset, params, device)
    encoded = time.perf_counter()
    weights, log_p, bandwidths = class_kde_weights(
        embeddings, dataset.train.labels, dataset.num_classes, params.kde_bandwidth, params.kde_bandwidth_value,
        params.kde_weighting, params.kde_alpha, params.kde_tau, params.kde_clip)
    done = time.perf_counter()
    return KdeWeights(weights, log_p, bandwidths, {"encoder": encoded - start, "density": done - encoded})


def weights_key(params: Params) -> str:
    """Cache key of the KDE weights: the dataset, encoder and KDE settings only."""
    values = result_dict(params)
    keep = {k: v for k, v in values.items()
            if k == "data" or k.startswith(("kde_", "supcon_", "net_")) or k in ("model", "seed", "dsa_strategy")}
    return stable_hash({**keep, "version": REWEIGHT_VERSION})


def kde_weights(dataset: BiasedDataset, params: Params, device: torch.device) -> KdeWeights:
    """Paper A's per-sample weights for ``params`` (cached in ``<cache>/weights/``)."""
    path = cache_root(params.cache_dir) / "weights" / f"{params.dataset}-{weights_key(params)}.pt"
    saved = None if params.force else load_tensors(path)
    if saved is not None:
        return KdeWeights(saved["weights"], saved["log_density"], saved["bandwidth"], dict(saved["seconds"]))
    result = compute_kde_weights(dataset, params, device)
    save_tensors(path, {"weights": result.weights, "log_density": result.log_density,
                        "bandwidth": result.bandwidth, "seconds": result.seconds})
    return result


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
    from paperlib.config import with_overrides

    embeddings: dict[str, Tensor] = {}
    rows = []
    for variant in variants:
        overrides = {k: v for k, v in variant.items() if k != "label"}
        varied = with_overrides(params, {"method": "dm", "target": "weighted", "weights": "kde", **overrides})
        key = encoder_key(varied)
        if key not in embeddings:
            embeddings[key] = embed_training_set(dataset, varied, device)
        weights, _, _ = class_kde_weights(embeddings[key], dataset.train.labels, dataset.num_classes,
                                          varied.kde_bandwidth, varied.kde_bandwidth_value, varied.kde_weighting,
                                          varied.kde_alpha, varied.kde_tau, varied.kde_clip)
        diagnostics = weight_diagnostics(weights, dataset.train.labels, dataset.train.aligned, dataset.num_classes)
        rows.append({"variant": variant.get("label", str(overrides)), **summarize_diagnostics(diagnostics)})
    return rows
