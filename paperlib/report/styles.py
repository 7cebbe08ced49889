"""The name and colour of a distilled set, the same in every table and figure: "DM + KDE"; its hue says the
target (how the real data is aggregated), its shade the method; runs that share a colour within one figure are
told apart by hatching."""

from __future__ import annotations

from typing import TYPE_CHECKING

from paperlib.distill.methods import METHODS, distilling_methods
from paperlib.distill.targets import TARGETS

if TYPE_CHECKING:  # pandas loads when a figure is drawn
    import pandas as pd

Colour = tuple[float, float, float]


def _tab20() -> tuple[Colour, ...]:
    """matplotlib's tab20: ten hues, each as a dark and a light shade (loaded when a figure is drawn)."""
    from matplotlib import colormaps

    return colormaps["tab20"].colors


_GRAY = 7  # tab20's gray (hues counted from 0)
HATCHES = ("", "//", "..", "xx", "\\\\", "oo")


def distilled_set_name(method: str, target: str, weights: str = "uniform") -> str:
    """How tables and figures name the set ``method`` makes with ``target`` (and sample ``weights``, read only by
    a target that lets them decide): the method's ``display_name`` (``None``: its registered name), then `` + `` the
    target's (:meth:`~paperlib.distill.targets.Target.shown_as`): "DM", "DM + KDE", "DC + FairDD"; a method that
    distils nothing ("whole data") needs no target."""
    entry = METHODS[method]
    shown = method if entry.display_name is None else entry.display_name
    if not entry.distils:
        return shown
    target_part = TARGETS[target].shown_as(weights)
    return f"{shown} + {target_part}" if target_part else shown


def approach_colour(method: str, target: str) -> Colour:
    """The colour of the set ``method`` makes with ``target``: one hue per target, in the target registry's
    order (blue, orange, green, red, ...), dark for the first distilling method of the method registry (DM) and
    light for the next (DC); gray for a method that distils nothing (dark: the first, whole data; light: the
    next, a random real subset). Ten hues and two shades: a third distilling method (DSA) shares DM's colour
    and a tenth target vanilla's; :func:`run_styles` hatches whichever of them comes second in one figure."""
    METHODS[method]  # an unknown name: the registry's one-line error
    plain = METHODS.where(distils=False)
    if method in plain:  # its record may name no target
        return _tab20()[2 * _GRAY + plain.index(method) % 2]
    TARGETS[target]
    distilling = distilling_methods()
    hue = TARGETS.names().index(target)
    hue += hue >= _GRAY  # gray is kept for the sets no target makes
    return _tab20()[2 * (hue % 10) + distilling.index(method) % 2]


def run_styles(table: pd.DataFrame, key: str) -> dict[str, tuple[Colour, str]]:
    """The colour and hatch of each value of ``table[key]`` (e.g. the runs), in order of first appearance.

    The colour is :func:`approach_colour` of the value's first row's ``method`` and ``target`` (a table without
    them: matplotlib's ten default colours in turn); a value whose colour an earlier one took gets the next
    hatch, so ``dm`` and ``dm_lff`` (LfF trained on the DM set) share DM's colour and differ by hatching. A
    value names one set: a label used for two sets takes its first row's colour.
    """
    first = table.drop_duplicates(key)
    if {"method", "target"} <= set(first.columns):
        colours = [approach_colour(m, t) for m, t in zip(first["method"], first["target"])]
    else:
        colours = [_tab20()[2 * (i % 10)] for i in range(len(first))]
    styles: dict[str, tuple[Colour, str]] = {}
    for value, colour in zip(first[key], colours):
        taken = sum(1 for c, _ in styles.values() if c == colour)
        styles[value] = (colour, _hatch(taken))
    return styles


def _hatch(taken: int) -> str:
    """The hatch of the run that finds ``taken`` runs in its colour already: none for the first, then each
    pattern in turn, drawn denser on every round so no two runs of a colour look alike."""
    if taken == 0:
        return ""
    patterns = HATCHES[1:]
    return patterns[(taken - 1) % len(patterns)] * (1 + (taken - 1) // len(patterns))
