"""Extension points by name: codecs, models, planners, trace formats and topologies are each a Registry,
so adding one is one entry, a second entry of one name is refused when it is made, and a misspelt name
gets a one-line error with the nearest known name."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from splitbed.errors import UserError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """name -> entry (a factory, class or description), read like a dict."""

    def __init__(self, kind: str, entries: dict[str, T] | None = None):
        self.kind, self.entries = kind, {}
        for name, entry in (entries or {}).items():
            self.add(name, entry)

    def add(self, name: str, entry: T) -> T:
        if name in self.entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({self.entries[name]!r} and {entry!r})")
        self.entries[name] = entry
        return entry

    def register(self, name_of: Callable[[T], str]) -> Callable[[T], T]:
        """A decorator that adds what it decorates under name_of(it)."""
        return lambda entry: self.add(name_of(entry), entry)

    def lookup(self, name: str, where: str | None = None, others: tuple[str, ...] = ()) -> T:
        """The entry, or a UserError naming the known ones (and `others`, names resolved elsewhere)
        with the nearest as a suggestion."""
        if name in self.entries:
            return self.entries[name]
        close = difflib.get_close_matches(str(name), [*self.entries, *others], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"unknown {self.kind} {name!r}", where=where,
                        fix=f"{hint}choose one of: {', '.join([*self.entries, *others])}")

    def __getitem__(self, name: str) -> T:
        return self.entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)
