#!/usr/bin/env python3
"""Does a device's emulation hold on networks it was not fitted to? Per device, in one run.

    sudo .venv/bin/python -m benchmarks.device_models [--json PATH] [--devices rpi4,pi_zero_2w]

Each device's `published:` table (devices.yaml) holds one runtime's published latencies of many
architectures (ncnn's benchmark, 4 threads, fp32). The models are split into two halves declared here,
before any measurement: FIT_HALF and HELD_OUT, each with depthwise-separable and dense networks.

1. As runs use it: the node calibrated on its reference workload (EfficientNet-Lite0, an estimate),
   then every architecture of the table timed inside it: ratio = emulated / published. No model of
   the table was fitted, so all of them are held out from this fit.
2. Calibrated per network: each held-out network gets a node calibrated on that network itself,
   against the device time the fit half predicts for it (arm 4's uniform scale x its one-thread time
   here), then timed: what a run would get from calibrating on its own model.
3. At a fixed quota: the node held at the quota the governor settled on in its calibration, the
   governor sensing only, every architecture timed again. Right before each emulated time in arms 1
   and 3, the same network runs unconstrained on the node's core for RUN_S (paired, so that this
   host's drift over the run cancels): slowdown = emulated / unconstrained says whether the node slows
   every network alike, as a slower CPU would. Its spread across networks (max / min) under the
   governor and at the fixed quota separates what the governor's control adds from what ARM and x86
   cores do differently.
4. Predicted by layer class (no emulation): each network's one-thread time on the node's core split
   by layer class (splitbed/devices/layer_costs.py), the device's cost per class fitted on the fit
   half's published times, every network predicted; beside it, one uniform scale fitted on the same
   half (what a node that slowed every network alike would at best give).
Each time is the mean of RUNS medians of RUN_S seconds of forward passes (random weights: a dense
network's time does not depend on them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
from pathlib import Path

from benchmarks.devices import emulate, selected
from splitbed.devices.calibration import (
    CalibrationCache,
    NodeCalibration,
    WorkloadWorker,
    calibrate,
    calibrated,
    cpu_model,
    most_threads,
)
from splitbed.devices.catalog import DeviceProfile, Reference, load_profiles
from splitbed.devices.cgroups import CgroupManager
from splitbed.devices.governor import node_cpus
from splitbed.devices.layer_costs import (
    CLASSES,
    class_ms,
    fit_costs,
    predict_ms,
)
from splitbed.devices.workload import build
from splitbed.errors import check_output_path, run_reporting_user_errors
from splitbed.testing.results_page import Page, table

FIT_HALF = ("squeezenet1_1", "mobilenet_v2", "shufflenet_v2_x1_0", "regnet_y_400mf", "resnet18", "googlenet")
HELD_OUT = ("mobilenet_v1", "mobilenet_v3_large", "mnasnet1_0", "efficientnet_b0", "alexnet", "resnet50", "vgg16")
RUNS, RUN_S = 3, 3.0


def timed(profile: DeviceProfile, cal: NodeCalibration, manager: CgroupManager,
          governed: dict | None = None, free: dict | None = None) -> dict[str, float]:
    """Every architecture of the device's table, emulated ms (the mean of its run medians); `governed`
    gets, per architecture, the node's mean quota (cores) and the governor's median canary ms; `free`
    its unconstrained ms on the node's core, timed right before."""
    out = {}
    for model in profile.published.ms:
        if free is not None:
            free[model] = unconstrained_ms(model, manager, cal.threads)
        runs, stats = emulate(model, cal, manager, f"models-{profile.key}", runs=RUNS, seconds=RUN_S)
        out[model] = statistics.mean(runs)
        if governed is not None:
            governed[model] = {"quota_cores_mean": stats.get("quota_cores_mean"),
                               "canary_ms_median": stats.get("canary_ms_median")}
        print(f"  {profile.key:<12} {model:<20} {out[model]:8.1f} ms  published {profile.published.ms[model]:8.1f}  "
              f"ratio {out[model] / profile.published.ms[model]:.3f}  quota {stats.get('quota_cores_mean', 0):.3f}  "
              f"canary {stats.get('canary_ms_median', 0):.2f} ms", flush=True)
    return out


def spread(ratios: dict[str, float], models: tuple[str, ...]) -> dict:
    """Median and worst of a half's ratios, by |log ratio| (a 2x and a 0.5x miss weigh the same)."""
    half = {m: r for m, r in ratios.items() if m in models}
    worst = max(half, key=lambda m: abs(math.log(half[m])))
    return {"models": sorted(half), "median_ratio": statistics.median(half.values()),
            "median_abs_log": statistics.median(abs(math.log(r)) for r in half.values()),
            "worst_model": worst, "worst_ratio": half[worst]}


def fit_half_scale(published: dict[str, float], host_ms: dict[str, float]) -> float:
    """One scale from this machine's time to the device's: the fit half's geometric mean of published / here."""
    return math.exp(statistics.mean(math.log(published[m] / host_ms[m]) for m in published if m in FIT_HALF))


def best_scale_worst(published: dict[str, float], host_ms: dict[str, float]) -> float:
    """The smallest worst miss (a ratio >= 1, either way) any one scale reaches on these networks, chosen
    knowing their published times: half the log spread of published / here, a floor under any fit."""
    ratios = [published[m] / host_ms[m] for m in published]
    return math.sqrt(max(ratios) / min(ratios))


def unconstrained_ms(model: str, manager: CgroupManager, threads: int) -> float:
    """The network on one thread, pinned to the (first) core a node of `threads` runs on, no quota:
    what the node's slowdown is measured from."""
    group = manager.create("unconstrained")
    try:
        group.set_cpuset(node_cpus(threads).split(",")[0])
        with WorkloadWorker(model, 1, group) as worker:
            return worker.medians(1, RUN_S)[0]
    finally:
        manager.discard(group)


def slowdowns(emulated: dict[str, float], host: dict[str, float]) -> dict:
    """Per network, emulated / unconstrained time, and their spread (max / min): 1 for a node that slows
    every network alike."""
    each = {m: emulated[m] / host[m] for m in emulated if m in host}
    return {"unconstrained_ms": host, "each": each, "spread": max(each.values()) / min(each.values())}


def class_times(models) -> dict[str, dict[str, float]]:
    """Each network's one-thread ms per layer class, in this process pinned to a node's core: the mean
    of RUNS rounds over every network in turn, each timed for RUN_S (7 passes per network in one sitting
    read up to 1.6x the time that host_runtimes' 2 x 3 s medians read)."""
    import torch

    threads, allowed = torch.get_num_threads(), os.sched_getaffinity(0)
    torch.set_num_threads(1)
    os.sched_setaffinity(0, {int(node_cpus(1))})
    try:
        rounds = {model: [] for model in models}
        for _ in range(RUNS):
            for model in models:
                rounds[model].append(class_ms(*build(model), seconds=RUN_S))
        out = {model: {c: statistics.mean(r[c] for r in each) for c in CLASSES} for model, each in rounds.items()}
        for model, times in out.items():
            print(f"  by class {model:<20} " + "  ".join(f"{c} {times[c]:6.1f}" for c in CLASSES), flush=True)
        return out
    finally:
        os.sched_setaffinity(0, allowed)
        torch.set_num_threads(threads)


def predicted(profile: DeviceProfile, host: dict[str, dict[str, float]]) -> dict:
    """Every network's time predicted from the fit half's published times: by layer class, and by one
    uniform scale; predicted / published."""
    published = profile.published.ms
    fit = fit_costs(host, {m: published[m] for m in published if m in FIT_HALF})
    by_class = {m: predict_ms(fit["costs"], host[m]) / published[m] for m in published}
    scale = fit_half_scale(published, {m: sum(host[m].values()) for m in published})
    uniform = {m: scale * sum(host[m].values()) / published[m] for m in published}
    return {"host_class_ms": {m: host[m] for m in published}, "ridge": fit["ridge"], "costs": fit["costs"],
            "by_class": {"ratios": by_class, "fit_half": spread(by_class, FIT_HALF), "held_out": spread(by_class, HELD_OUT)},
            "uniform": {"scale": scale, "ratios": uniform, "fit_half": spread(uniform, FIT_HALF),
                        "held_out": spread(uniform, HELD_OUT)}}


def per_network(profile: DeviceProfile, manager: CgroupManager, host: dict[str, dict[str, float]], scale: float) -> dict:
    """Each held-out network with the node calibrated on that network itself, against the device time
    the fit half predicts for it (`scale` x its one-thread time here): what a run of that network would
    get if it calibrated on its own model. No held-out published time is looked at before the ratio."""
    published, each = profile.published.ms, {}
    for model in (m for m in HELD_OUT if m in published):
        target = scale * sum(host[model].values())
        reference = Reference(model, target, 1, "PyTorch here x the fit half's scale", True,
                              "benchmarks/device_models.py", "uniform scale fitted on the fit half")
        net_profile = dataclasses.replace(profile, calibrate_on=model, references={model: reference})
        net_cal = calibrate(net_profile, manager)  # afresh: its own period and threads, as a run's would be
        if net_cal.warning and net_cal.threads < most_threads(profile):  # as calibrated() does
            net_cal = calibrate(net_profile, manager, threads=most_threads(profile))
        if net_cal.warning:
            each[model] = {"target_ms": target, "skipped": net_cal.warning}
            print(f"  {profile.key:<12} {model:<20} skipped: {net_cal.warning}", flush=True)
            continue
        runs, _ = emulate(model, net_cal, manager, f"network-{profile.key}", runs=RUNS, seconds=RUN_S)
        each[model] = {"target_ms": target, "calibration_ratio": net_cal.ratio, "emulated_ms": statistics.mean(runs),
                       "ratio": statistics.mean(runs) / published[model]}
        print(f"  {profile.key:<12} {model:<20} calibrated on itself at {target:7.1f} ms: {statistics.mean(runs):8.1f} ms"
              f"  published {published[model]:8.1f}  ratio {each[model]['ratio']:.3f}", flush=True)
    ratios = {m: e["ratio"] for m, e in each.items() if "ratio" in e}
    return {"scale": scale, "models": each, "ratios": ratios, **({"held_out": spread(ratios, HELD_OUT)} if ratios else {})}


def device_row(profile: DeviceProfile, manager: CgroupManager, cache: CalibrationCache,
               host: dict[str, dict[str, float]]) -> dict:
    published = profile.published.ms
    cal = calibrated(profile, manager, cache)
    if cal.warning:
        return {"name": profile.key, "skipped": cal.warning}
    print(f"{profile.key}: as runs use it ({cal.workload} at {cal.reference_ms} ms)", flush=True)
    governed, free = {}, {}
    before = timed(profile, cal, manager, governed, free)
    ratios = {m: before[m] / published[m] for m in published}
    prediction = predicted(profile, host)
    row = {"name": profile.key, "device": profile.name, "framework": profile.published.framework,
           "published_threads": profile.published.threads, "source": profile.published.source,
           "published_ms": published, "predicted": prediction,
           "as_run": {"reference_ms": cal.reference_ms, "threads": cal.threads, "emulated_ms": before, "ratios": ratios,
                      "governor": governed, "slowdown": slowdowns(before, free), "fit_half": spread(ratios, FIT_HALF),
                      "held_out": spread(ratios, HELD_OUT), "all": spread(ratios, tuple(published))}}
    print(f"{profile.key}: at a fixed quota of {cal.quota_cores} cores (the governor sensing only)", flush=True)
    fixed_governor, fixed_free = {}, {}
    fixed = timed(profile, dataclasses.replace(cal, gain=0.0), manager, fixed_governor, fixed_free)
    fixed_ratios = {m: fixed[m] / published[m] for m in published}
    row["fixed_quota"] = {"quota_cores": cal.quota_cores, "period_us": cal.period_us, "emulated_ms": fixed,
                          "governor": fixed_governor, "slowdown": slowdowns(fixed, fixed_free),
                          "ratios": fixed_ratios, "all": spread(fixed_ratios, tuple(published))}
    print(f"{profile.key}: each held-out network calibrated on itself", flush=True)
    try:
        row["per_network"] = per_network(profile, manager, host, prediction["uniform"]["scale"])
    except RuntimeError as err:  # a worker that did not start: the arms measured so far are kept
        row["per_network"] = {"skipped": f"{type(err).__name__}: {err}", "models": {}}
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--devices", help="comma-separated profile keys (default: every one with a published table)")
    args = parser.parse_args()
    check_output_path(args.json, "--json")
    if os.geteuid() != 0:
        print("error: needs root for cgroups: sudo .venv/bin/python -m benchmarks.device_models", file=sys.stderr)
        return 2
    profiles = selected([p for p in load_profiles().values() if p.constrained and p.published], args.devices,
                        "a profile with a published table")
    manager = CgroupManager(f"splitbed-models-{os.getpid()}")
    # the runs' calibration is read from (and refined into) this machine's cache; the per-network ones
    # are written nowhere: they are this benchmark's question, not a device's setting
    cache, rows = CalibrationCache(), []
    try:
        host = class_times(dict.fromkeys(m for p in profiles for m in p.published.ms))
        for profile in profiles:
            try:
                rows.append(device_row(profile, manager, cache, host))
            except RuntimeError as err:  # a worker that did not start: this device is lost, not the others
                rows.append({"name": profile.key, "skipped": f"{type(err).__name__}: {err}"})
            if args.json:  # after every device: a later failure keeps what was measured
                Path(args.json).write_text(json.dumps({"cpu_model": cpu_model(), "cpus": os.cpu_count(), "runs": RUNS,
                                                       "run_s": RUN_S, "fit_half": FIT_HALF, "held_out": HELD_OUT,
                                                       "devices": rows}, indent=1) + "\n")
    finally:
        manager.remove_all()
    return 0


def _pct(ratio: float) -> str:
    return f"{ratio:.2f}x"


def _half(entry: dict) -> str:
    return (f"median {_pct(entry['median_ratio'])}, median miss {math.expm1(entry['median_abs_log']) * 100:.0f}%, "
            f"worst {entry['worst_model']} {_pct(entry['worst_ratio'])}")


def _ratio(entry: dict, model: str) -> str:
    ratio = entry.get("ratios", {}).get(model)
    return "-" if ratio is None else f"{ratio:.2f}"


def section(data: dict, found: dict) -> list[str]:
    devices = [d for d in data["devices"] if "per_network" in d]
    models = sorted({m for d in devices for m in d["published_ms"]}, key=lambda m: (m not in data["fit_half"], m))
    lines = [f"Fit half: {', '.join(data['fit_half'])}. Held-out half: {', '.join(data['held_out'])} (declared "
             "before measuring). Ratio = emulated (or predicted) / published (ncnn's benchmark, 4 threads, fp32); each "
             f"emulated time the mean of {data['runs']} medians of {data['run_s']:.0f} s.", "",
             "- **as run**: the node calibrated on the device's EfficientNet-Lite0 reference, as runs use it; no "
             "network of the table was fitted.",
             "- **per network**: the node calibrated on each held-out network itself, against the time the fit half "
             "predicts for it (the uniform scale below x the network's one-thread time here).",
             "- **uniform** and **by class** (predictions, no emulation): one scale, or a cost per layer class "
             "(dense, 1x1/fully connected, depthwise, other), fitted on the fit half's published times against the "
             "networks' one-thread times on this machine (the class costs' ridge chosen leave-one-out on the fit "
             "half).", ""]
    rows = [[m + ("" if m in data["fit_half"] else " (held out)"),
             *(" / ".join([_ratio(d["as_run"], m), _ratio(d["per_network"], m), _ratio(d["predicted"]["uniform"], m),
                           _ratio(d["predicted"]["by_class"], m)]) for d in devices)] for m in models]
    lines += table(["model", *(f"{d['name']}: as run / per network / uniform / by class" for d in devices)], rows)
    lines += table(["device", "as run: every network", "per network: held out", "uniform: held out",
                    "by class: held out", "node threads (device's)"],
                   [[d["name"], _half(d["as_run"]["all"]),
                     _half(d["per_network"]["held_out"]) if "held_out" in d["per_network"] else "-",
                     _half(d["predicted"]["uniform"]["held_out"]), _half(d["predicted"]["by_class"]["held_out"]),
                     f"{d['as_run']['threads']} ({d['published_threads']})"] for d in devices])
    lines += [f"- {d['name']}, per network: skipped, {d['per_network']['skipped']}"
              for d in devices if "skipped" in d["per_network"]]
    lines += [f"- {d['name']}, per network: {m} skipped, {e['skipped']}"
              for d in devices for m, e in d["per_network"]["models"].items() if "skipped" in e]
    lines += slowdown_lines([d for d in devices if "slowdown" in d.get("fixed_quota", {})], data)
    lines += [f"- {d['name']}: skipped, {d['skipped']}"
              + (f"; as run: {_half(d['as_run']['all'])}" if "as_run" in d else "")
              for d in data["devices"] if "skipped" in d]
    return lines


def slowdown_lines(devices: list[dict], data: dict) -> list[str]:
    """Does the node slow every network alike? Under the governor, and at the quota it settled on."""
    if not devices:
        return []

    def span(entry: dict) -> str:
        each = entry["slowdown"]["each"]
        low, high = min(each, key=each.get), max(each, key=each.get)
        return f"{each[low]:.1f}x ({low}) to {each[high]:.1f}x ({high}): {entry['slowdown']['spread']:.2f}"

    lines = ["Slowdown = emulated / the same network on the node's core of this machine, unconstrained, timed right "
             "before it (a node that "
             "slowed every network alike, as a slower CPU does, would show one number). 'fixed quota': the node "
             "held at the quota its governor settled on in calibration, the governor sensing only.", ""]
    def quotas(entry: dict) -> str:
        held = {m: g["quota_cores_mean"] for m, g in entry.get("governor", {}).items() if g.get("quota_cores_mean")}
        if not held:
            return "-"
        low, high = min(held, key=held.get), max(held, key=held.get)
        return f"{held[low]:.3f} ({low}) to {held[high]:.3f} ({high})"

    lines += table(["device", "under the governor: lowest to highest, max/min", "the governor's mean quota, cores",
                    "at a fixed quota: lowest to highest, max/min", "fixed quota (cores, period)"],
                   [[d["name"], span(d["as_run"]), quotas(d["as_run"]), span(d["fixed_quota"]),
                     f"{d['fixed_quota']['quota_cores']}, {d['fixed_quota']['period_us'] // 1000} ms"] for d in devices])
    return lines


def headline(data: dict, found: dict) -> list[list[str]]:
    """The held-out networks with the node calibrated on each (from the fit half's scale), and every
    network as runs use the node (calibrated on Lite0): emulated / published."""
    devices = [d for d in data["devices"] if "held_out" in d.get("per_network", {})]

    def held(d: dict) -> str:
        held_out, each = d["per_network"]["held_out"], d["per_network"]["models"]
        skipped = sum("skipped" in e for e in each.values())
        return (f"{d['name']} {_pct(held_out['median_ratio'])} ({_pct(held_out['worst_ratio'])}"
                + (f"; {len(each) - skipped} of {len(each)}" if skipped else "") + ")")

    def as_run(d: dict) -> str:
        ratios = d["as_run"]["ratios"].values()
        return f"{_pct(statistics.median(ratios))} ({min(ratios):.2f}-{_pct(max(ratios))})"

    return [["devices on networks never fitted (emulated / ncnn's published time)",
             "held out, node calibrated on each from the fit half's scale, median (worst): "
             + "; ".join(held(d) for d in devices) + ". As runs use them (Lite0), all: "
             + "; ".join(f"{d['name']} {as_run(d)}" for d in devices)]]


PAGES = [Page("device_models", "Devices: held-out networks", order=61, argv=["-m", "benchmarks.device_models"],
              section=section, headline=headline, headline_order=21)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
