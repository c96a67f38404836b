#!/usr/bin/env python3
"""splitbed command line: sudo python run_scenario.py [SCENARIO.yaml] [--check [--json]]

Works with any interpreter: when the current one lacks splitbed's dependencies (sudo's PATH has no
venv), it re-executes itself with the repository's .venv/bin/python.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
NEEDED_MODULES = ("torch", "yaml", "numpy", "splitbed")


def ensure_dependencies(required: bool = True) -> None:
    """Re-exec into .venv when this interpreter cannot import what splitbed needs."""
    if all(importlib.util.find_spec(name) for name in NEEDED_MODULES):
        return
    if not os.access(VENV_PYTHON, os.X_OK) and not required:
        return
    in_venv = Path(sys.prefix).resolve() == VENV_PYTHON.parent.parent.resolve()
    if os.access(VENV_PYTHON, os.X_OK) and not in_venv:
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])
    missing = [name for name in NEEDED_MODULES if importlib.util.find_spec(name) is None]
    print(
        f"error: missing Python packages {', '.join(missing)} and no usable {VENV_PYTHON}: "
        "run 'sudo make setup' first",
        file=sys.stderr,
    )
    sys.exit(2)


def exit_unless_root(argv: list[str]) -> None:
    """A scenario needs root; say so before anything else (no imports, no traceback)."""
    if os.geteuid() != 0:
        shown = " ".join(argv) or "scenarios/default.yaml"
        print(f"error: splitbed needs root for namespaces, qdiscs and cgroups: run 'sudo python run_scenario.py {shown}'",
              file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.path.insert(0, str(REPO))
    if not any(arg in ("-h", "--help", "--version", "--check", "--validate") for arg in argv) and not (
            "--engine" in argv and "dask" in argv):
        exit_unless_root(argv)  # scenarios, local studies and --cleanup
    if not any(arg in ("-h", "--help", "--version") for arg in argv):
        ensure_dependencies(required="--check" not in argv)
    from splitbed.cli import main

    sys.exit(main(argv))
