"""The edge program's memory, predicted before a run from the model, the plans and the inputs.

An edge node runs under its device's memory limit (cgroup), so the runner states what the edge will
hold before anything starts, and refuses a run that cannot fit, as it refuses one whose CPU quotas do
not fit the machine. Every part is anonymous memory, what a limit cannot reclaim (the libraries'
file pages, about 180 MB for torch, are shared page cache the kernel drops under pressure):

- runtime: the interpreter, torch, numpy, numba's compiled coder and the model's weights after its
  warm-up passes (with their transient peak), at the edge's thread count, measured once per machine,
  model, threads and source tree in a fresh process (python -m splitbed.app.footprint measure) and
  cached;
- inputs: the distinct inputs the edge keeps (float32 tensors);
- calibrations and plans: DISC's state for the splits and settings the edge may run, each no more
  than its cache's bound in bytes (codecs/disc_calibration.py, codecs/disc.py);
- working: one request's transient arrays beyond the head pass (the encoder's copies of the largest
  activation an option sends);
- trace: the uplink trace's arrays;
- allocator: ALLOCATOR_SLACK of the sum of the others.
Everything else the edge keeps is bounded by count and small (estimator windows, drift tables).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from splitbed.errors import UserError
from splitbed.host.cache import cache_root
from splitbed.host.memory import MIB

ENCODE_COPIES = 4  # float32 copies of an activation an encode holds at once (input, coefficients, symbols, payload)
# The allocator's share on top of the parts: fragments and arenas left by the varied sizes of an
# interleaved run. Over 16 runs of ten methods in turn on held-out traces, the largest anonymous memory
# a request saw reached 400.0 MB where the parts summed to 400.3 (it steps up in the first 30 s, then
# holds): without a margin, the next allocation pattern could pass the prediction.
ALLOCATOR_SLACK = 0.05
RUNTIME_FORMAT = 2
MEASURE_TIMEOUT_S = 300


@dataclass
class Footprint:
    parts: dict[str, int] = field(default_factory=dict)  # part -> bytes

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        listed = ", ".join(f"{name} {size / MIB:.0f}" for name, size in self.parts.items() if size >= MIB / 2)
        return f"{self.total / MIB:.0f} MB ({listed})"

    def to_dict(self) -> dict:
        return {"total_mb": round(self.total / MIB, 1), **{f"{k}_mb": round(v / MIB, 1) for k, v in self.parts.items()}}


def runtime_path(model_name: str, threads: int) -> Path:
    import torch

    from splitbed.host.images import source_digest

    key = f"{model_name}-t{threads}-torch{torch.__version__}-py{platform.python_version()}-{source_digest()}"
    return cache_root() / "memory" / f"runtime-{key.replace('/', '_')}-v{RUNTIME_FORMAT}.json"


def runtime_bytes(model_name: str, threads: int = 1, python: str = sys.executable) -> int:
    """The edge runtime's peak anonymous bytes with this model loaded and warmed (measured once, cached)."""
    path = runtime_path(model_name, threads)
    try:
        return int(json.loads(path.read_text())["peak_bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not measured yet, or an unreadable cache file: measure again
    argv = [python, "-m", "splitbed.app.footprint", "measure", "--model", model_name, "--threads", str(threads)]
    out = None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                             cwd=Path(__file__).resolve().parents[2], timeout=MEASURE_TIMEOUT_S)
        measured = json.loads(out.stdout.strip().splitlines()[-1])
        peak = int(measured["peak_bytes"])
    except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError, TypeError) as err:
        stderr = getattr(err, "stderr", None) or (out.stderr if out is not None else "") or ""
        stderr = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        raise UserError(f"could not measure the edge runtime's memory ({type(err).__name__}): {stderr.strip()[-300:]}",
                        fix=f"run it by hand to see why: python {' '.join(argv[1:])}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(measured) + "\n")
    return peak


def edge_footprint(model, options: list, inputs: int, store, trace_samples: int = 0, threads: int = 1) -> Footprint:
    """model: the SplitModel; options: (split, codec, params) of every option the edge may run (its
    fixed plans, and every option of the planners' profile: the edge warms them all); inputs: distinct
    inputs kept; store: the CalibrationStore the edge reads (its files are loaded here to size them)."""
    import torch

    from splitbed.codecs import get_codec
    from splitbed.codecs.disc import PLAN_CACHE_BYTES, QuantPlan
    from splitbed.codecs.disc_calibration import CALIBRATION_CACHE_BYTES

    with torch.no_grad():
        sizes = {k: v.numel() * 4 for k, v in model.activations(torch.zeros(1, *model.input_shape)).items()}
    sent = [sizes.get(split, int(np.prod(model.input_shape)) * 4) for split, codec, _ in options if codec]
    disc = [(split, params) for split, codec, params in options if codec == "disc"]
    calibrations = {split: store.get(model.name, split) for split, _ in disc}
    plans = 0
    for split, params in disc:
        cal = calibrations[split]
        full = get_codec("disc", calibration=cal, **params).params  # with the defaults
        channels = cal.fisher.shape[0]
        plans += QuantPlan(cal, full, min(full["rank"] or channels, channels)).nbytes
    parts = {
        "runtime": runtime_bytes(model.name, threads),
        "inputs": inputs * int(np.prod(model.input_shape)) * 4,
        "calibrations": min(sum(cal.nbytes for cal in calibrations.values()), CALIBRATION_CACHE_BYTES),
        "plans": min(plans, PLAN_CACHE_BYTES),
        "working": ENCODE_COPIES * max(sent, default=0),
        "trace": trace_samples * 3 * 8,
    }
    return Footprint({**parts, "allocator": int(ALLOCATOR_SLACK * sum(parts.values()))})


def measure(model_name: str, threads: int = 1) -> dict:
    """In this (fresh) process: what the edge program loads before its first request, and its peak."""
    import torch

    from splitbed.app import edge  # noqa: F401  (the edge program's imports)
    from splitbed.codecs import rans
    from splitbed.host.memory import resident_bytes
    from splitbed.models import get_model
    from splitbed.models.split_costs import WARMUP_PASSES, pass_times_ms

    torch.set_num_threads(threads)
    rans.warm_up()
    model = get_model(model_name)
    pass_times_ms(model.full(), torch.zeros(1, *model.input_shape), WARMUP_PASSES)
    now = resident_bytes()
    # what the passes held at their peak and gave back is anonymous memory too
    anon_peak = now["anon"] + max(now["peak"] - now["total"], 0)
    return {"model": model_name, "peak_bytes": anon_peak, "resident": now}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m splitbed.app.footprint")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("measure", help="the edge runtime's peak memory with a model loaded (JSON)")
    cmd.add_argument("--model", required=True)
    cmd.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.model, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
