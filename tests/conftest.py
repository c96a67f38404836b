"""Shared test helpers: skip root-only tests cleanly when not root (CI runs as root)."""

import os

import pytest

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SPLITBED_GUEST"):
        skip = pytest.mark.skip(reason="timing is meaningless in the guest kernel (QEMU TCG's clock; HTB "
                                       "delivers ~70% of its rate there): measured on the host only")
        for item in items:
            if "timing" in item.keywords:
                item.add_marker(skip)
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (CI runs as root)")
    for item in items:
        if "root" in item.keywords or "mininet" in item.keywords:
            item.add_marker(skip)


def run_scenario_text(tmp_path, text: str, name: str, timeout: float = 300):
    """Write a scenario (its output under tmp_path/results), run it to the end; returns (run folder, manifest)."""
    import json
    import subprocess
    import sys

    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    done = subprocess.run([sys.executable, str(REPO / "run_scenario.py"), str(path), "--quiet"],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    run_dir = next((tmp_path / "results").glob(f"{name}-*"))
    return run_dir, json.loads((run_dir / "manifest.json").read_text())
