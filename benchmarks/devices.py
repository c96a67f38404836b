#!/usr/bin/env python3
"""Does a calibrated node run like the device? Side by side, in one run, per device profile.

    sudo python benchmarks/devices.py [--json PATH] [--devices rpi4,rpi3bplus] [--cached] [--container IMAGE]
    sudo python benchmarks/devices.py --governor-ab 20 [--devices rpi4] [--json PATH]
    sudo python benchmarks/devices.py --host-noise 30 [--json PATH]
    sudo python benchmarks/devices.py --quota-writes 3 [--write-every MS] [--devices rpi4] [--json PATH]
    python benchmarks/devices.py --process-spread 5 [--json PATH]

For each constrained profile: calibrate the node's CPU governor on the profile's reference workload
(starting from this machine's cached calibration when there is one; --cached skips calibrating),
then run that workload 5 times inside the governed node (each run the median of 5 s of forward
passes): `ratio` = emulated / reference latency, `cv` = coefficient of variation of the 5 runs. Under
the same calibration, the profile's second workload with a published number gives `cross_ratio`:
whether one calibration carries over to another network. Profiles faster than this machine can be
made are listed under `skipped` with the reason. --container IMAGE also runs each workload, right after,
in a container of IMAGE (its Python, under the same node cgroup and governor): `container_ratio`.

--governor-ab N shows what the governor buys: one node, N blocks of 6 s alternating between the
governed quota and the fixed quota the calibration ended at (mean ratio and cv of block medians each).
--quota-writes N asks whether writing a node's quota, unchanged, every --write-every ms (default 50,
as often as the governor writes it) changes the node's speed: a node held at the fixed quota its
calibration ended at, no governor, each of a few networks in N pairs of 3 s blocks, the quota left
alone and rewritten with the same value (in turns, the order alternating); per pair, left-alone time
/ rewritten time (1 when writes change nothing).
--host-noise S measures what limits all of this: the reference workload with no quota at all, one
thread, back to back for S seconds (each point the median of 3 passes): how much this machine's own
speed moves while nothing of ours runs beside it.
--process-spread N: how far apart the same workload runs in different processes, side by side: N
workers with torch's huge-page allocation off and N with it on (what splitbed sets), all pinned to
one core, timed in turns (3 passes each, 60 rounds); each worker's median of its time over the
round's median. A spread that persists for a process's life is one no quota can correct.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

from splitbed.devices.calibration import (
    CalibrationCache,
    NodeCalibration,
    WorkloadWorker,
    calibrated,
    cpu_model,
)
from splitbed.devices.catalog import DeviceProfile, load_profiles
from splitbed.devices.cgroups import CgroupManager
from splitbed.devices.governor import INTERVAL_S, limit_cpu, node_cpus
from splitbed.errors import UserError, check_output_path, run_reporting_user_errors
from splitbed.host.containers import Container, check_daemon, check_image_name, inspect_image
from splitbed.testing.results_page import Page, table

RUNS = 5
RUN_S = 5.0  # a run is the median of this much: long enough that one slow host second (cv 0.16 free) moves it little


def emulate(workload: str, cal: NodeCalibration, manager: CgroupManager, name: str,
            python: list[str] | None = None, runs: int = RUNS, seconds: float = RUN_S) -> tuple[list[float], dict]:
    """The workload's `runs` medians (each over `seconds`) inside a node given the device's CPU, and
    what its governor did; `python` starts the node's Python (a container's), default this one."""
    group = manager.create(name)
    try:
        with limit_cpu(group, cal.settings()) as governor, \
                WorkloadWorker(workload, cal.threads, group, python=python) as worker:
            governor.stats()
            return worker.medians(runs, seconds), governor.stats()
    finally:
        manager.discard(group)


def selected(profiles: list[DeviceProfile], devices: str | None, kind: str) -> list[DeviceProfile]:
    """The profiles --devices names (comma-separated keys, in that order; all when None), each one of
    `profiles`."""
    if not devices:
        return profiles
    wanted = devices.split(",")
    unknown = sorted(set(wanted) - {p.key for p in profiles})
    if unknown:
        raise UserError(f"{', '.join(unknown)} is not {kind} of splitbed/devices/devices.yaml", where="--devices",
                        fix=f"choose from {', '.join(p.key for p in profiles)}")
    by_key = {p.key: p for p in profiles}
    return [by_key[key] for key in dict.fromkeys(wanted)]


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


def process_spread(workers_per_mode: int, rounds: int = 60) -> dict:
    """Workers in turns on one core, so each round's host moment is shared and divides out; a worker
    whose median stays away from 1 is slower or faster for its whole life."""
    modes = {"thp_off": "0", "thp_on": "1"}
    workers = [(mode, WorkloadWorker("efficientnet_lite0", 1, None, {"THP_MEM_ALLOC_ENABLE": flag}))
               for mode, flag in modes.items() for _ in range(workers_per_mode)]
    try:
        core = max(os.sched_getaffinity(0))
        for _, worker in workers:
            os.sched_setaffinity(worker.pid, {core})
            worker.run(3)
        relative: list[list[float]] = [[] for _ in workers]
        for _ in range(rounds):
            times = [statistics.median(worker.run(3)) for _, worker in workers]
            middle = statistics.median(times)
            for i, t in enumerate(times):
                relative[i].append(t / middle)
    finally:
        for _, worker in workers:
            worker.close()
    result = {"rounds": rounds, "passes_per_turn": 3}
    for mode in modes:
        speeds = [statistics.median(r) for (m, _), r in zip(workers, relative, strict=True) if m == mode]
        result[mode] = {"worker_relative_ms": speeds, "spread": max(speeds) / min(speeds),
                        "mean_relative_ms": statistics.mean(speeds)}
        print(f"{mode}: {len(speeds)} workers at {', '.join(f'{v:.3f}' for v in speeds)} of the round median: "
              f"slowest / fastest {result[mode]['spread']:.3f}", flush=True)
    return result


def governor_ab(cal: NodeCalibration, manager: CgroupManager, blocks: int, block_s: float) -> dict:
    """What the governor buys, side by side: one node, one worker, blocks of `block_s` alternating
    between the governed quota and the fixed quota the calibration ended at; per block the median."""
    group = manager.create(f"ab-{cal.device}")
    medians: dict[str, list[float]] = {"governed": [], "fixed": []}
    try:
        with limit_cpu(group, cal.settings()) as governor, WorkloadWorker(cal.workload, cal.threads, group) as worker:
            for block in range(blocks):
                mode = "governed" if block % 2 else "fixed"
                governor.set_gain(cal.gain if mode == "governed" else 0.0)
                if mode == "fixed":
                    group.set_cpu(cal.quota_cores, cal.period_us)
                medians[mode] += worker.medians(1, block_s)
    finally:
        manager.discard(group)
    result = {"device": cal.device, "block_s": block_s, "blocks_ms": medians}
    for mode, values in medians.items():
        mean = statistics.mean(values)
        result[mode] = {"mean_ms": mean, "ratio": mean / cal.reference_ms, "cv": statistics.stdev(values) / mean}
        print(f"{cal.device} {mode:<8} {len(values)} blocks of {block_s:.0f} s: mean {mean:.1f} ms "
              f"(ratio {result[mode]['ratio']:.3f}), cv of block medians {result[mode]['cv']:.3f}", flush=True)
    return result


QUOTA_WRITE_WORKLOADS = ("efficientnet_lite0", "mobilenet_v2", "resnet18")


def quota_writes(cal: NodeCalibration, manager: CgroupManager, pairs: int, interval_s: float,
                 block_s: float = 3.0) -> dict:
    """Per workload, `pairs` pairs of blocks at the calibration's fixed quota: left alone, then rewritten
    (the same value) every `interval_s` by a thread; left-alone / rewritten block medians."""
    group = manager.create(f"writes-{cal.device}")
    group.set_cpuset(node_cpus(cal.threads))
    group.set_cpu(cal.quota_cores, cal.period_us)
    rewriting, stop = threading.Event(), threading.Event()

    def rewrite() -> None:
        while not stop.wait(interval_s):
            if rewriting.is_set():
                group.set_cpu(cal.quota_cores, cal.period_us)

    writer = threading.Thread(target=rewrite, daemon=True)
    writer.start()
    result = {"device": cal.device, "quota_cores": cal.quota_cores, "period_us": cal.period_us,
              "interval_s": interval_s, "block_s": block_s, "workloads": {}}
    try:
        for workload in QUOTA_WRITE_WORKLOADS:
            ratios = []
            with WorkloadWorker(workload, cal.threads, group) as worker:
                for pair in range(pairs):
                    times = {}
                    for rewrite_now in ((False, True) if pair % 2 == 0 else (True, False)):  # order alternates
                        rewriting.set() if rewrite_now else rewriting.clear()
                        times[rewrite_now] = worker.medians(1, block_s)[0]
                    rewriting.clear()
                    ratios.append(times[False] / times[True])
            result["workloads"][workload] = {"left_alone_over_rewritten": ratios, "median": statistics.median(ratios)}
            print(f"{cal.device} {workload:<20} left alone / rewritten every {interval_s * 1000:.0f} ms: "
                  f"{', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})", flush=True)
    finally:
        stop.set()
        writer.join()
        manager.discard(group)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--devices", help="comma-separated profile keys (default: all constrained)")
    parser.add_argument("--cached", action="store_true", help="reuse this machine's cached calibration")
    parser.add_argument("--host-noise", type=float, metavar="S", help="only measure this machine's own drift for S s")
    parser.add_argument("--process-spread", type=int, metavar="N",
                        help="only compare N workers with huge pages off and N with them on")
    parser.add_argument("--governor-ab", type=int, metavar="N", help="only compare governed and fixed quotas, "
                        "N alternating blocks of 6 s on the first listed device (default rpi4)")
    parser.add_argument("--quota-writes", type=int, metavar="N", help="only compare a fixed quota left alone and "
                        "rewritten, N pairs of blocks per network, on the first listed device (default rpi4)")
    parser.add_argument("--write-every", type=float, metavar="MS", default=INTERVAL_S * 1000,
                        help="with --quota-writes: how often the quota is rewritten (default: 50)")
    parser.add_argument("--container", metavar="IMAGE", help="also run each workload in a container of IMAGE")
    args = parser.parse_args()
    check_output_path(args.json, "--json")
    if not 1 <= args.write_every <= 60_000:  # also NaN
        raise UserError(f"{args.write_every} ms is out of range", where="--write-every", fix="give 1-60000 ms")
    if args.container:
        check_image_name(args.container, "--container")
    if args.host_noise or args.process_spread:
        key = "host_noise" if args.host_noise else "process_spread"
        result = host_noise(args.host_noise) if args.host_noise else process_spread(args.process_spread)
        if args.json:
            Path(args.json).write_text(json.dumps({"cpu_model": cpu_model(), key: result}, indent=1) + "\n")
        return 0
    if os.geteuid() != 0:
        print("error: needs root for cgroups: sudo .venv/bin/python benchmarks/devices.py", file=sys.stderr)
        return 2
    profiles = selected([p for p in load_profiles().values() if p.constrained], args.devices, "a constrained profile")
    manager = CgroupManager(f"splitbed-devbench-{os.getpid()}")
    cache = CalibrationCache()
    if args.governor_ab or args.quota_writes:
        key = "governor_ab" if args.governor_ab else "quota_writes"
        try:
            cal = calibrated(profiles[0] if args.devices else load_profiles()["rpi4"], manager, cache)
            if cal.warning:
                print(f"error: {cal.warning}: nothing to govern", file=sys.stderr)
                return 2
            result = (governor_ab(cal, manager, args.governor_ab, 6.0) if args.governor_ab
                      else quota_writes(cal, manager, args.quota_writes, args.write_every / 1000))
        finally:
            manager.remove_all()
        if args.json:
            Path(args.json).write_text(json.dumps({"cpu_model": cpu_model(), key: result}, indent=1) + "\n")
        return 0
    rows, skipped, container = [], [], None
    if args.container:
        check_daemon()
        container = Container(f"splitbed-devbench-{os.getpid()}", inspect_image(args.container, "--container"))
    try:
        if container:
            container.start(None)
        for profile in profiles:
            cal = calibrated(profile, manager, cache, refine=not args.cached)
            if cal.warning:
                skipped.append({"name": profile.key, "reason": cal.warning})
                print(f"{profile.key:<12} skipped: {cal.warning}", flush=True)
                continue
            runs, governed = emulate(cal.workload, cal, manager, f"bench-{profile.key}")
            mean = statistics.mean(runs)
            row = {"name": profile.key, "device": profile.name, "workload": cal.workload,
                   "threads": cal.threads, "cpus": cal.cpus, "gain": cal.gain,
                   "quota_cores": governed["quota_cores_mean"], "governor": governed,
                   "reference_ms": cal.reference_ms, "reference_is_estimate": profile.target.estimate,
                   "emulated_ms": mean, "runs_ms": runs, "ratio": mean / cal.reference_ms,
                   "cv": statistics.stdev(runs) / mean}
            others = [r for w, r in profile.references.items() if w != cal.workload]
            if others:
                other = others[0]
                cross, _ = emulate(other.workload, cal, manager, f"cross-{profile.key}")
                row.update({"cross_workload": other.workload, "cross_reference_ms": other.ms,
                            "cross_framework": other.framework, "cross_emulated_ms": statistics.mean(cross),
                            "cross_ratio": statistics.mean(cross) / other.ms})
            if container:
                inside, governed_inside = emulate(cal.workload, cal, manager, f"ctr-{profile.key}",
                                                  python=[*container.prefix(), container.image.python])
                row.update({"container_image": container.image.to_dict(), "container_runs_ms": inside,
                            "container_ms": statistics.mean(inside),
                            "container_ratio": statistics.mean(inside) / cal.reference_ms,
                            "container_cv": statistics.stdev(inside) / statistics.mean(inside),
                            "container_quota_cores": governed_inside["quota_cores_mean"]})
            rows.append(row)
            cross_text = f"  cross {row['cross_workload']} {row['cross_ratio']:.2f}" if others else ""
            print(f"{profile.key:<12} quota {row['quota_cores']:.3f} cores (governed {governed['quota_cores_min']:.2f}-"
                  f"{governed['quota_cores_max']:.2f}) x {cal.threads} thread(s): "
                  f"{mean:6.1f} ms vs {cal.reference_ms} ms  ratio {row['ratio']:.3f}  cv {row['cv']:.3f}{cross_text}"
                  + (f"  container ratio {row['container_ratio']:.3f} cv {row['container_cv']:.3f}" if container else ""),
                  flush=True)
    finally:
        manager.remove_all()
        if container:
            container.remove()
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu_model": cpu_model(), "cpus": os.cpu_count(), "runs": RUNS,
                                               "profiles": rows, "skipped": skipped}, indent=1) + "\n")
    return 0


def devices_section(data: dict, found: dict) -> list[str]:
    rows = [[p["name"], f"{p['quota_cores']:.3f} x {p.get('threads', 1)}", f"{p['emulated_ms']:.1f}",
             f"{p['reference_ms']}", f"{p['ratio']:.3f}", f"{p['cv']:.3f}",
             f"{p['cross_ratio']:.2f}" if p.get("cross_ratio") is not None else "-"] for p in data["profiles"]]
    rows += [[s["name"], "skipped", "", "", "", "", s["reason"]] for s in data["skipped"]]
    return [f"{data['runs']} runs of the reference workload in a governed node; ratio = emulated / reference "
            "(goal 0.9-1.1), cv over the runs (goal <= 0.05), cross ratio = EfficientNet-B0 under the same "
            "calibration.", "",
            *table(["profile", "quota (cores x threads)", "emulated ms", "reference ms", "ratio", "cv",
                    "cross ratio"], rows)]


def devices_headline(data: dict, found: dict) -> list[list[str]]:
    return [["device emulation", ", ".join(f"{p['name']} {p['ratio']:.2f}x (cv {p['cv']:.3f})"
                                           for p in data["profiles"]) + " of the published latency"]]


PAGES = [Page("devices", "Devices: emulated against published latency", order=60, argv=["-m", "benchmarks.devices"],
              section=devices_section, headline=devices_headline, headline_order=20)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
