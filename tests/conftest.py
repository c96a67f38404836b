"""Shared test helpers: skip root-only tests cleanly when not root (CI runs as root)."""

import os

import pytest

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (CI runs as root)")
    for item in items:
        if "root" in item.keywords or "mininet" in item.keywords:
            item.add_marker(skip)
