"""The papers' reported numbers, for labelled "paper" columns beside ours.

Every reported number of both papers (paper B: all its tables; paper A: its headline), copied as this
project's fact sheet on the papers writes them; they are reference values only and never enter a computation. Keys:
``(dataset, ratio, method, variant, ipc)`` where ``ratio`` is the conflict ratio (``cmnist``), the majority
ratio (paper B's presets) or ``None`` (the face datasets, whose bias the data fixes), ``variant`` is what
:func:`variant` returns and ``ipc`` is ``None`` for whole-data training. Each value names its ``source`` and
``table``, and a ``note`` where the paper itself slipped.

Paper B's numbers were measured on the official FairDD code's images (``protocol=fairdd``); a run with
``protocol=companion`` is set beside them with its protocol named in the table.
"""

from __future__ import annotations

from paperlib.core.keys import relevant_fields
from paperlib.core.params import Params, default_of
from paperlib.data.presets import PRESETS, bias_ratio_name
from paperlib.distill.methods import METHODS
from paperlib.distill.targets import TARGETS
from paperlib.report.metric_names import PAPER_METRICS

_A = "paper A (Cui et al., ICML 2024)"
_B = "paper B (FairDD, NeurIPS 2025)"
_B_KDE = "paper B's re-implementation of paper A"
_A_BASELINE = "paper A's debiasing baseline on the distilled set (SelecMix, per the ICLR-2024 reviews)"


def _parse(values: str, ipcs: tuple[int | None, ...], order: tuple[str, ...]) -> list[tuple[int | None, dict]]:
    """``"25.01/100/99.96 | 56.84/100/91.68"`` (as the fact sheet writes them) -> ``[(ipc, {metric: value})]``."""
    cells = [c.strip() for c in values.split("|")]
    if len(cells) != len(ipcs):
        raise AssertionError(f"{values!r}: {len(cells)} cells for IPCs {ipcs}")  # a typo in this table
    return [(ipc, dict(zip(order, map(float, cell.split("/"))))) for ipc, cell in zip(ipcs, cells)]


_ROWS: list[tuple] = []  # (table, dataset, ratio, method, variant, ipcs, "values", source, order)


def _b(table: str, dataset: str, method: str, variant: str, values: str, ipcs=(10, 50, 100), ratio=0.9,
       source: str = _B, order=PAPER_METRICS) -> None:
    _ROWS.append((table, dataset, ratio, method, variant, ipcs, values, source, order))


# Paper A (accuracy only).
_ROWS += [("paper A, headline", "cmnist", 0.05, "dm", "vanilla", (50,), "23.8", _A, ("acc",)),
          ("paper A, headline", "cmnist", 0.05, "dm", "kde", (50,), "91.5", _A, ("acc",))]
# Beside SelecMix only: a paper value over another trainer's bar would read as that trainer's reported number.
_ROWS.append(("paper A, headline", "cmnist", 0.05, "dm", "selecmix", (50,), "53.7", _A_BASELINE, ("acc",)))
# Paper B's main tables: Acc / DEO_M / DEO_A at IPC 10 | 50 | 100 (one cell: IPC 10; whole data: no IPC).
_MAIN = "paper B, main tables"
_MAIN_TABLE: dict[str, dict[tuple[str, str], str]] = {
    "cmnist_fg": {
        ("dm", "vanilla"): "25.01/100/99.96 | 56.84/100/91.68 | 78.04/99.36/66.38",
        ("dm", "fairdd"): "94.61/17.04/7.95 | 96.58/10.05/5.46 | 96.79/8.17/4.86",
        ("dc", "vanilla"): "71.41/99.85/65.61 | 90.54/46.99/20.55 | 91.64/45.27/17.45",
        ("dc", "fairdd"): "90.62/26.75/11.96 | 92.68/18.42/8.86 | 93.23/22.32/9.49",
        ("random", "vanilla"): "30.75/100/98.72 | 47.38/100/99.58 | 67.41/100/88.64",
        ("whole", "vanilla"): "97.71/10.10/5.89"},
    "cmnist_bg": {
        ("dm", "vanilla"): "23.40/100/99.97 | 47.74/100/97.85 | 79.87/100/52.23",
        ("dm", "fairdd"): "94.88/13.42/6.77 | 96.86/8.98/5.25 | 97.33/6.60/4.31",
        ("dc", "vanilla"): "65.91/100/73.60 | 88.53/60.66/26.38 | 90.20/62.63/20.87",
        ("dc", "fairdd"): "90.84/20.66/9.94 | 92.20/20.29/9.90 | 92.73/32.58/10.40",
        ("random", "vanilla"): "27.95/100/99.11 | 45.52/100/99.77 | 67.28/100/89.07",
        ("whole", "vanilla"): "97.80/9.70/5.78"},
    "cfmnist_fg": {
        ("dm", "vanilla"): "33.35/100/99.05 | 49.94/100/96.46 | 57.99/100/85.11",
        ("dm", "fairdd"): "77.09/26.87/16.38 | 82.11/24.92/13.74 | 83.25/23.83/12.75",
        ("dc", "vanilla"): "60.77/99.40/78.96 | 69.08/99.33/67.02 | 68.84/99.58/66.45",
        ("dc", "fairdd"): "76.01/46.80/24.01 | 75.83/46.67/21.48 | 74.91/56.68/23.07",
        ("whole", "vanilla"): "82.94/79.2/41.72"},
    "cfmnist_bg": {
        ("dm", "vanilla"): "22.26/100/99.68 | 36.27/100/99.71 | 49.30/100/93.88",
        ("dm", "fairdd"): "71.10/33.05/19.72 | 79.07/24.50/14.47 | 80.63/21.95/13.33",
        ("dc", "vanilla"): "47.32/100/92.91 | 60.58/100/75.41 | 62.70/99.70/73.38",
        ("dc", "fairdd"): "68.51/61.75/34.88 | 75.80/44.60/25.25 | 71.76/52.75/23.48",
        ("whole", "vanilla"): "77.97/91.4/51.68"},
    "cifar10_s": {
        ("dm", "vanilla"): "37.88/59.20/39.31 | 45.02/75.13/55.70 | 48.11/73.81/55.10",
        ("dm", "fairdd"): "45.17/31.75/8.73 | 58.84/18.28/7.35 | 61.33/14.77/5.89",
        ("dc", "vanilla"): "37.88/42.23/27.35 | 41.28/71.46/45.81 | 42.73/68.69/48.64",
        ("dc", "fairdd"): "41.82/22.08/8.22 | 49.26/34.39/11.21 | 51.74/32.70/11.26",
        ("whole", "vanilla"): "69.78/49.72/33.17"},
    "celeba": {
        ("dm", "vanilla"): "61.79/30.01/28.85 | 64.61/40.26/38.81 | 65.13/42.63/41.12",
        ("dm", "fairdd"): "64.37/9.37/5.71 | 68.50/14.08/9.87 | 68.84/10.93/6.65",
        ("dc", "vanilla"): "57.19/15.48/14.16", ("dc", "fairdd"): "57.63/6.64/5.29",
        ("whole", "vanilla"): "74.09/24.85/24.16"},
    "utkface": {
        ("dm", "vanilla"): "65.23/51.40/34.87 | 68.94/43.60/32.13 | 71.27/43.60/34.60",
        ("dm", "fairdd"): "66.92/37.40/21.60 | 71.75/23.60/17.27 | 73.70/27.20/20.33",
        ("dc", "vanilla"): "58.52/43.80/26.80", ("dc", "fairdd"): "60.01/35.00/20.66",
        ("whole", "vanilla"): "78.67/39/24"},
    "bffhq": {
        ("dm", "vanilla"): "64.90/44.32/34.76 | 65.28/60.88/50.56 | 66.20/65.36/53.12",
        ("dm", "fairdd"): "65.46/15.84/10.68 | 69.00/19.76/14.96 | 73.74/17.52/13.32",
        ("dc", "vanilla"): "62.62/47.04/38.92", ("dc", "fairdd"): "63.30/37.84/28.84",
        ("whole", "vanilla"): "71.40/66.4/55.2"},
}
# The paper's own slips, keyed like REPORTED (the main tables' ratio is 0.9), shown beside the values they touch.
_NOTES = {
    **{("cfmnist_bg", 0.9, m, "fairdd", ipc): "paper B's Table 10 repeats the FG rows' DEO here; these are its "
       "main-table values" for m in ("dm", "dc") for ipc in (10, 50, 100)},
    **{("cmnist_bg", 0.9, m, "vanilla", ipc): "paper B's Table 17 prints the Random row under 'DM' for this "
       "dataset; these are its main-table values"
       for m in ("dm", "random") for ipc in (10, 50, 100)},
    ("cmnist_bg", 0.9, "dm", "fairdd", 10): "paper B's Table 18 gives IPC 50's 96.86 for IPC 10; this is its "
                                            "main-table value (94.88)",
}
for _name, _rows in _MAIN_TABLE.items():
    for (_method, _kind), _values in _rows.items():
        _cells = _values.count("|") + 1
        _ipcs = (None,) if "ipc" not in METHODS[_method].uses else (10, 50, 100)[:_cells]
        _b(_MAIN, _name, _method, _kind, _values, ipcs=_ipcs, ratio=0.9 if bias_ratio_name(_name) else None)
# Bias-ratio ablation, IPC 50, written DEO_M / DEO_A / Acc in the paper.
_RATIO, _DEO_FIRST = "paper B, bias-ratio ablation (IPC 50)", ("deo_m", "deo_a", "acc")
for _name, _ratio, _dm, _fair in (("cmnist_fg", 0.85, "99.54/70.13/76.24", "10.13/5.20/96.62"),
                                  ("cmnist_fg", 0.95, "100/100/33.73", "10.30/5.84/96.05"),
                                  ("cfmnist_bg", 0.85, "100/95.54/46.14", "23.75/13.85/79.61"),
                                  ("cfmnist_bg", 0.95, "100/99.79/26.30", "29.15/17.72/78.46"),
                                  ("cifar10_s", 0.85, "71.75/50.11/46.99", "16.44/6.58/59.12"),
                                  ("cifar10_s", 0.95, "75.43/58.58/43.56", "17.49/7.10/58.18")):
    _b(_RATIO, _name, "dm", "vanilla", _dm, ipcs=(50,), ratio=_ratio, order=_DEO_FIRST)
    _b(_RATIO, _name, "dm", "fairdd", _fair, ipcs=(50,), ratio=_ratio, order=_DEO_FIRST)
# Other ablations and comparisons of paper B (C-MNIST FG).
_b("paper B, inverse group-size weights", "cmnist_fg", "dm", "fairdd, inverse group-size weights",
   "94.18/15.44/8.79 | 96.26/12.50/6.49", ipcs=(10, 50))
_b("paper B, balanced initialisation", "cmnist_fg", "dm", "vanilla, balanced init", "53.85/100/96.41", ipcs=(50,))
_b("paper B, balanced initialisation", "cmnist_fg", "dm", "fairdd, balanced init", "96.48/9.80/5.24", ipcs=(50,))
_b("paper B, Table 5 (LfF on the DM set)", "cmnist_fg", "dm", "lff", "22.75/100/99.98 | 56.23/100/91.57",
   ipcs=(10, 50))
_b("paper B, MTT (not a FairDD method)", "cmnist_fg", "mtt", "vanilla",
   "92.00/25.70/14.86 | 94.08/25.46/12.60 | 94.29/26.81/13.02")
_b("paper B, KDE re-implemented", "cmnist_fg", "dm", "kde", "90.42/34.77/18.46", ipcs=(10,), source=_B_KDE)
_b("paper B, KDE re-implemented", "cifar10_s", "dm", "kde", "41.42/48.20/22.48", ipcs=(10,), source=_B_KDE)


def _table() -> dict[tuple, dict]:
    found: dict[tuple, dict] = {}
    for table, dataset, ratio, method, kind, ipcs, values, source, order in _ROWS:
        for ipc, metrics in _parse(values, ipcs, order):
            key = (dataset, ratio, method, kind, ipc)
            if key in found:
                raise AssertionError(f"two reported values for {key}")  # a typo in this table
            note = {"note": _NOTES[key]} if key in _NOTES else {}
            found[key] = {**metrics, "source": source, "table": table, **note}
    if unknown := set(_NOTES) - set(found):
        raise AssertionError(f"notes for unreported values: {sorted(unknown)}")  # a typo in _NOTES
    return found


# (dataset, ratio or None, method, variant, ipc or None) -> {acc, deo_m, deo_a, source, table[, note]}
REPORTED: dict[tuple, dict] = _table()


# Settings the papers' runs all had at these defaults (every group label known, no warm start, DM's squared
# distance, uniform real batches, fp32, evaluated on the distillation's own architecture): a run that changes one
# has no counterpart.
# (The network's size and the run lengths are the profiles' stated scale, not another experiment: not listed.)
PAPERS_SETTINGS = ("hidden_groups", "warm_start_epochs", "dm_distance", "sampling", "precision", "eval_model")


def _init_suffix(params: Params) -> str | None:
    """How the papers' rows name a distilling run's initialisation: ``""`` for the official code's own
    (:attr:`Method.init <paperlib.distill.methods.Method.init>`: real images), ``", balanced init"`` for paper
    B's balanced ablation, ``None`` (no counterpart) otherwise."""
    if params.init == METHODS[params.method].init:
        return ""
    return ", balanced init" if params.init == "balanced" else None


def variant(params: Params) -> str:
    """The family a run belongs to, as the papers' rows name it: ``vanilla``, ``kde``, ``fairdd``, the debiasing
    trainer (``lff``, ...), with ``, balanced init`` for a balanced initialisation; ``other`` when no paper
    reports that combination (e.g. ``group_balanced`` weights, COBRA's barycenter, or a setting of
    :data:`PAPERS_SETTINGS` changed)."""
    relevant, distils = relevant_fields(params), METHODS[params.method].distils
    if any(name in relevant and getattr(params, name) != default_of(name) for name in PAPERS_SETTINGS):
        return "other"
    init = _init_suffix(params) if distils else ""
    if init is None:
        return "other"  # e.g. DM from noise: DM's rows start from real images
    family = TARGETS[params.target].family(params.weights) if distils else "vanilla"
    if params.eval_trainer != default_of("eval_trainer"):  # a debiasing trainer on a vanilla set
        return params.eval_trainer + init if family == "vanilla" else "other"
    return family + init if family is not None else "other"


def bias_ratio(params: Params) -> float | None:
    """The ratio that sets the bias strength: the conflict ratio (LfF-style presets) or the majority ratio (paper
    B's), as the preset names it; ``None`` where the data fixes the bias (the face datasets)."""
    name = bias_ratio_name(params.dataset)
    return None if name is None else getattr(params, name)


def reported(params: Params) -> dict | None:
    """The papers' numbers for the setting of ``params`` (with ``source``), or ``None``.

    Only runs on the preset's own data source have a counterpart.
    """
    if params.source != PRESETS[params.dataset].default_source:
        return None
    ratio = bias_ratio(params)
    ratio = None if ratio is None else round(ratio, 4)
    ipc = params.ipc if "ipc" in METHODS[params.method].uses else None
    return REPORTED.get((params.dataset, ratio, params.method, variant(params), ipc))
