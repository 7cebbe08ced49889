"""One registry per concept: the only place a concept's names are listed.

A :class:`Registry` maps names to entries (a preset, a method, a target, a
model, ...). The layer that owns a concept creates its registry and registers
its entries; everything else asks the registry. A registry that serves a
:class:`~paperlib.core.params.Params` field (``field=...``) is also what
validates that field and decides which other fields enter the cache key:

* ``entry.uses`` (optional tuple of field names): the fields that matter once
  this entry is chosen, e.g. the ``lff`` trainer uses ``lff_q`` and ``lff_ema``;
* ``entry.version`` (optional int): bump it when the entry's output changes,
  so stored results made by the old code are not served;
* ``entry.check(params)`` (optional): extra validation, raising
  :class:`~paperlib.core.errors.PaperlibError`;
* ``entry.defaults(params)`` (optional): values for fields left at their
  "0 = the papers' value" placeholders.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from paperlib.core.errors import PaperlibError

T = TypeVar("T")

# Field name -> the registry whose names that Params field takes.
BY_FIELD: dict[str, Registry[Any]] = {}


class Registry(Generic[T]):
    """Named entries of one concept; unknown names are one-line errors listing the valid ones."""

    def __init__(self, kind: str, field: str | None = None, joined: bool = False) -> None:
        """``field``: the ``names`` tag of the ``Params`` fields that take this registry's names (most often a
        field's own name; ``model`` for ``eval_model`` too); ``joined``: such a field holds ``_``-joined names or
        none (:meth:`parse_joined`), not one name."""
        self.kind = kind
        self.joined = joined
        self._entries: dict[str, T] = {}
        if field is not None:
            if field in BY_FIELD:
                raise AssertionError(f"a registry for field {field!r} exists already")  # programming error
            BY_FIELD[field] = self

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name`` (a name may be registered once); returns ``entry``."""
        if name in self._entries:
            raise PaperlibError(f"{self.kind} {name!r} is registered already; pick another name, or unregister it "
                                "first to replace it (a notebook cell run twice registers twice)")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` if registered: to replace an entry (register it again after), or to clean up a toy
        entry in a test."""
        self._entries.pop(name, None)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise PaperlibError(self.unknown(name)) from None

    def unknown(self, name: object, what: str | None = None) -> str:
        """The one-line message for a name that is not registered (``what``: how to call it, default the kind)."""
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {what or self.kind} {name!r}{hint}; choose one of: {', '.join(self.names())}"

    def parse_joined(self, value: str, what: str) -> tuple[str, ...]:
        """The names of ``value``, an ``_``-joined list of them (``none`` or empty: no name), as the reference's
        ``color_crop_cutout``; an unknown one is a one-line error naming ``what`` holds ``value`` (e.g.
        ``dsa_strategy``)."""
        if value in ("", "none"):
            return ()
        parts = tuple(value.split("_"))
        for part in parts:
            if part not in self._entries:
                raise PaperlibError(f"{what} {value!r}: {self.unknown(part)} (joined by '_'), or none")
        return parts

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:  # a registry is a Collection: pytest's parametrize takes OPS or MODELS as one
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """Every ``(name, entry)``, in registration order."""
        return list(self._entries.items())

    def where(self, **attributes: Any) -> tuple[str, ...]:
        """Names whose entries have every given attribute value, e.g. ``METHODS.where(distils=True)``."""
        return tuple(name for name, entry in self._entries.items()
                     if all(getattr(entry, key, None) == value for key, value in attributes.items()))


def registry_for(field: str) -> Registry[Any] | None:
    """The registry that holds the names of ``Params`` field ``field``, if any."""
    return BY_FIELD.get(field)
