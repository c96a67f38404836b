#!/usr/bin/env python3
"""DISC's rate against the tail's output error on Lite0, split by split: is a split that misses the
agreement bar worse coded, or unluckier?

    python benchmarks/disc_rate_distortion.py [--splits block3,block12,block13] [--steps 0.3,0.35,0.4]
                                              [--json PATH]

Per split and DISC step, over the codec benchmark's 260 evaluation views: bits per value (headers
included), reduction, the logit MSE against the uncompressed model (a smooth measure of how much the
coding noise moves the output), and top-1 flips (the agreement criterion: at most 2 of 260 stay under
1 point), with how many flipped views were near ties (top-2 logits within 0.1). Per split, the logit
MSE at 93% reduction (log-interpolated between steps): two splits with the same MSE there code
equally well, whatever their flip counts say.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from splitbed.codecs import CalibrationStore, get_codec
from splitbed.codecs.disc_calibration import head_activations
from splitbed.codecs.evaluation import measure, near_ties
from splitbed.errors import UserError, check_output_path, run_reporting_user_errors
from splitbed.models import get_model
from splitbed.models.datasets import calibration_samples, evaluation_samples
from splitbed.testing.results_page import Page, pct, table

TARGET_REDUCTION_PCT = 93.0


@torch.no_grad()
def curve(model, store, split: str, steps: list[float], inputs: torch.Tensor, logits: torch.Tensor,
          calibration_inputs: torch.Tensor) -> dict:
    acts = head_activations(model, split, inputs)
    tail = model.tail(split)
    cal = store.ensure(model, split, lambda: calibration_inputs)
    reference = logits.argmax(1)
    near_tie = torch.from_numpy(near_ties(logits))
    points = []
    for step in steps:
        # one timed item: measure() reports timings, which this benchmark does not use
        rebuilt, row = measure(get_codec("disc", calibration=cal, step=step), acts, store, timing_items=1)
        out = torch.cat([tail(torch.from_numpy(rebuilt[i : i + 64])) for i in range(0, len(rebuilt), 64)])
        flipped = out.argmax(1) != reference
        point = {"step": step, "bits_per_value": row["bits_per_value"], "reduction_pct": row["reduction_pct"],
                 "logit_mse": float(((out - logits) ** 2).mean()), "flips": int(flipped.sum()),
                 "flips_near_ties": int((flipped & near_tie).sum())}
        points.append(point)
        print(f"{split} step {step}: {point['bits_per_value']:.3f} bit/value ({point['reduction_pct']:.2f}%), "
              f"logit MSE {point['logit_mse']:.5f}, flips {point['flips']} ({point['flips_near_ties']} near ties)",
              flush=True)
    reductions = np.array([p["reduction_pct"] for p in points])
    log_mse = np.log([p["logit_mse"] for p in points])
    order = np.argsort(reductions)
    inside = reductions.min() <= TARGET_REDUCTION_PCT <= reductions.max()
    at_target = float(np.exp(np.interp(TARGET_REDUCTION_PCT, reductions[order], log_mse[order]))) if inside else None
    passing = [p for p in points if 100 * p["flips"] / len(acts) < 1.0]
    best = max((p["reduction_pct"] for p in passing), default=None)
    print(f"  {split}: logit MSE at {TARGET_REDUCTION_PCT}% = "
          f"{'n/a (outside the steps)' if at_target is None else f'{at_target:.5f}'}; "
          f"largest reduction under 1 point of flips: {'none' if best is None else f'{best:.2f}%'}", flush=True)
    return {"split": split, "points": points, "logit_mse_at_target": at_target, "best_passing_reduction_pct": best}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", default="block3,block4,block8,block12,block13,block14")
    parser.add_argument("--steps", default="0.25,0.3,0.35,0.4,0.45,0.5")
    parser.add_argument("--json")
    args = parser.parse_args()
    check_output_path(args.json, "--json")
    torch.set_num_threads(2)
    model, store = get_model("efficientnet_lite0"), CalibrationStore()
    for split in args.splits.split(","):
        model.index(split)  # an unknown split is a clear error before any work
    try:
        steps = [float(s) for s in args.steps.split(",")]
    except ValueError:
        raise UserError(f"--steps: expected comma-separated numbers, got {args.steps!r}") from None
    if not all(0 < s <= 100 for s in steps):
        raise UserError(f"--steps: every step must be in (0, 100], got {args.steps!r}")
    inputs = torch.stack([s.tensor for s in evaluation_samples(model)])
    calibration_inputs = torch.stack([s.tensor for s in calibration_samples(model)])
    with torch.no_grad():
        logits = model.full()(inputs)
    rows = [curve(model, store, split, steps, inputs, logits, calibration_inputs) for split in args.splits.split(",")]
    if args.json:
        Path(args.json).write_text(json.dumps({"target_reduction_pct": TARGET_REDUCTION_PCT, "rows": rows}, indent=1)
                                   + "\n")
    return 0


def disc_rate_distortion_section(data: dict, found: dict) -> list[str]:
    rows = []
    for r in data["rows"]:
        flips = ", ".join(f"{p['flips']} ({p['flips_near_ties']})" for p in r["points"])
        at = r["logit_mse_at_target"]
        rows.append([r["split"], "-" if at is None else f"{at:.4f}", flips,
                     pct(r["best_passing_reduction_pct"]) if r["best_passing_reduction_pct"] is not None else "none"])
    steps = ", ".join(f"{p['step']:g}" for p in data["rows"][0]["points"]) if data["rows"] else ""
    return [f"Logit MSE against the uncompressed model at {data['target_reduction_pct']:g}% reduction "
            f"(interpolated), and top-1 flips of the evaluation views at steps {steps} (in brackets: flips of "
            "near ties, top-2 logits within 0.1).", "",
            *table(["split", "logit MSE at target", "flips (near ties) per step", "largest reduction under 1 point"],
                   rows)]


PAGES = [Page("disc_rate_distortion", "DISC: rate against logit error and flips", order=40,
              argv=["-m", "benchmarks.disc_rate_distortion"], section=disc_rate_distortion_section)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
