"""What a benchmark declares about its results, so that a new benchmark touches one file.

Each benchmarks/NAME.py holds a module-level `PAGES = [Page(...)]`: the summary it writes
(data/bench/NAME.json), the command that writes it, its section of docs/results.md and its rows of
the README's headline table. scripts/results.py finds the pages and renders them; it knows no
benchmark by name. The table and number helpers here are the ones every section shares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Found = dict[str, tuple[dict, dict]]  # every loaded benchmark: name -> (summary, meta)


@dataclass(frozen=True)
class Page:
    """One benchmark summary and how the results pages show it. Functions take (data, found): a row may
    read another benchmark's summary too."""

    name: str  # the summary's stem: data/bench/NAME.json
    title: str  # its section's title in docs/results.md (the README links to its anchor)
    order: int  # the section's place in docs/results.md
    argv: list[str]  # what writes it, after the interpreter, run from the repository root (then --json PATH)
    section: Callable[[dict, Found], list[str]]  # the section's lines below its provenance line
    headline: Callable[[dict, Found], list[list[str]]] | None = None  # the README's rows [what, measured]
    headline_order: int = 0  # the rows' place in the README's table
    notes: Callable[[dict, Found], list[str]] | None = None  # lines under the README's table that read its rows
    judges_study: bool = False  # takes --from DIR --commit C: judges a study folder already run
    before: Callable[[Found], list[str]] | None = None  # lines above the section, there even when not measured


def table(header: list[str], rows: list[list]) -> list[str]:
    """A Markdown table and the blank line that ends it."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows), ""]


def pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}%"


def ci(entry: dict) -> str:
    """A drop in points with its 95% interval: 'pts (lo, hi)'."""
    return "-" if entry["pts"] is None else f"{entry['pts']:.2f} ({entry['lo']:.2f}, {entry['hi']:.2f})"
