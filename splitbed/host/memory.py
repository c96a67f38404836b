"""A process's memory, and caches bounded in bytes.

A node runs under its device's memory limit, so whatever it keeps must have a size known before the
run: caches here are bounded by the bytes they hold (never by a count of entries, which says nothing
when one entry is a few KB and another tens of MB), least recently used first out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

MIB = 1 << 20


STATUS_FIELDS = {"RssAnon": "anon", "RssFile": "file", "VmRSS": "total", "VmHWM": "peak"}


def resident_bytes(status: str = "/proc/self/status") -> dict[str, int]:
    """This process's resident memory in bytes: anon, file, total (VmRSS = anon + file + shmem) and
    peak (VmHWM, the largest total so far). Anonymous pages are what the process allocated and a
    memory limit cannot reclaim; file pages (libraries) are shared page cache."""
    fields = dict.fromkeys(STATUS_FIELDS.values(), 0)
    for line in Path(status).read_text().splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_FIELDS:
            fields[STATUS_FIELDS[key]] = int(value.split()[0]) * 1024
    return fields


class BoundedCache:
    """key -> value, holding at most `max_bytes` of values (sized by `size_of`); least recently used
    out first. A value larger than the whole bound is built and returned, but not kept."""

    def __init__(self, max_bytes: int, size_of: Callable[[object], int]):
        self.max_bytes, self.size_of = max_bytes, size_of
        self.items: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self.bytes = 0
        self.peak_bytes = 0

    def get(self, key: Hashable, build: Callable[[], object]):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key][0]
        value = build()
        size = int(self.size_of(value))
        if size > self.max_bytes:
            return value
        while self.items and self.bytes + size > self.max_bytes:
            _, (_, dropped) = self.items.popitem(last=False)
            self.bytes -= dropped
        self.items[key] = (value, size)
        self.bytes += size
        self.peak_bytes = max(self.peak_bytes, self.bytes)
        return value

    def clear(self) -> None:
        self.items.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.items)


def array_bytes(*objects) -> int:
    """Bytes of the numpy arrays held as attributes of `objects` (one level deep), for sizing caches."""
    total = 0
    for obj in objects:
        for value in vars(obj).values():
            total += getattr(value, "nbytes", 0) if hasattr(value, "dtype") else 0
    return total
