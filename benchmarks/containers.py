#!/usr/bin/env python3
"""The edge node as a container against the edge node as a plain host, side by side in one run.

    sudo .venv/bin/python benchmarks/containers.py [--scenario scenarios/default.yaml] [--image splitbed-node]
                                                   [--rounds 4] [--build] [--json PATH]

Each round runs the scenario twice, once as written and once with `--set nodes.edge.image=IMAGE`, the
order swapped every round so the machine's drift falls on both. Pooled over rounds, per method: the
requests' e2e p50 and each stage's median for host and container, the container - host difference
with a bootstrap 95% interval (requests resampled within each kind), and the noise to judge it by:
how far the host's own rounds lie apart (|median of round 1 - median of round 2|, the largest such
gap over round pairs). A difference is "within noise" when its interval holds 0 or it is no larger
than that gap.

Then, each by its own benchmark: the Pi 4's CPU in a container against a host node
(`benchmarks/devices.py --devices rpi4 --cached --container IMAGE`) and goodput on a link ending in a
container (`benchmarks/fidelity.py --container IMAGE`). --build first rebuilds the default image from
scratch (`python -m splitbed.host.images --force`) to time it; without it the image's size is reported.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from splitbed.app.breakdown import STAGES
from splitbed.errors import UserError, check_output_path, run_reporting_user_errors
from splitbed.host.containers import DEFAULT_IMAGE, check_daemon, check_image_name, inspect_image
from splitbed.testing.results_page import Page, pct, table

REPO = Path(__file__).resolve().parent.parent

MEASURES = ["e2e_ms", *STAGES]
BOOTSTRAP = 2000


def sub_benchmark(argv: list[str], work: str, name: str) -> dict:
    """Another benchmark (or the image build) with --json into `work`; its JSON."""
    out = Path(work, f"{name}.json")
    done = subprocess.run([sys.executable, *argv, "--json", str(out)], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        raise UserError(f"{' '.join(argv)} failed: {done.stderr.strip()[-400:]}")
    print(f"{name}: done", flush=True)
    return json.loads(out.read_text())


def run_once(scenario: Path, out: Path, image: str | None) -> list[dict]:
    extra = ["--set", f"nodes.edge.image={image}"] if image else []
    done = subprocess.run([sys.executable, str(REPO / "run_scenario.py"), str(scenario), "--out", str(out), "--quiet",
                           *extra], capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"the run {'in a container' if image else 'on a host node'} failed: "
                        f"{done.stderr.strip()[-400:]}")
    with (out / "requests.csv").open() as f:
        return [row for row in csv.DictReader(f) if row["status"] == "ok"]  # warm-ups are not written


def medians(rows: list[dict], measure: str) -> np.ndarray:
    return np.array([float(row[measure]) for row in rows if row[measure] != ""])


def difference_interval(host: np.ndarray, container: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    draws = [np.median(rng.choice(container, container.size)) - np.median(rng.choice(host, host.size))
             for _ in range(BOOTSTRAP)]
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def compare(runs: dict[str, list[list[dict]]]) -> list[dict]:
    rng = np.random.default_rng(0)
    methods = sorted({row["method"] for rows in runs["host"] for row in rows})
    table = []
    for method in methods:
        for measure in MEASURES:
            per_round = {kind: [medians([r for r in rows if r["method"] == method], measure) for rows in rounds]
                         for kind, rounds in runs.items()}
            pooled = {kind: np.concatenate(values) for kind, values in per_round.items()}
            if min(v.size for v in pooled.values()) == 0:
                continue
            host, container = float(np.median(pooled["host"])), float(np.median(pooled["container"]))
            low, high = difference_interval(pooled["host"], pooled["container"], rng)
            host_rounds = [float(np.median(v)) for v in per_round["host"] if v.size]
            noise = max(abs(a - b) for i, a in enumerate(host_rounds) for b in host_rounds[i + 1:]) \
                if len(host_rounds) > 1 else None
            within = (low <= 0 <= high) or (noise is not None and abs(container - host) <= noise)
            table.append({"method": method, "measure": measure, "host_ms": round(host, 3),
                          "container_ms": round(container, 3), "difference_ms": round(container - host, 3),
                          "interval_ms": [round(low, 3), round(high, 3)],
                          "host_round_gap_ms": None if noise is None else round(noise, 3), "within_noise": within,
                          "requests": {kind: int(v.size) for kind, v in pooled.items()}})
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default=str(REPO / "scenarios" / "default.yaml"))
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--build", action="store_true", help="rebuild the default image first and time it")
    parser.add_argument("--json")
    args = parser.parse_args()
    check_output_path(args.json, "--json")
    check_image_name(args.image, "--image")
    if not 1 <= args.rounds <= 20:
        raise UserError(f"--rounds {args.rounds}: give 1 to 20")
    if os.geteuid() != 0:
        raise UserError("needs root: sudo .venv/bin/python benchmarks/containers.py")
    if args.build and args.image != DEFAULT_IMAGE:
        raise UserError(f"--build makes {DEFAULT_IMAGE}, not {args.image}", fix="drop --build or --image")
    check_daemon()
    started = time.time()
    runs: dict[str, list[list[dict]]] = {"host": [], "container": []}
    with tempfile.TemporaryDirectory(prefix="splitbed-containers-") as work:
        build = sub_benchmark(["-m", "splitbed.host.images", "--force"], work, "image build") if args.build else None
        os.sync()  # the build's gigabytes written back now, not during the first round
        image = inspect_image(args.image, "--image")
        for round_number in range(args.rounds):
            order = ["host", "container"] if round_number % 2 == 0 else ["container", "host"]
            for kind in order:
                out = Path(work, f"{kind}-{round_number}")
                runs[kind].append(run_once(Path(args.scenario), out, args.image if kind == "container" else None))
                print(f"round {round_number + 1} {kind}: {len(runs[kind][-1])} requests", flush=True)
        devices = sub_benchmark(["benchmarks/devices.py", "--devices", "rpi4", "--cached", "--container", args.image],
                                work, "devices")["profiles"][0]
        fidelity = sub_benchmark(["benchmarks/fidelity.py", "--container", args.image], work, "fidelity")
    table = compare(runs)
    print(f"\n{'method':<14} {'measure':<18} {'host':>9} {'container':>9} {'diff':>8}  {'95% interval':<18} "
          f"{'host gap':>8}  within noise")
    for row in table:
        gap = "" if row["host_round_gap_ms"] is None else f"{row['host_round_gap_ms']:8.2f}"
        print(f"{row['method']:<14} {row['measure']:<18} {row['host_ms']:9.2f} {row['container_ms']:9.2f} "
              f"{row['difference_ms']:8.2f}  [{row['interval_ms'][0]:.2f}, {row['interval_ms'][1]:.2f}]"
              f"{'':<4} {gap:>8}  {'yes' if row['within_noise'] else 'NO'}")
    device = {key: devices[key] for key in ("name", "reference_ms", "emulated_ms", "ratio", "cv", "container_ms",
                                            "container_ratio", "container_cv")}
    tcp = [row for row in fidelity["fixed_rates"] if row["protocol"] == "tcp"]
    print(f"\n{device['name']}: ratio {device['ratio']:.3f} (cv {device['cv']:.3f}) on a host node, "
          f"{device['container_ratio']:.3f} (cv {device['container_cv']:.3f}) in a container")
    print("TCP goodput error on a container link: " + ", ".join(
        f"{row['rate_bps'] / 1e6:g} Mbit/s {row['container_rate_error_pct']:.2f}% (namespace "
        f"{row['namespace_rate_error_pct']:.2f}%)" for row in tcp))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "scenario": args.scenario, "image": image.to_dict(), "build": build, "rounds": args.rounds,
            "seconds": round(time.time() - started), "table": table, "device": device,
            "goodput": fidelity["fixed_rates"], "goodput_tcp_error_pct_max": max(r["container_rate_error_pct"] for r in tcp)},
            indent=1) + "\n")
    return 0


def containers_section(data: dict, found: dict) -> list[str]:
    rows = [[r["method"], r["measure"], f"{r['host_ms']:.2f}", f"{r['container_ms']:.2f}", f"{r['difference_ms']:+.2f}",
             f"({r['interval_ms'][0]:.2f}, {r['interval_ms'][1]:.2f})",
             "-" if r["host_round_gap_ms"] is None else f"{r['host_round_gap_ms']:.2f}", "yes" if r["within_noise"] else "no"]
            for r in data["table"] if r["host_ms"] or r["container_ms"]]
    device, build = data["device"], data.get("build") or {}
    goodput = [[g["protocol"], f"{g['rate_bps'] / 1e6:g}", pct(g["container_rate_error_pct"]),
                pct(g["namespace_rate_error_pct"])] for g in data["goodput"]]
    built = (f"built from scratch in {build['base_build_s'] + build['node_build_s']:.0f} s (base "
             f"{build['base_build_s']:.0f} s, project layer {build['node_build_s']:.0f} s)" if build.get("base_build_s")
             else "build not timed in this run")
    return [f"`{data['scenario'].split('/')[-1]}` with the edge node as a container of `{data['image']['image']}` and as a "
            f"host node, {data['rounds']} rounds, in turns. Per method: p50 e2e and each stage's median (ms, stages "
            "that are 0 for both left out), container - host with a bootstrap 95% interval, and the gap between the "
            "host's own rounds (the noise); within noise = the interval holds 0 or the difference is at most that gap.",
            "", *table(["method", "measure", "host", "container", "difference", "95% interval", "host round gap",
                        "within noise"], rows),
            f"Device: {device['name']} reference workload under its governed quota, ratio to the published latency "
            f"{device['ratio']:.3f} (cv {device['cv']:.3f}) on a host node, {device['container_ratio']:.3f} "
            f"(cv {device['container_cv']:.3f}) in a container.", "",
            "Goodput with the receiving end in a container and in a plain namespace, point by point (error against "
            "rate x payload share):", "", *table(["protocol", "Mbit/s", "container error", "namespace error"], goodput),
            f"Image `{data['image']['image']}`: {data['image']['size_mb']:.0f} MB, {built}.", ""]


def containers_headline(data: dict, found: dict) -> list[list[str]]:
    e2e = [r for r in data["table"] if r["measure"] == "e2e_ms"]
    build, device = data.get("build") or {}, data["device"]
    return [["container nodes", f"edge as a container vs a host node: e2e p50 {min(r['difference_ms'] for r in e2e):+.1f} "
             f"to {max(r['difference_ms'] for r in e2e):+.1f} ms ({sum(r['within_noise'] for r in e2e)}/{len(e2e)} "
             f"methods within noise); {device['name']} {device['container_ratio']:.2f}x in a container "
             f"({device['ratio']:.2f}x on a host); "
             f"TCP goodput error up to {pct(data['goodput_tcp_error_pct_max'])} on a container link; image "
             f"{data['image']['size_mb'] / 1000:.2f} GB" + (f", built in {build['base_build_s'] + build['node_build_s']:.0f} s"
                                                           if build.get("base_build_s") else "")]]


PAGES = [Page("containers", "Container nodes against host nodes", order=120,
              argv=["-m", "benchmarks.containers", "--build"],  # needs a Docker daemon
              section=containers_section, headline=containers_headline, headline_order=70)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
