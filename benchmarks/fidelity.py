#!/usr/bin/env python3
"""Emulated link against configured link, side by side in one run.

    sudo .venv/bin/python benchmarks/fidelity.py [--quick] [--json PATH] [--plot PATH]

Goodput of a bulk TCP flow through HTB at fixed rates (0.5-100 Mbit/s) against rate x 1448/1514
(TCP/IP and Ethernet headers), and per-second trace-following error while three bundled traces
replay (100 ms steps, `tc class change` through one `tc -batch`). Not measured yet: UDP, RTT under
configured delay and loss (the no-netem delay/loss backend has not landed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from splitbed.scenarios.traces import load_trace  # noqa: E402
from splitbed.topologies.fidelity import fixed_rate_goodput, follow_trace  # noqa: E402

TRACES = ["norway_bus_1", "norway_tram_26", "trace_866_http---www.amazon.com"]
RATES_MBIT = [0.5, 1, 10, 100]


def plot(traces: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(traces), 1, figsize=(9, 2.6 * len(traces)), squeeze=False)
    for ax, row in zip(axes[:, 0], traces, strict=True):
        seconds = range(len(row["expected_bps"]))
        ax.step(seconds, [v / 1e6 for v in row["expected_bps"]], where="post", label="trace x 1448/1514")
        ax.step(seconds, [v / 1e6 for v in row["achieved_bps"]], where="post", label="TCP goodput achieved")
        ax.set_title(f"{row['trace']}: median error {row['median_error_pct']:.2f}%, p90 {row['p90_error_pct']:.2f}%")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("Mbit/s")
        ax.legend(loc="lower right")
    fig.text(0.01, 0.005, "HTB rate changed in place every 100 ms; GSO/TSO off; veth between two namespaces",
             fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 s per trace, 3 s per rate (< 2 minutes)")
    parser.add_argument("--json")
    parser.add_argument("--plot")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("error: needs root for namespaces and qdiscs: sudo .venv/bin/python benchmarks/fidelity.py",
              file=sys.stderr)
        return 2
    started = time.time()
    rates = []
    for mbit in RATES_MBIT:
        row = fixed_rate_goodput(mbit * 1e6, seconds=4 if args.quick else 10)
        rates.append(row)
        print(f"fixed {mbit:>6} Mbit/s: goodput {row['goodput_bps'] / 1e6:8.3f} Mbit/s, expected "
              f"{row['expected_goodput_bps'] / 1e6:8.3f}, error {row['rate_error_pct']:.2f}%", flush=True)
    traces = []
    for name in TRACES:
        trace = load_trace(Path(__file__).resolve().parent.parent / "traces" / "pensieve" / name)
        row = follow_trace(trace, 20 if args.quick else 60)
        traces.append(row)
        print(f"trace {name:<34} median error {row['median_error_pct']:.2f}%  p90 {row['p90_error_pct']:.2f}%  "
              f"({row['rate_changes']} rate changes)", flush=True)
    plot_path = Path(args.plot) if args.plot else (Path(args.json).with_suffix(".png") if args.json else None)
    if plot_path:
        plot(traces, plot_path)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "quick": args.quick, "backend": "htb", "seconds": time.time() - started, "fixed_rates": rates,
            "traces": traces,
            "trace_median_error_pct": max(t["median_error_pct"] for t in traces),
            "trace_p90_error_pct": max(t["p90_error_pct"] for t in traces),
            "not_measured": ["udp", "rtt_error_ms", "loss_error_pts"],
        }, indent=1) + "\n")
    print(f"done in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
