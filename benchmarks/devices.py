#!/usr/bin/env python3
"""Does a calibrated node run like the device? Side by side, in one run, per device profile.

    sudo python benchmarks/devices.py [--json PATH] [--devices rpi4,rpi3bplus] [--cached]
    sudo python benchmarks/devices.py --host-noise 30 [--json PATH]

For each constrained profile: calibrate the CPU quota on the profile's reference workload (starting
from this machine's cached quota when there is one; --cached skips calibrating), then run that workload 5 times inside the quota'd node (each run the median of
several forward passes): `ratio` = emulated / reference latency, `cv` = coefficient of variation of
the 5 runs. Under the same quota, the profile's second workload with a published number gives
`cross_ratio`: whether one quota carries over to another network. Profiles faster than this machine
can be made are listed under `skipped` with the reason.

--host-noise S measures what limits all of this: the reference workload with no quota at all, one
thread, back to back for S seconds (each point the median of 3 passes): how much this machine's own
speed moves while nothing of ours runs beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from splitbed.nodes.calibration import (  # noqa: E402
    PERIOD_US,
    CalibrationCache,
    WorkloadWorker,
    calibrate,
    cpu_model,
)
from splitbed.nodes.cgroups import CgroupManager  # noqa: E402
from splitbed.nodes.devices import load_profiles  # noqa: E402

RUNS = 5
PER_RUN = 15


def emulate(workload: str, threads: int, quota: float, manager: CgroupManager, name: str) -> list[float]:
    group = manager.create(name)
    try:
        group.set_cpu(quota, PERIOD_US)
        with WorkloadWorker(workload, threads, group) as worker:
            return worker.medians(RUNS, PER_RUN)
    finally:
        manager.discard(group)


def host_noise(seconds: float) -> dict:
    with WorkloadWorker("efficientnet_lite0", 1, None) as worker:
        worker.run(3)
        started, points = time.time(), []
        while time.time() - started < seconds:
            points.append(statistics.median(worker.run(3)))
    mean = statistics.mean(points)
    result = {"seconds": seconds, "points": len(points), "mean_ms": mean, "min_ms": min(points),
              "max_ms": max(points), "cv": statistics.stdev(points) / mean, "series_ms": points}
    print(f"free Lite0, 1 thread, {len(points)} points over {seconds:.0f} s: mean {mean:.1f} ms, "
          f"min {min(points):.1f}, max {max(points):.1f}, cv {result['cv']:.3f}", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--devices", help="comma-separated profile keys (default: all constrained)")
    parser.add_argument("--cached", action="store_true", help="reuse this machine's cached calibration")
    parser.add_argument("--host-noise", type=float, metavar="S", help="only measure this machine's own drift for S s")
    args = parser.parse_args()
    if args.host_noise:
        result = host_noise(args.host_noise)
        if args.json:
            Path(args.json).write_text(json.dumps({"cpu_model": cpu_model(), "host_noise": result}, indent=1) + "\n")
        return 0
    if os.geteuid() != 0:
        print("error: needs root for cgroups: sudo .venv/bin/python benchmarks/devices.py", file=sys.stderr)
        return 2
    profiles = [p for p in load_profiles().values() if p.constrained]
    if args.devices:
        profiles = [p for p in profiles if p.key in args.devices.split(",")]
    manager = CgroupManager(f"splitbed-devbench-{os.getpid()}")
    cache = CalibrationCache()
    rows, skipped = [], []
    try:
        for profile in profiles:
            cal = cache.get(profile.key)
            if not (args.cached and cal):
                # fresh, or refreshed from the cached quota: this host's speed drifts over minutes
                cal = calibrate(profile, manager, start=cal if cal and not cal.warning else None)
                cache.put(cal)
            if cal.warning:
                skipped.append({"name": profile.key, "reason": cal.warning})
                print(f"{profile.key:<12} skipped: {cal.warning}", flush=True)
                continue
            runs = emulate(cal.workload, cal.threads, cal.quota_cores, manager, f"bench-{profile.key}")
            mean = statistics.mean(runs)
            row = {"name": profile.key, "device": profile.name, "workload": cal.workload,
                   "threads": cal.threads, "quota_cores": cal.quota_cores, "reference_ms": cal.reference_ms,
                   "reference_is_estimate": profile.target.estimate, "emulated_ms": mean, "runs_ms": runs,
                   "ratio": mean / cal.reference_ms, "cv": statistics.stdev(runs) / mean}
            others = [r for w, r in profile.references.items() if w != cal.workload]
            if others:
                other = others[0]
                cross = emulate(other.workload, cal.threads, cal.quota_cores, manager, f"cross-{profile.key}")
                row.update({"cross_workload": other.workload, "cross_reference_ms": other.ms,
                            "cross_framework": other.framework, "cross_emulated_ms": statistics.mean(cross),
                            "cross_ratio": statistics.mean(cross) / other.ms})
            rows.append(row)
            cross_text = f"  cross {row['cross_workload']} {row['cross_ratio']:.2f}" if others else ""
            print(f"{profile.key:<12} quota {cal.quota_cores:.3f} cores x {cal.threads} thread(s): "
                  f"{mean:6.1f} ms vs {cal.reference_ms} ms  ratio {row['ratio']:.3f}  cv {row['cv']:.3f}{cross_text}",
                  flush=True)
    finally:
        manager.remove_all()
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu_model": cpu_model(), "cpus": os.cpu_count(), "runs": RUNS,
                                               "profiles": rows, "skipped": skipped}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
