"""A helper program of ours that we drive over pipes: one command line in, one JSON line out.

Started as `python -m MODULE ...` from this checkout, it prints "ready" once loaded and ends when its
input closes, so closing it (or our own exit, which closes the pipe) always ends it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class PipedChild:
    def __init__(self, module: str, args: list[str], threads: int, what: str, env: dict | None = None,
                 python: list[str] | None = None):
        """`python`: the argv that starts Python (default this one; e.g. a container's, behind nsenter)."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads), **(env or {})}
        self.process = subprocess.Popen([*(python or [sys.executable]), "-m", module, *args], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
        if self.process.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError(f"{what} did not start")

    @property
    def pid(self) -> int:
        return self.process.pid

    def tell(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def ask(self, command: str):
        self.tell(command)
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
