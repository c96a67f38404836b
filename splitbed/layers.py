"""The package layers, bottom to top, and a checker that finds imports running back up.

A package may import itself and any package on a lower floor; two packages on one floor are
independent of each other. Each package's docstring declares, on its "May import:" line, the
packages it imports (a subset of the floors below it); the checker holds the code to that line and
the line to the floors. tests/test_layers.py runs the checker over the tree, and
`python -m splitbed.layers` prints what it finds.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

FLOORS: list[list[str]] = [
    ["__init__", "errors", "layers"],  # __init__: the package face (version, process settings)
    ["host", "registry"],
    ["network", "models"],
    ["devices", "codecs"],
    ["aglop"],
    ["app"],
    ["analysis"],
    ["scenarios"],
    ["cli"],
    ["testing"],  # the harness of link tests and benchmarks: no runtime package imports it
]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}


def unit_of(module: str) -> str | None:
    """The layer unit of a dotted module name inside splitbed ('splitbed.network.links' -> 'network')."""
    parts = module.split(".")
    if parts[0] != "splitbed":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """Every module an ast imports, at any depth (function-level imports count), as (line, dotted name)."""
    found = []
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def declared_imports(package_init: Path) -> set[str] | None:
    """The packages a package's docstring says it may import (its "May import:" line; notes in
    brackets are comments); None when the docstring has no such line."""
    doc = ast.get_docstring(ast.parse(package_init.read_text())) or ""
    line = next((ln for ln in doc.splitlines() if ln.startswith("May import:")), None)
    if line is None:
        return None
    return {word for word in re.findall(r"[a-z_]+", re.sub(r"\([^)]*\)", "", line[len("May import:"):]))}


def back_imports(root: Path) -> list[str]:
    """'file:line: a imports b' for every import from a package to one on its floor or above it."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts)
        if rel.name == "__init__":
            module = ".".join(rel.parts[:-1]) + ".__init__"
        unit = unit_of(module)
        if unit not in FLOOR:
            problems.append(f"{path}: package {unit!r} is on no floor (add it to splitbed.layers.FLOORS)")
            continue
        declared = declared_imports(init) if (init := root / unit / "__init__.py").is_file() else None
        if declared is not None:
            problems += [f"{init}: May import names {name!r}, which is no package on a floor below {unit}'s"
                         for name in sorted(declared) if FLOOR.get(name, len(FLOORS)) >= FLOOR[unit]]
        elif init.is_file():
            problems.append(f"{init}: the docstring has no 'May import:' line")
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, name in imported_modules(tree, module):
            target = unit_of(name)
            if target is None or target == unit or target not in FLOOR:
                continue
            if FLOOR[target] >= FLOOR[unit]:
                problems.append(f"{path}:{line}: {unit} (floor {FLOOR[unit]}) imports {target} "
                                f"(floor {FLOOR[target]})")
            elif declared is not None and target not in declared and target != "__init__":
                problems.append(f"{path}:{line}: {unit} imports {target}, which its May import line leaves out")
    return sorted(set(problems))


if __name__ == "__main__":
    found = back_imports(Path(__file__).resolve().parent)
    print("\n".join(found) or "no back-imports")
    sys.exit(1 if found else 0)
