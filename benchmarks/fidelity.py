#!/usr/bin/env python3
"""Emulated link against configured link, side by side in one run.

    sudo .venv/bin/python benchmarks/fidelity.py [--quick] [--backend netem|htb+nfqueue] [--json PATH] [--plot PATH]
    sudo .venv/bin/python benchmarks/fidelity.py --container IMAGE [--json PATH]

The headline link (10 Mbit/s, 20 ms each way, 1% loss): TCP goodput against rate x 1448/1514
(TCP/IP and Ethernet headers), RTT against 40 ms plus two ping frames' serialisation, forward loss
against 1%. Then goodput at fixed
rates (0.5-100 Mbit/s), RTT at delays 5-200 ms, loss at 0.1-10%, and per-second trace-following error
while three bundled traces replay (100 ms steps, `tc class change` through one `tc -batch`); and the
delivery time of request-sized TCP messages after idle gaps against the link's serialisation time; and
a trace with 2 s outages: bytes delivered during them, and how soon delivery resumes after each.
Links are built by the run's own code on `--backend` (default: what `run_scenario.py --check` picks):
`htb+nfqueue` (delay and loss from the receiver-side NFQUEUE stage, for kernels without netem) or
`netem` (HTB with a netem leaf, Mininet's TCLink layout: the reference where the kernel has it); run
it once per backend to compare them side by side. UDP is offered at 1.2x the rate and compared with
rate x 1472/1514.
--container IMAGE measures only goodput (TCP and UDP, each fixed rate) with the receiving end in a
container of IMAGE (the link end moved into its namespace, the receiver program run in it), point by
point beside the same link ending in a plain namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from splitbed.errors import UserError, check_output_path, run_reporting_user_errors
from splitbed.host.capabilities import choose_link_backend, probe
from splitbed.host.containers import check_daemon, check_image_name, inspect_image
from splitbed.network.links import BACKENDS
from splitbed.network.tcp_window import available_congestion_controls
from splitbed.network.traces import load_trace
from splitbed.testing.fidelity import (
    fixed_rate_goodput,
    follow_trace,
    measure_link,
    message_delivery,
    outage_delivery,
)
from splitbed.testing.results_page import Page, pct, table

TRACES = ["norway_bus_1", "norway_tram_26", "trace_866_http---www.amazon.com"]
RATES_MBIT = [0.5, 1, 10, 100]
DELAYS_MS, QUICK_DELAYS_MS = [5, 10, 50, 100, 200], [5, 100]
LOSSES_PCT, QUICK_LOSSES_PCT = [0.1, 5, 10], []
CONGESTION_CONTROLS = ("cubic", "bbr")  # the request messages' sender, compared on one connection
# (rate, bytes, delay ms): request-sized messages 300 ms apart; delay 0 = HTB alone, no receiver stage.
# At 20 Mbit/s HTB lets the first frames after idle out together and the receiver's stage must space
# them (12 KB: within the initial window, so no slow-start round trip enters)
MESSAGES = [(0.3e6, 4096, 0), (0.3e6, 4096, 20), (1e6, 4096, 20), (2e6, 30_000, 20), (20e6, 12_000, 20)]


def plot(traces: list[dict], path: Path, backend: str) -> None:
    import matplotlib.pyplot as plt

    from splitbed.analysis.plots import finish

    fig, axes = plt.subplots(len(traces), 1, figsize=(9, 2.6 * len(traces)), squeeze=False)
    for ax, row in zip(axes[:, 0], traces, strict=True):
        seconds = range(len(row["expected_bps"]))
        ax.step(seconds, [v / 1e6 for v in row["expected_bps"]], where="post", label="trace x 1448/1514")
        ax.step(seconds, [v / 1e6 for v in row["achieved_bps"]], where="post", label="TCP goodput achieved")
        ax.set_title(f"{row['trace']}: median error {row['median_error_pct']:.2f}%, p90 {row['p90_error_pct']:.2f}%")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("Mbit/s")
        ax.legend(loc="lower right")
    finish(fig, path, f"{backend}: HTB rate changed in place every 100 ms; GSO/TSO off; veth between two namespaces")


def chosen_backend(asked: str | None) -> str:
    """The backend asked for if this kernel can build it (default: the probe's pick), else a UserError."""
    caps = probe()
    can = {"netem": bool(caps.netem), "htb+nfqueue": choose_link_backend(False, caps.htb, caps.nfqueue and caps.netfilterqueue) is not None}
    backend = asked or caps.link_backend
    if backend not in BACKENDS or not can[backend]:
        raise UserError(f"this kernel cannot build the {backend or 'delay'} link backend "
                        f"(it can: {', '.join(b for b in BACKENDS if can[b]) or 'neither'})",
                        where="--backend", fix="see 'sudo python run_scenario.py --check'; netem can be measured "
                        "in the guest kernel: sudo python3 scripts/guest.py -- .venv/bin/python "
                        "benchmarks/fidelity.py --backend netem")
    return backend


def container_goodput(image: str, backend: str, json_path: str | None, started: float) -> int:
    """Goodput at each fixed rate with the receiver in a container and in a plain namespace, in turn."""
    check_daemon()
    info = inspect_image(image, "--container")
    rows = []
    for udp in (False, True):
        for mbit in RATES_MBIT:
            pair = {kind: fixed_rate_goodput(mbit * 1e6, seconds=10, udp=udp, backend=backend, receiver=receiver)
                    for kind, receiver in (("namespace", None), ("container", info))}
            rows.append({"protocol": pair["container"]["protocol"], "rate_bps": mbit * 1e6,
                         "expected_goodput_bps": pair["container"]["expected_goodput_bps"],
                         **{f"{kind}_{key}": row[key] for kind, row in pair.items()
                            for key in ("goodput_bps", "rate_error_pct")}})
            print(f"fixed {mbit:>6} Mbit/s {rows[-1]['protocol']}: container {pair['container']['goodput_bps'] / 1e6:8.3f} "
                  f"Mbit/s (error {pair['container']['rate_error_pct']:.2f}%), namespace "
                  f"{pair['namespace']['goodput_bps'] / 1e6:8.3f} (error {pair['namespace']['rate_error_pct']:.2f}%)",
                  flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps({
            "backend": backend, "image": info.to_dict(), "seconds": time.time() - started, "fixed_rates": rows,
            "container_rate_error_pct_max": max(r["container_rate_error_pct"] for r in rows)}, indent=1) + "\n")
    print(f"done in {time.time() - started:.0f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer points, 15 s per trace (< 2 minutes)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="link backend to measure (default: the one this kernel's probe picks)")
    parser.add_argument("--json")
    parser.add_argument("--plot")
    parser.add_argument("--container", metavar="IMAGE", help="only goodput, receiver in a container of IMAGE vs not")
    args = parser.parse_args()
    check_output_path(args.json, "--json")
    if args.container:
        check_image_name(args.container, "--container")
    if os.geteuid() != 0:
        print("error: needs root for namespaces and qdiscs: sudo .venv/bin/python benchmarks/fidelity.py",
              file=sys.stderr)
        return 2
    backend = chosen_backend(args.backend)
    print(f"link backend: {backend}", flush=True)
    started = time.time()
    if args.container:
        return container_goodput(args.container, backend, args.json, started)
    headline = measure_link(10e6, 20, 1.0, seconds=5, probes=3000, backend=backend)
    print(f"headline 10 Mbit/s, 20 ms each way, 1% loss: goodput error {headline['rate_error_pct']:.2f}%, "
          f"RTT {headline['rtt_ms']:.2f} ms (error {headline['rtt_error_ms']:.2f}), loss "
          f"{headline['measured_loss_pct']:.2f}% (error {headline['loss_error_pts']:.2f} pts)", flush=True)
    sweep = []
    for delay in QUICK_DELAYS_MS if args.quick else DELAYS_MS:
        sweep.append(measure_link(10e6, delay, 0.0, seconds=3, probes=0, backend=backend))
        print(f"delay {delay:>4} ms each way: RTT {sweep[-1]['rtt_ms']:.2f} ms, error "
              f"{sweep[-1]['rtt_error_ms']:.2f} ms", flush=True)
    for loss in QUICK_LOSSES_PCT if args.quick else LOSSES_PCT:
        sweep.append(measure_link(10e6, 5, loss, seconds=3, probes=4000, backend=backend))
        print(f"loss {loss:>5}%: measured {sweep[-1]['measured_loss_pct']:.2f}%", flush=True)
    rates = []
    for udp in (False, True):
        for mbit in RATES_MBIT:
            row = fixed_rate_goodput(mbit * 1e6, seconds=3 if args.quick else 10, udp=udp, backend=backend)
            rates.append(row)
            print(f"fixed {mbit:>6} Mbit/s {row['protocol']}: goodput {row['goodput_bps'] / 1e6:8.3f} Mbit/s, "
                  f"expected {row['expected_goodput_bps'] / 1e6:8.3f}, error {row['rate_error_pct']:.2f}%", flush=True)
    messages = []
    for rate, size, delay in MESSAGES:
        row = message_delivery(rate, size, 0.3, count=5 if args.quick else 15, delay_ms=delay, backend=backend)
        messages.append(row)
        print(f"messages of {size} B at {rate / 1e6} Mbit/s, {delay} ms delay, after 300 ms idle: delivered in "
              f"{row['delivery_ms_median']:.1f} ms (median), a real link takes {row['link_ms']:.1f} ms "
              f"(its last frame {row['last_frame_ms']:.1f})", flush=True)
    # one connection, messages 150 ms apart, acknowledgements delayed too: the sender's congestion
    # control, not the link, decides whether they leave at the link's rate (BBR paces them)
    for congestion in [c for c in CONGESTION_CONTROLS if c in available_congestion_controls()]:
        row = message_delivery(20e6, 12_000, 0.15, count=12 if args.quick else 30, delay_ms=20, backend=backend,
                               reverse_delay_ms=20, congestion=congestion)
        messages.append(row)
        print(f"messages of 12000 B at 20 Mbit/s, 20 ms each way, {congestion}: delivered in "
              f"{row['delivery_ms_median']:.1f} ms (median), a real link takes {row['link_ms']:.1f} ms", flush=True)
    outages = [outage_delivery(5e6, 2.0, 2.0, cycles=2 if args.quick else 5, backend=backend)]
    for row in outages:
        print(f"outages ({row['trace']}): {row['bytes_during_outage']} bytes delivered during the outages, "
              f"delivery resumed {', '.join(f'{v:.0f}' for v in row['resume_ms'])} ms after each", flush=True)
    folder = Path(__file__).resolve().parent.parent / "traces" / "pensieve"
    with ThreadPoolExecutor(len(TRACES)) as pool:  # one namespace pair each: they do not share a link
        traces = list(pool.map(lambda name: follow_trace(load_trace(folder / name), 15 if args.quick else 60,
                                                                   backend=backend),
                               TRACES))
    for row in traces:
        print(f"trace {row['trace']:<34} median error {row['median_error_pct']:.2f}%  "
              f"p90 {row['p90_error_pct']:.2f}%  ({row['rate_changes']} rate changes)", flush=True)
    plot_path = Path(args.plot) if args.plot else (Path(args.json).with_suffix(".png") if args.json else None)
    if plot_path:
        plot(traces, plot_path, backend)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "quick": args.quick, "backend": backend, "seconds": time.time() - started,
            "rate_error_pct": headline["rate_error_pct"], "rtt_error_ms": headline["rtt_error_ms"],
            "loss_error_pts": headline["loss_error_pts"], "headline": headline, "sweep": sweep,
            "fixed_rates": rates, "messages": messages, "outages": outages,
            "traces": traces,
            "trace_median_error_pct": max(t["median_error_pct"] for t in traces),
            "trace_p90_error_pct": max(t["p90_error_pct"] for t in traces),
            "not_measured": [],
        }, indent=1) + "\n")
    print(f"done in {time.time() - started:.0f} s")
    return 0


def fidelity_section(data: dict, found: dict) -> list[str]:
    h = data["headline"]
    rows = [["10 Mbit/s, 20 ms each way, 1% loss",
             f"goodput error {pct(h['rate_error_pct'])}, RTT {h['rtt_ms']:.2f} ms (error {h['rtt_error_ms']:.2f} ms), "
             f"loss {h['measured_loss_pct']:.2f}% (error {h['loss_error_pts']:.2f} pts)"]]
    rows += [[f"{s['rate_bps'] / 1e6:g} Mbit/s, {s['delay_ms']:g} ms each way, {s['loss_pct']:g}% loss",
              f"RTT {s['rtt_ms']:.2f} ms (error {s['rtt_error_ms']:.2f} ms)"
              + (f", loss {s['measured_loss_pct']:.2f}%" if s["loss_pct"] else "")]
             for s in data["sweep"]]
    rows += [[f"{r['rate_bps'] / 1e6:g} Mbit/s, {r['protocol']}", f"goodput error {pct(r['rate_error_pct'])}"]
             for r in data["fixed_rates"]]
    rows += [[f"{m['size']} B messages after idle, {m['rate_bps'] / 1e6:g} Mbit/s, "
              + (f"{m['delay_ms']:g} ms each way, sent with {m['congestion']}" if m.get("reverse_delay_ms")
                 else f"{m['delay_ms']:g} ms delay" if m["delay_ms"] else "rate only (HTB alone, no receiver stage)"),
              f"delivered in {m['delivery_ms_median']:.1f} ms (median); a link takes {m['link_ms']:.1f} ms"]
             for m in data["messages"]]
    rows += [[f"{t['trace']} replay", f"per-second error median {pct(t['median_error_pct'])}, "
              f"p90 {pct(t['p90_error_pct'])}"] for t in data["traces"]]
    if data.get("outages"):
        rows += [[f"trace of {o['trace']}",
                  f"{o['bytes_during_outage']} bytes delivered during outages, delivery resumed "
                  f"{o['resume_ms_max']:.0f} ms (worst) after the trace's return"] for o in data["outages"]]
    return [f"Backend: `{data['backend']}`.", "", *table(["configured", "measured"], rows)]


def fidelity_headline(data: dict, found: dict) -> list[list[str]]:
    return [["link fidelity", f"goodput error {pct(data['rate_error_pct'])} at 10 Mbit/s, RTT error "
             f"{data['rtt_error_ms']:.2f} ms at 40 ms, trace-following error (median per second) up to "
             f"{pct(data['trace_median_error_pct'])}"]]


PAGES = [Page("fidelity", "Links: emulated against configured", order=10, argv=["-m", "benchmarks.fidelity", "--quick"],
              section=fidelity_section, headline=fidelity_headline, headline_order=10)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
