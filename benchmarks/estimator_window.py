#!/usr/bin/env python3
"""Which samples should AGLOP's bandwidth estimate keep? Judged on traces the AGLOP grid does not use.

    python benchmarks/estimator_window.py [--study studies/aglop-grid.yaml] [--json PATH]

A trace-only analysis, no emulation: it chooses a setting, the AGLOP grid (benchmarks/aglop_grid.py)
measures the result. The case it looks at is the one where an estimate lags: the edge computes alone
and sends only probes (PROBE_BYTES), one before a request when the newest sample is a second old.
Two spacings of the probes: a lone method (1.0-1.3 s: the second, then until the running request
ends) and the grid's (0.7-2.2 s: methods take turns, AGLOP's come every 1.2 s at the median). Each
probe's on-link time is what the trace's rate needs to carry it, times log-normal noise (the host's
jitter); between two probes, at a random moment, the estimate
predicts the on-link time of a 17 KB message (a typical DISC request on these links), which is
compared with what the trace needs. Every pensieve trace the study does not name is used, the 3G
ones as recorded and scaled x6 (as the grid does), 300 predictions each, fixed seeds.
Reported per setting (the real BandwidthEstimator, with its window and sample age limit): the median
over traces of the median |predicted - actual| / actual, and the mean log ratio (bias).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import zlib
from pathlib import Path

import numpy as np

from splitbed.aglop.online import PROBE_BYTES, BandwidthEstimator
from splitbed.aglop.planner import wire_bits
from splitbed.errors import check_output_path, run_reporting_user_errors
from splitbed.network.traces import Trace, load_trace
from splitbed.scenarios.study import load_study
from splitbed.testing.results_page import Page, pct, table

REPO = Path(__file__).resolve().parent.parent

MESSAGE_BYTES = 17_000
ONE_WAY_MS = 10.0
PREDICTIONS = 300
NOISE = (0.05, 0.10, 0.20)  # sd of the log of the on-link time
SPACING_S = {"alone": (1.0, 1.3), "taking turns": (0.7, 2.2)}  # from one probe's start to the next's
SETTINGS = {"5 samples": (5, None), "3 samples": (3, None), "5 samples, 1 s": (5, 1.0), "5 samples, 2 s": (5, 2.0),
            "5 samples, 3 s": (5, 3.0), "5 samples, 4 s": (5, 4.0)}


def seconds_to_carry(trace: Trace, start_s: float, bits: float, step_s: float = 0.001) -> float:
    """How long the trace's rate takes to carry `bits` from start_s (1 ms steps, as the replay)."""
    carried, t = 0.0, start_s
    while True:
        times = t + np.arange(1000) * step_s
        cumulative = carried + np.cumsum(trace.rate_at(times)) * step_s
        done = np.searchsorted(cumulative, bits)
        if done < len(times):
            return float(times[done] + step_s - start_s)
        carried, t = float(cumulative[-1]), t + 1000 * step_s


def held_out_traces(study: Path) -> list[tuple[str, float]]:
    """(pensieve trace path, scale) for every bundled pensieve trace no run of the study replays."""
    used = {Path(value).name for run in load_study(study).runs for key, value in run.overrides.items()
            if key.endswith(".trace") and isinstance(value, str)}
    out = []
    for path in sorted((REPO / "traces" / "pensieve").iterdir()):
        if path.name not in used:
            out += [(str(path), scale) for scale in ((1.0, 6.0) if path.name.startswith("norway") else (1.0,))]
    return out


def prediction_errors(trace: Trace, window: int, max_age_s: float | None, noise: float,
                      spacing_s: tuple[float, float], seed: int) -> list[float]:
    """log(predicted / actual) for each prediction between probes."""
    rng = np.random.default_rng(seed)
    estimator = BandwidthEstimator(window, max_age_s)
    probe_bits, message_bits = float(wire_bits(PROBE_BYTES)), float(wire_bits(MESSAGE_BYTES))
    now, logs = float(rng.uniform(0, trace.duration_s)), []
    while len(logs) < PREDICTIONS:
        on_link_s = seconds_to_carry(trace, now, probe_bits) * float(np.exp(rng.normal(0, noise)))
        estimator.observe(PROBE_BYTES, ONE_WAY_MS + on_link_s * 1e3, ONE_WAY_MS, now)
        gap = max(float(rng.uniform(*spacing_s)), on_link_s + 0.05)
        asked = now + on_link_s + float(rng.uniform(0, gap - on_link_s))
        predicted = message_bits / estimator.rate_bps()
        logs.append(float(np.log(predicted / seconds_to_carry(trace, asked, message_bits))))
        now += gap
    return logs


def judge(traces: list[tuple[str, float]]) -> list[dict]:
    loaded = [(load_trace(path).scaled(scale), zlib.crc32(f"{path}{scale}".encode())) for path, scale in traces]
    rows = []
    for (spacing, spacing_s), noise in itertools.product(SPACING_S.items(), NOISE):
        for label, (window, max_age_s) in SETTINGS.items():
            medians, biases = [], []
            for trace, seed in loaded:
                logs = prediction_errors(trace, window, max_age_s, noise, spacing_s, seed)
                medians.append(statistics.median(abs(np.expm1(x)) for x in logs))
                biases.append(statistics.fmean(logs))
            rows.append({"spacing": spacing, "noise_sd": noise, "setting": label, "window": window, "max_age_s": max_age_s,
                         "median_abs_error_pct": round(100 * statistics.median(medians), 2),
                         "worst_trace_error_pct": round(100 * max(medians), 2),
                         "mean_log_bias": round(statistics.fmean(biases), 4)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default=str(REPO / "studies" / "aglop-grid.yaml"))
    parser.add_argument("--json")
    args = parser.parse_args()
    check_output_path(args.json, "--json")
    traces = held_out_traces(Path(args.study))
    rows = judge(traces)
    print(f"{len(traces)} held-out (trace, scale) pairs: " + ", ".join(f"{Path(p).name} x{s:g}" for p, s in traces))
    print("| probes | noise sd | setting | median abs error | worst trace | mean log bias |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['spacing']} | {row['noise_sd']:g} | {row['setting']} | {row['median_abs_error_pct']}% | "
              f"{row['worst_trace_error_pct']}% | {row['mean_log_bias']:+.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"traces": traces, "rows": rows}, indent=1) + "\n")
    return 0


def estimator_window_section(data: dict, found: dict) -> list[str]:
    rows = [[r["spacing"], f"{r['noise_sd']:g}", r["setting"], pct(r["median_abs_error_pct"], 1),
             pct(r["worst_trace_error_pct"], 1), f"{r['mean_log_bias']:+.3f}"] for r in data["rows"]]
    names = ", ".join(f"{Path(path).name} x{scale:g}" for path, scale in data["traces"])
    return ["A trace-only analysis (no emulation) that chose which samples AGLOP's bandwidth estimate keeps, on "
            f"the bundled traces the AGLOP grid does not replay ({names}): probes while the edge computes alone, "
            "their on-link times with log-normal noise, and the error of the next 17 KB message's predicted "
            "time (median per trace, then over traces; bias: mean log of predicted over actual).", "",
            *table(["probes", "noise sd", "samples kept", "median abs error", "worst trace", "mean log bias"], rows)]


PAGES = [Page("estimator_window", "AGLOP: which samples its rate estimate keeps", order=80,
              argv=["-m", "benchmarks.estimator_window"], section=estimator_window_section)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
