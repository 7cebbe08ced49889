"""The one cache key of everything stored, derived from the parameters' tags alone, and the seeds derived from a
run's seed: both are hashes of parameters.

A stored artefact (a dataset, KDE embeddings or weights, a distilled set, a run's record) depends on the fields
of some groups (:data:`SCOPES`); of those, a field selected ``by`` another counts only when the selected entry
``uses`` it, and one switched ``when`` another only while that one is on (:mod:`paperlib.core.params` tags
every field). :func:`unread_reason` says, in words, why a setting changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from paperlib.core.errors import PaperlibError
from paperlib.core.params import GROUPS, Params, default_of, field_tags, selected_entry, with_overrides
from paperlib.core.registry import registry_for

# Which groups each stored artefact depends on; bump KEY_VERSION when the meaning of stored results changes
# for every entry at once (a change of one registered entry bumps that entry's ``version`` instead).
SCOPES: dict[str, tuple[str, ...]] = {
    "dataset": ("dataset", "seed"),
    "embeddings": ("dataset", "seed", "model", "augment", "encoder"),
    "weights": ("dataset", "seed", "model", "augment", "encoder", "kde"),
    "distilled": ("dataset", "seed", "method", "distill", "encoder", "kde", "model", "augment"),
    "record": tuple(g for g in GROUPS if g != "execution"),
}
KEY_VERSION = 2


def _groups(scope: str) -> tuple[str, ...]:
    """The groups ``scope``'s artefact depends on; an unknown scope is an error naming the known ones."""
    if scope not in SCOPES:
        raise PaperlibError(f"unknown cache scope {scope!r}; choose one of: {', '.join(SCOPES)}")
    return SCOPES[scope]


def relevant_fields(params: Params, scope: str = "record") -> list[str]:
    """The fields that can change ``scope``'s result of ``params``: not ``execution``, and, for a field selected
    ``by`` another, only when that one is relevant and its registered entry ``uses`` the field.

    A selector outside ``scope``'s groups does not select: KDE weights are the same whichever method asks for
    them, so the ``weights`` scope keeps every KDE setting even when ``params``'s method draws no synthetic set.
    """
    all_tags, groups = field_tags(), _groups(scope)
    relevant: list[str] = []
    for name, tags in all_tags.items():
        if tags["group"] == "execution":
            continue
        by, when = tags["by"], tags["when"]
        if when is not None and not getattr(params, when):
            continue
        if by is None or all_tags[by]["group"] not in groups or (
                by in relevant and name in getattr(selected_entry(params, by), "uses", ())):
            relevant.append(name)
    return relevant


# What each scope's artefact is, for a setting it does not depend on ("the KDE weights do not depend on ipc")
_SCOPE_WORDS = {"dataset": "the dataset does", "embeddings": "the KDE embeddings do", "weights": "the KDE weights do",
               "distilled": "a distilled set does", "record": "a run's result does"}


def unread_reason(params: Params, name: str, scope: str = "record") -> str | None:
    """Why what ``scope`` computes for ``params`` does not read ``name``, or ``None`` when it does. An
    ``execution`` field is always read; the "off" value of a field that switches itself on (``when`` = itself,
    as ``warm_start_epochs: 0``) is read too: it changes the result as much as any other value. The reason names
    the first selecting field that leaves ``name`` out: ``method 'whole' does not use target`` also explains
    ``weights``. Agrees with :func:`relevant_fields` but for those "off" values, which stay out of the key.

    A field of a group outside ``scope`` can still feed it through a placeholder filled from it (DC's
    ``inner_batch=0`` takes ``eval_batch``): it is unread when putting back its default leaves ``scope``'s key
    as it is; a field at its default is taken as read (nothing to compare it with)."""
    tags, groups = field_tags()[name], _groups(scope)
    if tags["group"] == "execution":
        return None
    if tags["group"] not in groups:
        default = default_of(name)
        if getattr(params, name) == default:
            return None
        try:
            at_default = with_overrides(params, {name: default})
        except PaperlibError:  # the default does not fit the other settings: no comparison, so taken as read
            return None
        return None if cache_key(params, scope) != cache_key(at_default, scope) else \
            f"{_SCOPE_WORDS[scope]} not depend on {name}"
    selector = tags["by"]
    if selector is not None and field_tags()[selector]["group"] in groups:  # else it selects nothing here
        reason = unread_reason(params, selector, scope)
        if reason or name not in getattr(selected_entry(params, selector), "uses", ()):
            return reason or f"{selector} {getattr(params, selector)!r} does not use {name}"
    switch = tags["when"]
    if switch not in (None, name) and not getattr(params, switch):
        return f"{name} applies only while {switch} is set"
    return None


def key_values(params: Params, scope: str = "record") -> dict[str, Any]:
    """What :func:`cache_key` hashes: the relevant fields of ``scope``'s groups, the ``version`` of every
    selected registered entry that has one, the scope and :data:`KEY_VERSION`."""
    tags, groups = field_tags(), _groups(scope)
    values: dict[str, Any] = {"scope": scope, "key_version": KEY_VERSION}
    for name in relevant_fields(params, scope):
        if tags[name]["group"] not in groups:
            continue
        value = values[name] = getattr(params, name)
        registry = registry_for(tags[name]["names"]) if tags[name]["names"] and value not in (None, "") else None
        if registry is not None:  # eval_model names a model, dsa_strategy '_'-joined ops: their versions count too
            chosen = registry.parse_joined(value, name) if registry.joined else (value,)
            versions = [getattr(registry[entry], "version", 0) for entry in chosen]
            if any(versions):
                values[f"{name}_version"] = versions if registry.joined else versions[0]
    return values


def cache_key(params: Params, scope: str = "record") -> str:
    """The one cache key of everything stored for ``params``: a dataset, KDE embeddings or weights, a
    distilled set, or a run's record (``scope``)."""
    return stable_hash(key_values(params, scope))


def stable_hash(data: Mapping[str, Any]) -> str:
    """The first 16 hex digits (64 bits) of the sha256 of a JSON-serialisable mapping, independent of key order."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def derive_seed(seed: int, *tags: Any) -> int:
    """A 63-bit seed derived from ``seed`` and tags, e.g. ``derive_seed(0, "eval", 3)``.

    Independent streams for independent purposes, with no clock involved.
    """
    text = json.dumps([seed, *tags], default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1
