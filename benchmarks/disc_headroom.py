#!/usr/bin/env python3
"""How much smaller could DISC's entropy stage make its symbols? Bounds, measured on Lite0.

    python benchmarks/disc_headroom.py [--splits block3,block13] [--step 0.35] [--json PATH]

For DISC's quantised symbols on the 260 photo views (the codec benchmark's evaluation set), at one
step: the bits per value DISC sends (headers included), and what an ideal coder would need under
three models of |q| (sign bits added), each a histogram per model cell:
  - `calibration_groups`: DISC's own grouping (by calibrated Laplace scale), histograms fitted on
    the calibration views: what a better static table could reach;
  - `oracle_groups`: the same, fitted on the evaluation views themselves (an optimistic bound);
  - `context`: the calibration histograms further split by already-decoded neighbours (left + up in
    the DCT map, capped at 3; the previous component at the same position, capped at 2): what a
    context-adaptive coder could reach.
If these sit within a few percent of DISC's bits, rate must come from the transform or quantiser.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from splitbed.codecs import CalibrationStore, get_codec
from splitbed.codecs.disc import quant_plan
from splitbed.codecs.disc_calibration import head_activations
from splitbed.errors import check_output_path, run_reporting_user_errors
from splitbed.models import get_model
from splitbed.models.datasets import calibration_samples, evaluation_samples
from splitbed.testing.results_page import Page, pct, table

LARGEST = 64  # |q| beyond this shares one histogram bin (rare at these steps)


def coefficient_groups(plan, shape: tuple[int, ...]) -> np.ndarray:
    """DISC's table index for every (component, row, column)."""
    group = np.empty(int(np.prod(shape)), np.int64)
    classes = plan.classes
    for g in range(len(classes.ranges) - 1):
        group[classes.order[classes.ranges[g] : classes.ranges[g + 1]]] = g
    return group.reshape(shape)


def neighbour_context(q: np.ndarray) -> np.ndarray:
    """Per symbol, from neighbours a decoder has already seen: (left + up, capped at 3) x 3 +
    (previous component at the same position, capped at 2)."""
    left = np.pad(q, ((0, 0), (0, 0), (0, 0), (1, 0)))[..., :-1]
    up = np.pad(q, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]
    previous = np.pad(q, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]
    return np.minimum(left + up, 3) * 3 + np.minimum(previous, 2)


def ideal_bits(fit_q, fit_cells, test_q, test_cells) -> float:
    """Bits per value of test_q coded with one |q| histogram per cell fitted on fit_q (+ sign bits)."""
    fit_m, test_m = np.minimum(fit_q, LARGEST).ravel(), np.minimum(test_q, LARGEST).ravel()
    fit_c, test_c = fit_cells.ravel(), test_cells.ravel()
    counts = np.full((int(max(fit_c.max(), test_c.max())) + 1, LARGEST + 1), 0.5)  # half-count prior
    np.add.at(counts, (fit_c, fit_m), 1)
    p = counts / counts.sum(1, keepdims=True)
    return float((-np.log2(p[test_c, test_m]) + (test_m > 0)).sum() / test_q.size)


def headroom(model, store, split: str, step: float) -> dict:
    calibration_inputs = torch.stack([s.tensor for s in calibration_samples(model)])
    evaluation = head_activations(model, split, torch.stack([s.tensor for s in evaluation_samples(model)]))
    calibration_acts = head_activations(model, split, calibration_inputs)
    cal = store.ensure(model, split, lambda: calibration_inputs)
    codec = get_codec("disc", calibration=cal, step=step)
    sent = np.mean([len(codec.encode(evaluation[i : i + 1])) for i in range(len(evaluation))]) * 8 / evaluation[0].size
    plan = quant_plan(cal, codec.params, evaluation.shape[1])
    q_eval, q_cal = np.abs(plan.quantise(evaluation)), np.abs(plan.quantise(calibration_acts))
    group = coefficient_groups(plan, q_eval.shape[1:])
    g_eval, g_cal = np.broadcast_to(group, q_eval.shape), np.broadcast_to(group, q_cal.shape)
    row = {"split": split, "step": step, "values": int(evaluation[0].size), "disc_bits_per_value": float(sent),
           "calibration_groups": ideal_bits(q_cal, g_cal, q_eval, g_eval),
           "oracle_groups": ideal_bits(q_eval, g_eval, q_eval, g_eval),
           "context": ideal_bits(q_cal, g_cal * 12 + neighbour_context(q_cal), q_eval,
                                 g_eval * 12 + neighbour_context(q_eval))}
    print(f"{split} step {step}: DISC sends {sent:.3f} bit/value; ideal coders: calibration groups "
          f"{row['calibration_groups']:.3f}, oracle groups {row['oracle_groups']:.3f}, with neighbour context "
          f"{row['context']:.3f} ({100 * (1 - row['context'] / sent):.1f}% below DISC)", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", default="block3,block13")
    parser.add_argument("--step", type=float, default=0.35)
    parser.add_argument("--json")
    args = parser.parse_args()
    check_output_path(args.json, "--json")
    torch.set_num_threads(2)
    model, store = get_model("efficientnet_lite0"), CalibrationStore()
    for split in args.splits.split(","):
        model.index(split)  # an unknown split is a clear error before any work
    rows = [headroom(model, store, split, args.step) for split in args.splits.split(",")]
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    return 0


def disc_headroom_section(data: dict, found: dict) -> list[str]:
    rows = [[r["split"], f"{r['step']:g}", f"{r['disc_bits_per_value']:.3f}", f"{r['calibration_groups']:.3f}",
             f"{r['context']:.3f}", pct(100 * (1 - r["context"] / r["disc_bits_per_value"]), 1),
             f"{r['oracle_groups']:.3f}"] for r in data["rows"]]
    return ["Bits per value DISC sends against ideal coders of DISC's own symbols: one histogram per DISC table "
            "fitted on the calibration views, the same split by already-decoded neighbours (context), and "
            "histograms fitted on the evaluation views themselves (oracle).", "",
            *table(["split", "step", "DISC", "ideal, per table", "ideal, with context", "context below DISC",
                    "oracle per table"], rows)]


PAGES = [Page("disc_headroom", "DISC: distance of the entropy stage from ideal coders", order=30,
              argv=["-m", "benchmarks.disc_headroom", "--splits", "block3,block4,block13"],
              section=disc_headroom_section)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
