"""One registry for everything fci looks up by name: training backends, splits,
dataset kinds, studies and the explorer's entry readers.

A `Registry` maps names to objects. It refuses a duplicate name, lists its names
in registration order, and answers an unknown name with one error that lists the
known ones and suggests the closest:

    >>> from fci.registry import Registry
    >>> colours = Registry("colour")
    >>> colours.register("red", "#d62728")
    '#d62728'
    >>> colours.get("rde")
    Traceback (most recent call last):
    ...
    fci.registry.UnknownName: unknown colour 'rde' (did you mean 'red'?); known: red

This module imports nothing from fci, so any module may hold a registry without
an import cycle.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar, overload

__all__ = ["Registry", "UnknownName", "DuplicateName"]

T = TypeVar("T")


class UnknownName(ValueError):
    """A name that is not registered (the message lists the known ones)."""


class DuplicateName(ValueError):
    """A name registered twice."""


class Registry(Generic[T]):
    """Named objects of one kind (`what` names the kind in messages)."""

    def __init__(self, what: str, reserved: tuple[str, ...] = ()):
        self.what = what
        self._reserved = reserved
        self._items: dict[str, T] = {}

    @overload
    def register(self, name: str, obj: T) -> T: ...

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    def register(self, name: str, obj=None):
        """Register `obj` under `name` (or, without `obj`, a decorator that does);
        refuses a name already taken or reserved."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.what} name must be a non-empty string, got {name!r}")
        if name in self._reserved:
            raise DuplicateName(f"the {self.what} name {name!r} is reserved")
        if name in self._items:
            raise DuplicateName(f"a {self.what} named {name!r} is already registered")

        def put(o: T) -> T:
            self._items[name] = o
            return o

        return put if obj is None else put(obj)

    def unregister(self, name: str) -> T:
        """Remove `name` (for tests and plugins that replace an entry); returns what it held."""
        self.get(name)
        return self._items.pop(name)

    def get(self, name: str) -> T:
        """The object under `name`; `UnknownName` (a ValueError) otherwise."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownName(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        """The one-line error for an unknown `name`."""
        known = self.names()
        close = difflib.get_close_matches(str(name), known, n=1) if isinstance(name, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.what} {name!r}{hint}; known: {', '.join(known) or 'none'}"

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._items)})"
