"""Where splitbed keeps what it computes once per machine: codec calibrations, device calibrations, the
planner's tables and the photos (also mounted into container nodes at the same path)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$SPLITBED_CACHE, else ~/.cache/splitbed."""
    return Path(os.environ.get("SPLITBED_CACHE", Path.home() / ".cache" / "splitbed"))
